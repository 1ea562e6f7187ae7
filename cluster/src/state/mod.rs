//! The cluster's objects, as swarmkit has them: nodes, networks, services, tasks, secrets,
//! configs and the cluster itself. [`ClusterState`] is the single source of truth that raft
//! replicates; it changes only by [`Tx`]s, applied atomically with optimistic version checks, so
//! that control loops can compute changes from a snapshot and propose them safely.
//!
//! One file per concern: `addr` (IPv4 prefixes), the objects (`node`, `network`,
//! `service`, `task`, `blob` for secrets and configs), `sealed` (a secret value as raft keeps
//! it), `tx` (objects as transactions carry them, changes, refusals) and `store` (the state and
//! how a transaction applies).
//! Every type is re-exported here: `mesh_cluster::state::X` is the path to use.

mod addr;
mod blob;
mod network;
mod node;
mod registry_auth;
mod sealed;
mod service;
mod store;
mod task;
mod tx;

use serde::{Deserialize, Serialize};

use crate::ids::Id;

pub use addr::Ipv4Cidr;
pub use blob::Blob;
pub use network::{Network, NetworkSpec};
pub use node::{
    Availability, ManagerStatus, Node, NodeDescription, NodeRole, NodeSpec, NodeState, NodeStatus,
    Reachability, Resources,
};
pub use registry_auth::RegistryAuth;
pub use sealed::Sealed;
pub use service::{
    ContainerSpec, Endpoint, EndpointMode, EndpointSpec, FailureAction, FileReference,
    HealthConfig, Mount, MountKind, NetworkAttachmentConfig, Placement, PortConfig, Protocol,
    PublishMode, ResourceRequirements, RestartCondition, RestartPolicy, Service, ServiceMode,
    ServiceSpec, SpreadPreference, TaskSpec, UpdateConfig, UpdateOrder, UpdateState, UpdateStatus,
    VirtualIp,
};
pub use store::ClusterState;
pub use task::{Task, TaskNetwork, TaskState, TaskStatus};
pub use tx::{Kind, Object, Op, Tx, TxError};

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

/// Cluster-wide settings and secrets, one per cluster. Its `Debug` prints the CA key and the
/// token secrets as `<redacted>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub id: Id,
    pub meta: Meta,
    /// The root CA (PEM). Every manager can issue node certificates with it.
    pub root_ca_cert_pem: String,
    /// The CA's private key (PEM), sealed with the data key.
    pub root_ca_key_pem: Sealed<String>,
    /// The secret halves of the join tokens, sealed with the data key; rotation replaces them.
    pub worker_token_secret: Sealed<String>,
    pub manager_token_secret: Sealed<String>,
    /// Default address pool for overlay networks, cut into `/subnet_len` networks.
    pub default_pool: Ipv4Cidr,
    pub subnet_len: u8,
    /// The last raft node id handed out (ids are never reused, so a removed manager that comes
    /// back cannot be mistaken for a new one).
    #[serde(default)]
    pub last_raft_id: u64,
    /// How long the CA signs node certificates for (`--cert-expiry`, Swarm's 90 days).
    #[serde(default = "crate::certs::default_cert_expiry_ms")]
    pub cert_expiry_ms: u64,
    /// A root CA rotation under way (`swarm ca --rotate`); None otherwise.
    #[serde(default)]
    pub ca_rotation: Option<CaRotation>,
    /// Token secrets replaced by rotation (newest last, a few kept), so that a joiner with an old
    /// token is told it was rotated rather than that it is wrong.
    #[serde(default)]
    pub retired_token_secrets: Sealed<Vec<String>>,
    /// The gossip keyring, oldest first (the newest seals). Empty in a cluster made before
    /// gossip was sealed, until the leader makes the first key.
    /// Sealed with the data key.
    #[serde(default)]
    pub gossip_keys: Sealed<Vec<crate::gossip_keys::GossipKeyEntry>>,
    /// A check value of the data key that seals secrets and configs (never the key): a manager
    /// holding another key refuses to use it. None until the first manager made the key.
    #[serde(default)]
    pub data_key_check: Option<String>,
    /// Autolock (`swarm init --autolock`, `swarm update --autolock`): the unlock key, sealed
    /// with the data key, with which every manager wraps its copy of the data key on disk.
    /// None: autolock is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlock_key: Option<Sealed<String>>,
    /// `swarm init --default-routing`: the routing of `ingress` and of networks created without
    /// `--opt routing` (VXLAN in a cluster made before the option existed).
    #[serde(default)]
    pub default_routing: crate::net::Routing,
}

