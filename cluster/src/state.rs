//! The cluster's objects, as swarmkit has them: nodes, networks, services, tasks, secrets,
//! configs and the cluster itself. [`ClusterState`] is the single source of truth that raft
//! replicates; it changes only by [`Tx`]s, applied atomically with optimistic version checks, so
//! that control loops can compute changes from a snapshot and propose them safely.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::Id;

/// Milliseconds since the Unix epoch, as the proposing leader saw them.
pub type Millis = u64;

/// Versioning and timestamps every object carries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The raft log index of the object's last change; 0 for an object not yet stored.
    pub version: u64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

// ---------------------------------------------------------------------------------------------
// Addresses

/// An IPv4 prefix such as `10.0.1.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Ipv4Cidr {
    pub fn mask(self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.len))
        }
    }
    /// The network address (host bits cleared).
    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }
    pub fn overlaps(self, other: Ipv4Cidr) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }
    /// Host `n` of the prefix (`n` = 1 is the first usable address).
    pub fn host(self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()) + n)
    }
    /// Number of addresses, network and broadcast included.
    pub fn size(self) -> u64 {
        1u64 << (32 - u32::from(self.len))
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid subnet {s:?}: expected an IPv4 prefix such as 10.0.9.0/24");
        let (a, l) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let len: u8 = l.parse().map_err(|_| bad())?;
        if len > 32 {
            return Err(bad());
        }
        Ok(Self { addr, len })
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster

/// Cluster-wide settings and secrets, one per cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub id: Id,
    pub meta: Meta,
    /// The root CA (PEM). Every manager can issue node certificates with it.
    pub root_ca_cert_pem: String,
    pub root_ca_key_pem: String,
    /// The secret halves of the join tokens; rotation replaces them.
    pub worker_token_secret: String,
    pub manager_token_secret: String,
    /// Default address pool for overlay networks, cut into `/subnet_len` networks.
    pub default_pool: Ipv4Cidr,
    pub subnet_len: u8,
    /// The last raft node id handed out (ids are never reused, so a removed manager that comes
    /// back cannot be mistaken for a new one).
    #[serde(default)]
    pub last_raft_id: u64,
    /// Token secrets replaced by rotation (newest last, a few kept), so that a joiner with an old
    /// token is told it was rotated rather than that it is wrong.
    #[serde(default)]
    pub retired_token_secrets: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Nodes

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    Manager,
    #[default]
    Worker,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    #[default]
    Active,
    Pause,
    Drain,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    #[default]
    Unknown,
    Down,
    Ready,
    Disconnected,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    #[default]
    Unknown,
    Unreachable,
    Reachable,
}

/// What a user may change about a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub role: NodeRole,
    pub availability: Availability,
    pub labels: BTreeMap<String, String>,
}

/// CPU and memory, in Docker's units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// CPUs times 10^9.
    pub nano_cpus: i64,
    pub memory_bytes: i64,
}

/// What a node reports about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDescription {
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub resources: Resources,
    pub engine_version: String,
    /// The Docker engine's labels (`engine.labels.K` in constraints).
    #[serde(default)]
    pub engine_labels: BTreeMap<String, String>,
}

/// How the managers see a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub state: NodeState,
    pub message: String,
    /// The node's advertised (underlay) address.
    pub addr: Option<Ipv4Addr>,
}

/// A manager's place in raft.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerStatus {
    pub raft_id: u64,
    /// Where its raft and API listen, `IP:2377`.
    pub addr: String,
    pub reachability: Reachability,
    pub leader: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: Id,
    pub meta: Meta,
    pub spec: NodeSpec,
    pub description: NodeDescription,
    pub status: NodeStatus,
    pub manager_status: Option<ManagerStatus>,
    /// The node's own address on each network (its DNS server and SNAT source there).
    pub attachments: BTreeMap<Id, Ipv4Addr>,
}

