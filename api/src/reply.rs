//! The replies to [`crate::Request`]s, and what they carry.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use mesh_cluster::Id;
use mesh_cluster::state::{Network, Node, NodeRole, REDACTED, Service, Task, TxError};
use serde::{Deserialize, Serialize};

use crate::raft::{RaftId, RaftPayload};

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
    Node(Box<NodeReply>),
    /// A write that answers nothing more.
    Done,
    JoinToken(JoinTokenReply),
    ClusterJoined(JoinClusterReply),
    Cert {
        /// The certificate (with the cross-signed new root during a CA rotation).
        cert_pem: String,
        raft_id: RaftId,
        /// The roots to trust from now on (both during a CA rotation); empty from an older
        /// manager.
        #[serde(default)]
        ca_pem: String,
    },
    Raft(RaftPayload),
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
    /// `swarm inspect`.
    Swarm(Box<SwarmInfo>),
    /// `swarm ca --admin-cert`: a client certificate, its key and the CA.
    AdminCert(AdminCertReply),
    /// `secret create` / `config create`: the new object's id.
    BlobCreated {
        id: Id,
    },
    /// `secret ls` / `config ls`, by name.
    Blobs(Vec<crate::blob::BlobInfo>),
    /// `secret inspect` / `config inspect`.
    Blob(Box<crate::blob::BlobInfo>),
    /// The cluster's data key (to another manager only).
    DataKey(crate::blob::BlobData),
    /// `swarm unlock-key`, `swarm update --autolock`: the unlock key, when there is one to show.
    UnlockKey(UnlockKeyReply),
    /// `mesh stats`: one row per service and node that reported.
    MeshStats(Vec<MeshStatsRow>),
    /// `status`: this node's parts.
    Status(Box<crate::status::NodeStatus>),
    /// A reply with something the user should know (docker's `Warnings`, such as an image not
    /// pinned to a digest); meshctl prints them on stderr.
    Warned {
        reply: Box<Reply>,
        warnings: Vec<String>,
    },
}

impl Reply {
    /// `self` with `warnings` (as it is when there are none).
    #[must_use]
    pub fn with_warnings(self, warnings: Vec<String>) -> Self {
        if warnings.is_empty() {
            self
        } else {
            Self::Warned {
                reply: Box::new(self),
                warnings,
            }
        }
    }

    /// The reply and its warnings (none for a plain reply).
    pub fn into_parts(self) -> (Self, Vec<String>) {
        match self {
            Self::Warned {
                reply,
                mut warnings,
            } => {
                let (reply, inner) = reply.into_parts();
                warnings.extend(inner);
                (reply, warnings)
            }
            other => (other, Vec::new()),
        }
    }
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

/// `swarm init`'s answer; its `Debug` prints the token as `<redacted>`.
#[derive(Clone, Serialize, Deserialize)]
pub struct InitReply {
    pub node_id: Id,
    pub worker_token: String,
    /// `IP:PORT` to join.
    pub manager_addr: String,
    /// `--autolock`: the unlock key (shown once).
    #[serde(default)]
    pub unlock_key: Option<String>,
}

/// An unlock key (`SWMKEY-1-...`); its `Debug` prints `<redacted>`.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct UnlockKeyReply {
    /// None: autolock was not turned on by this request (nothing to show).
    pub key: Option<String>,
}

impl fmt::Debug for UnlockKeyReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnlockKeyReply")
            .field("key", &self.key.as_ref().map(|_| REDACTED))
            .finish()
    }
}

/// The cluster's settings as `swarm inspect` shows them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SwarmInfo {
    pub id: Id,
    pub created_at: u64,
    pub updated_at: u64,
    pub version: u64,
    /// How long node certificates are valid (`--cert-expiry`).
    pub cert_expiry_ms: u64,
    /// The root CA certificate (PEM).
    pub root_ca_cert_pem: String,
    /// `swarm ca --rotate` is under way: nodes still to renew to the new root.
    #[serde(default)]
    pub root_rotation_pending: Option<usize>,
    /// How networks created without `--opt routing` cross between nodes (`swarm init
    /// --default-routing`).
    #[serde(default)]
    pub default_routing: mesh_cluster::net::Routing,
}

/// An admin client certificate (`swarm ca --admin-cert`); its `Debug` prints the key as
/// `<redacted>`.
#[derive(Clone, Serialize, Deserialize)]
pub struct AdminCertReply {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for AdminCertReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminCertReply")
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &REDACTED)
            .finish()
    }
}

/// `swarm join-token`'s answer; its `Debug` prints the token as `<redacted>`.
#[derive(Clone, Serialize, Deserialize)]
pub struct JoinTokenReply {
    pub role: NodeRole,
    pub token: String,
    pub manager_addr: String,
}

impl fmt::Debug for InitReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitReply")
            .field("node_id", &self.node_id)
            .field("worker_token", &REDACTED)
            .field("manager_addr", &self.manager_addr)
            .field("unlock_key", &self.unlock_key.as_ref().map(|_| REDACTED))
            .finish()
    }
}

impl fmt::Debug for JoinTokenReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinTokenReply")
            .field("role", &self.role)
            .field("token", &REDACTED)
            .field("manager_addr", &self.manager_addr)
            .finish()
    }
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
    pub leader: RaftId,
    /// The leader's view of each manager (by raft id): reached recently or not.
    pub reachable: BTreeMap<RaftId, bool>,
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
    pub raft_id: Option<RaftId>,
    pub leader_addr: Option<String>,
    /// Where this node's client certificates are (for `meshctl --host tcp://...`).
    pub cert_dir: String,
    /// An autolocked manager that restarted and waits for `swarm unlock` (Swarm: `locked`).
    #[serde(default)]
    pub locked: bool,
    /// Managers only: how long node certificates are valid (Docker's `CA Configuration:
    /// Expiry Duration`).
    #[serde(default)]
    pub cert_expiry_ms: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinClusterReply {
    pub cluster_id: Id,
    pub node_id: Id,
    pub role: NodeRole,
    /// 0 for a worker.
    pub raft_id: RaftId,
    pub cert_pem: String,
    pub ca_pem: String,
    /// The managers' `IP:PORT`s.
    pub managers: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_ride_along_and_come_off() {
        let (reply, warnings) = Reply::Done.with_warnings(Vec::new()).into_parts();
        assert!(matches!(reply, Reply::Done) && warnings.is_empty());
        let warned = Reply::ServiceCreated { id: Id::from("s1") }.with_warnings(vec!["w".into()]);
        assert!(matches!(warned, Reply::Warned { .. }));
        let (reply, warnings) = warned.into_parts();
        assert!(matches!(reply, Reply::ServiceCreated { .. }));
        assert_eq!(warnings, ["w"]);
    }
}