/// A root CA rotation (`swarm ca --rotate`, as Swarm's): the new root signs every certificate
/// from its start; a certificate comes with the new root cross-signed by the current one, so
/// that nodes that trust only the current root accept it. Once every node has renewed, the new
/// root replaces the current one. Its `Debug` prints the key as `<redacted>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRotation {
    pub new_cert_pem: String,
    /// Sealed with the data key, as the current root's.
    pub new_key_pem: Sealed<String>,
    /// The new root's certificate signed by the current root.
    pub cross_signed_pem: String,
    /// The nodes that have a certificate of the new root.
    pub renewed: std::collections::BTreeSet<Id>,
}

impl std::fmt::Debug for CaRotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaRotation")
            .field("new_cert_pem", &self.new_cert_pem)
            .field("new_key_pem", &REDACTED)
            .field("renewed", &self.renewed)
            .finish_non_exhaustive()
    }
}

/// What `Debug` prints in place of a secret.
pub const REDACTED: &str = "<redacted>";

impl std::fmt::Debug for ClusterInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterInfo")
            .field("id", &self.id)
            .field("meta", &self.meta)
            .field("root_ca_cert_pem", &self.root_ca_cert_pem)
            .field("root_ca_key_pem", &self.root_ca_key_pem)
            .field("worker_token_secret", &self.worker_token_secret)
            .field("manager_token_secret", &self.manager_token_secret)
            .field("default_pool", &self.default_pool)
            .field("subnet_len", &self.subnet_len)
            .field("last_raft_id", &self.last_raft_id)
            .field("cert_expiry_ms", &self.cert_expiry_ms)
            .field("ca_rotation", &self.ca_rotation)
            .field("retired_token_secrets", &self.retired_token_secrets)
            .field("gossip_keys", &self.gossip_keys)
            .field("data_key_check", &self.data_key_check)
            .field("unlock_key", &self.unlock_key)
            .field("default_routing", &self.default_routing)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_info_debug_hides_its_secrets() {
        let c = ClusterInfo {
            id: Id::from("c1".to_owned()),
            meta: Meta::default(),
            root_ca_cert_pem: "CERT".into(),
            root_ca_key_pem: Sealed::Clear("-----BEGIN PRIVATE KEY-----SECRETKEY".into()),
            worker_token_secret: Sealed::Clear("workersecret".into()),
            manager_token_secret: Sealed::Clear("managersecret".into()),
            default_pool: "10.0.0.0/8".parse().unwrap(),
            subnet_len: 24,
            last_raft_id: 3,
            cert_expiry_ms: crate::certs::DEFAULT_CERT_EXPIRY_MS,
            ca_rotation: None,
            retired_token_secrets: Sealed::Clear(vec!["oldsecret".into()]),
            gossip_keys: Sealed::Clear(vec![crate::gossip_keys::GossipKeyEntry::new(
                1, [0xcd; 32], 0,
            )]),
            data_key_check: None,
            unlock_key: Some(Sealed::Clear("SWMKEY-1-letmein".into())),
            default_routing: crate::net::Routing::Vxlan,
        };
        let text = format!("{c:?} {c:#?}");
        assert!(!text.contains("cdcd"), "{text}");
        for secret in [
            "SECRETKEY",
            "workersecret",
            "managersecret",
            "oldsecret",
            "letmein",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(
            text.contains("<redacted>") && text.contains("CERT"),
            "{text}"
        );
    }
}
