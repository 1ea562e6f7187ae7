//! The node's networking: one component per meshd ([`NodeNetworking`]) that holds the overlay
//! (netlink, through `mesh-overlay`), the node's gossip (`mesh-gossip`, UDP 7946) and a view of
//! networks, nodes, local devices, plumbed tasks and gossip ([`NetView`]) that others subscribe
//! to (the eBPF mesh and DNS).
//!
//! - Tasks ([`TaskNetworking`]): `attach` makes sure each of the task's networks has its devices
//!   (bridge `mbr<vni>` with the node's address, VXLAN `mvx<vni>`), programs their remote entries,
//!   plumbs one veth per network (`eth0`, `eth1`, ... in the task's order) with the node's address
//!   on the first network as gateway, and writes the task's resolv.conf (`nameserver` = that
//!   address, `options ndots:0`). `detach` unplumbs, and removes a network's devices when the last
//!   local task leaves it (unless it is pinned, [`NodeNetworking::pin_network`]).
//! - Gossip starts once the node is in a swarm ([`TaskNetworking::joined`]), seeded with the
//!   other nodes' addresses from the leader's node list, and publishes every plumbed interface as
//!   an endpoint after each change.
//! - A converge loop, woken by every change of the view (and every 10 s), makes each network's
//!   static FDB and neighbour entries exactly what [`plan::remote_endpoints`] says: the live
//!   remote nodes' tasks and own addresses. A node that gossip declares dead leaves the live set,
//!   so its entries go at once, without waiting for the managers.
//! - Calls into the overlay for one network are serialised by a per-VNI lock
//!   ([`NodeNetworking::lock_network`]), taken in VNI order when a task spans several.
//! - Restart: devices and adopted tasks' veths survive meshd. Adopted tasks are attached again
//!   (plumbing is idempotent); once the runner has adopted everything
//!   ([`TaskNetworking::settled`]), the networks meshd created earlier (recorded in
//!   `<data-dir>/overlay-networks.json`) that no local task uses are removed, with any veth
//!   left in them. Devices meshd did not create are never touched.

pub mod dns;
mod gossip;
pub mod mesh;
mod plan;
mod status;
mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use mesh_cluster::Id;
use mesh_cluster::state::{Network, Task};
use mesh_engine::EngineHandle;
use mesh_overlay::{EndpointOp, NetNs, NetworkDevices, Overlay, RemoteEndpoint};
use tokio::sync::{OwnedMutexGuard, watch};

use self::gossip::MemberRun;
pub use self::plan::{
    PlanError, TaskPlan, Underlay, network_devices, plan_task, published_endpoints,
    remote_endpoints, seeds, stale_ports,
};
pub use self::status::gossip_peers;
pub use self::view::{LocalInterface, LocalNetwork, LocalTask, NetView, SelfNode};
use crate::networking::{Membership, Networking, TaskNetworking};
use mesh_api::{NodeNet, ServiceCounters, ServiceNet};

/// How often the converge loop re-programs every network even without a change (the kernel
/// state could have been changed behind meshd's back) and clears stale devices.
const RESYNC_EVERY: Duration = Duration::from_secs(10);
/// How long `attach` waits for the leader's view to name the task's networks.
const VIEW_WAIT: Duration = Duration::from_secs(10);
/// The resolv.conf options of every task: names are tried as given first (service names have
/// no dots).
const RESOLV_OPTIONS: &str = "ndots:0";
/// The file, in the data dir, listing the networks whose devices this meshd created.
const RECORD_FILE: &str = "overlay-networks.json";
/// How long a task is withdrawn before it is stopped and its interfaces go: it leaves gossip,
/// the routing mesh and DNS first, so that every node stops sending it new flows (gossip spreads
/// a change in 100-300 ms, more on a loaded host) while the flows it has finish, rather than
/// being cut or black-holed.
pub const WITHDRAW_GRACE: Duration = Duration::from_secs(1);

/// The node's networking (see the module's description). Cheap to clone.
#[derive(Clone)]
pub struct NodeNetworking {
    inner: Arc<Inner>,
}

