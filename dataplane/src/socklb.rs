//! [`SockLb`]: socket-level balancing (`ebpf/sock_lb.c`), the cgroup `connect4`, `sendmsg4`,
//! `recvmsg4` and `getpeername4` programs, attached at the cgroup2 root.
//!
//! The programs read the frontends, rings and backends the tc/XDP programs use (`sock_lb.o` is
//! loaded with the mesh's pin directory, so those maps are the same kernel maps, not copies):
//! nothing here programs services. What [`SockLb`] writes is its own: the node's network
//! namespace (the programs run for every socket of the machine and act only on this node's and
//! its tasks'), the task namespaces and their networks (east-west VIPs), and it reads the
//! counters. The pure part ([`cgroup2_root`], [`config_row`], [`netns_row`], [`plan_netns`]) is unit-tested below.
//!
//! The attachments are `bpf_link`s held by this process and never pinned: when meshd exits, in
//! any way, the kernel detaches them, so no program is ever left acting for a node whose meshd is
//! gone (the tc/XDP attachments are pinned instead, because they carry flows across a restart;
//! a socket is translated once, at connect, and needs nothing from meshd afterwards).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use aya::maps::{Map, MapData, PerCpuArray, PerCpuValues};
use aya::programs::{CgroupAttachMode, CgroupSockAddr};
use aya::{Ebpf, EbpfLoader};
use mesh_ebpf::abi::{
    MESH_SOCK_MAX_NETS, MESH_SOCK_READY, MeshSockConfig, MeshSockNetns, MeshSockStats, MeshSvcStats,
};
use mesh_ebpf::maps::{MeshMap, SockConfig, SockNetns, SockStats, Stats};

use crate::maps;

/// The programs of `sock_lb.o`, in attach order.
pub const SOCK_PROGRAMS: [&str; 4] = [
    "sock_connect4",
    "sock_sendmsg4",
    "sock_recvmsg4",
    "sock_getpeername4",
];

/// Translations the socket programs made for one service (summed over CPUs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketCounters {
    /// `connect()` calls translated (TCP and connected UDP).
    pub connects: u64,
    /// Unconnected UDP datagrams translated.
    pub sendmsgs: u64,
}

/// The mount point of the cgroup2 hierarchy in `/proc/self/mounts` text (`/sys/fs/cgroup` on a
/// unified system, `/sys/fs/cgroup/unified` on a hybrid one).
pub fn cgroup2_root(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, dir, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(dir))
    })
}

/// The entry of `sock_lb_config` for the node whose network namespace has `netns_cookie`.
pub fn config_row(netns_cookie: u64) -> MeshSockConfig {
    MeshSockConfig {
        netns_cookie,
        flags: MESH_SOCK_READY,
        pad: 0,
    }
}

/// A task namespace's entry of `sock_lb_netns`: the VNIs of its networks, at most
/// `MESH_SOCK_MAX_NETS`.
pub fn netns_row(vnis: &BTreeSet<u32>) -> anyhow::Result<MeshSockNetns> {
    if vnis.len() > MESH_SOCK_MAX_NETS as usize {
        bail!(
            "a task on {} networks: socket-level balancing serves at most {MESH_SOCK_MAX_NETS} \
             networks per task",
            vnis.len()
        );
    }
    let mut row = MeshSockNetns::default();
    for (slot, vni) in row.vnis.iter_mut().zip(vnis) {
        *slot = *vni;
    }
    row.count = u32::try_from(vnis.len()).unwrap_or(MESH_SOCK_MAX_NETS);
    Ok(row)
}

/// A write to `sock_lb_netns`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetnsOp {
    Put { cookie: u64, vnis: BTreeSet<u32> },
    Del { cookie: u64 },
}

/// The writes that make `sock_lb_netns` go from `current` to `desired` (task namespace cookie →
/// its networks): only differences.
pub fn plan_netns(
    current: &BTreeMap<u64, BTreeSet<u32>>,
    desired: &BTreeMap<u64, BTreeSet<u32>>,
) -> Vec<NetnsOp> {
    let gone = current
        .keys()
        .filter(|c| !desired.contains_key(c))
        .map(|&cookie| NetnsOp::Del { cookie });
    let changed = desired
        .iter()
        .filter(|(c, v)| current.get(c) != Some(v))
        .map(|(&cookie, vnis)| NetnsOp::Put {
            cookie,
            vnis: vnis.clone(),
        });
    gone.chain(changed).collect()
}