// ---------------------------------------------------------------------------------------------
// Networks

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    pub name: String,
    /// Only "overlay" exists.
    pub driver: String,
    /// Asked for by the user; the allocator fills [`Network::subnet`] either way.
    pub subnet: Option<Ipv4Cidr>,
    pub attachable: bool,
    /// The routing mesh's network (`ingress`), made by `swarm init`.
    pub ingress: bool,
    pub labels: BTreeMap<String, String>,
    /// Driver options (`mtu`).
    pub options: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub id: Id,
    pub meta: Meta,
    pub spec: NetworkSpec,
    pub subnet: Ipv4Cidr,
    /// The VXLAN network identifier (ingress 4096, others from 4097); 0 until the allocator has
    /// given the network its VNI and subnet.
    pub vni: u32,
}

impl Network {
    /// Has the allocator filled `subnet` and `vni`?
    pub fn is_allocated(&self) -> bool {
        self.vni != 0
    }
}

// ---------------------------------------------------------------------------------------------
// Services

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceMode {
    Replicated { replicas: u64 },
    Global,
}

impl Default for ServiceMode {
    fn default() -> Self {
        Self::Replicated { replicas: 1 }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    #[default]
    Any,
    OnFailure,
    None,
}

/// When a task that ended is replaced by a new one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub condition: RestartCondition,
    pub delay_ms: u64,
    /// 0: no limit.
    pub max_attempts: u64,
    /// The window in which attempts are counted; 0: since the service was created.
    pub window_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            condition: RestartCondition::Any,
            delay_ms: 5_000,
            max_attempts: 0,
            window_ms: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    #[default]
    Pause,
    Continue,
    Rollback,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    #[default]
    StopFirst,
    StartFirst,
}

/// How a rolling update (or rollback) proceeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateConfig {
    /// Tasks updated at once; 0: all.
    pub parallelism: u64,
    pub delay_ms: u64,
    pub failure_action: FailureAction,
    pub monitor_ms: u64,
    pub max_failure_ratio: f32,
    pub order: UpdateOrder,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        Self {
            parallelism: 1,
            delay_ms: 0,
            failure_action: FailureAction::Pause,
            monitor_ms: 5_000,
            max_failure_ratio: 0.0,
            order: UpdateOrder::StopFirst,
        }
    }
}

/// A spread preference: `--placement-pref spread=node.labels.zone`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpreadPreference {
    /// The descriptor spread over, such as `node.labels.zone`.
    pub spread: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Constraint expressions as the user gave them (`node.labels.zone==east`).
    pub constraints: Vec<String>,
    pub preferences: Vec<SpreadPreference>,
    /// 0: no limit.
    pub max_replicas_per_node: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRequirements {
    pub limits: Resources,
    pub reservations: Resources,
}

/// A secret or config delivered into a task's filesystem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReference {
    pub id: Id,
    pub name: String,
    /// Path in the container (secrets: under /run/secrets unless absolute).
    pub target: String,
    pub mode: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub image: String,
    /// Replaces the image's entrypoint when not empty.
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub hostname: String,
    pub workdir: String,
    pub user: String,
    pub secrets: Vec<FileReference>,
    pub configs: Vec<FileReference>,
    pub stop_grace_period_ms: u64,
}

/// A network a service's tasks attach to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttachmentConfig {
    /// The network's id.
    pub target: Id,
    /// Extra DNS names for the service on this network.
    pub aliases: Vec<String>,
}

/// The template every task of a service is made from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub container: ContainerSpec,
    pub resources: ResourceRequirements,
    pub restart: RestartPolicy,
    pub placement: Placement,
    pub networks: Vec<NetworkAttachmentConfig>,
    /// Bumped by `service update --force` to replace tasks without another change.
    pub force_update: u64,
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishMode {
    #[default]
    Ingress,
    Host,
}