struct Inner {
    overlay: Overlay,
    view: watch::Sender<NetView>,
    locks: Mutex<BTreeMap<u32, Arc<tokio::sync::Mutex<()>>>>,
    /// What each network's entries were last made (absent: program again).
    programmed: Mutex<BTreeMap<u32, Vec<RemoteEndpoint>>>,
    /// The networks whose devices this meshd created, as recorded on disk.
    record: Mutex<BTreeSet<u32>>,
    record_path: PathBuf,
    member: Mutex<Option<MemberRun>>,
    /// The gossip keyring the leader handed out, shared with every gossip run (a rotation
    /// takes effect at once).
    gossip_keys: mesh_gossip::SharedKeyring,
    underlay: Mutex<Option<Underlay>>,
    engine: EngineHandle,
    /// The runner has adopted everything once (stale devices may be cleared).
    settled: AtomicBool,
    /// The routing mesh's counters per service, as its runtime last read them.
    counters: Mutex<Vec<ServiceCounters>>,
    /// What the mesh and DNS runtimes last said of themselves (`status`).
    mesh_status: Mutex<Option<mesh_api::status::MeshStatus>>,
    dns_status: Mutex<mesh_api::status::DnsStatus>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl NodeNetworking {
    /// Connects to netlink in the calling thread's namespace (meshd's node namespace) and
    /// starts the converge loop. `data_dir` keeps the record of the networks this meshd
    /// creates; `engine` is the node's engine (tasks' `resolv.conf`). Call it inside a tokio
    /// runtime.
    pub fn new(data_dir: &Path, engine: EngineHandle) -> anyhow::Result<Self> {
        let overlay = Overlay::connect().context("connecting to netlink")?;
        let record_path = data_dir.join(RECORD_FILE);
        if record_path.exists() {
            // 0600 like every file under the data directory (an older meshd wrote it 0644).
            mesh_api::private::private_file(&record_path)
                .with_context(|| format!("securing {}", record_path.display()))?;
        }
        let record = read_record(&record_path);
        let (view, _) = watch::channel(NetView::default());
        let inner = Arc::new(Inner {
            overlay,
            view,
            locks: Mutex::new(BTreeMap::new()),
            programmed: Mutex::new(BTreeMap::new()),
            record: Mutex::new(record),
            record_path,
            member: Mutex::new(None),
            gossip_keys: mesh_gossip::SharedKeyring::default(),
            underlay: Mutex::new(None),
            engine,
            settled: AtomicBool::new(false),
            counters: Mutex::new(Vec::new()),
            mesh_status: Mutex::new(None),
            dns_status: Mutex::new(mesh_api::status::DnsStatus::default()),
        });
        tokio::spawn(converge_loop(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    /// What the daemon's agent plugs in (`DaemonConfig::task_networking`).
    pub fn networking(&self) -> Networking {
        Networking(Arc::new(self.clone()))
    }

    /// The view, as it changes: the leader's networks and nodes, this node's devices (by VNI)
    /// and plumbed tasks (with each interface's host veth name), the pinned networks and the
    /// gossip view. Every change is sent; `changed()` wakes on it.
    pub fn subscribe(&self) -> watch::Receiver<NetView> {
        self.inner.view.subscribe()
    }

    /// The view now.
    pub fn view(&self) -> NetView {
        self.inner.view.borrow().clone()
    }

    /// The overlay handle (netlink in the node's namespace). Serialise calls for one network
    /// with [`Self::lock_network`].
    pub fn overlay(&self) -> &Overlay {
        &self.inner.overlay
    }

    /// Holds network `vni`'s lock: no device, veth or entry of that network changes while the
    /// guard lives (for programs attached to its bridge or veths).
    pub async fn lock_network(&self, vni: u32) -> OwnedMutexGuard<()> {
        self.inner.lock_vni(vni).await
    }

    /// Keeps network `id`'s devices on this node whether or not a local task uses it (the
    /// ingress network of the routing mesh): created as soon as the leader's view names the
    /// network and this node's address on it.
    pub fn pin_network(&self, id: &Id) {
        self.inner
            .view
            .send_if_modified(|v| v.pinned.insert(id.clone()));
    }

    /// Undoes [`Self::pin_network`]: the devices go when no local task uses the network.
    pub fn unpin_network(&self, id: &Id) {
        self.inner.view.send_if_modified(|v| v.pinned.remove(id));
    }

    /// The routing mesh's counters per service (its runtime sets them; the agent reports them).
    pub fn set_mesh_counters(&self, counters: Vec<ServiceCounters>) {
        *lock(&self.inner.counters) = counters;
    }
}

impl Inner {
    async fn lock_vni(&self, vni: u32) -> OwnedMutexGuard<()> {
        let m = lock(&self.locks).entry(vni).or_default().clone();
        m.lock_owned().await
    }

    /// Locks `vnis` in ascending order (so two tasks spanning the same networks never wait on
    /// each other crosswise).
    async fn lock_all(&self, vnis: &BTreeSet<u32>) -> Vec<OwnedMutexGuard<()>> {
        let mut guards = Vec::with_capacity(vnis.len());
        for vni in vnis {
            guards.push(self.lock_vni(*vni).await);
        }
        guards
    }

    fn record(&self, vni: u32, present: bool) {
        let mut r = lock(&self.record);
        let changed = if present {
            r.insert(vni)
        } else {
            r.remove(&vni)
        };
        if changed && let Err(e) = write_record(&self.record_path, &r) {
            tracing::warn!(
                "recording this node's networks in {}: {e}",
                self.record_path.display()
            );
        }
    }

    /// The underlay: the advertised address and the interface holding it, with its MTU now.
    async fn underlay(&self) -> Result<Underlay, String> {
        let addr = self
            .view
            .borrow()
            .node
            .as_ref()
            .map(|n| n.addr)
            .ok_or_else(|| PlanError::NotInSwarm.to_string())?;
        let known = lock(&self.underlay).clone().filter(|u| u.addr == addr);
        let ifname = match known {
            Some(u) => u.ifname,
            None => interface_of(addr)?,
        };
        let mtu = self
            .overlay
            .underlay_mtu(&ifname)
            .await
            .map_err(|e| e.to_string())?;
        let u = Underlay { addr, ifname, mtu };
        *lock(&self.underlay) = Some(u.clone());
        Ok(u)
    }

    /// Waits (a while) for the leader's view to hold what `task` needs, then plans it.
    async fn wait_plan(&self, task: &Task) -> Result<(TaskPlan, Underlay), String> {
        let underlay = self.underlay().await?;
        let mut rx = self.view.subscribe();
        let deadline = tokio::time::Instant::now() + VIEW_WAIT;
        loop {
            let planned = plan_task(&rx.borrow_and_update(), &underlay, task);
            match planned {
                Ok(p) => return Ok((p, underlay)),
                Err(e) if e.is_transient() => {
                    match tokio::time::timeout_at(deadline, rx.changed()).await {
                        Ok(Ok(())) => {}
                        _ => return Err(e.to_string()),
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Creates or repairs network `id`'s devices (its lock held) and programs its entries when
    /// the devices are new or changed.
    async fn ensure(&self, id: &Id, d: &NetworkDevices, underlay_mtu: u32) -> Result<(), String> {
        self.record(d.vni, true);
        let steps = self
            .overlay
            .ensure_network(d)
            .await
            .map_err(|e| format!("network {} devices: {e}", d.vni))?;
        if !steps.is_empty() {
            tracing::info!(vni = d.vni, network = %id, steps = steps.len(), "network devices made ready");
            lock(&self.programmed).remove(&d.vni);
        }
        let local = plan::local_network(id, d, underlay_mtu);
        self.view.send_if_modified(|v| {
            if v.devices.get(&d.vni) == Some(&local) {
                return false;
            }
            v.devices.insert(d.vni, local);
            true
        });
        if !lock(&self.programmed).contains_key(&d.vni) {
            self.program(d.vni, !steps.is_empty()).await;
        }
        Ok(())
    }

    /// Makes network `vni`'s static entries what the view says (its lock held). Devices that
    /// were already there (`fresh` false) and not yet programmed by this run keep their entries
    /// until gossip is ready: they come from an earlier run of meshd, and an empty gossip view
    /// just after a restart would wipe them.
    async fn program(&self, vni: u32, fresh: bool) {
        if !fresh && !self.view.borrow().gossip_ready && !lock(&self.programmed).contains_key(&vni)
        {
            return;
        }
        let want = remote_endpoints(&self.view.borrow(), vni);
        match self.overlay.set_remote_endpoints(vni, &want).await {
            Ok(ops) => {
                if !ops.is_empty() {
                    let removed = ops
                        .iter()
                        .filter(|o| {
                            matches!(
                                o,
                                EndpointOp::DelVxlanFdb { .. }
                                    | EndpointOp::DelBridgeFdb { .. }
                                    | EndpointOp::DelNeighbour { .. }
                            )
                        })
                        .count();
                    tracing::info!(
                        vni,
                        entries = want.len(),
                        added = ops.len() - removed,
                        removed,
                        "remote entries programmed"
                    );
                }
                lock(&self.programmed).insert(vni, want);
            }
            Err(e) => {
                tracing::warn!(vni, "programming remote entries: {e}");
                lock(&self.programmed).remove(&vni);
            }
        }
    }

    /// Removes network `vni`'s devices (its lock held) if the view no longer keeps them.
    async fn drop_devices_if_unused(&self, vni: u32) {
        if self.view.borrow().keeps(vni) {
            return;
        }
        match self.overlay.remove_network(vni).await {
            Ok(steps) => {
                if !steps.is_empty() {
                    tracing::info!(vni, "network devices removed: no local task uses them");
                }
                self.forget_devices(vni);
            }
            Err(e) => tracing::warn!(vni, "removing the network's devices: {e}"),
        }
    }

    fn forget_devices(&self, vni: u32) {
        lock(&self.programmed).remove(&vni);
        self.record(vni, false);
        self.view
            .send_if_modified(|v| v.devices.remove(&vni).is_some());
    }

    /// One pass of the converge loop.
    async fn converge(&self, force: bool) {
        let view = self.view.borrow().clone();
        // Remote entries of every network with devices here.
        for vni in view.devices.keys() {
            let want = remote_endpoints(&view, *vni);
            if !force && lock(&self.programmed).get(vni) == Some(&want) {
                continue;
            }
            let _g = self.lock_vni(*vni).await;
            if self.view.borrow().devices.contains_key(vni) {
                self.program(*vni, false).await;
            }
        }
        // Devices nothing keeps any more (a failed plumb, an unpinned network).
        for vni in view.devices.keys().filter(|v| !view.keeps(**v)) {
            let _g = self.lock_vni(*vni).await;
            if self.view.borrow().devices.contains_key(vni) {
                self.drop_devices_if_unused(*vni).await;
            }
        }
        // Pinned networks without devices.
        for id in &view.pinned {
            let Some(n) = view.networks.get(id) else {
                continue;
            };
            if view.devices.contains_key(&n.vni) || view.own_addr(id).is_none() {
                continue;
            }
            if let Err(e) = self.ensure_pinned(n).await {
                tracing::warn!(network = %n.spec.name, "keeping the pinned network up: {e}");
            }
        }
        if force && self.settled.load(Ordering::Relaxed) {
            self.clear_stale().await;
        }
    }

    async fn ensure_pinned(&self, n: &Network) -> Result<(), String> {
        let underlay = self.underlay().await?;
        let _g = self.lock_vni(n.vni).await;
        let d = network_devices(&self.view.borrow(), n, &underlay).map_err(|e| e.to_string())?;
        self.ensure(&n.id, &d, underlay.mtu).await
    }

    /// Clears what is left from earlier runs or failures: veths in our bridges that belong to
    /// no plumbed task, and the devices of networks this meshd created that nothing keeps.
    async fn clear_stale(&self) {
        let kernel = match self.overlay.list_networks().await {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!("listing the node's networks: {e}");
                return;
            }
        };
        for net in &kernel {
            let ours = lock(&self.record).contains(&net.vni);
            let _g = self.lock_vni(net.vni).await;
            let (tracked, keeps, stale) = {
                let v = self.view.borrow();
                (
                    v.devices.contains_key(&net.vni),
                    v.keeps(net.vni),
                    stale_ports(&net.task_ports, &v),
                )
            };
            if !tracked && !ours {
                continue; // not meshd's
            }
            if !stale.is_empty() {
                match self.overlay.unplumb_task(&stale).await {
                    Ok(gone) => tracing::info!(vni = net.vni, ?gone, "stale task veths removed"),
                    Err(e) => tracing::warn!(vni = net.vni, "removing stale task veths: {e}"),
                }
            }
            if !tracked && !keeps {
                match self.overlay.remove_network(net.vni).await {
                    Ok(_) => {
                        tracing::info!(vni = net.vni, "devices left from an earlier run removed");
                        self.forget_devices(net.vni);
                    }
                    Err(e) => tracing::warn!(vni = net.vni, "removing stale devices: {e}"),
                }
            }
        }
        let present: BTreeSet<u32> = kernel.iter().map(|n| n.vni).collect();
        let recorded: Vec<u32> = lock(&self.record).iter().copied().collect();
        for vni in recorded {
            if !present.contains(&vni) && !self.view.borrow().devices.contains_key(&vni) {
                self.record(vni, false);
            }
        }
    }

    async fn resolv_conf(&self, container: &str, nameserver: Ipv4Addr) -> Result<(), String> {
        let engine = self.engine.get().await.map_err(|e| e.to_string())?;
        let result = engine
            .write_resolv_conf(container, &[nameserver], &[], &[RESOLV_OPTIONS.to_owned()])
            .await;
        if result.is_err() {
            self.engine.reset().await; // connect again next time
        }
        result.map_err(|e| format!("writing resolv.conf: {e}"))
    }

    async fn attach(&self, task: &Task, container: &str, pid: u32) -> Result<(), String> {
        if task.networks.is_empty() {
            return Ok(());
        }
        let (plan, underlay) = self.wait_plan(task).await?;
        // First, so that nothing is recorded for a task that then fails.
        self.resolv_conf(container, plan.gateway).await?;
        let vnis: BTreeSet<u32> = plan.devices.iter().map(|(_, d)| d.vni).collect();
        let guards = self.lock_all(&vnis).await;
        for (id, d) in &plan.devices {
            self.ensure(id, d, underlay.mtu).await?;
        }
        let ns = match NetNs::of_pid(pid) {
            Ok(ns) => ns,
            // The container already ended: its exit, not the plumbing, says how the task went
            // (the runner sees it and detaches; unused devices go with the next converge).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!(task = %task.id, pid, "not plumbed: the container already ended");
                return Ok(());
            }
            Err(e) => return Err(format!("the task's namespace: {e}")),
        };
        let steps = self
            .overlay
            .plumb_task(&ns, &plan.interfaces, Some(plan.gateway))
            .await
            .map_err(|e| e.to_string())?;
        let mut local = plan.local;
        container.clone_into(&mut local.container_id);
        // Socket-level balancing knows the task's sockets by this cookie.
        local.netns_cookie = ns
            .run(mesh_dataplane::socklb::netns_cookie)
            .ok()
            .and_then(Result::ok);
        tracing::info!(
            task = %task.id,
            interfaces = local.interfaces.len(),
            steps = steps.len(),
            "task plumbed"
        );
        self.view.send_if_modified(|v| {
            if v.tasks.get(&task.id) == Some(&local) {
                return false;
            }
            v.tasks.insert(task.id.clone(), local);
            true
        });
        drop(guards);
        Ok(())
    }

    /// Out of gossip, the mesh and DNS; returns once the other nodes have heard it (at once
    /// when it was withdrawn already, or is not plumbed).
    async fn withdraw(&self, task_id: &Id) {
        if !self.view.borrow().tasks.contains_key(task_id) {
            return;
        }
        if self
            .view
            .send_if_modified(|v| v.leaving.insert(task_id.clone()))
        {
            tokio::time::sleep(WITHDRAW_GRACE).await;
        }
    }

    async fn detach(&self, task_id: &Id) -> Result<(), String> {
        let Some(t) = self.view.borrow().tasks.get(task_id).cloned() else {
            self.view.send_if_modified(|v| v.unready.remove(task_id));
            return Ok(());
        };
        // Withdrawn first (gossip, mesh, DNS), unplumbed once the other nodes heard it.
        self.withdraw(task_id).await;
        let vnis: BTreeSet<u32> = t.interfaces.iter().map(|i| i.vni).collect();
        let _guards = self.lock_all(&vnis).await;
        let hosts: Vec<String> = t.interfaces.iter().map(|i| i.host_ifname.clone()).collect();
        self.overlay
            .unplumb_task(&hosts)
            .await
            .map_err(|e| e.to_string())?;
        self.view.send_if_modified(|v| {
            let left = v.leaving.remove(task_id);
            let unready = v.unready.remove(task_id);
            v.tasks.remove(task_id).is_some() || left || unready
        });
        tracing::info!(task = %task_id, "task unplumbed");
        for vni in vnis {
            self.drop_devices_if_unused(vni).await;
        }
        Ok(())
    }

    async fn left(&self) {
        if let Some(run) = lock(&self.member).take() {
            run.driver.abort();
        }
        self.settled.store(false, Ordering::Relaxed);
        let tasks: Vec<LocalTask> = {
            let mut tasks = Vec::new();
            self.view.send_modify(|v| {
                tasks = v.tasks.values().cloned().collect();
                let pinned = std::mem::take(&mut v.pinned);
                *v = NetView {
                    devices: std::mem::take(&mut v.devices),
                    pinned,
                    ..NetView::default()
                };
            });
            tasks
        };
        let hosts: Vec<String> = tasks
            .iter()
            .flat_map(|t| t.interfaces.iter().map(|i| i.host_ifname.clone()))
            .collect();
        if let Err(e) = self.overlay.unplumb_task(&hosts).await {
            tracing::warn!("unplumbing the node's tasks: {e}");
        }
        let kernel = self.overlay.list_networks().await.unwrap_or_default();
        for net in kernel {
            let ours = lock(&self.record).contains(&net.vni)
                || self.view.borrow().devices.contains_key(&net.vni);
            if !ours {
                continue;
            }
            let _g = self.lock_vni(net.vni).await;
            let ports: Vec<String> = net
                .task_ports
                .iter()
                .filter(|p| p.starts_with("mv"))
                .cloned()
                .collect();
            if let Err(e) = self.overlay.unplumb_task(&ports).await {
                tracing::warn!(vni = net.vni, "removing task veths: {e}");
            }
            match self.overlay.remove_network(net.vni).await {
                Ok(_) => self.forget_devices(net.vni),
                Err(e) => tracing::warn!(vni = net.vni, "removing the network's devices: {e}"),
            }
        }
        tracing::info!("node networking cleared: the node left its swarm");
    }
}

impl TaskNetworking for NodeNetworking {
    fn attach<'a>(
        &'a self,
        task: &'a Task,
        container: &'a str,
        pid: u32,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.inner.attach(task, container, pid))
    }

    fn detach<'a>(&'a self, task_id: &'a Id) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.inner.detach(task_id))
    }

    fn withdraw<'a>(&'a self, task_id: &'a Id) -> BoxFuture<'a, ()> {
        Box::pin(self.inner.withdraw(task_id))
    }

    fn serving(&self, task_id: &Id, serving: bool) {
        self.inner.view.send_if_modified(|v| {
            if serving {
                v.unready.remove(task_id)
            } else {
                v.unready.insert(task_id.clone())
            }
        });
    }

    fn joined(&self, membership: &Membership) {
        self.inner.joined(membership);
    }

    fn cluster(
        &self,
        networks: Option<Vec<Network>>,
        nodes: Option<Vec<NodeNet>>,
        services: Option<Vec<ServiceNet>>,
    ) {
        self.inner.view.send_if_modified(|v| {
            let mut changed = false;
            if let Some(list) = services {
                let map: BTreeMap<Id, ServiceNet> =
                    list.into_iter().map(|s| (s.id.clone(), s)).collect();
                changed |= v.services != map;
                v.services = map;
            }
            if let Some(list) = networks {
                let map: BTreeMap<Id, Network> =
                    list.into_iter().map(|n| (n.id.clone(), n)).collect();
                changed |= v.networks != map;
                v.networks = map;
            }
            if let Some(list) = nodes {
                let map: BTreeMap<Id, NodeNet> =
                    list.into_iter().map(|n| (n.id.clone(), n)).collect();
                changed |= v.nodes != map;
                v.nodes = map;
            }
            if changed {
                v.refilter_gossip();
            }
            changed
        });
    }

    fn mesh_counters(&self) -> Vec<ServiceCounters> {
        lock(&self.inner.counters).clone()
    }

    fn gossip_keys(&self, keys: Vec<mesh_cluster::gossip_keys::GossipKeyEntry>) {
        let keys: Vec<mesh_gossip::GossipKey> = keys
            .iter()
            .filter_map(|k| {
                k.bytes()
                    .map(|key| mesh_gossip::GossipKey { id: k.id, key })
            })
            .collect();
        match mesh_gossip::GossipKeyring::new(keys) {
            Ok(ring) => {
                tracing::info!(current = ?ring.current_id(), "gossip keyring from the leader");
                self.inner.gossip_keys.set(ring);
            }
            Err(e) => tracing::warn!("the leader's gossip keyring is unusable: {e}"),
        }
    }

    fn status(&self, out: &mut mesh_api::status::NodeStatus) {
        self.fill_status(out);
    }

    fn settled(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.inner.settled.store(true, Ordering::Relaxed);
            self.inner
                .view
                .send_if_modified(|v| !std::mem::replace(&mut v.settled, true));
            self.inner.clear_stale().await;
        })
    }

    fn left(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.inner.left())
    }
}

/// Wakes on every change of the view (and every [`RESYNC_EVERY`]) and converges.
async fn converge_loop(inner: Weak<Inner>) {
    let mut rx = match inner.upgrade() {
        Some(i) => i.view.subscribe(),
        None => return,
    };
    let mut tick = tokio::time::interval(RESYNC_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let force = tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
                false
            }
            _ = tick.tick() => true,
        };
        rx.borrow_and_update();
        let Some(inner) = inner.upgrade() else { return };
        inner.converge(force).await;
    }
}

