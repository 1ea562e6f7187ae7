//! The requests every meshd serves, and how each is served ([`Request::route`]).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};

use mesh_cluster::state::{
    Availability, NetworkSpec, NodeDescription, NodeRole, REDACTED, RegistryAuth, ServiceSpec, Tx,
};
use serde::{Deserialize, Serialize};

use crate::blob::{BlobCreate, BlobKind};
use crate::raft::{RaftId, RaftPayload};

/// The port managers listen on, as Swarm's.
pub const MANAGER_PORT: u16 = 2377;

/// How `service create` / `update` treat the service's image, as docker's do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageOptions {
    /// Resolve `NAME:TAG` to `NAME:TAG@DIGEST` through the node's engine (create: unless
    /// `--no-resolve-image`; update: when `--image` is given). The node that receives the
    /// request on its local socket does it.
    pub resolve: bool,
    /// `--with-registry-auth`: the client's login for the image's registry, stored with the
    /// service (outside its spec) and handed to the nodes that pull it. `None` on an update
    /// keeps what the service has.
    pub registry_auth: Option<RegistryAuth>,
}

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
    /// `meshctl status`: this node's own parts ([`crate::status::NodeStatus`]).
    Status,
    /// `swarm unlock`: the unlock key for this locked manager.
    Unlock(UnlockRequest),

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
    /// `swarm update --autolock=true|false`.
    SwarmAutolock {
        enabled: bool,
    },
    /// `swarm unlock-key [--rotate]`.
    UnlockKey {
        rotate: bool,
    },
    /// `service create`: the whole spec, networks named by name or id.
    ServiceCreate {
        spec: ServiceSpec,
        /// Digest pinning and registry login (docker's `--no-resolve-image`,
        /// `--with-registry-auth`).
        #[serde(default)]
        image: ImageOptions,
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
        #[serde(default)]
        image: ImageOptions,
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
    /// `swarm inspect`: the cluster's settings (certificate expiry, root CA).
    SwarmInspect,
    /// `swarm update`: the settings given change, the rest stay.
    SwarmUpdate(SwarmUpdate),
    /// `swarm ca --rotate`: a new root CA, cross-signed by the current one; every node renews
    /// to it, then it replaces the current one.
    CaRotate,
    /// `swarm ca --admin-cert DIR` (a manager's local socket only): a new admin client
    /// certificate and its key, valid for `expiry_ms` (default: the cluster's expiry).
    AdminCert {
        expiry_ms: Option<u64>,
    },
    /// `secret create` / `config create`.
    BlobCreate(BlobCreate),
    /// `secret ls` / `config ls`.
    BlobList {
        kind: BlobKind,
    },
    /// `secret inspect` / `config inspect`: by id, name or unique id prefix.
    BlobInspect {
        kind: BlobKind,
        name: String,
    },
    /// `secret rm` / `config rm`: by id, name or unique id prefix.
    BlobRemove {
        kind: BlobKind,
        name: String,
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
    Raft(RaftPayload),
    /// Propose a transaction on the leader (a follower's `Manager::propose`).
    Propose(Tx),
    /// The leader's read index, for a linearizable read on a follower.
    ReadIndex,
    /// A manager that has started raft asks the leader to add it as a voter.
    /// The cluster's data key, which seals secrets and configs in raft: a manager that has none
    /// on disk (it joined, was promoted or lost the file) asks another manager for it.
    DataKey,
    AddManager {
        raft_id: RaftId,
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

/// How a request is served, said once for each request ([`Request::route`]): its name in logs
/// and errors, who may send it, whether it changes the cluster state, and whether only the
/// leader can serve it (a follower forwards it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub name: &'static str,
    pub access: Access,
    /// Changes the cluster state (and so runs on the leader).
    pub writes: bool,
    /// Served by the leader only: writes, and what only the leader holds (the counters the
    /// nodes report over their sessions).
    pub on_leader: bool,
}

const fn route(name: &'static str, access: Access, writes: bool, on_leader: bool) -> Route {
    Route {
        name,
        access,
        writes,
        on_leader,
    }
}

/// A request that reads.
const fn read(name: &'static str, access: Access) -> Route {
    route(name, access, false, false)
}

/// A request that writes the cluster state (on the leader).
const fn write(name: &'static str) -> Route {
    route(name, Access::Api, true, true)
}

/// `secret create`, `config ls`, ...: the route's name for a blob request.
const fn blob_name(kind: BlobKind, verb: &str) -> &'static str {
    match (kind, verb.as_bytes()) {
        (BlobKind::Secret, b"create") => "secret create",
        (BlobKind::Secret, b"ls") => "secret ls",
        (BlobKind::Secret, b"inspect") => "secret inspect",
        (BlobKind::Secret, _) => "secret rm",
        (BlobKind::Config, b"create") => "config create",
        (BlobKind::Config, b"ls") => "config ls",
        (BlobKind::Config, b"inspect") => "config inspect",
        (BlobKind::Config, _) => "config rm",
    }
}

impl Request {
    /// The one table of how each request is served.
    pub fn route(&self) -> Route {
        use Access::{Anyone, Api, Local, Manager, Node};
        match self {
            Request::Init(_) => read("swarm init", Local),
            Request::Join(_) => read("swarm join", Local),
            Request::Leave { .. } => read("swarm leave", Local),
            Request::Info => read("info", Local),
            Request::Status => read("status", Local),
            Request::Unlock(_) => read("swarm unlock", Local),
            Request::NodeList => read("node ls", Api),
            Request::NodeInspect { .. } => read("node inspect", Api),
            Request::NodeUpdate(_) => write("node update"),
            Request::NodeRemove { .. } => write("node rm"),
            Request::JoinToken { rotate, .. } => route("swarm join-token", Api, *rotate, *rotate),
            Request::SwarmAutolock { .. } => write("swarm update --autolock"),
            Request::UnlockKey { rotate } => route("swarm unlock-key", Api, *rotate, *rotate),
            Request::ServiceCreate { .. } => write("service create"),
            Request::ServiceList => read("service ls", Api),
            Request::ServiceInspect { .. } => read("service inspect", Api),
            Request::ServiceTasks { .. } => read("service ps", Api),
            Request::ServiceUpdate { .. } => write("service update"),
            Request::ServiceRollback { .. } => write("service rollback"),
            Request::ServiceScale { .. } => write("service scale"),
            Request::ServiceRemove { .. } => write("service rm"),
            Request::ServiceLogs(_) => read("service logs", Api),
            Request::NetworkCreate { .. } => write("network create"),
            Request::NetworkList => read("network ls", Api),
            Request::NetworkInspect { .. } => read("network inspect", Api),
            Request::NetworkRemove { .. } => write("network rm"),
            Request::SwarmInspect => read("swarm inspect", Api),
            Request::SwarmUpdate(_) => write("swarm update"),
            Request::CaRotate => write("swarm ca --rotate"),
            Request::AdminCert { .. } => read("swarm ca --admin-cert", Local),
            Request::BlobCreate(c) => write(blob_name(c.kind, "create")),
            Request::BlobList { kind } => read(blob_name(*kind, "ls"), Api),
            Request::BlobInspect { kind, .. } => read(blob_name(*kind, "inspect"), Api),
            Request::BlobRemove { kind, .. } => write(blob_name(*kind, "rm")),
            Request::MeshStats { .. } => route("mesh stats", Api, false, true),
            Request::JoinCluster(_) => route("join", Anyone, true, true),
            // Any manager signs, after a linearizable read of the caller's role.
            Request::RenewCert { .. } => read("renew certificate", Node),
            Request::Raft(_) => read("raft", Manager),
            Request::Propose(_) => read("propose", Manager),
            Request::ReadIndex => read("read index", Manager),
            Request::AddManager { .. } => read("add manager", Manager),
            Request::DataKey => read("data key", Manager),
        }
    }

    pub fn access(&self) -> Access {
        self.route().access
    }

    /// Is it served by the leader only (a follower forwards it)?
    pub fn on_leader(&self) -> bool {
        self.route().on_leader
    }

    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        self.route().name
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InitRequest {
    /// The address other nodes reach this one at (default: meshd's `--advertise-addr`).
    pub advertise_addr: Option<Ipv4Addr>,
    /// Where to listen (default `0.0.0.0:2377`).
    pub listen_addr: Option<SocketAddr>,
    /// `--autolock`: managers keep the data key wrapped with an unlock key.
    #[serde(default)]
    pub autolock: bool,
    /// `--cert-expiry`: how long node certificates are valid (default Swarm's 90 days).
    #[serde(default)]
    pub cert_expiry_ms: Option<u64>,
    /// `--default-routing`: the routing of `ingress` and of networks created without
    /// `--opt routing` (default VXLAN).
    #[serde(default)]
    pub default_routing: Option<mesh_cluster::net::Routing>,
}

/// `swarm unlock`; its `Debug` prints the key as `<redacted>`.
#[derive(Clone, Serialize, Deserialize)]
pub struct UnlockRequest {
    /// As the user typed it (`SWMKEY-1-...`).
    pub key: String,
}

impl fmt::Debug for UnlockRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnlockRequest")
            .field("key", &REDACTED)
            .finish()
    }
}