/// A published port: `published=8080,target=80,protocol=tcp,mode=ingress`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortConfig {
    pub name: String,
    pub protocol: Protocol,
    pub target_port: u16,
    /// 0 in a spec: pick a free one from the dynamic range (30000-32767).
    pub published_port: u16,
    pub publish_mode: PublishMode,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    #[default]
    Vip,
    Dnsrr,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSpec {
    pub mode: EndpointMode,
    pub ports: Vec<PortConfig>,
}

/// What a user declares about a service.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub task: TaskSpec,
    pub mode: ServiceMode,
    pub update: UpdateConfig,
    pub rollback: UpdateConfig,
    pub endpoint: EndpointSpec,
}

/// A service's virtual IP on one network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualIp {
    pub network_id: Id,
    pub addr: Ipv4Addr,
}

/// What the allocator gave a service: its ports (published ones filled in) and VIPs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub ports: Vec<PortConfig>,
    pub virtual_ips: Vec<VirtualIp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    Updating,
    Paused,
    Completed,
    RollbackStarted,
    RollbackPaused,
    RollbackCompleted,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    pub state: UpdateState,
    pub started_at: Millis,
    pub completed_at: Option<Millis>,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub id: Id,
    pub meta: Meta,
    pub spec: ServiceSpec,
    /// The spec before the last update, for `service update --rollback`.
    pub previous_spec: Option<ServiceSpec>,
    pub endpoint: Endpoint,
    pub update_status: Option<UpdateStatus>,
    /// The stack that deployed it (`com.docker.stack.namespace`), if any.
    pub stack: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Tasks

/// Swarm's task states, in the order a task goes through them.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    #[default]
    New,
    Pending,
    Assigned,
    Accepted,
    Preparing,
    Ready,
    Starting,
    Running,
    Complete,
    Shutdown,
    Failed,
    Rejected,
    Remove,
    Orphaned,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Pending => "pending",
            Self::Assigned => "assigned",
            Self::Accepted => "accepted",
            Self::Preparing => "preparing",
            Self::Ready => "ready",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Complete => "complete",
            Self::Shutdown => "shutdown",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
            Self::Remove => "remove",
            Self::Orphaned => "orphaned",
        }
    }
    /// A task in a terminal state never runs again (a new task replaces it).
    pub fn is_terminal(self) -> bool {
        self > Self::Running
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub timestamp: Millis,
    pub state: TaskState,
    pub message: String,
    /// Why the task failed or is pending (shown in `service ps`'s ERROR column).
    pub err: String,
    pub container_id: String,
    pub pid: u32,
    pub exit_code: Option<i64>,
}

/// A task's place on one network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskNetwork {
    pub network_id: Id,
    pub addr: Ipv4Addr,
    pub mac: [u8; 6],
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: Id,
    pub meta: Meta,
    pub service_id: Id,
    /// Replicated services: the replica number (1-based). Global: 0.
    pub slot: u64,
    /// Set by the scheduler (replicated) or at creation (global).
    pub node_id: Option<Id>,
    pub spec: TaskSpec,
    /// The service's `meta.version` the spec was taken from.
    pub spec_version: u64,
    pub desired_state: TaskState,
    pub status: TaskStatus,
    pub networks: Vec<TaskNetwork>,
    /// A task made with desired state `Ready` (a restart replacement or a stop-first update) is
    /// started (desired `Running`) by the orchestrator once `start_at` has passed and the slot's
    /// previous task has stopped.
    #[serde(default)]
    pub start_at: Millis,
    /// When the restart policy replaced earlier tasks of this slot with the same spec, carried
    /// from each task to its replacement (for `max_attempts` within `window`).
    #[serde(default)]
    pub restart_history: Vec<Millis>,
    /// The service's endpoint spec when the task was made (its published ports, for host-mode
    /// bindings); a change of the service's ports replaces the task, as a spec change does.
    #[serde(default)]
    pub endpoint: EndpointSpec,
}

// ---------------------------------------------------------------------------------------------
// Secrets and configs

