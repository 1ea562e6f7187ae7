//! The thin runtime: commands with deadlines, child processes stopped on drop, Ctrl-C turned
//! into an error (so that every guard's `Drop` runs), threads inside another network namespace,
//! HTTP probes and RSS sampling.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// SIGINT, SIGTERM and SIGHUP set a flag instead of killing us: the run stops at the next check
/// and unwinds through the guards (lab down, servers stopped, temp files removed).
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe; the cast is
        // how libc takes a handler function.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// An error once Ctrl-C (or SIGTERM) arrived.
pub fn check_interrupt() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps, waking up early (with an error) when interrupted.
pub fn sleep(d: Duration) -> Result<()> {
    let until = Instant::now() + d;
    loop {
        check_interrupt()?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Runs `cmd`, killing it after `timeout` or on Ctrl-C; any exit status.
pub fn output(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let what = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let mut out = child.stdout.take().context("stdout")?;
    let mut err = child.stderr.take().context("stderr")?;
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Ok(s);
        }
        if interrupted() || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break Err(if interrupted() {
                anyhow::anyhow!("interrupted")
            } else {
                anyhow::anyhow!("{what} did not finish within {timeout:?}")
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok(Output {
        status: status?,
        stdout,
        stderr,
    })
}

/// Runs `cmd`, which must succeed; its stdout.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let what = describe(cmd);
    let o = output(cmd, timeout)?;
    if !o.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim(),
            String::from_utf8_lossy(&o.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// A command line as shown in errors.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    format!("`{s}`")
}

/// A background process of ours, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Spawned {
    what: String,
    child: Child,
    log: PathBuf,
}

impl Spawned {
    /// Starts `cmd` with its output going to `log`.
    pub fn start(cmd: &mut Command, log: &Path) -> Result<Self> {
        let what = describe(cmd);
        let file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        Ok(Self {
            what,
            child,
            log: log.to_owned(),
        })
    }

    /// Err (with the end of its output) if it has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!("{} exited ({status}): {}", self.what, tail.join(" / "));
        }
        Ok(())
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // Not reaped yet, so the pid is still this child's.
            let pid = self.child.id().cast_signed();
            // SAFETY: kill(2) with a pid we own; no memory is involved.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A temporary folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Result<Self> {
        let p = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(Self(p))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Moves the calling thread into the network namespace of `ns_file` (`/var/run/netns/NAME`,
/// `/proc/PID/ns/net`). Only this thread moves.
fn enter_netns(ns_file: &Path) -> Result<()> {
    let f = File::open(ns_file).with_context(|| format!("opening {}", ns_file.display()))?;
    // SAFETY: setns(2) on a file descriptor we hold open; it changes only this thread's network
    // namespace, which is why callers run it on a thread of its own.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!(
            "setns({}): {}",
            ns_file.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Runs `f` on a thread inside the network namespace of `ns_file` and returns what it returns.
pub fn in_netns<T: Send>(ns_file: &Path, f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(ns_file)?;
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("a thread in {} panicked", ns_file.display()))?
    })
}

/// Starts `f` on a thread inside the network namespace of `ns_file`.
pub fn spawn_in_netns<T: Send + 'static>(
    ns_file: PathBuf,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<Result<T>> {
    std::thread::spawn(move || {
        enter_netns(&ns_file)?;
        Ok(f())
    })
}

/// One HTTP/1.0 `GET /` on a new connection: Ok when the answer is a 200.
pub fn http_get(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    let left = timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(1));
    s.set_read_timeout(Some(left))?;
    s.set_write_timeout(Some(left))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")?;
    let mut buf = Vec::new();
    s.take(64 * 1024).read_to_end(&mut buf)?;
    let head = String::from_utf8_lossy(&buf[..buf.len().min(64)]).into_owned();
    if head.starts_with("HTTP/1.") && head.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        bail!("not a 200: {:?}", head.lines().next().unwrap_or(""));
    }
}

/// Retries `f` every 200 ms until it succeeds or `within` has passed (then its last error).
pub fn retry<T>(within: Duration, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + within;
    loop {
        check_interrupt()?;
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// `VmRSS` of a process in KiB.
pub fn rss_kib(pid: i32) -> Option<u64> {
    crate::machine::vm_rss_kib(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// Runs `f` while sampling the `VmRSS` of `pids` (key: node) every 100 ms; the maximum of each.
pub fn sample_rss<T>(
    pids: &BTreeMap<usize, i32>,
    f: impl FnOnce() -> T,
) -> (T, BTreeMap<usize, u64>) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut max: BTreeMap<usize, u64> = BTreeMap::new();
            loop {
                for (node, pid) in pids {
                    if let Some(k) = rss_kib(*pid) {
                        let e = max.entry(*node).or_default();
                        *e = (*e).max(k);
                    }
                }
                if stop.load(Ordering::SeqCst) {
                    return max;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let out = f();
        stop.store(true, Ordering::SeqCst);
        (out, sampler.join().unwrap_or_default())
    })
}

/// Is `program` on PATH?
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}