/// `swarm update`: each `Some` changes that setting.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SwarmUpdate {
    /// `--cert-expiry`: certificates issued from now on are valid this long.
    pub cert_expiry_ms: Option<u64>,
}

/// `swarm join`; its `Debug` prints the token as `<redacted>`.
#[derive(Clone, Serialize, Deserialize)]
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

/// What a joiner sends once it trusts the manager; its `Debug` prints the secret as
/// `<redacted>`.
#[derive(Clone, Serialize, Deserialize)]
pub struct JoinClusterRequest {
    pub secret: String,
    pub csr_pem: String,
    pub description: NodeDescription,
    pub advertise_addr: Ipv4Addr,
    /// The port it will listen on if it becomes a manager.
    pub listen_port: u16,
}

impl fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinRequest")
            .field("token", &REDACTED)
            .field("remote", &self.remote)
            .field("advertise_addr", &self.advertise_addr)
            .field("listen_addr", &self.listen_addr)
            .finish()
    }
}

impl fmt::Debug for JoinClusterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinClusterRequest")
            .field("secret", &REDACTED)
            .field("csr_pem", &self.csr_pem)
            .field("description", &self.description)
            .field("advertise_addr", &self.advertise_addr)
            .field("listen_port", &self.listen_port)
            .finish()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::{InitReply, JoinTokenReply, Reply};

    #[test]
    fn debug_never_prints_a_secret() {
        let token = "MSHTKN-1-digest-topsecretvalue";
        let join = Request::Join(JoinRequest {
            token: token.into(),
            remote: "198.18.0.11:2377".into(),
            advertise_addr: None,
            listen_addr: None,
        });
        let cluster = Request::JoinCluster(JoinClusterRequest {
            secret: "topsecretvalue".into(),
            csr_pem: "CSR".into(),
            description: NodeDescription::default(),
            advertise_addr: Ipv4Addr::LOCALHOST,
            listen_port: MANAGER_PORT,
        });
        let init = Reply::Init(InitReply {
            node_id: "n1".into(),
            worker_token: token.into(),
            manager_addr: "a".into(),
            unlock_key: Some("SWMKEY-1-topsecretvalue".into()),
        });
        let unlock = Request::Unlock(UnlockRequest {
            key: "SWMKEY-1-topsecretvalue".into(),
        });
        let key = Reply::UnlockKey(crate::reply::UnlockKeyReply {
            key: Some("SWMKEY-1-topsecretvalue".into()),
        });
        let jt = Reply::JoinToken(JoinTokenReply {
            role: NodeRole::Manager,
            token: token.into(),
            manager_addr: "a".into(),
        });
        for text in [
            format!("{join:?}"),
            format!("{cluster:#?}"),
            format!("{init:?}"),
            format!("{jt:?}"),
            format!("{unlock:?}"),
            format!("{key:?}"),
        ] {
            assert!(!text.contains("topsecretvalue"), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
        }
    }
}
