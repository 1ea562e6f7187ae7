//! [`Mesh`]: the routing mesh of one node, loaded, attached and fed. The thin runtime around
//! [`crate::plan`]: it attaches the programs and has [`Programs`] carry out the planned [`Op`]s
//! on the pinned maps.
//!
//! Every call that names an interface works in the calling thread's network namespace (meshd
//! enters the node's namespace for the whole process; tests call from a thread inside it).
//! Maps and attachments are pinned under `pin_dir` (maps by name, links under `links/`), so a
//! restarted meshd finds its conntrack, re-adopts its backends and replaces its programs in the
//! existing links atomically.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use aya::programs::links::{FdLink, LinkOrder, PinnedLink};
use aya::programs::tc::TcAttachOptions;
use aya::programs::xdp::XdpLink;
use aya::programs::{SchedClassifier, TcAttachType, Xdp, XdpMode};
use mesh_ebpf::abi::{
    self, MESH_CFG_EGRESS, MESH_CFG_NODES, MESH_CFG_READY, MESH_CFG_XDP, MESH_DROP_CT_FULL,
    MESH_DROP_SNAT_EXHAUSTED, MESH_DROP_VXLAN_SOURCE, MESH_IF_BRIDGE, MESH_IF_TASK, MeshIface,
};
use tracing::{info, warn};

use mesh_cluster::net::INGRESS_VNI;

use crate::model::{DesiredMesh, Protocol};
use crate::netdev;
use crate::plan::{self, Op, Programmed};
use crate::programs::Programs;

mod egress;
pub use egress::OverlayNet;

/// Where published ports are served on the underlay interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Datapath {
    /// XDP on the underlay (remote backends encapsulated in XDP, VXLAN replies decapsulated
    /// there) plus tc for local backends.
    Xdp,
    /// tc (clsact) only: keeps GSO, the faster choice on veth.
    Tc,
}

/// Idle times after which a flow is picked again by Maglev (the same backend while the set is
/// unchanged, so an idle long-lived TCP connection survives its entry's expiry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp: Duration,
    pub udp: Duration,
}

impl Default for Timeouts {
    /// TCP 24 hours (not IPVS's 15 minutes), UDP 5 minutes.
    fn default() -> Self {
        Self {
            tcp: Duration::from_hours(24),
            udp: Duration::from_mins(5),
        }
    }
}

/// What [`Mesh::load`] needs to know about the node.
#[derive(Clone, Debug)]
pub struct MeshOptions {
    /// The underlay interface published ports arrive on (`eth0` in the lab).
    pub underlay_ifname: String,
    /// The node's advertised address: published ports' destination and VXLAN's outer source.
    pub underlay_addr: Ipv4Addr,
    pub datapath: Datapath,
    /// A directory on bpffs for this node (`/sys/fs/bpf/meshd/<hostname>`).
    pub pin_dir: PathBuf,
    /// The VNI of the ingress network (`mesh_cluster::net::INGRESS_VNI` unless a test says
    /// otherwise).
    pub ingress_vni: u32,
    pub timeouts: Timeouts,
}

impl MeshOptions {
    /// Options with the defaults: ingress VNI 4096, default timeouts.
    pub fn new(
        underlay_ifname: &str,
        underlay_addr: Ipv4Addr,
        datapath: Datapath,
        pin_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            underlay_ifname: underlay_ifname.to_owned(),
            underlay_addr,
            datapath,
            pin_dir: pin_dir.into(),
            ingress_vni: INGRESS_VNI,
            timeouts: Timeouts::default(),
        }
    }
}

/// What one [`Mesh::apply`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Map operations carried out.
    pub ops: usize,
    /// Conntrack entries removed because their backend left.
    pub swept: usize,
}

/// A service's counters, summed over CPUs, both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceCounters {
    pub packets: u64,
    pub bytes: u64,
    /// Flows created.
    pub connections: u64,
}

