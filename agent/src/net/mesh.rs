//! The routing mesh on this node: the eBPF data path of `mesh-dataplane` fed from the
//! node's [`NetView`].
//!
//! - [`desired_mesh`] (pure) says what the maps should hold: every service with a frontend here
//!   (its published ports, its VIPs on the networks this node has devices for) and its
//!   backends: the tasks plumbed on this node, and the tasks live remote nodes publish by gossip
//!   (exactly those the overlay programs FDB entries for, so that the mesh never points at an
//!   address the overlay cannot reach). A task is a backend from the moment its node plumbs it
//!   (its container runs) until it is unplumbed (before it is stopped, or when its container
//!   ended); a node that gossip declares dead takes its tasks out of every node's maps at once,
//!   without waiting for the managers.
//! - [`mesh_interfaces`] (pure) says what the programs serve: the ingress bridge (replies of
//!   published-port flows from local tasks), the ingress VXLAN device (where flows to remote
//!   tasks leave and their replies arrive, so they never cross the bridge) and every task veth
//!   (VIPs, east-west).
//! - [`spawn`] runs it: once the node is in a swarm it pins `ingress` up, loads the programs
//!   (`Mesh::load`: pins under `<pin root>/<hostname>`, taken over after a restart), attaches
//!   the interfaces as they come and go (each under its network's lock), and applies the
//!   desired mesh on every change of the view, but only once the view is complete
//!   (`settled` and `gossip_ready`): until then, after a restart, the maps an earlier meshd
//!   left keep serving. Counters are read every second for the agent to report.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

mod egress;

use mesh_dataplane::{Datapath, DesiredMesh, Mesh, MeshOptions, SockLb, SocketCounters, Timeouts};
use tokio::task::JoinHandle;

use super::view::NetView;
use super::{NodeNetworking, interface_of};

mod desired;
mod native;
pub use desired::{cluster_node_addrs, desired_mesh, mesh_interfaces, task_namespaces};
use mesh_api::ServiceCounters;
use mesh_api::status::{Histogram, MapFill, MeshStatus, ServiceSample};
pub use native::{desired_native, native_peers, native_routes, native_vnis};

/// How often counters are read (and attachments checked).
const TICK: Duration = Duration::from_secs(1);
/// Every this many ticks, attachments are checked against the kernel (an interface recreated
/// under the same name needs its programs again).
const RESYNC_TICKS: u32 = 10;

/// How the node's routing mesh runs (from meshd's flags).
#[derive(Clone, Debug)]
pub struct MeshSettings {
    pub datapath: Datapath,
    /// Each node pins under `<pin_root>/<hostname>` (`/sys/fs/bpf/meshd`).
    pub pin_root: PathBuf,
    pub timeouts: Timeouts,
    /// Attach the cgroup socket programs (meshd's `--socket-lb`); off, a task's connections to
    /// a VIP are balanced per packet by the tc program instead.
    pub socket_lb: bool,
}

/// What `status` lists the socket programs under: they attach to the cgroup2 root, not to an
/// interface.
const SOCK_LB_ATTACH_POINT: &str = "cgroup2 root";

/// An interface the mesh's programs serve.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MeshInterface {
    /// The ingress network's bridge with the node's address on it (the SNAT source).
    IngressBridge { vni: u32, node_addr: Ipv4Addr },
    /// The ingress network's VXLAN device: remote published-port flows leave through it and
    /// their replies are taken as they arrive, without crossing the bridge.
    IngressVxlan { vni: u32 },
    /// A task veth's host side, on network `vni`, and the task's MAC behind it.
    TaskVeth { vni: u32, mac: [u8; 6] },
}

impl MeshInterface {
    fn vni(&self) -> u32 {
        match self {
            Self::IngressBridge { vni, .. }
            | Self::IngressVxlan { vni }
            | Self::TaskVeth { vni, .. } => *vni,
        }
    }
}

/// The programs [`Runtime`] attaches to each kind of interface (what `status` lists).
fn programs_of(iface: &MeshInterface) -> Vec<String> {
    let names: &[&str] = match iface {
        MeshInterface::IngressBridge { .. } | MeshInterface::IngressVxlan { .. } => {
            &["tc_bridge_in"]
        }
        MeshInterface::TaskVeth { .. } => &["tc_task_in", "tc_task_out"],
    };
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// Starts the node's routing mesh (see the module's description). Call it inside the tokio
/// runtime of meshd, in the node's network namespace.
pub fn spawn(net: NodeNetworking, settings: MeshSettings) -> JoinHandle<()> {
    tokio::spawn(run(net, settings))
}

/// An attached interface and the ifindex it had then.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Attached {
    iface: MeshInterface,
    ifindex: u32,
}

