//! The swarm's own requests: join tokens (and their rotation), a joiner's request with its token,
//! certificate renewals; and the cluster's first transaction, which `swarm init` proposes.

use std::collections::BTreeMap;

use mesh_api::{
    ApiError, Code, JoinClusterReply, JoinClusterRequest, JoinTokenReply, Reply, now_millis,
};
use mesh_cluster::Id;
use mesh_cluster::spec::limits::bound_description;
use mesh_cluster::state::{
    Availability, ClusterInfo, ClusterState, ManagerStatus, Meta, Node, NodeDescription, NodeRole,
    NodeSpec, NodeState, NodeStatus, Object, Op, Reachability, Tx, TxError,
};
use mesh_cluster::token::{self, JoinToken};
use mesh_cluster::unlock_key::UnlockKey;

use crate::ca;
use crate::datakey::DataKey;
use crate::manager::{Manager, ProposeError};

/// How many rotated secrets the cluster remembers (to say "rotated" rather than "wrong").
const RETIRED_KEPT: usize = 8;

fn secret() -> String {
    token::secret_from(rand::random())
}

/// The secrets of [`ClusterInfo`], opened with the data key.
pub(crate) struct ClusterSecrets {
    pub ca_key_pem: String,
    pub worker: String,
    pub manager: String,
    pub retired: Vec<String>,
}

impl ClusterSecrets {
    pub fn open(c: &ClusterInfo, key: &DataKey) -> Result<Self, ApiError> {
        Ok(Self {
            ca_key_pem: key.open_value(&c.root_ca_key_pem)?,
            worker: key.open_value(&c.worker_token_secret)?,
            manager: key.open_value(&c.manager_token_secret)?,
            retired: key.open_value(&c.retired_token_secrets)?,
        })
    }
}

/// The cluster's first transaction: the cluster (CA, token secrets, address pool), the first
/// manager's node, and the `ingress` network. Its CA key, token secrets and gossip keyring are
/// still in the clear: `swarm init` seals them ([`seal_bootstrap`]) before it proposes it.
pub fn bootstrap_tx(
    cluster_id: &Id,
    node_id: &Id,
    ca: &(String, String),
    description: NodeDescription,
    advertise: std::net::Ipv4Addr,
    port: u16,
) -> Tx {
    use mesh_cluster::state::{Network, NetworkSpec, Sealed};
    let cluster = ClusterInfo {
        id: cluster_id.clone(),
        meta: Meta::default(),
        root_ca_cert_pem: ca.0.clone(),
        root_ca_key_pem: Sealed::Clear(ca.1.clone()),
        worker_token_secret: Sealed::Clear(secret()),
        manager_token_secret: Sealed::Clear(secret()),
        default_pool: "10.0.0.0/8".parse().expect("a valid prefix"),
        subnet_len: 24,
        last_raft_id: 1,
        retired_token_secrets: Sealed::Clear(Vec::new()),
        gossip_keys: Sealed::Clear(
            mesh_cluster::gossip_keys::rotated(&[], now_millis(), rand::random(), true)
                .unwrap_or_default(),
        ),
        data_key_check: None,
        unlock_key: None,
    };
    let node = Node {
        id: node_id.clone(),
        meta: Meta::default(),
        spec: NodeSpec {
            role: NodeRole::Manager,
            availability: Availability::Active,
            labels: BTreeMap::new(),
        },
        description,
        status: NodeStatus {
            state: NodeState::Ready,
            message: String::new(),
            addr: Some(advertise),
        },
        manager_status: Some(ManagerStatus {
            raft_id: 1,
            addr: format!("{advertise}:{port}"),
            reachability: Reachability::Reachable,
            leader: true,
        }),
        attachments: BTreeMap::new(),
    };
    let subnet = "10.255.0.0/16".parse().expect("a valid prefix");
    let ingress = Network {
        id: Id::random(),
        meta: Meta::default(),
        spec: NetworkSpec {
            name: "ingress".into(),
            driver: "overlay".into(),
            subnet: Some(subnet),
            attachable: false,
            ingress: true,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
        },
        subnet,
        vni: 4096,
    };
    Tx {
        at: now_millis(),
        ops: vec![
            Op::Put(Object::Cluster(cluster)),
            Op::Put(Object::Node(node)),
            Op::Put(Object::Network(ingress)),
        ],
    }
}

/// [`bootstrap_tx`] as `swarm init` proposes it: the cluster's secrets sealed with the new data
/// key `key` (whose check value it records), and with `--autolock` the unlock key.
pub fn seal_bootstrap(mut tx: Tx, key: &DataKey, unlock: Option<&UnlockKey>) -> Tx {
    for op in &mut tx.ops {
        if let Op::Put(Object::Cluster(c)) = op {
            crate::sealing::seal_cluster(c, key);
            c.data_key_check = Some(key.check());
            c.unlock_key = unlock.map(|u| key.seal_value(&u.to_string()));
        }
    }
    tx
}

/// The swarm's own requests: join tokens, joins and certificates.
pub struct SwarmApi<'m> {
    pub(crate) m: &'m Manager,
}