/// Which translation a conntrack entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowKind {
    /// Client to a published port.
    Ingress,
    /// Backend reply to a published-port flow.
    IngressReply,
    /// Task to a VIP.
    Vip,
    /// Backend reply to a VIP flow.
    VipReply,
}

/// One conntrack entry, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowEntry {
    pub kind: FlowKind,
    pub protocol: Protocol,
    /// The packet's source and destination before translation.
    pub from: SocketAddrV4,
    pub to: SocketAddrV4,
    /// After translation.
    pub new_from: SocketAddrV4,
    pub new_to: SocketAddrV4,
    pub backend_id: u32,
}

impl FlowEntry {
    /// The backend task's address of this flow.
    pub fn backend_addr(&self) -> Ipv4Addr {
        match self.kind {
            FlowKind::Ingress | FlowKind::Vip => *self.new_to.ip(),
            FlowKind::IngressReply | FlowKind::VipReply => *self.from.ip(),
        }
    }
}

fn secs_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The routing mesh of one node.
pub struct Mesh {
    options: MeshOptions,
    programs: Programs,
    kernel_config: abi::MeshConfig,
    programmed: Programmed,
    /// Interfaces we serve (name → ifindex), to clean `mesh_ifaces` on detach.
    ifaces: BTreeMap<String, u32>,
}

impl Mesh {
    /// Loads the programs (maps pinned under `options.pin_dir`, reused if an earlier meshd left
    /// them), writes the node settings and attaches to the underlay interface: `tc_underlay_in`
    /// at tc ingress, and with [`Datapath::Xdp`] `xdp_mesh` in native mode. Existing pinned
    /// attachments are replaced atomically.
    ///
    /// The caller must have the underlay interface up with its address. Published ports start
    /// working once [`Mesh::attach_network_bridge`] has attached the ingress bridge.
    pub fn load(options: MeshOptions) -> anyhow::Result<Self> {
        let underlay_ifindex = netdev::ifindex(&options.underlay_ifname)?;
        let underlay_mac = netdev::mac(&options.underlay_ifname)?;
        let mut programs = Programs::load(&options.pin_dir)?;
        let programmed = programs.adopt().context("read pinned tables")?;
        // Keep the ingress bridge and VXLAN settings an earlier run wrote, until they are
        // attached again.
        let previous = programs.read_config()?;
        let kernel_config = abi::MeshConfig {
            underlay_addr: options.underlay_addr.octets(),
            ingress_addr: previous.ingress_addr,
            underlay_ifindex,
            ingress_bridge_ifindex: previous.ingress_bridge_ifindex,
            ingress_vni: options.ingress_vni,
            underlay_mac,
            bridge_mac: previous.bridge_mac,
            // The node list (and its flag) survive a restart, like the tables.
            flags: MESH_CFG_READY
                | (previous.flags & (MESH_CFG_NODES | MESH_CFG_EGRESS))
                | if options.datapath == Datapath::Xdp {
                    MESH_CFG_XDP
                } else {
                    0
                },
            ingress_vxlan_ifindex: previous.ingress_vxlan_ifindex,
            tcp_timeout_ns: secs_ns(options.timeouts.tcp),
            udp_timeout_ns: secs_ns(options.timeouts.udp),
        };
        programs.set_config(&kernel_config)?;
        let mut mesh = Self {
            options,
            programs,
            kernel_config,
            programmed,
            ifaces: BTreeMap::new(),
        };
        let underlay = mesh.options.underlay_ifname.clone();
        mesh.attach_tc("tc_underlay_in", &underlay, TcAttachType::Ingress)?;
        match mesh.options.datapath {
            Datapath::Xdp => mesh.attach_xdp(&underlay)?,
            Datapath::Tc => mesh.detach_link("xdp_mesh", &underlay)?,
        }
        info!(
            underlay = %underlay,
            datapath = ?mesh.options.datapath,
            pin_dir = %mesh.options.pin_dir.display(),
            "mesh loaded"
        );
        Ok(mesh)
    }