struct Runtime {
    net: NodeNetworking,
    settings: MeshSettings,
    mesh: Option<Mesh>,
    /// Socket-level balancing (`mesh_dataplane::SockLb`), loaded with the mesh; dropping it
    /// detaches its programs.
    sock_lb: Option<SockLb>,
    /// The node (advertised address, hostname) the mesh was loaded for.
    loaded_for: Option<(Ipv4Addr, String)>,
    attached: BTreeMap<String, Attached>,
    /// Stale pins of an earlier run are cleared once per load, after the view settled.
    stale_cleared: bool,
    applied: Option<DesiredMesh>,
    /// The node addresses last written to `mesh_nodes` (VXLAN accepted only from them).
    nodes_applied: Option<BTreeSet<Ipv4Addr>>,
    /// The overlay subnets last written to `mesh_overlay_nets` (egress on once written).
    nets_applied: Option<BTreeSet<mesh_dataplane::mesh::OverlayNet>>,
    /// The last warning, so that a lasting failure is logged once.
    last_warning: Option<String>,
    /// How long each apply took (`status`, metrics).
    programming: Histogram,
    /// Packets the programs dropped, by reason, as last read (`status`).
    drops: BTreeMap<String, u64>,
    /// Native routing's table (`native`).
    native: native::NativeState,
}

async fn run(net: NodeNetworking, settings: MeshSettings) {
    let mut rx = net.subscribe();
    let mut rt = Runtime {
        net,
        settings,
        mesh: None,
        sock_lb: None,
        loaded_for: None,
        attached: BTreeMap::new(),
        stale_cleared: false,
        applied: None,
        nodes_applied: None,
        nets_applied: None,
        last_warning: None,
        programming: Histogram::default(),
        drops: BTreeMap::new(),
        native: native::NativeState::default(),
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u32;
    loop {
        let ticked = tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
                false
            }
            _ = tick.tick() => true,
        };
        let view = rx.borrow_and_update().clone();
        let resync = ticked && {
            ticks = ticks.wrapping_add(1);
            ticks.is_multiple_of(RESYNC_TICKS)
        };
        rt.step(&view, resync).await;
        if ticked {
            rt.read_counters(&view).await;
        }
    }
}

impl Runtime {
    fn warn(&mut self, msg: String) {
        if self.last_warning.as_ref() != Some(&msg) {
            tracing::warn!("routing mesh: {msg}");
            self.last_warning = Some(msg);
        }
    }

