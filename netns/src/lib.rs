//! `mesh-netns`: network namespaces by name (`/run/netns/NAME`, as `ip netns` makes them) or by
//! path, with nothing but `nix` and `std`, so the lab and `meshctl` can enter namespaces without
//! linking netlink.
//!
//! meshd stays in the host's mount namespace (so the host bpffs at `/sys/fs/bpf` stays visible
//! and pins survive restarts) and enters a node's network namespace with `setns(CLONE_NEWNET)`:
//! the whole process at start-up ([`NetNs::enter_process`]), or one thread at a time
//! ([`NetNs::run`]) to reach into a container's namespace.

#![forbid(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};

/// A network namespace, held open by a file descriptor.
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

impl NetNs {
    /// Opens a namespace by name (`/run/netns/NAME`) or by path (`/proc/PID/ns/net`).
    pub fn open(name_or_path: &str) -> io::Result<Self> {
        let path = if name_or_path.contains('/') {
            PathBuf::from(name_or_path)
        } else {
            Path::new("/run/netns").join(name_or_path)
        };
        let file = File::open(&path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("network namespace {}: {e}", path.display()),
            )
        })?;
        Ok(Self { file, path })
    }

    /// The namespace of process `pid`.
    pub fn of_pid(pid: u32) -> io::Result<Self> {
        Self::open(&format!("/proc/{pid}/ns/net"))
    }

    /// The namespace the calling thread is in now.
    pub fn current() -> io::Result<Self> {
        Self::open("/proc/thread-self/ns/net")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the calling thread into this namespace. Called on the main thread before any other
    /// thread starts, it moves the whole process: threads inherit their creator's namespace.
    pub fn enter_process(&self) -> io::Result<()> {
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
    }

    /// Runs `f` on a fresh thread inside this namespace and returns its result. Sockets made
    /// there (netlink, TCP) stay bound to this namespace after the thread ends.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
        let fd = self.file.try_clone()?;
        std::thread::spawn(move || {
            setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            Ok(f())
        })
        .join()
        .map_err(|_| io::Error::other("thread in network namespace panicked"))?
    }
}

/// The namespace's descriptor, for netlink requests that move a link into it
/// (`IFLA_NET_NS_FD`).
impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}