    pub fn options(&self) -> &MeshOptions {
        &self.options
    }

    fn link_path(&self, prog: &str, ifname: &str) -> PathBuf {
        self.options
            .pin_dir
            .join("links")
            .join(format!("{prog}@{ifname}"))
    }

    fn attach_tc(&mut self, prog: &str, ifname: &str, ty: TcAttachType) -> anyhow::Result<()> {
        let path = self.link_path(prog, ifname);
        let p: &mut SchedClassifier = self
            .programs
            .tc
            .program_mut(prog)
            .ok_or_else(|| anyhow!("{prog} missing"))?
            .try_into()?;
        // An earlier run's link: swap our program into it (atomic), else attach anew.
        if let Ok(old) = PinnedLink::from_pin(&path) {
            let replaced = aya::programs::tc::SchedClassifierLink::try_from(FdLink::from(old))
                .map_err(anyhow::Error::from)
                .and_then(|l| p.attach_to_link(l).map_err(anyhow::Error::from));
            match replaced {
                Ok(id) => {
                    // The pin keeps the link; our handle can go.
                    drop(p.take_link(id)?);
                    return Ok(());
                }
                Err(e) => {
                    warn!(%prog, %ifname, "stale pinned link replaced: {e:#}");
                    std::fs::remove_file(&path).ok();
                }
            }
        }
        let id = p
            .attach_with_options(ifname, ty, TcAttachOptions::TcxOrder(LinkOrder::default()))
            .with_context(|| format!("attach {prog} to {ifname} ({ty:?})"))?;
        let link: FdLink = p.take_link(id)?.try_into()?;
        link.pin(&path)
            .with_context(|| format!("pin link {}", path.display()))?;
        Ok(())
    }

    fn attach_xdp(&mut self, ifname: &str) -> anyhow::Result<()> {
        let path = self.link_path("xdp_mesh", ifname);
        let p: &mut Xdp = self
            .programs
            .xdp
            .program_mut("xdp_mesh")
            .ok_or_else(|| anyhow!("xdp_mesh missing"))?
            .try_into()?;
        if let Ok(old) = PinnedLink::from_pin(&path) {
            let replaced = XdpLink::try_from(FdLink::from(old))
                .map_err(anyhow::Error::from)
                .and_then(|l| p.attach_to_link(l).map_err(anyhow::Error::from));
            match replaced {
                Ok(id) => {
                    drop(p.take_link(id)?);
                    return Ok(());
                }
                Err(e) => {
                    warn!(%ifname, "stale pinned XDP link replaced: {e:#}");
                    std::fs::remove_file(&path).ok();
                }
            }
        }
        let id = p
            .attach(ifname, XdpMode::Driver)
            .with_context(|| format!("attach xdp_mesh to {ifname} (native mode)"))?;
        let link: FdLink = p.take_link(id)?.try_into()?;
        link.pin(&path)
            .with_context(|| format!("pin link {}", path.display()))?;
        Ok(())
    }

    /// Removes a pinned attachment (nothing if there is none).
    fn detach_link(&self, prog: &str, ifname: &str) -> anyhow::Result<()> {
        let path = self.link_path(prog, ifname);
        if let Ok(link) = PinnedLink::from_pin(&path) {
            // Unpinned and closed: the kernel detaches it.
            drop(link.unpin()?);
        }
        Ok(())
    }

