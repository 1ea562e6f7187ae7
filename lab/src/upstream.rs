//! The lab's upstream resolver: unbound in `P-client`, the one DNS server "outside" the
//! cluster. It answers [`UPSTREAM_NAME`] (and names under it) with the client's address and
//! every other name with NXDOMAIN, from local data only: it never asks anyone else, and the lab
//! has no route out anyway. Every node's meshd forwards the tasks' non-cluster names to it
//! (`meshd --resolv-conf` names the lab's `resolv.conf`, which lists only it).

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{LabPlan, tail};

/// The name the lab's upstream resolver answers with the client's address.
pub const UPSTREAM_NAME: &str = "outside.test";

/// unbound's configuration (pure): listens on `addr:53` only, serves `name` (and its
/// subdomains) as `answer` and everything else as NXDOMAIN, and never recurses.
pub(crate) fn unbound_conf(dir: &Path, addr: Ipv4Addr, name: &str, answer: Ipv4Addr) -> String {
    let d = dir.display();
    format!(
        "server:\n    interface: {addr}\n    port: 53\n    do-daemonize: no\n    chroot: \"\"\n    \
         username: \"\"\n    directory: \"{d}\"\n    pidfile: \"{d}/unbound.pid\"\n    use-syslog: no\n    \
         logfile: \"\"\n    verbosity: 1\n    num-threads: 1\n    do-ip6: no\n    \
         access-control: 0.0.0.0/0 allow\n    module-config: \"iterator\"\n    \
         local-zone: \".\" static\n    local-zone: \"{name}.\" redirect\n    \
         local-data: \"{name}. 60 IN A {answer}\"\n\
         remote-control:\n    control-enable: no\n"
    )
}

/// The resolv.conf the nodes' meshd read (pure): the lab's resolver only.
pub(crate) fn resolv_conf(addr: Ipv4Addr) -> String {
    format!("# The lab's upstream resolver (unbound in the client namespace).\nnameserver {addr}\n")
}

impl LabPlan {
    /// The resolv.conf every node's meshd forwards names outside the cluster by.
    pub fn resolv_conf(&self) -> PathBuf {
        self.state_dir().join("resolv.conf")
    }
    fn upstream_dir(&self) -> PathBuf {
        self.state_dir().join("upstream")
    }
}

/// Writes the nodes' resolv.conf and starts unbound in the client namespace (its own process
/// group, logging to `upstream/unbound.log`). [`wait_ready`] waits for its answer.
pub(crate) fn start(plan: &LabPlan) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let dir = plan.upstream_dir();
    fs::create_dir_all(&dir)?;
    let addr = plan.client_addr();
    let conf = dir.join("unbound.conf");
    fs::write(&conf, unbound_conf(&dir, addr, UPSTREAM_NAME, addr))?;
    fs::write(plan.resolv_conf(), resolv_conf(addr))?;
    let log = fs::File::create(dir.join("unbound.log"))?;
    Command::new("ip")
        .args(["netns", "exec", &plan.client_ns(), "unbound", "-d", "-c"])
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting unbound in the lab's client namespace (is unbound installed? scripts/deps.sh installs it)")?;
    Ok(())
}

/// Waits until the resolver answers [`UPSTREAM_NAME`] (asked with `dig` from the client).
pub(crate) fn wait_ready(plan: &LabPlan) -> Result<()> {
    let addr = plan.client_addr().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &plan.client_ns(),
                "dig",
                "+short",
                "+time=1",
                "+tries=1",
            ])
            .arg(format!("@{addr}"))
            .arg(UPSTREAM_NAME)
            .output()
            .context("running dig in the lab's client namespace (dnsutils)")?;
        if String::from_utf8_lossy(&out.stdout).trim() == addr {
            return Ok(());
        }
        if Instant::now() > deadline {
            let log = plan.upstream_dir().join("unbound.log");
            bail!(
                "the lab's upstream resolver (unbound on {addr}:53) did not answer {UPSTREAM_NAME} within 10s; {} ends with:\n{}",
                log.display(),
                tail(&log, 15)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unbound_serves_only_local_data_on_the_clients_address() {
        let conf = unbound_conf(
            Path::new("/state/upstream"),
            Ipv4Addr::new(198, 18, 7, 2),
            "outside.test",
            Ipv4Addr::new(198, 18, 7, 2),
        );
        assert!(conf.contains("interface: 198.18.7.2\n"), "{conf}");
        assert!(
            conf.contains("local-zone: \".\" static"),
            "never recurses: {conf}"
        );
        assert!(
            conf.contains("local-data: \"outside.test. 60 IN A 198.18.7.2\""),
            "{conf}"
        );
        assert!(conf.contains("directory: \"/state/upstream\""), "{conf}");
    }

    #[test]
    fn resolv_conf_names_only_the_lab_resolver() {
        let text = resolv_conf(Ipv4Addr::new(198, 18, 7, 2));
        let servers: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("nameserver"))
            .collect();
        assert_eq!(servers, ["nameserver 198.18.7.2"]);
    }
}