/// A secret or a config: a named blob delivered only to nodes running a task that uses it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    pub id: Id,
    pub meta: Meta,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub data: Vec<u8>,
}

// ---------------------------------------------------------------------------------------------
// The state and its transactions

/// Everything raft replicates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub cluster: Option<ClusterInfo>,
    pub nodes: BTreeMap<Id, Node>,
    pub networks: BTreeMap<Id, Network>,
    pub services: BTreeMap<Id, Service>,
    pub tasks: BTreeMap<Id, Task>,
    pub secrets: BTreeMap<Id, Blob>,
    pub configs: BTreeMap<Id, Blob>,
}

/// Any stored object.
#[expect(
    clippy::large_enum_variant,
    reason = "objects are built once per write; boxing buys nothing"
)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Object {
    Cluster(ClusterInfo),
    Node(Node),
    Network(Network),
    Service(Service),
    Task(Task),
    Secret(Blob),
    Config(Blob),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Cluster,
    Node,
    Network,
    Service,
    Task,
    Secret,
    Config,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Cluster => "cluster",
            Kind::Node => "node",
            Kind::Network => "network",
            Kind::Service => "service",
            Kind::Task => "task",
            Kind::Secret => "secret",
            Kind::Config => "config",
        })
    }
}

/// One change in a transaction.
#[expect(clippy::large_enum_variant, reason = "as Object")]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// Create (when `meta.version` is 0) or replace (when it equals the stored version).
    Put(Object),
    /// Remove the object, whose stored version must equal `version`.
    Delete { kind: Kind, id: Id, version: u64 },
}

/// Changes applied together or not at all.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tx {
    /// When the proposer made it; becomes `created_at`/`updated_at`.
    pub at: Millis,
    pub ops: Vec<Op>,
}

/// Why a transaction was refused. The state is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum TxError {
    #[error("{kind} {id} changed since it was read (version {expected}, now {found})")]
    Conflict {
        kind: Kind,
        id: Id,
        expected: u64,
        found: u64,
    },
    #[error("{kind} {id} does not exist")]
    Missing { kind: Kind, id: Id },
    #[error("{kind} name {name:?} is already in use")]
    NameTaken { kind: Kind, name: String },
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Cluster(_) => Kind::Cluster,
            Object::Node(_) => Kind::Node,
            Object::Network(_) => Kind::Network,
            Object::Service(_) => Kind::Service,
            Object::Task(_) => Kind::Task,
            Object::Secret(_) => Kind::Secret,
            Object::Config(_) => Kind::Config,
        }
    }

    fn id_meta(&mut self) -> (&Id, &mut Meta) {
        match self {
            Object::Cluster(o) => (&o.id, &mut o.meta),
            Object::Node(o) => (&o.id, &mut o.meta),
            Object::Network(o) => (&o.id, &mut o.meta),
            Object::Service(o) => (&o.id, &mut o.meta),
            Object::Task(o) => (&o.id, &mut o.meta),
            Object::Secret(o) | Object::Config(o) => (&o.id, &mut o.meta),
        }
    }

    /// The name that must be unique within its kind, if the kind has one.
    fn unique_name(&self) -> Option<&str> {
        match self {
            Object::Network(n) => Some(&n.spec.name),
            Object::Service(s) => Some(&s.spec.name),
            Object::Secret(b) | Object::Config(b) => Some(&b.name),
            _ => None,
        }
    }
}