    /// Serves the bridge `ifname` of network `vni`, on which this node has address
    /// `node_addr`. For the ingress network this is where replies of published-port flows
    /// arrive (`tc_bridge_in`), and `node_addr` becomes the SNAT source; publishing starts here.
    ///
    /// The bridge must exist and keep a fixed MAC (set one explicitly: a bridge otherwise takes
    /// its ports' lowest MAC, which changes as ports come and go).
    pub fn attach_network_bridge(
        &mut self,
        ifname: &str,
        vni: u32,
        node_addr: Ipv4Addr,
    ) -> anyhow::Result<()> {
        let ifindex = netdev::ifindex(ifname)?;
        let mac = netdev::mac(ifname)?;
        self.programs.set_iface(
            ifindex,
            &MeshIface {
                vni,
                kind: MESH_IF_BRIDGE,
                mac,
                pad: [0; 2],
            },
        )?;
        self.ifaces.insert(ifname.to_owned(), ifindex);
        if vni == self.options.ingress_vni {
            self.attach_tc("tc_bridge_in", ifname, TcAttachType::Ingress)?;
            self.kernel_config.ingress_addr = node_addr.octets();
            self.kernel_config.ingress_bridge_ifindex = ifindex;
            self.kernel_config.bridge_mac = mac;
            self.programs.set_config(&self.kernel_config)?;
        }
        Ok(())
    }

    /// Stops serving a bridge (for the ingress network: published ports pass untouched).
    pub fn detach_network_bridge(&mut self, ifname: &str) -> anyhow::Result<()> {
        self.detach_link("tc_bridge_in", ifname)?;
        if let Some(ifindex) = self.ifaces.remove(ifname) {
            self.programs.del_iface(ifindex)?;
            if ifindex == self.kernel_config.ingress_bridge_ifindex {
                self.kernel_config.ingress_bridge_ifindex = 0;
                self.programs.set_config(&self.kernel_config)?;
            }
        }
        Ok(())
    }

    /// Serves the ingress network's VXLAN device `ifname` (tc data path): published-port flows
    /// to remote backends are sent straight to it rather than through the ingress bridge, and
    /// their replies are reversed as they leave it (`tc_bridge_in` on its ingress), so neither
    /// crosses the bridge on this node.
    pub fn attach_ingress_vxlan(&mut self, ifname: &str) -> anyhow::Result<()> {
        let ifindex = netdev::ifindex(ifname)?;
        self.attach_tc("tc_bridge_in", ifname, TcAttachType::Ingress)?;
        self.kernel_config.ingress_vxlan_ifindex = ifindex;
        self.programs.set_config(&self.kernel_config)
    }

    /// Stops serving the ingress VXLAN device (remote flows go through the bridge again).
    pub fn detach_ingress_vxlan(&mut self, ifname: &str) -> anyhow::Result<()> {
        let current = netdev::ifindex(ifname).ok();
        // The configured device, or gone (a node has one ingress VXLAN device): never leave
        // the programs redirecting to an ifindex that may be reused.
        if self.kernel_config.ingress_vxlan_ifindex != 0
            && (current.is_none() || current == Some(self.kernel_config.ingress_vxlan_ifindex))
        {
            self.kernel_config.ingress_vxlan_ifindex = 0;
            self.programs.set_config(&self.kernel_config)?;
        }
        self.detach_link("tc_bridge_in", ifname)
    }

    /// Serves a task's veth: `ifname` is the host side, enslaved to the bridge of network `vni`,
    /// and `task_mac` the task's MAC behind it. Traffic from the task to a VIP of that network is
    /// balanced; replies are reversed. On the ingress network, frames for the task out of the
    /// ingress VXLAN device are handed to the veth without crossing the bridge.
    pub fn attach_task_veth(
        &mut self,
        ifname: &str,
        vni: u32,
        task_mac: [u8; 6],
    ) -> anyhow::Result<()> {
        let ifindex = netdev::ifindex(ifname)?;
        let mac = netdev::mac(ifname)?;
        self.programs.set_iface(
            ifindex,
            &MeshIface {
                vni,
                kind: MESH_IF_TASK,
                mac,
                pad: [0; 2],
            },
        )?;
        if vni == self.options.ingress_vni {
            self.programs.put_ingress_task(task_mac, ifindex)?;
        }
        self.ifaces.insert(ifname.to_owned(), ifindex);
        self.attach_tc("tc_task_in", ifname, TcAttachType::Ingress)?;
        self.attach_tc("tc_task_out", ifname, TcAttachType::Egress)?;
        Ok(())
    }

