//! The bench's lab: `meshctl lab up` with our own prefix and /24, removed by `meshctl lab down`
//! when dropped (also on an error or Ctrl-C); the backend task found in Docker by meshd's labels.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::report::Datapath;
use crate::sys;

/// Where `lab up` keeps each node's state (and `meshd.pid`).
const STATE_ROOT: &str = "/var/lib/meshd-lab";

/// A running lab, torn down on drop.
pub struct Lab {
    pub prefix: String,
    /// The first three octets of the /24.
    pub net: [u8; 3],
    pub datapath: Datapath,
    meshctl: PathBuf,
}

/// A running task of a service.
#[derive(Clone, Debug)]
pub struct Task {
    pub container: String,
    /// The node (1..=3) it runs on.
    pub node: usize,
    /// Its init process, for `nsenter -t PID -n`.
    pub pid: i32,
}

impl Task {
    pub fn netns_file(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid))
    }

    /// `nsenter -t PID -n PROGRAM`: PROGRAM (a host binary) inside the task's network
    /// namespace. nsenter execs it, so the child is the program itself.
    pub fn nsenter(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.pid.to_string())
            .arg("-n")
            .arg("--")
            .arg(program);
        c
    }
}

/// `198.18.200.0/24` -> `[198, 18, 200]` (a /24 inside 198.18.0.0/15, as the lab takes).
pub fn parse_subnet(s: &str) -> Result<[u8; 3]> {
    let bad = || anyhow::anyhow!("invalid --subnet {s:?}: give a /24 inside 198.18.0.0/15");
    let (addr, len) = s.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let octets = addr.octets();
    if len != "24" || octets[3] != 0 || octets[0] != 198 || !(18..=19).contains(&octets[1]) {
        return Err(bad());
    }
    Ok([octets[0], octets[1], octets[2]])
}

impl Lab {
    /// `meshctl lab up --nodes 3 --managers 1`. The guard exists before `up` runs, so a lab
    /// that failed half-way is removed too.
    pub fn up(meshctl: &Path, prefix: &str, net: [u8; 3], datapath: Datapath) -> Result<Self> {
        Self::up_with(meshctl, prefix, net, datapath, &[])
    }

    /// [`Lab::up`] with flags for every node's meshd (`lab up ... -- MESHD_ARGS`).
    pub fn up_with(
        meshctl: &Path,
        prefix: &str,
        net: [u8; 3],
        datapath: Datapath,
        meshd_args: &[&str],
    ) -> Result<Self> {
        let leftovers = Self::namespaces(prefix);
        if !leftovers.is_empty() {
            bail!(
                "namespaces of a lab {prefix:?} exist already ({}): another bench running? If \
                 not, remove them with `meshctl lab down --prefix {prefix}`",
                leftovers.join(", ")
            );
        }
        let lab = Self {
            prefix: prefix.to_owned(),
            net,
            datapath,
            meshctl: meshctl.to_owned(),
        };
        let subnet = format!("{}.{}.{}.0/24", net[0], net[1], net[2]);
        sys::run(
            Command::new(&lab.meshctl)
                .args([
                    "lab",
                    "up",
                    "--nodes",
                    "3",
                    "--managers",
                    "1",
                    "--prefix",
                    prefix,
                    "--subnet",
                    &subnet,
                    "--datapath",
                    datapath.meshd_datapath(),
                ])
                .args(if datapath.native() {
                    &["--default-routing", "native"][..]
                } else {
                    &[][..]
                })
                .args(if meshd_args.is_empty() {
                    &[][..]
                } else {
                    &["--"][..]
                })
                .args(meshd_args),
            Duration::from_mins(4),
        )
        .context("meshctl lab up")?;
        Ok(lab)
    }

