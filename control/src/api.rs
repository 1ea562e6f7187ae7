//! The typed API: every request and reply that crosses `meshd.sock` or TCP 2377, as Rust enums
//! (serde JSON inside the gRPC frames of `proto/mesh.proto`).
//!
//! Who may send what is decided here too ([`Request::access`]); the server checks it against the
//! caller's certificate before anything else runs.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};

use mesh_cluster::Id;
use mesh_cluster::state::{
    Availability, EndpointMode, Network, NetworkAttachmentConfig, NetworkSpec, Node,
    NodeDescription, NodeRole, PortConfig, Service, ServiceSpec, Task, TaskStatus, Tx, TxError,
    VirtualIp,
};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::store::{NodeId, TypeConfig};

/// The port managers listen on, as Swarm's.
pub const MANAGER_PORT: u16 = 2377;

/// Everything a caller can ask of a meshd.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    // Local socket only: this node's membership.
    /// `swarm init`.
    Init(InitRequest),
    /// `swarm join`.
    Join(JoinRequest),
    /// `swarm leave`.
    Leave {
        force: bool,
    },
    /// What this node is in the swarm.
    Info,

    // The cluster API: a manager's local socket, or a manager certificate.
    NodeList,
    NodeInspect {
        node: String,
    },
    NodeUpdate(NodeUpdate),
    NodeRemove {
        node: String,
        force: bool,
    },
    JoinToken {
        role: NodeRole,
        rotate: bool,
    },
    /// `service create`: the whole spec, networks named by name or id.
    ServiceCreate {
        spec: ServiceSpec,
    },
    /// `service ls`.
    ServiceList,
    /// `service inspect`: by id, name or unique id prefix.
    ServiceInspect {
        service: String,
    },
    /// `service ps` (and the progress display): the services' tasks and the nodes they are on.
    ServiceTasks {
        services: Vec<String>,
    },
    /// `service update`: the new spec, made by the client from the service as it read it at
    /// `version` (a service changed since is refused: "update out of sequence").
    ServiceUpdate {
        service: String,
        version: u64,
        spec: ServiceSpec,
    },
    /// `service update --rollback`.
    ServiceRollback {
        service: String,
    },
    /// `service scale SERVICE=REPLICAS`.
    ServiceScale {
        service: String,
        replicas: u64,
    },
    /// `service rm`.
    ServiceRemove {
        service: String,
    },
    /// `service logs`: a streaming request (`Mesh/Stream`), answered by [`StreamItem`]s.
    ServiceLogs(LogsRequest),
    /// `network create`: the spec as the user gave it (driver, subnet, options, labels).
    NetworkCreate {
        spec: NetworkSpec,
    },
    /// `network ls`.
    NetworkList,
    /// `network inspect`: by id, name or unique id prefix.
    NetworkInspect {
        network: String,
    },
    /// `network rm`: by id, name or unique id prefix.
    NetworkRemove {
        network: String,
    },
    /// `mesh stats` and the counters of `service inspect`: each node's routing-mesh counters
    /// of the given services (all when empty), as the nodes last reported them to the leader.
    MeshStats {
        services: Vec<String>,
    },

    // A TLS client without a certificate: a joiner with a token.
    JoinCluster(JoinClusterRequest),

    // Any node certificate.
    /// A new certificate for the caller's key, with the role the cluster state gives it.
    RenewCert {
        csr_pem: String,
    },

    // Manager certificates: raft and the managers' own traffic.
    Raft(RaftRequest),
    /// Propose a transaction on the leader (a follower's `Manager::propose`).
    Propose(Tx),
    /// The leader's read index, for a linearizable read on a follower.
    ReadIndex,
    /// A manager that has started raft asks the leader to add it as a voter.
    AddManager {
        raft_id: NodeId,
        addr: String,
    },
}

/// Who may send a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Only over the local socket.
    Local,
    /// The local socket or a manager certificate; served by managers only.
    Api,
    /// Anyone that completed TLS (with or without a certificate).
    Anyone,
    /// Any node certificate of the cluster.
    Node,
    /// Manager certificates only.
    Manager,
}