    /// Stops serving a task's veth (also fine after the veth is gone).
    pub fn detach_task_veth(&mut self, ifname: &str) -> anyhow::Result<()> {
        self.detach_link("tc_task_in", ifname)?;
        self.detach_link("tc_task_out", ifname)?;
        if let Some(ifindex) = self.ifaces.remove(ifname) {
            self.programs.del_ingress_tasks_of(ifindex)?;
            self.programs.del_iface(ifindex)?;
        }
        Ok(())
    }

    /// The interfaces other than the underlay with an attachment pinned under `pin_dir`, by
    /// this run or an earlier one. After a restart, those of tasks that ended meanwhile are
    /// still listed: detach them ([`Mesh::detach_task_veth`]) to drop their pins.
    pub fn pinned_interfaces(&self) -> BTreeSet<String> {
        let names = std::fs::read_dir(self.options.pin_dir.join("links"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok());
        pinned_ifnames(names, &self.options.underlay_ifname)
    }

    /// Makes the maps hold `desired`, writing only what differs, and sweeps the conntrack of
    /// backends that left. A refused desired state (a [`crate::PlanError`] inside the error)
    /// changes nothing.
    pub fn apply(&mut self, desired: &DesiredMesh) -> anyhow::Result<ApplyReport> {
        let (next, ops) = plan::plan(&self.programmed, desired, self.options.ingress_vni)?;
        let mut report = ApplyReport::default();
        for op in &ops {
            match self.programs.run_op(op) {
                Ok(swept) => report.swept += swept,
                Err(e) => {
                    // Start the next apply from what the maps really hold.
                    self.programmed = self.programs.adopt().unwrap_or_default();
                    return Err(e.context(format!("apply {}", OpName(op))));
                }
            }
            report.ops += 1;
        }
        self.programmed = next;
        Ok(report)
    }

    /// Counters of every service in the last applied state.
    pub fn stats(&mut self) -> anyhow::Result<BTreeMap<String, ServiceCounters>> {
        let services = self.programmed.services.clone();
        services
            .into_iter()
            .map(|(id, slot)| Ok((id, self.programs.stats(slot)?)))
            .collect()
    }

    /// Each service's counter slot in the last applied state (the socket counters share them).
    pub fn service_slots(&self) -> BTreeMap<String, u32> {
        self.programmed.services.clone()
    }

    /// How full the maps are: `(map name, entries, capacity)` for conntrack (entries in the
    /// kernel map), the published ports and VIPs, and the backends (as last applied).
    pub fn map_fill(&mut self) -> anyhow::Result<Vec<(&'static str, u64, u64)>> {
        use mesh_ebpf::maps::{Backends, Conntrack, MeshMap, Ports, Vips};
        let ct = self.programs.conntrack_entries()?;
        let ports = self
            .programmed
            .frontends
            .keys()
            .filter(|k| matches!(k, crate::plan::FrontendKey::Port { .. }))
            .count() as u64;
        let vips = self.programmed.frontends.len() as u64 - ports;
        Ok(vec![
            (Conntrack::NAME, ct, u64::from(Conntrack::MAX_ENTRIES)),
            (
                Backends::NAME,
                self.programmed.backends.len() as u64,
                u64::from(Backends::MAX_ENTRIES),
            ),
            (Ports::NAME, ports, u64::from(Ports::MAX_ENTRIES)),
            (Vips::NAME, vips, u64::from(Vips::MAX_ENTRIES)),
        ])
    }

    /// Makes `mesh_nodes` hold exactly `nodes` (the cluster's underlay addresses, this node's
    /// included): VXLAN is then accepted only from them. An empty set lifts the filter (VXLAN
    /// from anyone, as before the node joined a swarm). Returns how many entries changed.
    pub fn set_cluster_nodes(&mut self, nodes: &BTreeSet<Ipv4Addr>) -> anyhow::Result<usize> {
        let current = self.programs.cluster_nodes()?;
        let changes = NodeChanges::between(&current, nodes);
        if nodes.is_empty() {
            // The filter off first: no moment where an empty list drops every node's VXLAN.
            self.set_config_flag(MESH_CFG_NODES, false)?;
        }
        // Added before removed, so a node's replacement address is never missing.
        for addr in &changes.add {
            self.programs.put_cluster_node(*addr)?;
        }
        for addr in &changes.remove {
            self.programs.del_cluster_node(*addr)?;
        }
        if !nodes.is_empty() {
            self.set_config_flag(MESH_CFG_NODES, true)?;
        }
        Ok(changes.add.len() + changes.remove.len())
    }

    fn set_config_flag(&mut self, flag: u32, on: bool) -> anyhow::Result<()> {
        let flags = if on {
            self.kernel_config.flags | flag
        } else {
            self.kernel_config.flags & !flag
        };
        if flags != self.kernel_config.flags {
            self.kernel_config.flags = flags;
            self.programs.set_config(&self.kernel_config)?;
        }
        Ok(())
    }

    /// Packets the programs dropped, by reason: `(reason, packets)`, summed over CPUs since the
    /// maps were created.
    pub fn drops(&mut self) -> anyhow::Result<Vec<(&'static str, u64)>> {
        Ok(vec![
            (
                DROP_VXLAN_NOT_FROM_NODE,
                self.programs.dropped(MESH_DROP_VXLAN_SOURCE)?,
            ),
            (DROP_CT_FULL, self.programs.dropped(MESH_DROP_CT_FULL)?),
            (
                DROP_SNAT_EXHAUSTED,
                self.programs.dropped(MESH_DROP_SNAT_EXHAUSTED)?,
            ),
        ])
    }

    /// Every conntrack entry (both directions of every flow).
    pub fn flows(&mut self) -> anyhow::Result<Vec<FlowEntry>> {
        self.programs.flows()
    }

    /// Detaches everything this node attached and removes its pins (maps included).
    pub fn remove(self) -> anyhow::Result<()> {
        let dir = self.options.pin_dir.clone();
        drop(self);
        Self::remove_pins(&dir)
    }

    /// Removes the pins under `pin_dir` (attachments first, so the programs detach, then maps),
    /// whatever process made them. Missing directory: nothing to do.
    pub fn remove_pins(pin_dir: &Path) -> anyhow::Result<()> {
        if !pin_dir.exists() {
            return Ok(());
        }
        let links = pin_dir.join("links");
        if let Ok(entries) = std::fs::read_dir(&links) {
            for e in entries.flatten() {
                match PinnedLink::from_pin(e.path()) {
                    Ok(l) => drop(l.unpin()?),
                    Err(_) => std::fs::remove_file(e.path())?,
                }
            }
            std::fs::remove_dir(&links).with_context(|| format!("remove {}", links.display()))?;
        }
        for e in std::fs::read_dir(pin_dir)?.flatten() {
            std::fs::remove_file(e.path())
                .with_context(|| format!("remove {}", e.path().display()))?;
        }
        std::fs::remove_dir(pin_dir).with_context(|| format!("remove {}", pin_dir.display()))?;
        Ok(())
    }

    /// The maps, for tests and the tables of other modules (`native`).
    pub(crate) fn programs_mut(&mut self) -> &mut Programs {
        &mut self.programs
    }
}

/// The reason [`Mesh::drops`] names VXLAN dropped because its source is not a cluster node.
pub const DROP_VXLAN_NOT_FROM_NODE: &str = "vxlan_not_from_node";
/// The reason [`Mesh::drops`] names a new flow whose conntrack entry could not be written (the
/// map full beyond what its LRU evicts).
pub const DROP_CT_FULL: &str = "conntrack_full";
/// The reason [`Mesh::drops`] names a new published-port flow refused for want of a free SNAT
/// port to its backend.
pub const DROP_SNAT_EXHAUSTED: &str = "snat_ports_exhausted";

/// What [`Mesh::set_cluster_nodes`] writes into `mesh_nodes`.
#[derive(Debug, Default, PartialEq, Eq)]
struct NodeChanges {
    add: Vec<Ipv4Addr>,
    remove: Vec<Ipv4Addr>,
}

impl NodeChanges {
    fn between(current: &BTreeSet<Ipv4Addr>, wanted: &BTreeSet<Ipv4Addr>) -> Self {
        Self {
            add: wanted.difference(current).copied().collect(),
            remove: current.difference(wanted).copied().collect(),
        }
    }
}

/// The interfaces named by link pins (`<program>@<ifname>`), the underlay's left out.
fn pinned_ifnames(names: impl Iterator<Item = String>, underlay: &str) -> BTreeSet<String> {
    names
        .filter_map(|n| n.split_once('@').map(|(_, ifname)| ifname.to_owned()))
        .filter(|ifname| ifname != underlay)
        .collect()
}

/// An op in an error message, without its 16381 ring slots.
struct OpName<'a>(&'a Op);

