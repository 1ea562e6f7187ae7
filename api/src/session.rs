//! The session between a node's agent and the leader: [`AgentMessage`]s up,
//! [`ManagerMessage`]s down.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use mesh_cluster::Id;
use mesh_cluster::gossip_keys::GossipKeyEntry;
use mesh_cluster::state::{
    EndpointMode, Network, NetworkAttachmentConfig, Node, NodeDescription, NodeRole, PortConfig,
    Task, TaskStatus, VirtualIp,
};
use serde::{Deserialize, Serialize};

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
    /// The cluster's gossip keyring when it changed (always in a full message); None: unchanged.
    #[serde(default)]
    pub gossip_keys: Option<Vec<GossipKeyEntry>>,
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
    /// The service's registry login (`--with-registry-auth`), for pulling the task's image.
    /// Only the node the task is assigned to receives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_auth: Option<mesh_cluster::state::RegistryAuth>,
    /// The task's secrets and configs with their data: only to the node that runs the task,
    /// only while it is meant to run, over the session's mTLS.
    #[serde(default)]
    pub files: Vec<TaskFile>,
}

/// One secret or config as a task's node needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFile {
    pub kind: crate::blob::BlobKind,
    pub reference: mesh_cluster::state::FileReference,
    /// Sealed with the cluster's data key in the leader's view; in the clear once the leader
    /// sends it. `Debug` prints its length only.
    pub data: crate::blob::BlobData,
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
        /// The digest of the roots the swarm trusts (`tls::bundle_digest`): a node whose own
        /// differ renews its certificate (a CA rotation). Empty from an older leader.
        #[serde(default)]
        ca_digest: String,
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