impl Request {
    pub fn access(&self) -> Access {
        match self {
            Request::Init(_) | Request::Join(_) | Request::Leave { .. } | Request::Info => {
                Access::Local
            }
            Request::NodeList
            | Request::NodeInspect { .. }
            | Request::NodeUpdate(_)
            | Request::NodeRemove { .. }
            | Request::JoinToken { .. }
            | Request::ServiceCreate { .. }
            | Request::ServiceList
            | Request::ServiceInspect { .. }
            | Request::ServiceTasks { .. }
            | Request::ServiceUpdate { .. }
            | Request::ServiceRollback { .. }
            | Request::ServiceScale { .. }
            | Request::ServiceRemove { .. }
            | Request::ServiceLogs(_)
            | Request::NetworkCreate { .. }
            | Request::NetworkList
            | Request::NetworkInspect { .. }
            | Request::NetworkRemove { .. }
            | Request::MeshStats { .. } => Access::Api,
            Request::JoinCluster(_) => Access::Anyone,
            Request::RenewCert { .. } => Access::Node,
            Request::Raft(_)
            | Request::Propose(_)
            | Request::ReadIndex
            | Request::AddManager { .. } => Access::Manager,
        }
    }

    /// Does it change the cluster state (and so run on the leader)? (`RenewCert` does not: any
    /// manager signs, after a linearizable read of the caller's role.)
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Request::NodeUpdate(_)
                | Request::NodeRemove { .. }
                | Request::JoinToken { rotate: true, .. }
                | Request::JoinCluster(_)
                | Request::ServiceCreate { .. }
                | Request::ServiceUpdate { .. }
                | Request::ServiceRollback { .. }
                | Request::ServiceScale { .. }
                | Request::ServiceRemove { .. }
                | Request::NetworkCreate { .. }
                | Request::NetworkRemove { .. }
        )
    }

    /// Is it served by the leader only (a follower forwards it)? Writes, and what only the
    /// leader holds: the counters the nodes report over their sessions.
    pub fn on_leader(&self) -> bool {
        self.is_write() || matches!(self, Request::MeshStats { .. })
    }

    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Init(_) => "swarm init",
            Request::Join(_) => "swarm join",
            Request::Leave { .. } => "swarm leave",
            Request::Info => "info",
            Request::NodeList => "node ls",
            Request::NodeInspect { .. } => "node inspect",
            Request::NodeUpdate(_) => "node update",
            Request::NodeRemove { .. } => "node rm",
            Request::JoinToken { .. } => "swarm join-token",
            Request::ServiceCreate { .. } => "service create",
            Request::ServiceList => "service ls",
            Request::ServiceInspect { .. } => "service inspect",
            Request::ServiceTasks { .. } => "service ps",
            Request::ServiceUpdate { .. } => "service update",
            Request::ServiceRollback { .. } => "service rollback",
            Request::ServiceScale { .. } => "service scale",
            Request::ServiceRemove { .. } => "service rm",
            Request::ServiceLogs(_) => "service logs",
            Request::NetworkCreate { .. } => "network create",
            Request::NetworkList => "network ls",
            Request::NetworkInspect { .. } => "network inspect",
            Request::NetworkRemove { .. } => "network rm",
            Request::MeshStats { .. } => "mesh stats",
            Request::JoinCluster(_) => "join",
            Request::RenewCert { .. } => "renew certificate",
            Request::Raft(_) => "raft",
            Request::Propose(_) => "propose",
            Request::ReadIndex => "read index",
            Request::AddManager { .. } => "add manager",
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InitRequest {
    /// The address other nodes reach this one at (default: meshd's `--advertise-addr`).
    pub advertise_addr: Option<Ipv4Addr>,
    /// Where to listen (default `0.0.0.0:2377`).
    pub listen_addr: Option<SocketAddr>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    pub token: String,
    /// A manager, `HOST:PORT`.
    pub remote: String,
    pub advertise_addr: Option<Ipv4Addr>,
    pub listen_addr: Option<SocketAddr>,
}

/// `node update` and `node promote|demote`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeUpdate {
    pub node: String,
    pub availability: Option<Availability>,
    pub role: Option<NodeRole>,
    pub label_add: Vec<(String, String)>,
    pub label_rm: Vec<String>,
}