impl ClusterState {
    /// Applies `tx` as the raft entry at `index`: all of it, or none of it with the reason.
    pub fn apply(&mut self, tx: &Tx, index: u64) -> Result<(), TxError> {
        for op in &tx.ops {
            self.check(op)?;
        }
        // Names must also be unique among the objects this transaction creates or renames.
        let mut seen: Vec<(Kind, &str, &Id)> = Vec::new();
        for op in &tx.ops {
            if let Op::Put(o) = op
                && let Some(name) = o.unique_name()
            {
                let id = match o {
                    Object::Network(n) => &n.id,
                    Object::Service(s) => &s.id,
                    Object::Secret(b) | Object::Config(b) => &b.id,
                    _ => unreachable!(),
                };
                if seen
                    .iter()
                    .any(|(k, n, other)| *k == o.kind() && *n == name && *other != id)
                {
                    return Err(TxError::NameTaken {
                        kind: o.kind(),
                        name: name.to_owned(),
                    });
                }
                seen.push((o.kind(), name, id));
            }
        }
        for op in &tx.ops {
            match op {
                Op::Put(o) => {
                    let mut o = o.clone();
                    let kind = o.kind();
                    let (id, _) = o.id_meta();
                    let created_at = self
                        .meta_of(kind, &id.clone())
                        .map_or(tx.at, |m| m.created_at);
                    let (_, meta) = o.id_meta();
                    meta.created_at = created_at;
                    meta.updated_at = tx.at;
                    meta.version = index;
                    self.insert(o);
                }
                Op::Delete { kind, id, .. } => self.remove(*kind, id),
            }
        }
        Ok(())
    }

    fn check(&self, op: &Op) -> Result<(), TxError> {
        match op {
            Op::Put(o) => {
                let mut o = o.clone();
                let kind = o.kind();
                let name = o.unique_name().map(str::to_owned);
                let (id, meta) = o.id_meta();
                let found = self.version_of(kind, id);
                if found != meta.version {
                    return Err(TxError::Conflict {
                        kind,
                        id: id.clone(),
                        expected: meta.version,
                        found,
                    });
                }
                if let Some(name) = name
                    && self
                        .id_by_name(kind, &name)
                        .is_some_and(|other| other != *id)
                {
                    return Err(TxError::NameTaken { kind, name });
                }
                Ok(())
            }
            Op::Delete { kind, id, version } => match self.version_of(*kind, id) {
                0 => Err(TxError::Missing {
                    kind: *kind,
                    id: id.clone(),
                }),
                found if found != *version => Err(TxError::Conflict {
                    kind: *kind,
                    id: id.clone(),
                    expected: *version,
                    found,
                }),
                _ => Ok(()),
            },
        }
    }

    /// The stored version of an object; 0 when absent.
    pub fn version_of(&self, kind: Kind, id: &Id) -> u64 {
        self.meta_of(kind, id).map_or(0, |m| m.version)
    }

    fn meta_of(&self, kind: Kind, id: &Id) -> Option<&Meta> {
        match kind {
            Kind::Cluster => self
                .cluster
                .as_ref()
                .filter(|c| &c.id == id)
                .map(|c| &c.meta),
            Kind::Node => self.nodes.get(id).map(|o| &o.meta),
            Kind::Network => self.networks.get(id).map(|o| &o.meta),
            Kind::Service => self.services.get(id).map(|o| &o.meta),
            Kind::Task => self.tasks.get(id).map(|o| &o.meta),
            Kind::Secret => self.secrets.get(id).map(|o| &o.meta),
            Kind::Config => self.configs.get(id).map(|o| &o.meta),
        }
    }

    /// The id of the network, service, secret or config called `name`.
    pub fn id_by_name(&self, kind: Kind, name: &str) -> Option<Id> {
        match kind {
            Kind::Network => self
                .networks
                .values()
                .find(|n| n.spec.name == name)
                .map(|n| n.id.clone()),
            Kind::Service => self
                .services
                .values()
                .find(|s| s.spec.name == name)
                .map(|s| s.id.clone()),
            Kind::Secret => self
                .secrets
                .values()
                .find(|b| b.name == name)
                .map(|b| b.id.clone()),
            Kind::Config => self
                .configs
                .values()
                .find(|b| b.name == name)
                .map(|b| b.id.clone()),
            _ => None,
        }
    }

