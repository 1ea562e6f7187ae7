//! One Docker engine per lab node, as each machine of a cluster has its own: a `dockerd` in the
//! node's network namespace and in a mount namespace of its own, whose `/etc/docker` is the
//! node's folder (so it trusts the lab CA and nothing of the host's), with its data root, exec
//! root, pid file and socket under the lab's state folder.
//!
//! `nsenter --net`, not `ip netns exec`: the latter remounts `/sys`, and dockerd then finds no
//! devices cgroup. Its containers' overlay mounts live in that private mount namespace and go
//! with it.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::LabPlan;

/// How long a node's dockerd may take to answer (it usually takes half a second).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `down` waits for a dockerd to stop after SIGTERM before it kills it.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The arguments of node `i`'s dockerd, after the program name.
pub(crate) fn dockerd_args(plan: &LabPlan, i: usize) -> Vec<String> {
    let dir = plan.engine_dir(i);
    let path = |p: PathBuf| p.display().to_string();
    vec![
        format!("--host={}", plan.engine_host(i)),
        format!("--data-root={}", path(dir.join("data"))),
        format!("--exec-root={}", path(dir.join("exec"))),
        format!("--pidfile={}", path(plan.engine_pid_file(i))),
        // The node's namespace is the machine's network: meshd plumbs every task itself.
        "--bridge=none".to_owned(),
        "--iptables=false".to_owned(),
        "--ip6tables=false".to_owned(),
        "--log-level=warn".to_owned(),
    ]
}

/// Writes node `i`'s `/etc/docker` (the lab CA under `certs.d/<registry>:5000/`) and starts its
/// dockerd without waiting for it.
pub(crate) fn spawn(plan: &LabPlan, i: usize) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let dir = plan.engine_dir(i);
    let certs = plan
        .engine_etc(i)
        .join("certs.d")
        .join(plan.registry_host());
    fs::create_dir_all(&certs).with_context(|| format!("creating {}", certs.display()))?;
    fs::copy(plan.ca_cert(), certs.join("ca.crt")).context("giving a node engine the lab CA")?;
    for sub in ["data", "exec"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    if !Path::new("/etc/docker").is_dir() {
        // The mount point of each engine's own /etc/docker (docker.io makes it).
        fs::create_dir_all("/etc/docker")?;
    }
    let log = fs::File::create(plan.engine_log(i))?;
    let netns = format!("--net=/run/netns/{}", plan.node_ns(i));
    let etc = plan.engine_etc(i);
    Command::new("nsenter")
        .arg(netns)
        .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"etc="$1"; shift; mount --bind "$etc" /etc/docker && exec dockerd "$@""#)
        .arg("lab-dockerd")
        .arg(etc)
        .args(dockerd_args(plan, i))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C on `meshctl lab up` does not take the engines down.
        .process_group(0)
        .spawn()
        .context("starting dockerd through nsenter and unshare (util-linux)")
}

/// Waits until node `i`'s dockerd answers `/_ping`; says why not when its process ended.
pub(crate) fn wait_ready(plan: &LabPlan, i: usize, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if ping(&plan.engine_socket(i)) {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "dockerd of {} exited during start-up ({status}); its log {} ends with:\n{}",
                plan.node_ns(i),
                plan.engine_log(i).display(),
                crate::tail(&plan.engine_log(i), 15)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "dockerd of {} did not answer on {} within {START_TIMEOUT:?}; see {}",
                plan.node_ns(i),
                plan.engine_socket(i).display(),
                plan.engine_log(i).display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Does the engine behind `socket` answer the API's `GET /_ping`?
pub(crate) fn ping(socket: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && head.ends_with(b"200")
}

/// Removes every container of the engine behind `socket` (all of them are the lab's); how many
/// there were. An engine that does not answer holds none that the API could remove.
pub(crate) fn remove_containers(socket: &Path) -> Result<usize> {
    if !ping(socket) {
        return Ok(0);
    }
    let host = format!("unix://{}", socket.display());
    let out = Command::new("docker")
        .args(["-H", &host, "ps", "-aq"])
        .output()
        .context("running docker (the lab's client of the node engines)")?;
    if !out.status.success() {
        return Ok(0);
    }
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if !ids.is_empty() {
        crate::run(
            Command::new("docker")
                .args(["-H", &host, "rm", "-f"])
                .args(&ids),
        )?;
    }
    Ok(ids.len())
}

/// Is this command line a dockerd of the lab whose state folder is `state`?
pub(crate) fn is_lab_dockerd(args: &[String], state: &Path) -> bool {
    let named_dockerd = args
        .first()
        .is_some_and(|a| Path::new(a).file_name().is_some_and(|n| n == "dockerd"));
    named_dockerd
        && args.iter().any(|a| {
            a.strip_prefix("--pidfile=")
                .is_some_and(|p| Path::new(p).starts_with(state))
        })
}

/// Is this command line the containerd a lab dockerd started (its config under `state`)?
/// `down` stops it together with its dockerd: stopped one after the other they take twice as
/// long.
pub(crate) fn is_lab_containerd(args: &[String], state: &Path) -> bool {
    args.first()
        .is_some_and(|a| Path::new(a).file_name().is_some_and(|n| n == "containerd"))
        && names_lab_path(args, state)
}

/// Is this command line a process that names a file under `state` (a containerd or shim of a
/// node engine, the registry)?
pub(crate) fn names_lab_path(args: &[String], state: &Path) -> bool {
    args.iter().any(|a| {
        let path = a.split_once('=').map_or(a.as_str(), |(_, v)| v);
        Path::new(path).starts_with(state)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn a_node_engine_has_its_own_roots_and_no_bridge_or_iptables() {
        let plan = LabPlan::new("mesh", "198.18.3.0/24", 2, 1).unwrap();
        let args = dockerd_args(&plan, 2);
        for want in [
            "--host=unix:///var/lib/meshd-lab/mesh/n2/docker.sock",
            "--data-root=/var/lib/meshd-lab/mesh/n2/docker/data",
            "--exec-root=/var/lib/meshd-lab/mesh/n2/docker/exec",
            "--pidfile=/var/lib/meshd-lab/mesh/n2/docker/dockerd.pid",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} missing in {args:?}");
        }
        assert!(!args.iter().any(|a| a.contains("live-restore")));
    }

    #[test]
    fn down_finds_the_lab_engines_by_their_command_line() {
        let state = Path::new("/var/lib/meshd-lab/mesh");
        let lab = words(
            "dockerd --host=unix:///x --pidfile=/var/lib/meshd-lab/mesh/n1/docker/dockerd.pid",
        );
        assert!(is_lab_dockerd(&lab, state));
        let other = words("dockerd --pidfile=/var/lib/meshd-lab/mesh2/n1/docker/dockerd.pid");
        assert!(!is_lab_dockerd(&other, state));
        assert!(!is_lab_dockerd(&words("/usr/sbin/dockerd"), state));
        let shim = words(
            "/usr/bin/containerd-shim-runc-v2 -namespace moby -id abc -address /var/lib/meshd-lab/mesh/n1/docker/exec/containerd/containerd.sock",
        );
        assert!(names_lab_path(&shim, state));
        assert!(!is_lab_containerd(&shim, state));
        assert!(is_lab_containerd(
            &words(
                "containerd --config /var/lib/meshd-lab/mesh/n1/docker/exec/containerd/containerd.toml"
            ),
            state
        ));
        assert!(!names_lab_path(
            &words("containerd --config /var/run/docker/containerd/containerd.toml"),
            state
        ));
    }
}
