//! What every end-to-end test shares: the lab guard and small command helpers.
//!
//! Each test takes its own lab prefix (with this process's id, so that two runs of the suite do
//! not collide) and its own underlay /24; the guard removes the lab when dropped, also when the
//! test panics.

pub mod capture;
pub mod history;
pub mod routing;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const MESHCTL: &str = env!("CARGO_BIN_EXE_meshctl");

/// A lab for one test, torn down on drop.
pub struct Lab {
    pub prefix: String,
    pub subnet_octet: u8,
    pub nodes: usize,
}

impl Lab {
    /// Prefix `mt<pid>-<name>`; `subnet_octet` picks 198.18.<octet>.0/24 (unique per test).
    pub fn prefix_for(name: &str) -> String {
        format!("mt{}-{name}", std::process::id() % 100_000)
    }

    pub fn up(name: &str, subnet_octet: u8, nodes: usize, managers: usize) -> Self {
        Self::up_with(name, subnet_octet, nodes, managers, &[])
    }

    /// [`Lab::up`] with more `lab up` arguments (`--datapath xdp`).
    pub fn up_with(
        name: &str,
        subnet_octet: u8,
        nodes: usize,
        managers: usize,
        extra: &[&str],
    ) -> Self {
        let lab = Self {
            prefix: Self::prefix_for(name),
            subnet_octet,
            nodes,
        };
        let (nodes, managers) = (nodes.to_string(), managers.to_string());
        let mut args = vec!["up", "--nodes", &nodes, "--managers", &managers];
        args.extend_from_slice(extra);
        let out = lab.meshctl_lab(&args);
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

    /// A lab image as nodes pull it from the lab registry: `image_named("registry")` is
    /// `198.18.<octet>.5:5000/meshd/registry`.
    pub fn image_named(&self, name: &str) -> String {
        format!("198.18.{}.5:5000/meshd/{name}", self.subnet_octet)
    }

    /// The test image `meshd/busybox`, from the lab registry.
    pub fn image(&self) -> String {
        self.image_named("busybox")
    }

    /// `rel` in the lab's state directory (`n1/meshd.log`, `n2/meshd-docker.sock`).
    pub fn path(&self, rel: &str) -> String {
        format!("{}/{rel}", mesh_lab::state_dir(&self.prefix).display())
    }

    /// `unix:///...` of node `i`'s Engine API socket (meshd's).
    pub fn docker_api(&self, i: usize) -> String {
        format!("unix://{}", self.path(&format!("n{i}/meshd-docker.sock")))
    }

    /// `unix:///...` of node `i`'s own Docker engine.
    pub fn engine(&self, i: usize) -> String {
        format!("unix://{}", self.path(&format!("n{i}/docker.sock")))
    }

    /// `docker -H <node i's engine> ARGS`.
    pub fn docker(&self, i: usize, args: &[&str]) -> Output {
        Command::new("docker")
            .args(["-H", &self.engine(i)])
            .args(args)
            .output()
            .expect("run docker")
    }

    /// Like [`Lab::docker`], and its stdout (empty when it fails).
    pub fn docker_out(&self, i: usize, args: &[&str]) -> String {
        stdout(&self.docker(i, args))
    }

    /// [`Lab::docker_out`] on every node's engine, one after the other.
    pub fn docker_all(&self, args: &[&str]) -> String {
        (1..=self.nodes).map(|i| self.docker_out(i, args)).collect()
    }

    /// The node whose engine holds `container` (a name or id).
    pub fn engine_of(&self, container: &str) -> usize {
        (1..=self.nodes)
            .find(|&i| {
                self.docker(i, &["container", "inspect", "-f", ".", container])
                    .status
                    .success()
            })
            .unwrap_or_else(|| panic!("no engine of lab {} holds {container}", self.prefix))
    }

    /// `docker -H <engine> ARGS` on the engine of the node whose hostname is `hostname`
    /// (`<prefix>-nI`, as `service ps` names it).
    pub fn docker_on(&self, hostname: &str, args: &[&str]) -> String {
        let i = hostname
            .strip_prefix(&format!("{}-n", self.prefix))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{hostname} is no node of lab {}", self.prefix));
        self.docker_out(i, args)
    }

    pub fn ns(&self, member: &str) -> String {
        format!("{}-{member}", self.prefix)
    }

    /// `meshctl lab <args> --prefix P --subnet S` (the subnet only where `up` takes it).
    pub fn meshctl_lab(&self, args: &[&str]) -> Output {
        let mut c = Command::new(MESHCTL);
        // The lab's own options right after the verb: whatever follows a `--` in `args` is
        // meshd's.
        let (verb, rest) = args.split_first().expect("a lab verb");
        c.args(["lab", verb, "--prefix", &self.prefix]);
        if *verb == "up" {
            c.args(["--subnet", &self.subnet()]);
        }
        c.args(rest);
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

impl Lab {
    /// A failed test's meshd logs, kept past `lab down` (which removes the lab's state) in
    /// `$TMPDIR/<prefix>-logs/`, and their tails printed: what the nodes did is what explains it.
    fn keep_logs(&self) {
        let kept = std::env::temp_dir().join(format!("{}-logs", self.prefix));
        let _ = std::fs::create_dir_all(&kept);
        for i in 1..=self.nodes {
            let log = self.path(&format!("n{i}/meshd.log"));
            let Ok(text) = std::fs::read_to_string(&log) else {
                continue;
            };
            let _ = std::fs::write(kept.join(format!("n{i}-meshd.log")), &text);
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            eprintln!(
                "---- n{i} meshd.log (last 40 lines; all in {}) ----\n{tail}",
                kept.display()
            );
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.keep_logs();
        }
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

/// Each line's first word with the word after `key` in it (`ip route`'s `via`, `bridge fdb`'s
/// `dst`), for the lines that have one.
pub fn first_and_after(text: &str, key: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let at = w.iter().position(|x| *x == key)?;
            Some((w[0].to_owned(), (*w.get(at + 1)?).to_owned()))
        })
        .collect()
}

/// The words of a command line without quoting (`"service ls -q"`).
pub fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// `meshctl ARGS` inside `member` (talking to that node's meshd unless `--host` says otherwise).
pub fn meshctl(lab: &Lab, member: &str, args: &[&str]) -> Output {
    let mut cmd = vec!["meshctl"];
    cmd.extend_from_slice(args);
    lab.exec(member, &cmd)
}

/// Like [`meshctl`], and the command must succeed; returns its stdout.
pub fn ok(lab: &Lab, member: &str, args: &[&str]) -> String {
    let out = meshctl(lab, member, args);
    assert!(
        out.status.success(),
        "meshctl {args:?} on {member} failed:\nstdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Like [`meshctl`], and the command must fail; returns its stderr.
pub fn fails(lab: &Lab, member: &str, args: &[&str]) -> String {
    let out = meshctl(lab, member, args);
    assert!(
        !out.status.success(),
        "meshctl {args:?} on {member} succeeded but should not have:\n{}",
        stdout(&out)
    );
    stderr(&out)
}

/// Polls `check` every 200 ms until it returns Ok, or panics after `within` with `what` and the
/// last thing `check` saw.
pub fn eventually<T>(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) => assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?}; last seen:\n{last}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs a python3 `script` with `args` in the lab's client namespace (bounded to 120 s); it
/// must succeed; returns its trimmed stdout.
pub fn client_python(lab: &Lab, script: &str, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .args([
            "120",
            "ip",
            "netns",
            "exec",
            &lab.ns("client"),
            "python3",
            "-c",
            script,
        ])
        .args(args)
        .output()
        .expect("run python3 in the client");
    assert!(
        out.status.success(),
        "python3 in the client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out).trim().to_owned()
}

/// One `GET /` from the lab's client to `addr:port` on a fresh connection: the body, or
/// `ERR ...`.
pub fn client_get(lab: &Lab, addr: &str, port: u16) -> String {
    client_python(lab, GET, &[addr, &port.to_string()])
}

/// `GET /` (argv: address, port): the body, or `ERR ...`.
const GET: &str = r#"
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
    s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    data = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        data += b
    print(data.split(b"\r\n\r\n", 1)[1].decode().strip() if b"\r\n\r\n" in data else "ERR empty")
except Exception as e:
    print("ERR", type(e).__name__)
"#;
