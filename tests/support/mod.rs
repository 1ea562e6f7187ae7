//! What every end-to-end test shares: the lab guard and small command helpers.
//!
//! Each test takes its own lab prefix (with this process's id, so that two runs of the suite do
//! not collide) and its own underlay /24; the guard removes the lab when dropped, also when the
//! test panics.

use std::process::{Command, Output};

pub const MESHCTL: &str = env!("CARGO_BIN_EXE_meshctl");

/// A lab for one test, torn down on drop.
pub struct Lab {
    pub prefix: String,
    pub subnet_octet: u8,
}

impl Lab {
    /// Prefix `mt<pid>-<name>`; `subnet_octet` picks 198.18.<octet>.0/24 (unique per test).
    pub fn prefix_for(name: &str) -> String {
        format!("mt{}-{name}", std::process::id() % 100_000)
    }

    pub fn up(name: &str, subnet_octet: u8, nodes: usize, managers: usize) -> Self {
        let lab = Self {
            prefix: Self::prefix_for(name),
            subnet_octet,
        };
        let out = lab.meshctl_lab(&[
            "up",
            "--nodes",
            &nodes.to_string(),
            "--managers",
            &managers.to_string(),
        ]);
        assert!(
            out.status.success(),
            "lab up {} failed:\n{}",
            lab.prefix,
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    pub fn subnet(&self) -> String {
        format!("198.18.{}.0/24", self.subnet_octet)
    }

    pub fn node_addr(&self, i: usize) -> String {
        format!("198.18.{}.{}", self.subnet_octet, 10 + i)
    }

    pub fn ns(&self, member: &str) -> String {
        format!("{}-{member}", self.prefix)
    }

    /// `meshctl lab <args> --prefix P --subnet S` (the subnet only where `up` takes it).
    pub fn meshctl_lab(&self, args: &[&str]) -> Output {
        let mut c = Command::new(MESHCTL);
        c.arg("lab").args(args).args(["--prefix", &self.prefix]);
        if args.first() == Some(&"up") {
            c.args(["--subnet", &self.subnet()]);
        }
        c.output().expect("run meshctl")
    }

    /// Runs `cmd` in a member's namespace and returns its output.
    pub fn exec(&self, member: &str, cmd: &[&str]) -> Output {
        Command::new(MESHCTL)
            .args(["lab", "exec", "--prefix", &self.prefix, member, "--"])
            .args(cmd)
            .output()
            .expect("run meshctl lab exec")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.meshctl_lab(&["down"]);
        assert!(
            out.status.success() || std::thread::panicking(),
            "lab down {} failed: {}",
            self.prefix,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a host command and returns its stdout (empty when it cannot run).
pub fn host(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| stdout(&o))
        .unwrap_or_default()
}