    /// Stores `o` as it is (no version checks), for scratch copies of the state.
    pub(crate) fn insert(&mut self, o: Object) {
        match o {
            Object::Cluster(c) => self.cluster = Some(c),
            Object::Node(n) => {
                self.nodes.insert(n.id.clone(), n);
            }
            Object::Network(n) => {
                self.networks.insert(n.id.clone(), n);
            }
            Object::Service(s) => {
                self.services.insert(s.id.clone(), s);
            }
            Object::Task(t) => {
                self.tasks.insert(t.id.clone(), t);
            }
            Object::Secret(b) => {
                self.secrets.insert(b.id.clone(), b);
            }
            Object::Config(b) => {
                self.configs.insert(b.id.clone(), b);
            }
        }
    }

    pub(crate) fn remove(&mut self, kind: Kind, id: &Id) {
        match kind {
            Kind::Cluster => self.cluster = None,
            Kind::Node => drop(self.nodes.remove(id)),
            Kind::Network => drop(self.networks.remove(id)),
            Kind::Service => drop(self.services.remove(id)),
            Kind::Task => drop(self.tasks.remove(id)),
            Kind::Secret => drop(self.secrets.remove(id)),
            Kind::Config => drop(self.configs.remove(id)),
        }
    }

    /// The tasks of one service.
    pub fn tasks_of(&self, service: &Id) -> impl Iterator<Item = &Task> {
        self.tasks
            .values()
            .filter(move |t| &t.service_id == service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(id: &str, name: &str, version: u64) -> Object {
        Object::Network(Network {
            id: Id::from(id),
            meta: Meta {
                version,
                ..Meta::default()
            },
            spec: NetworkSpec {
                name: name.into(),
                driver: "overlay".into(),
                ..NetworkSpec::default()
            },
            subnet: "10.0.1.0/24".parse().unwrap(),
            vni: 4097,
        })
    }

    #[test]
    fn puts_create_then_replace_with_versions() {
        let mut s = ClusterState::default();
        s.apply(
            &Tx {
                at: 5,
                ops: vec![Op::Put(net("a", "front", 0))],
            },
            3,
        )
        .unwrap();
        let n = &s.networks[&Id::from("a")];
        assert_eq!((n.meta.version, n.meta.created_at), (3, 5));
        // A writer that read version 0 again conflicts; one that read 3 wins.
        let stale = Tx {
            at: 6,
            ops: vec![Op::Put(net("a", "front", 0))],
        };
        assert!(matches!(s.apply(&stale, 4), Err(TxError::Conflict { .. })));
        s.apply(
            &Tx {
                at: 7,
                ops: vec![Op::Put(net("a", "front", 3))],
            },
            5,
        )
        .unwrap();
        assert_eq!(s.networks[&Id::from("a")].meta.version, 5);
        assert_eq!(s.networks[&Id::from("a")].meta.created_at, 5);
    }

    #[test]
    fn a_refused_transaction_changes_nothing() {
        let mut s = ClusterState::default();
        s.apply(
            &Tx {
                at: 1,
                ops: vec![Op::Put(net("a", "front", 0))],
            },
            1,
        )
        .unwrap();
        let before = s.clone();
        let tx = Tx {
            at: 2,
            ops: vec![
                Op::Put(net("b", "back", 0)),
                Op::Put(net("c", "front", 0)), // name taken by "a"
            ],
        };
        assert!(matches!(s.apply(&tx, 2), Err(TxError::NameTaken { .. })));
        assert_eq!(s, before);
        let dup = Tx {
            at: 2,
            ops: vec![Op::Put(net("b", "x", 0)), Op::Put(net("c", "x", 0))],
        };
        assert!(matches!(s.apply(&dup, 2), Err(TxError::NameTaken { .. })));
        let del = Tx {
            at: 2,
            ops: vec![Op::Delete {
                kind: Kind::Network,
                id: Id::from("zz"),
                version: 1,
            }],
        };
        assert!(matches!(s.apply(&del, 2), Err(TxError::Missing { .. })));
        assert_eq!(s, before);
    }
}