    /// The namespaces a lab `prefix` has on this machine.
    pub fn namespaces(prefix: &str) -> Vec<String> {
        let out = Command::new("ip").args(["netns", "list"]).output();
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        text.unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|ns| {
                ns.strip_prefix(prefix)
                    .and_then(|s| s.strip_prefix('-'))
                    .is_some_and(|s| {
                        s == "sw"
                            || s == "client"
                            || s == "reg"
                            || s.strip_prefix('n').is_some_and(|n| {
                                !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())
                            })
                    })
            })
            .map(str::to_owned)
            .collect()
    }

    /// `client` or `n2` -> `bench-n2`.
    pub fn ns(&self, member: &str) -> String {
        format!("{}-{member}", self.prefix)
    }

    pub fn ns_file(&self, member: &str) -> PathBuf {
        PathBuf::from("/var/run/netns").join(self.ns(member))
    }

    pub fn node_addr(&self, i: usize) -> Ipv4Addr {
        let [a, b, c] = self.net;
        Ipv4Addr::new(a, b, c, 10 + i as u8)
    }

    /// `ip netns exec NS ARGS...`, which must succeed; its stdout.
    pub fn exec(&self, member: &str, args: &[&str]) -> Result<String> {
        sys::run(
            Command::new("ip")
                .args(["netns", "exec", &self.ns(member)])
                .args(args),
            Duration::from_secs(30),
        )
    }

    /// `ip netns exec NS PROGRAM ...` as a command to spawn or run with a deadline.
    pub fn command(&self, member: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(member), program]);
        c
    }

    /// `meshctl ARGS` on n1 (the manager), through `meshctl lab exec`.
    pub fn meshctl(&self, args: &[&str]) -> Result<String> {
        sys::run(
            Command::new(&self.meshctl)
                .args([
                    "lab",
                    "exec",
                    "--prefix",
                    &self.prefix,
                    "n1",
                    "--",
                    "meshctl",
                ])
                .args(args),
            Duration::from_mins(1),
        )
    }

    /// `meshctl lab ARGS --prefix P`.
    pub fn lab(&self, args: &[&str]) -> Result<String> {
        sys::run(
            Command::new(&self.meshctl)
                .arg("lab")
                .args(args)
                .args(["--prefix", &self.prefix]),
            Duration::from_mins(1),
        )
    }

    /// The meshd of each node (by the pid `lab up` recorded, if it still runs meshd).
    pub fn meshd_pids(&self) -> BTreeMap<usize, i32> {
        let mut out = BTreeMap::new();
        for i in 1..=3 {
            let dir = Path::new(STATE_ROOT)
                .join(&self.prefix)
                .join(format!("n{i}"));
            let pid = std::fs::read_to_string(dir.join("meshd.pid"))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok());
            if let Some(pid) = pid {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains("meshd") {
                    out.insert(i, pid);
                }
            }
        }
        out
    }

    /// The test image, as the nodes pull it from the lab registry (at `.5:5000`).
    pub fn image(&self) -> String {
        let [a, b, c] = self.net;
        format!("{a}.{b}.{c}.5:5000/meshd/busybox")
    }

    /// `docker -H <node i's own engine>` (the lab runs a dockerd per node).
    fn docker(&self, i: usize) -> Command {
        let mut c = Command::new("docker");
        c.arg("-H").arg(format!(
            "unix://{STATE_ROOT}/{}/n{i}/docker.sock",
            self.prefix
        ));
        c
    }

    /// The running tasks of service `name` (containers labelled by meshd), from every node's
    /// engine.
    pub fn tasks(&self, name: &str) -> Result<Vec<Task>> {
        let id = self.meshctl(&["service", "inspect", "--format", "{{.ID}}", name])?;
        let mut tasks = Vec::new();
        for i in 1..=3 {
            tasks.extend(self.tasks_on(i, id.trim())?);
        }
        Ok(tasks)
    }

    fn tasks_on(&self, i: usize, service_id: &str) -> Result<Vec<Task>> {
        let out = sys::run(
            self.docker(i).args([
                "ps",
                "--filter",
                &format!("label=meshd.service={service_id}"),
                "--filter",
                "status=running",
                "--format",
                "{{.ID}} {{.Label \"meshd.hostname\"}}",
            ]),
            Duration::from_secs(30),
        )?;
        let node_prefix = format!("{}-n", self.prefix);
        let mut tasks = Vec::new();
        for line in out.lines() {
            let Some((container, host)) = line.split_once(' ') else {
                continue;
            };
            let Some(node) = host
                .strip_prefix(&node_prefix)
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            let pid = sys::run(
                self.docker(i)
                    .args(["inspect", "-f", "{{.State.Pid}}", container]),
                Duration::from_secs(30),
            )?;
            let pid: i32 = pid.trim().parse().context("docker inspect .State.Pid")?;
            if pid > 0 {
                tasks.push(Task {
                    container: container.to_owned(),
                    node,
                    pid,
                });
            }
        }
        Ok(tasks)
    }

    /// A node's interface and address on the `ingress` network (10.255.0.0/16).
    pub fn node_ingress(&self, member: &str) -> Result<(String, Ipv4Addr)> {
        let text = self.exec(member, &["ip", "-4", "-o", "addr", "show"])?;
        ingress_of(&text)
            .with_context(|| format!("{} has no ingress address:\n{text}", self.ns(member)))
    }
}

/// The task's address on `ingress`.
pub fn task_ingress(task: &Task) -> Result<Ipv4Addr> {
    let text = sys::run(
        task.nsenter("ip").args(["-4", "-o", "addr", "show"]),
        Duration::from_secs(10),
    )?;
    ingress_of(&text)
        .map(|(_, a)| a)
        .with_context(|| format!("task {} has no ingress address:\n{text}", task.container))
}

/// From `ip -4 -o addr show`: the interface and address inside 10.255.0.0/16 (ingress).
pub fn ingress_of(text: &str) -> Option<(String, Ipv4Addr)> {
    text.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        let inet = w.iter().position(|x| *x == "inet")?;
        let addr: Ipv4Addr = w.get(inet + 1)?.split('/').next()?.parse().ok()?;
        let [a, b, _, _] = addr.octets();
        let dev = w.get(1)?.to_string();
        ((a, b) == (10, 255)).then_some((dev, addr))
    })
}

impl Drop for Lab {
    fn drop(&mut self) {
        eprintln!("[bench] removing lab {}", self.prefix);
        let out = Command::new(&self.meshctl)
            .args(["lab", "down", "--prefix", &self.prefix])
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "[bench] meshctl lab down --prefix {} failed: {}",
                self.prefix,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("[bench] running meshctl lab down: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_24s_of_the_lab_range() {
        assert_eq!(parse_subnet("198.18.200.0/24").unwrap(), [198, 18, 200]);
        assert_eq!(parse_subnet("198.19.7.0/24").unwrap(), [198, 19, 7]);
        assert!(parse_subnet("10.0.0.0/24").is_err());
        assert!(parse_subnet("198.18.200.0/16").is_err());
        assert!(parse_subnet("198.18.200.1/24").is_err());
    }

    #[test]
    fn the_ingress_address_is_found_among_interfaces() {
        let node = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
                    2: eth0    inet 198.18.200.12/24 scope global eth0\\       valid_lft forever\n\
                    3: mbr4096    inet 10.255.0.2/16 brd 10.255.255.255 scope global mbr4096\n";
        assert_eq!(
            ingress_of(node),
            Some(("mbr4096".to_owned(), Ipv4Addr::new(10, 255, 0, 2)))
        );
        assert_eq!(
            ingress_of("1: lo    inet 127.0.0.1/8 scope host lo\n"),
            None
        );
    }
}