/// The interface that carries `addr` in this namespace.
pub(crate) fn interface_of(addr: Ipv4Addr) -> Result<String, String> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| format!("listing addresses: {e}"))?;
    for a in addrs {
        let found = a
            .address
            .as_ref()
            .and_then(|s| s.as_sockaddr_in())
            .is_some_and(|s| s.ip() == addr);
        if found {
            return Ok(a.interface_name);
        }
    }
    Err(format!(
        "the advertised address {addr} is on no interface of this node"
    ))
}

fn read_record(path: &Path) -> BTreeSet<u32> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Writes the record 0600, like every file under the data directory.
fn write_record(path: &Path, vnis: &BTreeSet<u32>) -> std::io::Result<()> {
    mesh_api::private::write_private(path, &serde_json::to_vec(vnis)?)
}

/// Fixtures the tests of `dns` and `mesh` share.
#[cfg(test)]
mod fixtures {
    use std::net::IpAddr;

    use mesh_gossip::{GossipView, NodeInfo, TaskEndpoint};
    use mesh_overlay::Mac;

    /// Gossip that calls these (node id, underlay address) live, with no endpoints yet.
    pub fn live_nodes(nodes: &[(&str, &str)]) -> GossipView {
        let mut g = GossipView::default();
        for (id, addr) in nodes {
            g.live.insert(
                (*id).into(),
                NodeInfo {
                    addr: IpAddr::V4(addr.parse().expect("an IPv4 address")),
                    hostname: (*id).into(),
                },
            );
        }
        g
    }

    /// What a remote node gossips for task `task` of `service` at `addr` on network `net`.
    pub fn gossip_ep(task: &str, service: &str, net: &str, vni: u32, addr: &str) -> TaskEndpoint {
        let ip = addr.parse().expect("an IPv4 address");
        TaskEndpoint {
            task_id: task.into(),
            service_id: service.into(),
            network_id: net.into(),
            vni,
            ip,
            mac: Mac::from_ipv4(ip).octets(),
            draining: false,
        }
    }
}