/// The cookie of the calling thread's network namespace (`SO_NETNS_COOKIE` on a fresh socket).
pub fn netns_cookie() -> std::io::Result<u64> {
    // SAFETY: plain socket(2); the result is checked and owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a socket we just opened and nobody else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut cookie = 0u64;
    let mut len = libc::socklen_t::try_from(size_of::<u64>()).unwrap_or(8);
    // SAFETY: cookie and len are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cookie)
}

/// The socket programs of one node, loaded and attached at the cgroup2 root.
pub struct SockLb {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    /// What `sock_lb_netns` holds (as written by this run).
    task_netns: BTreeMap<u64, BTreeSet<u32>>,
}

impl SockLb {
    /// Loads `sock_lb.o` with the maps pinned under `pin_dir` (call it after `Mesh::load`, which
    /// pins the shared ones), marks the calling thread's network namespace as the node's, and
    /// attaches the four programs at the cgroup2 root (as links, which the kernel always
    /// multi-attaches: other nodes' programs stay).
    pub fn load(pin_dir: &Path) -> anyhow::Result<Self> {
        let mounts =
            std::fs::read_to_string("/proc/self/mounts").context("read /proc/self/mounts")?;
        let root = cgroup2_root(&mounts).ok_or_else(|| {
            anyhow!("no cgroup2 hierarchy mounted (socket-level balancing needs one)")
        })?;
        let cgroup = File::open(&root).with_context(|| format!("open {}", root.display()))?;
        let cookie = netns_cookie().context("read this network namespace's cookie")?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .load(&mesh_ebpf::SOCK_LB.0)
            .context("load sock_lb.o")?;
        maps::open_mut::<SockConfig>(&mut ebpf)?
            .set(0, config_row(cookie), 0)
            .with_context(|| format!("write {}", SockConfig::NAME))?;
        // A restarted meshd starts from no task namespace: the runtime writes them again.
        let mut netns = maps::open_mut::<SockNetns>(&mut ebpf)?;
        let stale: Vec<u64> = netns.keys().filter_map(Result::ok).collect();
        for k in stale {
            netns.remove(&k).ok();
        }
        for name in SOCK_PROGRAMS {
            let p: &mut CgroupSockAddr = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("{name} missing from sock_lb.o"))?
                .try_into()?;
            p.load().with_context(|| format!("load (verify) {name}"))?;
            // A cgroup bpf_link always joins the cgroup's list of programs (the kernel's
            // BPF_F_ALLOW_MULTI) and refuses any flag: "single" is aya's name for no flag here,
            // and other nodes' programs at the same root stay.
            p.attach(&cgroup, CgroupAttachMode::Single)
                .with_context(|| format!("attach {name} to {}", root.display()))?;
        }
        tracing::info!(cgroup = %root.display(), netns_cookie = cookie, "socket-level balancing attached");
        Ok(Self {
            ebpf,
            pin_dir: pin_dir.to_owned(),
            task_netns: BTreeMap::new(),
        })
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Makes `sock_lb_netns` hold `desired` (task namespace cookie → VNIs of its networks): the
    /// sockets of those namespaces get VIPs of those networks translated. All rows are checked
    /// before the first write.
    pub fn set_task_namespaces(
        &mut self,
        desired: &BTreeMap<u64, BTreeSet<u32>>,
    ) -> anyhow::Result<()> {
        let ops = plan_netns(&self.task_netns, desired);
        let mut rows = Vec::with_capacity(ops.len());
        for op in &ops {
            rows.push(match op {
                NetnsOp::Put { cookie, vnis } => Some((*cookie, netns_row(vnis)?)),
                NetnsOp::Del { .. } => None,
            });
        }
        let mut m = maps::open_mut::<SockNetns>(&mut self.ebpf)?;
        for (op, row) in ops.iter().zip(rows) {
            match (op, row) {
                (_, Some((cookie, row))) => m
                    .insert(cookie, row, 0)
                    .with_context(|| format!("write {}", SockNetns::NAME))?,
                (NetnsOp::Del { cookie }, None) => {
                    m.remove(cookie).ok();
                }
                (NetnsOp::Put { .. }, None) => unreachable!("every put has its row"),
            }
        }
        self.task_netns.clone_from(desired);
        Ok(())
    }

