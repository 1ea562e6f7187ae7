//! `lab down`: removes every trace of a lab, from whatever state it is in (also one whose `up`
//! was killed half-way): meshds first (so none starts a task again), then the task containers
//! through each node's engine, then the engines, then whatever else runs in the lab's namespaces
//! or names its state folder (containerd, shims and their containers, the registry), then the
//! namespaces, pins and state.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::{
    LabState, alive, arg_value, engine, ip, leftovers, old_switch_pins, processes, state_dir,
};

/// Removes every trace of the lab `prefix`. Works from whatever state the lab is in.
pub fn down(prefix: &str) -> Result<()> {
    let plan = LabState::load(prefix).map(|s| s.plan);
    let state = state_dir(prefix);
    let namespaces = leftovers(prefix);

    // 1. Every meshd of the lab.
    let meshds: Vec<i32> = processes()
        .into_iter()
        .filter(|(_, args)| {
            arg_value(args, "--data-dir").is_some_and(|d| Path::new(d).starts_with(&state))
        })
        .map(|(pid, _)| pid)
        .collect();
    kill_all(&meshds, Duration::from_secs(5));

    // 2. Task containers, through the engines that answer, all at once. A create that a killed
    // meshd sent may still land: its container goes with its engine (3, 4).
    let sockets: Vec<_> = node_dirs(&state)
        .into_iter()
        .map(|d| d.join("docker.sock"))
        .collect();
    std::thread::scope(|scope| {
        let sweeps: Vec<_> = sockets
            .iter()
            .map(|sock| scope.spawn(move || engine::remove_containers(sock)))
            .collect();
        sweeps
            .into_iter()
            .map(|s| s.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect::<Result<Vec<usize>>>()
    })?;

    // 3. The engines and their containerds: SIGTERM, and SIGKILL after a bound. Without containers they stop in about
    // a second; one that still has some stops them first.
    let engines: Vec<i32> = processes()
        .into_iter()
        .filter(|(_, args)| {
            engine::is_lab_dockerd(args, &state) || engine::is_lab_containerd(args, &state)
        })
        .map(|(pid, _)| pid)
        .collect();
    kill_all(&engines, engine::STOP_TIMEOUT);

    // 4. Anything left: processes in the lab's namespaces or naming its state folder (the
    // registry, a containerd or shim of a killed engine), and their descendants (containers).
    let mut rest: Vec<i32> = processes()
        .into_iter()
        .filter(|(_, args)| engine::names_lab_path(args, &state))
        .map(|(pid, _)| pid)
        .collect();
    for ns in &namespaces {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
            rest.extend(
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    let rest = with_descendants(&rest, &parents());
    kill_all(&rest, Duration::from_secs(5));

    // 5. Namespaces, which take their links with them.
    for ns in &namespaces {
        ip(&["netns", "del", ns])?;
    }

    // 6. BPF pins and state.
    let hostnames: Vec<String> = match &plan {
        Some(p) => p.node_indexes().map(|i| p.node_ns(i)).collect(),
        None => namespaces.clone(),
    };
    for pins in hostnames
        .iter()
        .map(|h| Path::new("/sys/fs/bpf/meshd").join(h))
        .chain([old_switch_pins(prefix)])
    {
        if pins.exists() {
            fs::remove_dir_all(&pins).with_context(|| format!("removing {}", pins.display()))?;
        }
    }
    unmount_under(&state)?;
    if state.exists() {
        fs::remove_dir_all(&state).with_context(|| format!("removing {}", state.display()))?;
    }
    Ok(())
}

/// The lab's state lives on a tmpfs of its own, mounted by `up`: on the machine's disk, unlinking
/// the engines' image layers and the registry's blobs took a second at every `down`.
pub(crate) fn mount_state(state: &Path) -> Result<()> {
    use nix::mount::{MsFlags, mount};
    fs::create_dir_all(state)?;
    mount(
        Some("meshd-lab"),
        state,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    )
    .with_context(|| format!("mounting a tmpfs on {}", state.display()))
}

/// Unmounts (lazily) everything mounted at or under `state`, deepest first.
fn unmount_under(state: &Path) -> Result<()> {
    use nix::mount::{MntFlags, umount2};
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for point in mounts_under(&info, state) {
        umount2(&point, MntFlags::MNT_DETACH)
            .with_context(|| format!("unmounting {}", point.display()))?;
    }
    Ok(())
}

/// The mount points at or under `dir` in a `/proc/self/mountinfo` text, deepest first.
fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<std::path::PathBuf> {
    let mut points: Vec<std::path::PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(|p| std::path::PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points
}

/// The `nI` folders of a lab's state (what a half-made lab has, whatever its plan said).
fn node_dirs(state: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = fs::read_dir(state) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix('n'))
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        })
        .map(|e| e.path())
        .collect()
}

/// Every process's parent.
fn parents() -> HashMap<i32, i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(e.path().join("stat")).ok()?;
            // `pid (comm) state ppid ...`: comm may hold spaces and parentheses.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// `roots` and every process below them.
fn with_descendants(roots: &[i32], parents: &HashMap<i32, i32>) -> Vec<i32> {
    let mut found: Vec<i32> = roots.to_vec();
    let mut grew = true;
    while grew {
        grew = false;
        for (&pid, ppid) in parents {
            if found.contains(ppid) && !found.contains(&pid) {
                found.push(pid);
                grew = true;
            }
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// SIGTERM, a wait of at most `grace`, then SIGKILL for what still runs.
fn kill_all(pids: &[i32], grace: Duration) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let me = std::process::id().cast_signed();
    let pids: Vec<i32> = pids.iter().copied().filter(|p| *p != me).collect();
    for p in &pids {
        let _ = kill(Pid::from_raw(*p), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && pids.iter().any(|p| alive(*p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in &pids {
        if alive(*p) {
            let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
        }
    }
    while pids.iter().any(|p| alive(*p)) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_under_the_state_are_found_deepest_first() {
        let info = "22 1 254:0 / / rw - ext4 /dev/vda rw\n\
            90 22 0:50 / /var/lib/meshd-lab/mesh rw - tmpfs meshd-lab rw\n\
            91 90 0:51 / /var/lib/meshd-lab/mesh/n1/x rw - tmpfs t rw\n\
            92 22 0:52 / /var/lib/meshd-lab/mesh2 rw - tmpfs meshd-lab rw\n";
        let found = mounts_under(info, Path::new("/var/lib/meshd-lab/mesh"));
        assert_eq!(
            found,
            vec![
                std::path::PathBuf::from("/var/lib/meshd-lab/mesh/n1/x"),
                std::path::PathBuf::from("/var/lib/meshd-lab/mesh"),
            ]
        );
    }

    #[test]
    fn descendants_of_a_shim_are_its_containers_and_their_children() {
        // 10 shim -> 11 container init -> 12 its child; 20 is unrelated.
        let parents = HashMap::from([(10, 1), (11, 10), (12, 11), (20, 1)]);
        assert_eq!(with_descendants(&[10], &parents), vec![10, 11, 12]);
        assert_eq!(with_descendants(&[], &parents), Vec::<i32>::new());
    }
}