    /// Runs `f` on the mesh in a blocking thread (map writes are syscalls, loading verifies
    /// programs). None when there is no mesh or `f` panicked (the mesh is loaded again then).
    async fn with_mesh<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Mesh) -> T + Send + 'static,
    ) -> Option<T> {
        let mut mesh = self.mesh.take()?;
        match tokio::task::spawn_blocking(move || {
            let r = f(&mut mesh);
            (mesh, r)
        })
        .await
        {
            Ok((mesh, r)) => {
                self.mesh = Some(mesh);
                Some(r)
            }
            Err(e) => {
                self.warn(format!("a mesh operation failed hard: {e}"));
                self.forget();
                None
            }
        }
    }

    fn forget(&mut self) {
        self.nets_applied = None;
        self.sock_lb = None;
        self.mesh = None;
        self.loaded_for = None;
        self.attached.clear();
        self.applied = None;
        self.nodes_applied = None;
        self.native.forget();
        self.stale_cleared = false;
    }

    async fn step(&mut self, view: &NetView, resync: bool) {
        let Some(me) = view.node.clone() else {
            if self.mesh.is_some() {
                self.leave().await;
            }
            return;
        };
        if let Some(ingress) = view.ingress()
            && !view.pinned.contains(&ingress.id)
        {
            self.net.pin_network(&ingress.id);
        }
        let node = (me.addr, me.hostname.clone());
        if self.loaded_for.as_ref() != Some(&node) {
            self.forget();
            if !self.load(me.addr, &me.hostname).await {
                return;
            }
            self.loaded_for = Some(node);
        }
        self.attach_interfaces(view, resync).await;
        if resync && self.settings.socket_lb && self.sock_lb.is_none() {
            self.retry_sock_lb().await;
        }
        if let Some(s) = self.sock_lb.as_mut()
            && let Err(e) = s.set_task_namespaces(&task_namespaces(view))
        {
            self.warn(format!("socket-level balancing for tasks: {e:#}"));
        }
        if view.settled && view.gossip_ready {
            if !self.stale_cleared {
                self.clear_stale_pins(view).await;
            }
            self.apply_overlay_nets(view).await;
            if resync {
                // Checked against the kernel now and then: removing an address drops the
                // routes that have it as their source.
                self.native.forget();
            }
            // The native table before the backends: a new remote backend's first flow must
            // find its address there, or it would take the VXLAN fallback.
            self.apply_native(view).await;
            self.apply(view).await;
            self.apply_cluster_nodes(view).await;
        }
    }

    /// Writes the cluster's node addresses into the mesh: VXLAN from anywhere else is dropped.
    async fn apply_cluster_nodes(&mut self, view: &NetView) {
        let nodes = cluster_node_addrs(view);
        if self.nodes_applied.as_ref() == Some(&nodes) {
            return;
        }
        let n = nodes.clone();
        match self.with_mesh(move |m| m.set_cluster_nodes(&n)).await {
            Some(Ok(changed)) => {
                if changed > 0 {
                    tracing::info!(
                        nodes = nodes.len(),
                        changed,
                        "VXLAN sources set to the cluster's nodes"
                    );
                }
                self.nodes_applied = Some(nodes);
            }
            Some(Err(e)) => self.warn(format!("writing the cluster's node addresses: {e:#}")),
            None => {}
        }
    }

    async fn load(&mut self, addr: Ipv4Addr, hostname: &str) -> bool {
        let ifname = match interface_of(addr) {
            Ok(i) => i,
            Err(e) => {
                self.warn(e);
                return false;
            }
        };
        let mut config = MeshOptions::new(
            &ifname,
            addr,
            self.settings.datapath,
            self.settings.pin_root.join(hostname),
        );
        config.timeouts = self.settings.timeouts;
        let datapath = config.datapath;
        let pin_dir = config.pin_dir.clone();
        let socket_lb = self.settings.socket_lb;
        // The socket programs share the maps Mesh::load pins, so they load after it; without
        // them published ports still work from other nodes (a warning says why not here).
        let loaded = tokio::task::spawn_blocking(move || {
            Mesh::load(config).map(|mesh| (mesh, socket_lb.then(|| SockLb::load(&pin_dir))))
        });
        match loaded.await {
            Ok(Ok((mesh, sock_lb))) => {
                tracing::info!(underlay = %ifname, ?datapath, "routing mesh loaded");
                self.mesh = Some(mesh);
                self.last_warning = None;
                match sock_lb {
                    Some(Ok(s)) => self.sock_lb = Some(s),
                    Some(Err(e)) => self.warn(format!("socket-level balancing: {e:#}")),
                    None => tracing::info!("socket-level balancing off (--socket-lb=false)"),
                }
                true
            }
            Ok(Err(e)) => {
                self.warn(format!("loading the programs on {ifname}: {e:#}"));
                false
            }
            Err(e) => {
                self.warn(format!("loading the programs on {ifname}: {e}"));
                false
            }
        }
    }

    /// Loads the socket programs again after a failed attempt (every resync, while the mesh runs).
    async fn retry_sock_lb(&mut self) {
        let Some(pin_dir) = self.mesh.as_ref().map(|m| m.options().pin_dir.clone()) else {
            return;
        };
        match tokio::task::spawn_blocking(move || SockLb::load(&pin_dir)).await {
            Ok(Ok(s)) => self.sock_lb = Some(s),
            Ok(Err(e)) => self.warn(format!("socket-level balancing: {e:#}")),
            Err(e) => self.warn(format!("socket-level balancing: {e}")),
        }
    }

    /// Attaches what [`mesh_interfaces`] lists and is not attached (again, if the interface was
    /// recreated), and detaches what left.
    async fn attach_interfaces(&mut self, view: &NetView, resync: bool) {
        let want = mesh_interfaces(view);
        let gone: Vec<(String, Attached)> = self
            .attached
            .iter()
            .filter(|(name, a)| want.get(*name) != Some(&a.iface))
            .map(|(n, a)| (n.clone(), a.clone()))
            .collect();
        for (name, a) in gone {
            let _guard = self.net.lock_network(a.iface.vni()).await;
            let n = name.clone();
            let done = self
                .with_mesh(move |m| match a.iface {
                    MeshInterface::IngressBridge { .. } => m.detach_network_bridge(&n),
                    MeshInterface::IngressVxlan { .. } => m.detach_ingress_vxlan(&n),
                    MeshInterface::TaskVeth { .. } => m.detach_task_veth(&n),
                })
                .await;
            match done {
                Some(Ok(())) => {
                    self.attached.remove(&name);
                }
                Some(Err(e)) => self.warn(format!("detaching {name}: {e:#}")),
                None => return,
            }
        }
        if resync {
            self.attached.retain(|name, a| {
                mesh_dataplane::netdev::ifindex(name).is_ok_and(|i| i == a.ifindex)
            });
        }
        for (name, iface) in want {
            if self.attached.contains_key(&name) {
                continue;
            }
            let _guard = self.net.lock_network(iface.vni()).await;
            // Still there now that devices of the network cannot change?
            if mesh_interfaces(&self.net.view()).get(&name) != Some(&iface) {
                continue;
            }
            let n = name.clone();
            let i = iface.clone();
            let done = self
                .with_mesh(move |m| {
                    match i {
                        MeshInterface::IngressBridge { vni, node_addr } => {
                            m.attach_network_bridge(&n, vni, node_addr)?;
                        }
                        MeshInterface::IngressVxlan { .. } => m.attach_ingress_vxlan(&n)?,
                        MeshInterface::TaskVeth { vni, mac } => {
                            m.attach_task_veth(&n, vni, mac)?;
                        }
                    }
                    Ok::<u32, anyhow::Error>(mesh_dataplane::netdev::ifindex(&n)?)
                })
                .await;
            match done {
                Some(Ok(ifindex)) => {
                    tracing::debug!(interface = %name, ?iface, "mesh programs attached");
                    self.attached.insert(name, Attached { iface, ifindex });
                }
                Some(Err(e)) => self.warn(format!("attaching to {name}: {e:#}")),
                None => return,
            }
        }
    }

    /// Drops the pinned attachments an earlier meshd left on interfaces that no longer serve
    /// (tasks that ended while it was down).
    async fn clear_stale_pins(&mut self, view: &NetView) {
        let want = mesh_interfaces(view);
        let Some(pinned) = self.with_mesh(|m| m.pinned_interfaces()).await else {
            return;
        };
        let stale: Vec<String> = pinned
            .into_iter()
            .filter(|name| !want.contains_key(name))
            .collect();
        if !stale.is_empty() {
            let names = stale.clone();
            let result = self
                .with_mesh(move |m| {
                    names
                        .iter()
                        .try_for_each(|n| match mesh_overlay::model::vni_of(n) {
                            Some((mesh_overlay::model::DeviceRole::Vxlan, _)) => {
                                m.detach_ingress_vxlan(n)
                            }
                            _ => m.detach_task_veth(n).and(m.detach_network_bridge(n)),
                        })
                })
                .await;
            match result {
                Some(Ok(())) => tracing::info!(?stale, "stale mesh attachments removed"),
                Some(Err(e)) => {
                    self.warn(format!("removing stale attachments {stale:?}: {e:#}"));
                    return;
                }
                None => return,
            }
        }
        self.stale_cleared = true;
    }

    async fn apply(&mut self, view: &NetView) {
        let desired = desired_mesh(view);
        if self.applied.as_ref() == Some(&desired) {
            return;
        }
        let d = desired.clone();
        let started = std::time::Instant::now();
        let done = self.with_mesh(move |m| m.apply(&d)).await;
        self.programming.observe(started.elapsed().as_secs_f64());
        match done {
            Some(Ok(report)) => {
                if report.ops > 0 {
                    let backends: usize = desired.services.iter().map(|s| s.tasks.len()).sum();
                    tracing::info!(
                        services = desired.services.len(),
                        backends,
                        ops = report.ops,
                        swept = report.swept,
                        "routing mesh programmed"
                    );
                }
                self.applied = Some(desired);
                self.last_warning = None;
            }
            Some(Err(e)) => {
                self.warn(format!("programming the maps: {e:#}"));
                self.applied = None;
            }
            None => {}
        }
    }

    async fn read_counters(&mut self, view: &NetView) {
        if view.node.is_none() {
            self.net.set_mesh_status(None);
            return;
        }
        let Some(Ok((stats, fill, slots, drops))) = self
            .with_mesh(|m| anyhow::Ok((m.stats()?, m.map_fill()?, m.service_slots(), m.drops()?)))
            .await
        else {
            self.report(view, Vec::new(), Vec::new(), &BTreeMap::new());
            return;
        };
        self.drops = drops.into_iter().map(|(r, n)| (r.to_owned(), n)).collect();
        let socket = match self.sock_lb.as_ref().map(|s| s.counters(&slots)) {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                self.warn(format!("reading the socket counters: {e:#}"));
                BTreeMap::new()
            }
            None => BTreeMap::new(),
        };
        let counters: Vec<ServiceCounters> = stats
            .into_iter()
            .map(|(id, c)| ServiceCounters {
                service_id: mesh_cluster::Id::from(id.as_str()),
                packets: c.packets,
                bytes: c.bytes,
                connections: c.connections,
            })
            .collect();
        let maps = fill
            .into_iter()
            .map(|(name, entries, capacity)| MapFill {
                name: name.to_owned(),
                entries,
                capacity,
            })
            .collect();
        self.report(view, counters.clone(), maps, &socket);
        self.net.set_mesh_counters(counters);
    }

    /// Tells the node's networking what the mesh is now (`status`, metrics).
    fn report(
        &self,
        view: &NetView,
        counters: Vec<ServiceCounters>,
        maps: Vec<MapFill>,
        socket: &BTreeMap<String, SocketCounters>,
    ) {
        let datapath = self.settings.datapath;
        let mut interfaces: BTreeMap<String, Vec<String>> = self
            .attached
            .iter()
            .map(|(name, a)| (name.clone(), programs_of(&a.iface)))
            .collect();
        if let Some(m) = &self.mesh {
            let mut underlay = vec!["tc_underlay_in".to_owned()];
            if datapath == Datapath::Xdp {
                underlay.push("xdp_mesh".to_owned());
            }
            interfaces.insert(m.options().underlay_ifname.clone(), underlay);
        }
        if self.sock_lb.is_some() {
            interfaces.insert(
                SOCK_LB_ATTACH_POINT.to_owned(),
                mesh_dataplane::socklb::SOCK_PROGRAMS
                    .map(str::to_owned)
                    .to_vec(),
            );
        }
        let services = counters
            .into_iter()
            .map(|c| {
                let sock = socket
                    .get(c.service_id.as_str())
                    .copied()
                    .unwrap_or_default();
                ServiceSample {
                    service_name: view
                        .services
                        .get(&c.service_id)
                        .map_or_else(|| c.service_id.to_string(), |s| s.name.clone()),
                    service_id: c.service_id,
                    packets: c.packets,
                    bytes: c.bytes,
                    connections: c.connections,
                    socket_connects: sock.connects,
                    socket_datagrams: sock.sendmsgs,
                }
            })
            .collect();
        self.net.set_mesh_status(Some(MeshStatus {
            datapath: match datapath {
                Datapath::Tc => "tc",
                Datapath::Xdp => "xdp",
            }
            .to_owned(),
            loaded: self.mesh.is_some(),
            error: self.last_warning.clone(),
            interfaces,
            maps,
            services,
            programming: self.programming.clone(),
            drops: self.drops.clone(),
        }));
    }

    /// The node left its swarm: everything is detached and the pins removed.
    async fn leave(&mut self) {
        self.clear_native_routes().await;
        // Detached before the pins go.
        self.sock_lb = None;
        if let Some(mesh) = self.mesh.take() {
            match tokio::task::spawn_blocking(move || mesh.remove()).await {
                Ok(Ok(())) => tracing::info!("routing mesh removed: the node left its swarm"),
                Ok(Err(e)) => tracing::warn!("removing the routing mesh: {e:#}"),
                Err(e) => tracing::warn!("removing the routing mesh: {e}"),
            }
        }
        self.forget();
        self.net.set_mesh_counters(Vec::new());
        self.net.set_mesh_status(None);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use mesh_cluster::Id;
    use mesh_cluster::net::INGRESS_VNI;
    use mesh_cluster::spec::parse_port;
    use mesh_cluster::state::{EndpointMode, Network, NetworkSpec, VirtualIp};
    use mesh_dataplane::{Protocol, PublishMode, PublishedPort, Service, Vip};
    use mesh_overlay::Mac;

    use super::*;
    use crate::net::fixtures::{gossip_ep, live_nodes};
    use crate::net::view::{LocalInterface, LocalNetwork, LocalTask, SelfNode};
    use mesh_api::{NodeNet, ServiceNet};

    const FRONT: u32 = 4097;

    fn network(id: &str, vni: u32, subnet: &str, ingress: bool) -> Network {
        Network {
            id: Id::from(id),
            meta: mesh_cluster::state::Meta::default(),
            spec: NetworkSpec {
                name: id.into(),
                ingress,
                ..NetworkSpec::default()
            },
            subnet: subnet.parse().unwrap(),
            vni,
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn node(id: &str, addr: &str, ingress: &str, front: &str) -> NodeNet {
        NodeNet {
            id: Id::from(id),
            hostname: id.into(),
            addr: Some(ip(addr)),
            attachments: [
                (Id::from("ingress"), ip(ingress)),
                (Id::from("front"), ip(front)),
            ]
            .into(),
        }
    }

    fn device(id: &str, vni: u32, node_addr: &str) -> LocalNetwork {
        LocalNetwork {
            network_id: Id::from(id),
            vni,
            node_addr: ip(node_addr),
            prefix_len: 16,
            mtu: 1450,
            bridge: format!("mbr{vni}"),
            vxlan: format!("mvx{vni}"),
        }
    }

    fn web(ports: &[&str], vips: &[(&str, &str)]) -> ServiceNet {
        ServiceNet {
            id: Id::from("web"),
            name: "web".into(),
            endpoint_mode: EndpointMode::Vip,
            ports: ports.iter().map(|p| parse_port(p).unwrap()).collect(),
            vips: vips
                .iter()
                .map(|(n, a)| VirtualIp {
                    network_id: Id::from(*n),
                    addr: ip(a),
                })
                .collect(),
            networks: Vec::new(),
            tasks: Vec::new(),
        }
    }

    /// Node n1 (198.18.0.11) with ingress and front devices, one local task of `web` (t1),
    /// and n2 live with t2, n3 live with t3.
    fn view() -> NetView {
        let mut v = NetView {
            node: Some(SelfNode {
                id: Id::from("n1"),
                cluster_id: Id::from("c"),
                hostname: "n1".into(),
                addr: ip("198.18.0.11"),
            }),
            settled: true,
            gossip_ready: true,
            ..NetView::default()
        };
        for n in [
            network("ingress", INGRESS_VNI, "10.255.0.0/16", true),
            network("front", FRONT, "10.0.1.0/24", false),
        ] {
            v.networks.insert(n.id.clone(), n);
        }
        for n in [
            node("n1", "198.18.0.11", "10.255.0.1", "10.0.1.1"),
            node("n2", "198.18.0.12", "10.255.0.2", "10.0.1.2"),
            node("n3", "198.18.0.13", "10.255.0.3", "10.0.1.3"),
        ] {
            v.nodes.insert(n.id.clone(), n);
        }
        v.devices
            .insert(INGRESS_VNI, device("ingress", INGRESS_VNI, "10.255.0.1"));
        v.devices.insert(FRONT, device("front", FRONT, "10.0.1.1"));
        let iface = |net: &str, vni, name: &str, addr: &str, i| LocalInterface {
            network_id: Id::from(net),
            vni,
            host_ifname: name.into(),
            ifname: format!("eth{i}"),
            addr: ip(addr),
            prefix_len: 16,
            mac: Mac::from_ipv4(ip(addr)),
        };
        v.tasks.insert(
            Id::from("t1"),
            LocalTask {
                task_id: Id::from("t1"),
                service_id: Id::from("web"),
                container_id: "c1".into(),
                netns_cookie: Some(77),
                interfaces: vec![
                    iface("front", FRONT, "mvt10", "10.0.1.11", 0),
                    iface("ingress", INGRESS_VNI, "mvt11", "10.255.1.11", 1),
                ],
            },
        );
        let mut g = live_nodes(&[
            ("n1", "198.18.0.11"),
            ("n2", "198.18.0.12"),
            ("n3", "198.18.0.13"),
        ]);
        g.endpoints.insert(
            "n2".into(),
            vec![
                gossip_ep("t2", "web", "front", FRONT, "10.0.1.12"),
                gossip_ep("t2", "web", "ingress", INGRESS_VNI, "10.255.1.12"),
            ],
        );
        g.endpoints.insert(
            "n3".into(),
            vec![
                gossip_ep("t3", "web", "ingress", INGRESS_VNI, "10.255.1.13"),
                gossip_ep("x1", "other", "ingress", INGRESS_VNI, "10.255.1.14"),
            ],
        );
        v.gossip = g;
        v
    }

    /// Native routing's table: nothing while every network is VXLAN; with `front` native, its
    /// local task (by its veth) and its remote addresses (n2's task, n2's and n3's node
    /// addresses), DIRECT only behind an on-link node; `ingress` too once it is native; a dead
    /// node's addresses leave with it.
    #[test]
    fn native_table_of_native_networks() {
        use mesh_cluster::net::ROUTING_OPTION;
        use mesh_dataplane::{NativeAddr, NativePlace};
        use mesh_overlay::plan::NextHop;
        let mut v = view();
        let ifindexes = BTreeMap::from([("mvt10".to_owned(), 7), ("mvt11".to_owned(), 8)]);
        let hops = BTreeMap::from([
            (ip("198.18.0.12"), NextHop::OnLink),
            (ip("198.18.0.13"), NextHop::Via(ip("198.18.0.1"))),
        ]);
        assert!(desired_native(&v, &ifindexes, &hops).is_empty());
        let native = |v: &mut NetView, id: &str| {
            v.networks
                .get_mut(&Id::from(id))
                .unwrap()
                .spec
                .options
                .insert(ROUTING_OPTION.into(), "native".into());
        };
        native(&mut v, "front");
        assert_eq!(
            native_peers(&v),
            [ip("198.18.0.12"), ip("198.18.0.13")].into()
        );
        let table = desired_native(&v, &ifindexes, &hops);
        let remote = |node: &str, direct| NativeAddr {
            vni: FRONT,
            place: NativePlace::Remote {
                node: ip(node),
                direct,
            },
        };
        assert_eq!(
            table,
            BTreeMap::from([
                (ip("10.0.1.2"), remote("198.18.0.12", true)),
                (ip("10.0.1.3"), remote("198.18.0.13", false)),
                (
                    ip("10.0.1.11"),
                    NativeAddr {
                        vni: FRONT,
                        place: NativePlace::Local {
                            ifindex: 7,
                            mac: Mac::from_ipv4(ip("10.0.1.11")).octets(),
                            gateway_mac: Mac::from_ipv4(ip("10.0.1.1")).octets(),
                        },
                    }
                ),
                (ip("10.0.1.12"), remote("198.18.0.12", true)),
            ])
        );
        native(&mut v, "ingress");
        let table = desired_native(&v, &ifindexes, &hops);
        assert!(
            matches!(
                table[&ip("10.255.1.11")].place,
                NativePlace::Local { ifindex: 8, .. }
            ),
            "{table:?}"
        );
        assert_eq!(
            table[&ip("10.255.1.12")],
            NativeAddr {
                vni: INGRESS_VNI,
                place: NativePlace::Remote {
                    node: ip("198.18.0.12"),
                    direct: true
                }
            }
        );
        let routes = native_routes(&v, &table);
        assert_eq!(
            routes.get(&ip("10.0.1.12")),
            Some(&mesh_overlay::plan::NativeRoute {
                via: ip("198.18.0.12"),
                src: ip("10.0.1.1")
            })
        );
        assert!(
            !routes.contains_key(&ip("10.0.1.3")),
            "not on-link: {routes:?}"
        );
        assert!(
            !routes.contains_key(&ip("10.255.1.11")),
            "local: {routes:?}"
        );
        v.gossip.live.remove("n2");
        let table = desired_native(&v, &ifindexes, &hops);
        assert!(!table.contains_key(&ip("10.0.1.12")), "{table:?}");
        assert!(!table.contains_key(&ip("10.0.1.2")), "{table:?}");
    }

    fn task_ids(s: &Service) -> Vec<(String, bool, Ipv4Addr)> {
        s.tasks
            .iter()
            .map(|t| (t.id.clone(), t.local, t.node_addr))
            .collect()
    }

    fn task_names(s: &Service) -> Vec<&str> {
        s.tasks.iter().map(|t| t.id.as_str()).collect()
    }

    /// A service's backends are its local plumbed tasks and the remote ones gossip publishes,
    /// each behind its node; its published port and its VIP (on a network with devices here)
    /// become frontends.
    #[test]
    fn backends_are_local_and_gossiped_tasks() {
        let mut v = view();
        let s = web(
            &["8080:80", "published=9053,target=53,protocol=udp"],
            &[("front", "10.0.1.100")],
        );
        v.services.insert(s.id.clone(), s);
        let d = desired_mesh(&v);
        assert_eq!(d.services.len(), 1, "{d:?}");
        let svc = &d.services[0];
        assert_eq!(svc.id, "web");
        assert_eq!(
            svc.ports,
            [
                PublishedPort {
                    protocol: Protocol::Tcp,
                    published: 8080,
                    target: 80,
                    mode: PublishMode::Ingress
                },
                PublishedPort {
                    protocol: Protocol::Udp,
                    published: 9053,
                    target: 53,
                    mode: PublishMode::Ingress
                }
            ]
        );
        assert_eq!(
            svc.vips,
            [Vip {
                vni: FRONT,
                addr: ip("10.0.1.100")
            }]
        );
        assert_eq!(
            task_ids(svc),
            [
                ("t1".into(), true, ip("198.18.0.11")),
                ("t2".into(), false, ip("198.18.0.12")),
                ("t3".into(), false, ip("198.18.0.13")),
            ]
        );
        let t2 = &svc.tasks[1];
        assert_eq!(t2.endpoints.len(), 2, "both networks: {t2:?}");
        assert_eq!(
            t2.endpoints[0].mac,
            Mac::from_ipv4(ip("10.0.1.12")).octets()
        );
        // A local task being withdrawn (stopping) drains: no new flows, its own go on.
        v.leaving.insert(Id::from("t1"));
        let d = desired_mesh(&v);
        assert_eq!(task_names(&d.services[0]), ["t1", "t2", "t3"]);
        assert!(d.services[0].tasks[0].draining && !d.services[0].tasks[1].draining);
        // So does a remote one its node publishes draining.
        v.leaving.clear();
        for ep in v.gossip.endpoints.get_mut("n2").unwrap() {
            ep.draining = true;
        }
        let d = desired_mesh(&v);
        let draining: Vec<bool> = d.services[0].tasks.iter().map(|t| t.draining).collect();
        assert_eq!(draining, [false, true, false]);
        for ep in v.gossip.endpoints.get_mut("n2").unwrap() {
            ep.draining = false;
        }
        // One whose health check has not passed is no backend.
        v.unready.insert(Id::from("t1"));
        let d = desired_mesh(&v);
        assert_eq!(task_names(&d.services[0]), ["t2", "t3"]);
    }

    /// A node gossip declares dead (or no longer calls live) takes its tasks out at once.
    #[test]
    fn a_dead_nodes_tasks_leave() {
        let mut v = view();
        v.services.insert(Id::from("web"), web(&["8080:80"], &[]));
        v.gossip.live.remove("n2");
        v.gossip.endpoints.remove("n2");
        v.gossip.dead.insert("n2".into());
        let d = desired_mesh(&v);
        assert_eq!(
            task_ids(&d.services[0]),
            [
                ("t1".into(), true, ip("198.18.0.11")),
                ("t3".into(), false, ip("198.18.0.13")),
            ]
        );
        // Endpoints of a node that is not (yet) live are ignored too.
        let mut v = view();
        v.services.insert(Id::from("web"), web(&["8080:80"], &[]));
        v.gossip.live.remove("n3");
        assert_eq!(d.services[0].tasks.len(), 2);
        assert_eq!(desired_mesh(&v).services[0].tasks.len(), 2);
    }

    /// Nothing in a swarm, or no frontend here: nothing to program. A VIP on a network without
    /// devices on this node is not programmed (no local task can call it).
    #[test]
    fn only_frontends_of_this_node() {
        let mut v = view();
        v.services
            .insert(Id::from("web"), web(&[], &[("elsewhere", "10.0.9.100")]));
        v.networks.insert(
            Id::from("elsewhere"),
            network("elsewhere", 4099, "10.0.9.0/24", false),
        );
        assert!(desired_mesh(&v).services.is_empty());
        v.node = None;
        v.services.insert(Id::from("web"), web(&["8080:80"], &[]));
        assert_eq!(desired_mesh(&v), DesiredMesh::default());
    }

    /// A published port with no task still gets its frontend (TCP is refused at once), and an
    /// unallocated (0), reserved or doubly claimed port is left out rather than failing all.
    #[test]
    fn ports_without_tasks_and_bad_ports() {
        let mut v = view();
        v.tasks.clear();
        v.gossip.endpoints.clear();
        v.services.insert(
            Id::from("web"),
            web(
                &[
                    "8080:80",
                    "80",
                    "7946:80",
                    "published=7946,target=1,protocol=udp",
                ],
                &[],
            ),
        );
        let mut other = web(&["8080:81", "8081:81"], &[]);
        other.id = Id::from("zzz");
        v.services.insert(other.id.clone(), other);
        let d = desired_mesh(&v);
        let ports: Vec<(String, Vec<u16>, usize)> = d
            .services
            .iter()
            .map(|s| {
                (
                    s.id.clone(),
                    s.ports.iter().map(|p| p.published).collect(),
                    s.tasks.len(),
                )
            })
            .collect();
        assert_eq!(
            ports,
            [("web".into(), vec![8080], 0), ("zzz".into(), vec![8081], 0)]
        );
    }

    /// A remote endpoint the overlay would not program (it claims a local address, or its
    /// node has no underlay address) is no backend: the mesh never points where the overlay
    /// cannot deliver.
    #[test]
    fn unreachable_remote_endpoints_are_left_out() {
        let mut v = view();
        v.services.insert(Id::from("web"), web(&["8080:80"], &[]));
        // n3 publishes t3 with the address of the local task t1 (a stale publication).
        v.gossip.endpoints.insert(
            "n3".into(),
            vec![gossip_ep(
                "t3",
                "web",
                "ingress",
                INGRESS_VNI,
                "10.255.1.11",
            )],
        );
        let d = desired_mesh(&v);
        assert_eq!(task_names(&d.services[0]), ["t1", "t2"]);
    }

    /// Host mode is carried as is (the data plane keeps only local tasks for it).
    #[test]
    fn host_mode_ports_are_passed_on() {
        let mut v = view();
        v.services.insert(
            Id::from("web"),
            web(&["published=8081,target=80,mode=host"], &[]),
        );
        let d = desired_mesh(&v);
        assert_eq!(d.services[0].ports[0].mode, PublishMode::Host);
    }

    /// The ingress bridge and VXLAN device once they exist, every task veth; nothing outside a
    /// swarm.
    #[test]
    fn interfaces_served() {
        let v = view();
        let got = mesh_interfaces(&v);
        assert_eq!(
            got,
            BTreeMap::from([
                (
                    "mbr4096".to_owned(),
                    MeshInterface::IngressBridge {
                        vni: INGRESS_VNI,
                        node_addr: ip("10.255.0.1")
                    }
                ),
                (
                    "mvx4096".to_owned(),
                    MeshInterface::IngressVxlan { vni: INGRESS_VNI }
                ),
                (
                    "mvt10".to_owned(),
                    MeshInterface::TaskVeth {
                        vni: FRONT,
                        mac: Mac::from_ipv4(ip("10.0.1.11")).octets()
                    }
                ),
                (
                    "mvt11".to_owned(),
                    MeshInterface::TaskVeth {
                        vni: INGRESS_VNI,
                        mac: Mac::from_ipv4(ip("10.255.1.11")).octets()
                    }
                ),
            ])
        );
        let mut v = view();
        v.devices.remove(&INGRESS_VNI);
        v.tasks.clear();
        assert!(mesh_interfaces(&v).is_empty());
        let mut v = view();
        v.node = None;
        assert!(mesh_interfaces(&v).is_empty());
    }

    /// Socket-level balancing serves each plumbed task's namespace on its networks; a task whose
    /// namespace cookie could not be read is left to the per-packet path.
    #[test]
    fn task_namespaces_with_their_networks() {
        let mut v = view();
        assert_eq!(
            task_namespaces(&v),
            BTreeMap::from([(77, BTreeSet::from([FRONT, INGRESS_VNI]))])
        );
        for t in v.tasks.values_mut() {
            t.netns_cookie = None;
        }
        assert!(task_namespaces(&v).is_empty());
    }

    /// VXLAN sources: every node with a known address, this node's included; none outside a swarm.
    #[test]
    fn cluster_node_addrs_are_every_known_node() {
        let mut v = view();
        let all: BTreeSet<Ipv4Addr> = ["198.18.0.11", "198.18.0.12", "198.18.0.13"].map(ip).into();
        assert_eq!(cluster_node_addrs(&v), all);
        v.nodes.get_mut(&Id::from("n3")).unwrap().addr = None;
        v.nodes.remove(&Id::from("n1"));
        let known: BTreeSet<Ipv4Addr> = ["198.18.0.11", "198.18.0.12"].map(ip).into();
        assert_eq!(
            cluster_node_addrs(&v),
            known,
            "this node always, n3 not yet"
        );
        v.node = None;
        assert!(cluster_node_addrs(&v).is_empty());
    }
}