    /// Socket translations per service, given the services' counter slots
    /// (`Mesh::service_slots`; a slot is zeroed when the planner hands it to a service, with the
    /// per-packet counters: [`reset_pinned_slot`]).
    pub fn counters(
        &self,
        slots: &BTreeMap<String, u32>,
    ) -> anyhow::Result<BTreeMap<String, SocketCounters>> {
        let m = maps::open::<SockStats>(&self.ebpf)?;
        slots
            .iter()
            .map(|(service, slot)| Ok((service.clone(), sum_socket(&m.get(slot, 0)?))))
            .collect()
    }
}

/// Zeroes counter slot `slot` of the socket programs' counters pinned under `pin_dir` (nothing
/// when they are not loaded there); `cpus` values, one per possible CPU.
pub(crate) fn reset_pinned_slot(pin_dir: &Path, slot: u32, cpus: usize) -> anyhow::Result<()> {
    let path = pin_dir.join(SockStats::NAME);
    if !path.exists() {
        return Ok(());
    }
    let data = MapData::from_pin(&path).with_context(|| format!("open {}", path.display()))?;
    let mut m: PerCpuArray<_, MeshSockStats> = Map::from_map_data(data)?.try_into()?;
    m.set(
        slot,
        PerCpuValues::try_from(vec![MeshSockStats::default(); cpus])?,
        0,
    )
    .with_context(|| format!("reset slot {slot} of {}", path.display()))?;
    Ok(())
}

fn sum_socket(per_cpu: &PerCpuValues<MeshSockStats>) -> SocketCounters {
    per_cpu
        .iter()
        .fold(SocketCounters::default(), |a, c| SocketCounters {
            connects: a.connects + c.connects,
            sendmsgs: a.sendmsgs + c.sendmsgs,
        })
}

/// The counters of a node's pins, read from outside its meshd (tests, tools): socket
/// translations and per-packet (tc/XDP) packets, each summed over every service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinnedTotals {
    pub socket: SocketCounters,
    /// Packets the tc/XDP programs translated (`mesh_stats`).
    pub packets: u64,
    /// Flows the tc/XDP programs created (`mesh_stats`).
    pub flows: u64,
}

impl PinnedTotals {
    /// Reads the totals of the maps pinned under `pin_dir`.
    pub fn read(pin_dir: &Path) -> anyhow::Result<Self> {
        let open = |name: &str| {
            MapData::from_pin(pin_dir.join(name))
                .with_context(|| format!("open {}", pin_dir.join(name).display()))
        };
        let sock: PerCpuArray<_, MeshSockStats> =
            Map::from_map_data(open(SockStats::NAME)?)?.try_into()?;
        let tc: PerCpuArray<_, MeshSvcStats> =
            Map::from_map_data(open(Stats::NAME)?)?.try_into()?;
        let mut t = Self::default();
        for slot in 0..SockStats::MAX_ENTRIES {
            let s = sum_socket(&sock.get(&slot, 0)?);
            t.socket.connects += s.connects;
            t.socket.sendmsgs += s.sendmsgs;
            for c in tc.get(&slot, 0)?.iter() {
                t.packets += c.packets;
                t.flows += c.conns;
            }
        }
        Ok(t)
    }
}