impl SwarmApi<'_> {
    pub async fn join_token(&self, role: NodeRole, rotate: bool) -> Result<Reply, ApiError> {
        let key = self.m.data_key().await?;
        if rotate {
            self.m
                .with_retries(|s| rotate_token_tx(s, role, &key, &secret()).map(Some))
                .await?;
        }
        let state = if rotate {
            self.m.state()
        } else {
            self.m.read().await?.applied.state
        };
        let c = cluster(&state)?;
        let secrets = ClusterSecrets::open(c, &key)?;
        let secret = match role {
            NodeRole::Worker => &secrets.worker,
            NodeRole::Manager => &secrets.manager,
        };
        let ca = mesh_api::tls::pem_to_der(&c.root_ca_cert_pem)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(Reply::JoinToken(JoinTokenReply {
            role,
            token: JoinToken::new(&ca, secret).to_string(),
            manager_addr: self.m.addr().to_owned(),
        }))
    }

    /// A joiner with a token (on the leader): check the secret, record the node, sign its key.
    /// The secret is checked (in constant time) before the leader's write lock is taken, so that
    /// wrong guesses queue behind nothing, and again under it (a rotation may have come between).
    pub async fn join_cluster(&self, j: JoinClusterRequest) -> Result<Reply, ApiError> {
        let key = self.m.data_key().await?;
        join_role(
            &ClusterSecrets::open(cluster(&self.m.state())?, &key)?,
            &j.secret,
        )?;
        let description = bound_description(&j.description);
        let _g = self.m.inner.write_lock.lock().await;
        let mut attempts = 0;
        loop {
            let state = self.m.state();
            let c = cluster(&state)?;
            let secrets = ClusterSecrets::open(c, &key)?;
            let role = join_role(&secrets, &j.secret)?;
            let node_id = Id::random();
            let mut ops = Vec::new();
            let mut raft_id = 0;
            if role == NodeRole::Manager {
                let mut c = c.clone();
                c.last_raft_id += 1;
                raft_id = c.last_raft_id;
                ops.push(Op::Put(Object::Cluster(c)));
            }
            let cert_pem = ca::issue(
                &c.root_ca_cert_pem,
                &secrets.ca_key_pem,
                &j.csr_pem,
                &c.id,
                &node_id,
                role,
            )
            .map_err(|e| ApiError::invalid(format!("{e:#}")))?;
            ops.push(Op::Put(Object::Node(Node {
                id: node_id.clone(),
                meta: Meta::default(),
                spec: NodeSpec {
                    role,
                    availability: Availability::Active,
                    labels: BTreeMap::new(),
                },
                description: description.clone(),
                status: NodeStatus {
                    state: NodeState::Unknown,
                    message: String::new(),
                    addr: Some(j.advertise_addr),
                },
                manager_status: (role == NodeRole::Manager).then(|| ManagerStatus {
                    raft_id,
                    addr: format!("{}:{}", j.advertise_addr, j.listen_port),
                    reachability: Reachability::Unknown,
                    leader: false,
                }),
                attachments: BTreeMap::new(),
            })));
            match self
                .m
                .propose(Tx {
                    at: now_millis(),
                    ops,
                })
                .await
            {
                Ok(_) => {
                    tracing::info!(%node_id, ?role, addr = %j.advertise_addr, "node joined");
                    return Ok(Reply::ClusterJoined(JoinClusterReply {
                        cluster_id: c.id.clone(),
                        node_id,
                        role,
                        raft_id,
                        cert_pem,
                        ca_pem: c.root_ca_cert_pem.clone(),
                        managers: manager_addrs(&self.m.state()),
                    }));
                }
                Err(ProposeError::Tx(TxError::Conflict { .. })) if attempts < 5 => attempts += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The cluster with `role`'s token secret replaced by `new` (sealed with `key`), the old one
/// remembered as rotated.
fn rotate_token_tx(
    s: &ClusterState,
    role: NodeRole,
    key: &DataKey,
    new: &str,
) -> Result<Tx, ApiError> {
    let mut c = cluster(s)?.clone();
    let secrets = ClusterSecrets::open(&c, key)?;
    let (field, old) = match role {
        NodeRole::Worker => (&mut c.worker_token_secret, secrets.worker),
        NodeRole::Manager => (&mut c.manager_token_secret, secrets.manager),
    };
    *field = key.seal_value(&new.to_owned());
    let mut retired = secrets.retired;
    retired.push(old);
    let excess = retired.len().saturating_sub(RETIRED_KEPT);
    retired.drain(..excess);
    c.retired_token_secrets = key.seal_value(&retired);
    Ok(Tx {
        at: now_millis(),
        ops: vec![Op::Put(Object::Cluster(c))],
    })
}

/// The role a join secret admits to, compared in constant time against every secret the
/// cluster knows; a rotated or unknown secret is refused, each with its own message.
pub(crate) fn join_role(c: &ClusterSecrets, secret: &str) -> Result<NodeRole, ApiError> {
    let worker = token::secret_eq(secret, &c.worker);
    let manager = token::secret_eq(secret, &c.manager);
    let retired = c
        .retired
        .iter()
        .fold(false, |any, r| any | token::secret_eq(secret, r));
    if worker {
        Ok(NodeRole::Worker)
    } else if manager {
        Ok(NodeRole::Manager)
    } else if retired {
        Err(ApiError::new(
            Code::TokenRotated,
            "invalid join token: this token was rotated and no longer admits new nodes; get the current one with `meshctl swarm join-token worker` (or `manager`) on a manager",
        ))
    } else {
        Err(ApiError::new(
            Code::TokenInvalid,
            "invalid join token: its secret is not a join token of this swarm; check it, or get one with `meshctl swarm join-token worker` (or `manager`) on a manager",
        ))
    }
}

/// A node asks for a certificate for a new key: it gets the role the state gives it, signed
/// with the CA key (`ca_key_pem`, opened from the state with the data key).
pub(crate) fn renew_cert(
    state: &ClusterState,
    ca_key_pem: &str,
    node_id: &Id,
    csr_pem: &str,
) -> Result<Reply, ApiError> {
    let c = cluster(state)?;
    let node = state.nodes.get(node_id).ok_or_else(|| {
        ApiError::denied(format!(
            "node {node_id} is not part of this swarm (removed?)"
        ))
    })?;
    let cert_pem = ca::issue(
        &c.root_ca_cert_pem,
        ca_key_pem,
        csr_pem,
        &c.id,
        node_id,
        node.spec.role,
    )
    .map_err(|e| ApiError::invalid(format!("{e:#}")))?;
    let raft_id = match (&node.spec.role, &node.manager_status) {
        (NodeRole::Manager, Some(m)) => m.raft_id,
        _ => 0,
    };
    Ok(Reply::Cert { cert_pem, raft_id })
}

pub(crate) fn cluster(state: &ClusterState) -> Result<&ClusterInfo, ApiError> {
    state
        .cluster
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("the swarm is still being initialised"))
}

/// Every manager's `IP:PORT` in `state`.
pub fn manager_addrs(state: &ClusterState) -> Vec<String> {
    state
        .nodes
        .values()
        .filter(|n| n.spec.role == NodeRole::Manager)
        .filter_map(|n| n.manager_status.as_ref().map(|m| m.addr.clone()))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn bootstrapped(key: &DataKey, unlock: Option<&UnlockKey>) -> ClusterState {
        let tx = bootstrap_tx(
            &Id::from("c"),
            &Id::from("n1"),
            &("CA".into(), "-----BEGIN PRIVATE KEY-----KEY".into()),
            NodeDescription::default(),
            std::net::Ipv4Addr::LOCALHOST,
            2377,
        );
        let mut s = ClusterState::default();
        s.apply(&seal_bootstrap(tx, key, unlock), 1).unwrap();
        s
    }

    #[test]
    fn join_secrets_admit_their_role_only() {
        let key = DataKey::random();
        let s = bootstrapped(&key, None);
        let rotated = rotate_token_tx(&s, NodeRole::Worker, &key, "newsecret").unwrap();
        let before = ClusterSecrets::open(cluster(&s).unwrap(), &key).unwrap();
        let mut s2 = s.clone();
        s2.apply(&rotated, 2).unwrap();
        let c = ClusterSecrets::open(cluster(&s2).unwrap(), &key).unwrap();
        assert_eq!(c.worker, "newsecret");
        assert_eq!(c.manager, before.manager);
        assert_eq!(join_role(&c, "newsecret").unwrap(), NodeRole::Worker);
        assert_eq!(join_role(&c, &c.manager).unwrap(), NodeRole::Manager);
        assert_eq!(
            join_role(&c, &before.worker).unwrap_err().code,
            Code::TokenRotated
        );
        assert_eq!(join_role(&c, "nope").unwrap_err().code, Code::TokenInvalid);
        assert_eq!(join_role(&c, "").unwrap_err().code, Code::TokenInvalid);
    }

    #[test]
    fn the_first_transaction_holds_no_secret_in_the_clear() {
        let key = DataKey::random();
        let unlock = UnlockKey::from_bytes([5; 32]);
        let s = bootstrapped(&key, Some(&unlock));
        let c = cluster(&s).unwrap();
        let secrets = ClusterSecrets::open(c, &key).unwrap();
        assert_eq!(secrets.ca_key_pem, "-----BEGIN PRIVATE KEY-----KEY");
        assert!(secrets.retired.is_empty());
        assert_eq!(c.data_key_check.as_deref(), Some(key.check().as_str()));
        assert_eq!(
            crate::datakey::unlock_key_of(&s, &key).unwrap(),
            Some(unlock.clone())
        );
        let ring = key.open_value(&c.gossip_keys).unwrap();
        assert_eq!(ring.len(), 1, "a first gossip key");
        let json = serde_json::to_string(&s).unwrap();
        for clear in [
            "PRIVATE KEY",
            &secrets.worker,
            &secrets.manager,
            &unlock.to_string(),
            &ring[0].key_hex,
        ] {
            assert!(!json.contains(clear), "{clear} in {json}");
        }
        assert!(ClusterSecrets::open(c, &DataKey::random()).is_err());
    }
}