/// What a joiner sends once it trusts the manager.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinClusterRequest {
    pub secret: String,
    pub csr_pem: String,
    pub description: NodeDescription,
    pub advertise_addr: Ipv4Addr,
    /// The port it will listen on if it becomes a manager.
    pub listen_port: u16,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinClusterReply {
    pub cluster_id: Id,
    pub node_id: Id,
    pub role: NodeRole,
    /// 0 for a worker.
    pub raft_id: NodeId,
    pub cert_pem: String,
    pub ca_pem: String,
    /// The managers' `IP:PORT`s.
    pub managers: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RaftRequest {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RaftReply {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
}

/// The answer to a [`Request`].
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    Init(InitReply),
    Joined {
        node_id: Id,
        role: NodeRole,
    },
    Left,
    Info(Info),
    Nodes(NodesReply),
    Node(NodeReply),
    /// A write that answers nothing more.
    Done,
    JoinToken(JoinTokenReply),
    ClusterJoined(JoinClusterReply),
    Cert {
        cert_pem: String,
        raft_id: NodeId,
    },
    Raft(RaftReply),
    Proposed {
        index: u64,
        result: Result<(), TxError>,
    },
    ReadIndex(ReadIndexReply),
    /// `service create`: the new service's id.
    ServiceCreated {
        id: Id,
    },
    Services(Vec<ServiceSummary>),
    Service(Box<Service>),
    ServiceTasks(ServiceTasksReply),
    /// `network create`: the new network's id.
    NetworkCreated {
        id: Id,
    },
    /// `network ls`, by name.
    Networks(Vec<Network>),
    /// `network inspect`.
    Network(Box<NetworkReply>),
    /// `mesh stats`: one row per service and node that reported.
    MeshStats(Vec<MeshStatsRow>),
}

/// One service's routing-mesh counters on one node (`mesh stats`): what that node's programs
/// translated (published-port flows arriving there, VIP flows of its tasks), both directions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshStatsRow {
    pub service_id: Id,
    pub service_name: String,
    /// `*:8080->80/tcp`, as `service ls` shows it.
    pub ports: String,
    pub node_id: Id,
    pub hostname: String,
    pub packets: u64,
    pub bytes: u64,
    /// Flows created.
    pub connections: u64,
    /// How long ago the node reported them.
    pub age_ms: u64,
}

/// `network inspect`: the network, and the address on it of the node that answered (the
/// gateway and DNS address its tasks use; every node has its own).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetworkReply {
    pub network: Network,
    pub gateway: Option<Ipv4Addr>,
}

/// A row of `service ls`: the service with its REPLICAS and PORTS columns as the state has them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServiceSummary {
    pub service: Service,
    /// `3/3`.
    pub replicas: String,
    /// `*:8080->80/tcp`.
    pub ports: String,
}

/// What `service ps` and the progress display need: the services, all their tasks, and every node
/// (for hostnames and states).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServiceTasksReply {
    pub services: Vec<Service>,
    pub tasks: Vec<Task>,
    pub nodes: Vec<Node>,
}

/// `service logs [--tail N] [--follow] [--timestamps] SERVICE|TASK`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LogsRequest {
    /// A service (id, name, prefix) or a task (id or prefix).
    pub target: String,
    /// The last N lines of each task; all when None.
    pub tail: Option<usize>,
    pub follow: bool,
    pub timestamps: bool,
    /// Full task ids in the prefix.
    pub no_trunc: bool,
}

/// One line of `service logs`, with Docker's context (`web.1.abc123def456@node1`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogRecord {
    /// `SERVICE.SLOT.TASKID@HOSTNAME`, padded as Docker pads it.
    pub context: String,
    pub stderr: bool,
    pub timestamp: Option<String>,
    pub text: String,
}