// The agent moves it between tasks and threads, as the mesh.
const _: fn() = || {
    fn is_send<T: Send>() {}
    is_send::<SockLb>();
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The cgroup2 mount is found on hybrid (v1 controllers + unified) and pure v2 systems.
    #[test]
    fn cgroup2_root_from_mounts() {
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs ro 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n";
        assert_eq!(
            cgroup2_root(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n";
        assert_eq!(cgroup2_root(unified), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(
            cgroup2_root("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n"),
            None
        );
        assert_eq!(cgroup2_root(""), None);
    }

    /// The config entry says ready and names the node's namespace.
    #[test]
    fn config_row_is_ready() {
        let c = config_row(4242);
        assert_eq!(c.netns_cookie, 4242);
        assert_eq!(c.flags, MESH_SOCK_READY);
    }

    /// A task's networks fill the row in order; too many are refused, naming the limit.
    #[test]
    fn netns_rows() {
        let row = netns_row(&BTreeSet::from([4096, 4097])).unwrap();
        assert_eq!(row.count, 2);
        assert_eq!(&row.vnis[..3], &[4096, 4097, 0]);
        let many: BTreeSet<u32> = (4096..=4096 + MESH_SOCK_MAX_NETS).collect();
        let e = netns_row(&many).unwrap_err().to_string();
        assert!(e.contains("9 networks") && e.contains("at most 8"), "{e}");
        assert_eq!(netns_row(&BTreeSet::new()).unwrap().count, 0);
    }

    /// Only differences are written: a gone namespace is deleted, a new or changed one put.
    #[test]
    fn netns_plan_writes_differences() {
        let current = BTreeMap::from([
            (1, BTreeSet::from([4096])),
            (2, BTreeSet::from([4097])),
            (3, BTreeSet::from([4098])),
        ]);
        let desired = BTreeMap::from([
            (1, BTreeSet::from([4096])),
            (3, BTreeSet::from([4098, 4099])),
            (4, BTreeSet::from([4096])),
        ]);
        assert_eq!(
            plan_netns(&current, &desired),
            vec![
                NetnsOp::Del { cookie: 2 },
                NetnsOp::Put {
                    cookie: 3,
                    vnis: BTreeSet::from([4098, 4099])
                },
                NetnsOp::Put {
                    cookie: 4,
                    vnis: BTreeSet::from([4096])
                },
            ]
        );
        assert!(plan_netns(&desired, &desired).is_empty());
    }

    /// The programs load (the verifier accepts them) and share the mesh's pinned maps.
    #[test]
    fn programs_verify_and_share_the_mesh_maps() {
        if !crate::mesh::check_root() {
            return;
        }
        let dir = PathBuf::from(format!(
            "/sys/fs/bpf/meshd-test-socklb-{}",
            std::process::id()
        ));
        let _ = crate::mesh::Mesh::remove_pins(&dir);
        let result = std::panic::catch_unwind(|| {
            let tc = crate::programs::Programs::load(&dir).expect("load tc/xdp objects");
            let mut ebpf = EbpfLoader::new()
                .default_map_pin_directory(&dir)
                .load(&mesh_ebpf::SOCK_LB.0)
                .expect("load sock_lb.o");
            for name in SOCK_PROGRAMS {
                let p: &mut CgroupSockAddr = ebpf.program_mut(name).unwrap().try_into().unwrap();
                p.load().unwrap_or_else(|e| panic!("verify {name}: {e:?}"));
            }
            // The same kernel map under both objects: written through one, read through the other.
            let key = mesh_ebpf::abi::MeshPortKey {
                port: 8080u16.to_be_bytes(),
                proto: 6,
                pad: 0,
            };
            let fe = mesh_ebpf::abi::MeshFrontend {
                svc_id: 7,
                ring_id: 3,
                flags: 0,
            };
            maps::open_mut::<mesh_ebpf::maps::Ports>(&mut ebpf)
                .unwrap()
                .insert(key, fe, 0)
                .unwrap();
            let seen = maps::open::<mesh_ebpf::maps::Ports>(&tc.tc)
                .unwrap()
                .get(&key, 0)
                .unwrap();
            assert_eq!(seen, fe);
            // A slot handed to a service starts from zero; the totals read the pins.
            let n = aya::util::nr_cpus().unwrap();
            let one = MeshSockStats {
                connects: 1,
                sendmsgs: 2,
            };
            for slot in [3, 4] {
                maps::open_mut::<SockStats>(&mut ebpf)
                    .unwrap()
                    .set(slot, PerCpuValues::try_from(vec![one; n]).unwrap(), 0)
                    .unwrap();
            }
            reset_pinned_slot(&dir, 3, n).unwrap();
            let totals = PinnedTotals::read(&dir).unwrap();
            assert_eq!(
                totals.socket,
                SocketCounters {
                    connects: n as u64,
                    sendmsgs: 2 * n as u64
                }
            );
            assert_eq!((totals.packets, totals.flows), (0, 0));
        });
        crate::mesh::Mesh::remove_pins(&dir).unwrap();
        result.unwrap();
    }
}