impl std::fmt::Display for OpName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Op::PutRing { ring, .. } => write!(f, "PutRing {{ ring: {ring} }}"),
            op => write!(f, "{op:?}"),
        }
    }
}

#[cfg(test)]
pub(crate) fn check_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (BPF)");
        return false;
    }
    true
}

// The agent moves the mesh between tasks and threads.
const _: fn() = || {
    fn is_send<T: Send>() {}
    is_send::<Mesh>();
};

#[cfg(test)]
impl Mesh {
    /// A mesh loaded but attached to nothing, for packet tests through `BPF_PROG_TEST_RUN`.
    pub(crate) fn unattached(
        pin_dir: &Path,
        kernel_config: abi::MeshConfig,
    ) -> anyhow::Result<Self> {
        let mut programs = Programs::load(pin_dir)?;
        programs.set_config(&kernel_config)?;
        Ok(Self {
            options: MeshOptions::new(
                "lo",
                Ipv4Addr::from(kernel_config.underlay_addr),
                Datapath::Tc,
                pin_dir,
            ),
            programs,
            kernel_config,
            programmed: Programmed::default(),
            ifaces: BTreeMap::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Link pins name their interface after the `@`; the underlay's are not task interfaces.
    #[test]
    fn pinned_interfaces_come_from_link_names() {
        let names = [
            "tc_underlay_in@eth0",
            "xdp_mesh@eth0",
            "tc_bridge_in@mbr4096",
            "tc_task_in@mvabc0",
            "tc_task_out@mvabc0",
            "stray",
        ]
        .map(str::to_owned);
        let got = pinned_ifnames(names.into_iter(), "eth0");
        assert_eq!(got.into_iter().collect::<Vec<_>>(), ["mbr4096", "mvabc0"],);
    }

    /// The node list is written as the difference: new addresses added, gone ones removed.
    #[test]
    fn node_changes_are_the_difference() {
        let set =
            |a: &[&str]| -> BTreeSet<Ipv4Addr> { a.iter().map(|s| s.parse().unwrap()).collect() };
        let current = set(&["198.18.1.1", "198.18.1.2"]);
        let changes = NodeChanges::between(&current, &set(&["198.18.1.2", "198.18.1.3"]));
        assert_eq!(changes.add, [Ipv4Addr::new(198, 18, 1, 3)]);
        assert_eq!(changes.remove, [Ipv4Addr::new(198, 18, 1, 1)]);
        assert_eq!(
            NodeChanges::between(&current, &current),
            NodeChanges::default()
        );
        assert_eq!(NodeChanges::between(&current, &set(&[])).remove.len(), 2);
    }
}