/// What a streaming request sends back, item by item (an `Err` ends the stream).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum StreamItem {
    Logs(Vec<LogRecord>),
    /// Something the user should know (a node that is not connected), printed on stderr.
    Warning(String),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InitReply {
    pub node_id: Id,
    pub worker_token: String,
    /// `IP:PORT` to join.
    pub manager_addr: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinTokenReply {
    pub role: NodeRole,
    pub token: String,
    pub manager_addr: String,
}

/// The node list; `manager_status.leader`/`reachability` are filled from raft as of the read.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodesReply {
    pub nodes: Vec<Node>,
    /// The node that answered (`*` in `node ls`).
    pub self_id: Id,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeReply {
    pub node: Node,
    pub self_id: Id,
    /// The cluster's root CA (for `inspect --pretty`'s TLS info).
    pub ca_pem: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadIndexReply {
    pub index: u64,
    pub leader: NodeId,
    /// The leader's view of each manager (by raft id): reached recently or not.
    pub reachable: BTreeMap<NodeId, bool>,
}

/// This node's place in the swarm (`Request::Info`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Info {
    /// None: not part of a swarm.
    pub node_id: Option<Id>,
    pub cluster_id: Option<Id>,
    pub role: Option<NodeRole>,
    pub node_addr: Option<Ipv4Addr>,
    /// The managers this node knows (`IP:PORT`).
    pub managers: Vec<String>,
    /// Managers only: the raft id and the current leader's address.
    pub raft_id: Option<NodeId>,
    pub leader_addr: Option<String>,
    /// Where this node's client certificates are (for `meshctl --host tcp://...`).
    pub cert_dir: String,
}

// ---------------------------------------------------------------------------------------------
// The session between a node's agent and the leader.

/// Agent to leader.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AgentMessage {
    /// Every second: the node is alive, and what it is.
    Heartbeat {
        description: NodeDescription,
        addr: Ipv4Addr,
    },
    /// Task states the node observed (oldest first). The leader writes them in batches, forward
    /// transitions only.
    TaskStatus { updates: Vec<TaskStatusUpdate> },
    /// Lines for the log stream `stream` the leader asked for ([`ManagerMessage::Logs`]).
    Logs {
        stream: u64,
        lines: Vec<AgentLogLine>,
    },
    /// The log stream is over on this node (with why, when it failed).
    LogsEnd { stream: u64, error: Option<String> },
    /// The node's routing-mesh counters, per service (sent when they changed, at most once per
    /// heartbeat).
    MeshStats { services: Vec<ServiceCounters> },
}

/// One service's routing-mesh counters on one node, summed over CPUs and both directions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceCounters {
    pub service_id: Id,
    pub packets: u64,
    pub bytes: u64,
    /// Flows created.
    pub connections: u64,
}

/// One task's new status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatusUpdate {
    pub task_id: Id,
    pub status: TaskStatus,
}

/// A line a task's container wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentLogLine {
    pub task_id: Id,
    pub stderr: bool,
    pub timestamp: Option<String>,
    pub text: String,
}

/// The work the leader gives a node: every task assigned to it (status `assigned` or later,
/// history included, until the orchestrator deletes it), each with its desired state and spec.
/// The agent runs those meant to run, stops those meant to stop, and removes the containers of
/// tasks that are no longer listed.
///
/// The first message of a session is `full` (it replaces what the agent holds); later ones carry
/// only what changed. Besides the tasks, it carries the view the node's networking needs
/// (networks, nodes with their addresses, services for the routing mesh and DNS).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Assignments {
    pub full: bool,
    /// New or changed tasks (all of them when `full`).
    pub tasks: Vec<AssignedTask>,
    /// Tasks no longer assigned to the node (deleted or gone elsewhere); empty when `full`.
    pub removed: Vec<Id>,
    /// Every allocated network of the cluster, when they changed since the last message (always
    /// in a full one); None: unchanged.
    #[serde(default)]
    pub networks: Option<Vec<Network>>,
    /// Every node with its underlay address and its own address on each network, when they
    /// changed since the last message (always in a full one); None: unchanged.
    #[serde(default)]
    pub nodes: Option<Vec<NodeNet>>,
    /// Every service as the routing mesh and DNS need it, when they changed since the last
    /// message (always in a full one); None: unchanged.
    #[serde(default)]
    pub services: Option<Vec<ServiceNet>>,
}

/// A service as every node's routing mesh and DNS server see it: its names, endpoint mode,
/// published ports and VIPs as allocated, the networks its tasks attach to, and how its tasks
/// are named. Which tasks are backends is not here: a task serves from the moment its node
/// plumbs it until it is unplumbed, as the node itself (local tasks) or gossip (remote ones)
/// says, so that the data plane never waits for the managers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceNet {
    pub id: Id,
    pub name: String,
    pub endpoint_mode: EndpointMode,
    /// The published ports as allocated (a port still being allocated has published 0).
    pub ports: Vec<PortConfig>,
    /// One VIP per network (`vip` mode only).
    pub vips: Vec<VirtualIp>,
    /// The networks its tasks attach to, in order (by id, with the service's aliases there),
    /// `ingress` last when it publishes ports.
    pub networks: Vec<NetworkAttachmentConfig>,
    /// Its tasks that have a node and have not ended, for their DNS names.
    pub tasks: Vec<ServiceTaskName>,
}

