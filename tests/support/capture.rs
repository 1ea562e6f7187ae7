//! tcpdump in a lab member's namespace, for tests that check what crossed an interface.

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Lab;

/// tcpdump (`-nn -e`, line-buffered) on one interface of a lab member, writing to a file; killed
/// and its files removed on drop.
pub struct Tcpdump {
    child: Option<Child>,
    out: String,
    err: String,
}

impl Tcpdump {
    /// Starts capturing `filter` (a pcap expression; empty: everything) on `iface` in `member`'s
    /// namespace, and returns once tcpdump listens.
    pub fn start(lab: &Lab, member: &str, iface: &str, filter: &str) -> Self {
        let base = format!("/tmp/{}-{member}-{iface}.tcpdump", lab.prefix);
        let (out, err) = (format!("{base}.txt"), format!("{base}.err"));
        let stdout = fs::File::create(&out).expect("create the capture file");
        let stderr = fs::File::create(&err).expect("create the capture's stderr file");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &lab.ns(member)])
            .args(["tcpdump", "-i", iface, "-nn", "-e", "-l", "-U"]);
        if !filter.is_empty() {
            cmd.arg(filter);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start tcpdump");
        let capture = Self {
            child: Some(child),
            out,
            err,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !fs::read_to_string(&capture.err)
            .unwrap_or_default()
            .contains("listening on")
        {
            assert!(
                Instant::now() < deadline,
                "tcpdump on {member}'s {iface} did not start: {}",
                fs::read_to_string(&capture.err).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        capture
    }

    /// Stops the capture (after a moment for the last packets, with SIGINT so that tcpdump
    /// flushes) and returns what it printed.
    pub fn stop(mut self) -> String {
        if let Some(mut child) = self.child.take() {
            std::thread::sleep(Duration::from_millis(500));
            let pid = nix::unistd::Pid::from_raw(child.id().cast_signed());
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
            let _ = child.wait();
        }
        fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = fs::remove_file(&self.out);
        let _ = fs::remove_file(&self.err);
    }
}