/// What a task's DNS name is made of (`web.2.<task id>`; a global task has its node id in
/// place of the slot).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceTaskName {
    pub id: Id,
    /// The replica's slot (1-based); 0 for a global service's task.
    pub slot: u64,
    pub node_id: Id,
}

/// A node as the networking of the other nodes sees it: where it is on the underlay (its VTEP
/// and gossip address) and its own address on each network (the gateway and DNS address of its
/// tasks there, reached across the overlay by replies).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeNet {
    pub id: Id,
    pub hostname: String,
    /// The advertised (underlay) address, once known.
    pub addr: Option<Ipv4Addr>,
    /// Network id to the node's address on it.
    pub attachments: BTreeMap<Id, Ipv4Addr>,
}

impl NodeNet {
    pub fn of(node: &Node) -> Self {
        Self {
            id: node.id.clone(),
            hostname: node.description.hostname.clone(),
            addr: node.status.addr,
            attachments: node.attachments.clone(),
        }
    }
}

/// A task as its node receives it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssignedTask {
    pub task: Task,
    /// For the container's name (`web.1.<task id>`).
    pub service_name: String,
}

/// The leader asks a node for the logs of some of its tasks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLogsRequest {
    pub stream: u64,
    pub tasks: Vec<Id>,
    pub tail: Option<usize>,
    pub follow: bool,
    pub timestamps: bool,
}

/// Leader to agent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ManagerMessage {
    /// After each heartbeat: the managers to fall back on, and the role the cluster gives the
    /// node (a change means promote or demote: the node renews its certificate).
    Status {
        managers: Vec<String>,
        role: NodeRole,
    },
    /// This manager is not the leader; try `leader`.
    NotLeader {
        leader: Option<String>,
        managers: Vec<String>,
    },
    /// The node was removed from the swarm (`node rm`).
    Removed,
    /// The node's tasks (see [`Assignments`]).
    Assignments(Assignments),
    /// Send the logs of these tasks as [`AgentMessage::Logs`], then [`AgentMessage::LogsEnd`].
    Logs(NodeLogsRequest),
    /// The client went away: stop sending stream `stream`.
    LogsCancel { stream: u64 },
}

// ---------------------------------------------------------------------------------------------
// Errors

/// What kind of failure; callers branch on it, users read the message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Code {
    InvalidArgument,
    NotFound,
    /// The request cannot be served in the current state (not in a swarm, already in one, ...).
    FailedPrecondition,
    PermissionDenied,
    /// No leader, a manager that does not answer, a timeout.
    Unavailable,
    /// This manager is not the leader (the leader's address when known).
    NotLeader(Option<String>),
    /// Optimistic concurrency: the state changed under the write.
    Conflict,
    /// The join token's secret is not one of this cluster.
    TokenInvalid,
    /// The join token was valid once and was rotated.
    TokenRotated,
    /// The manager's CA is not the one the token pins.
    CaMismatch,
    Internal,
}

/// An error as the daemon reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::new(Code::FailedPrecondition, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(Code::Unavailable, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(Code::PermissionDenied, message)
    }

    pub fn not_in_swarm() -> Self {
        Self::precondition(
            "This node is not part of a swarm. Use \"meshctl swarm init\" or \"meshctl swarm join\" to connect this node to swarm and try again.",
        )
    }
    pub fn already_in_swarm() -> Self {
        Self::precondition(
            "This node is already part of a swarm. Use \"meshctl swarm leave\" to leave this swarm and join another one.",
        )
    }
    pub fn not_manager() -> Self {
        Self::precondition(
            "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.",
        )
    }
    pub fn no_leader() -> Self {
        Self::unavailable(
            "The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online.",
        )
    }

    /// Retrying elsewhere or later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self.code, Code::Unavailable | Code::NotLeader(_))
    }
}

impl From<TxError> for ApiError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Conflict { .. } => Self::new(Code::Conflict, e.to_string()),
            TxError::Missing { .. } => Self::not_found(e.to_string()),
            TxError::NameTaken { .. } => Self::invalid(e.to_string()),
        }
    }
}
