//! The swarm's own requests: join tokens (and their rotation), a joiner's request with its token,
//! certificate renewals, `swarm inspect` / `update` (the certificate expiry); and the cluster's
//! first transaction, which `swarm init` proposes.

use std::collections::BTreeMap;

use mesh_api::{
    ApiError, Code, JoinClusterReply, JoinClusterRequest, JoinTokenReply, Reply, SwarmInfo,
    SwarmUpdate, now_millis,
};
use mesh_cluster::Id;
use mesh_cluster::spec::limits::bound_description;
use mesh_cluster::state::{
    Availability, ClusterInfo, ClusterState, ManagerStatus, Meta, Node, NodeDescription, NodeRole,
    NodeSpec, NodeState, NodeStatus, Object, Op, Reachability, Sealed, Tx, TxError,
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
pub struct ClusterSecrets {
    pub ca_key_pem: String,
    pub worker: String,
    pub manager: String,
    pub retired: Vec<String>,
    /// The new root's key while a CA rotation is under way.
    pub rotation_key_pem: Option<String>,
}

impl ClusterSecrets {
    pub fn open(c: &ClusterInfo, key: &DataKey) -> Result<Self, ApiError> {
        Ok(Self {
            ca_key_pem: key.open_value(&c.root_ca_key_pem)?,
            worker: key.open_value(&c.worker_token_secret)?,
            manager: key.open_value(&c.manager_token_secret)?,
            retired: key.open_value(&c.retired_token_secrets)?,
            rotation_key_pem: match &c.ca_rotation {
                Some(r) => Some(key.open_value(&r.new_key_pem)?),
                None => None,
            },
        })
    }
}

/// The cluster's first transaction: the cluster (CA, token secrets, address pool, certificate
/// expiry), the first
/// manager's node, and the `ingress` network. Its CA key, token secrets and gossip keyring are
/// still in the clear: `swarm init` seals them ([`seal_bootstrap`]) before it proposes it.
pub fn bootstrap_tx(
    cluster_id: &Id,
    node_id: &Id,
    ca: &(String, String),
    description: NodeDescription,
    advertise: std::net::Ipv4Addr,
    port: u16,
    cert_expiry_ms: u64,
) -> Tx {
    use mesh_cluster::state::{Network, NetworkSpec};
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
        cert_expiry_ms,
        ca_rotation: None,
        retired_token_secrets: Sealed::Clear(Vec::new()),
        gossip_keys: Sealed::Clear(
            mesh_cluster::gossip_keys::rotated(&[], now_millis(), rand::random(), true)
                .unwrap_or_default(),
        ),
        data_key_check: None,
        unlock_key: None,
        default_routing: mesh_cluster::net::Routing::Vxlan,
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

/// [`bootstrap_tx`] with `swarm init --default-routing`: the cluster's default, and the routing
/// of `ingress` (stored on it as on any network).
pub fn with_default_routing(mut tx: Tx, routing: mesh_cluster::net::Routing) -> Tx {
    for op in &mut tx.ops {
        match op {
            Op::Put(Object::Cluster(c)) => c.default_routing = routing,
            Op::Put(Object::Network(n)) if n.spec.ingress => {
                n.spec.options.insert(
                    mesh_cluster::net::ROUTING_OPTION.to_owned(),
                    routing.as_str().to_owned(),
                );
            }
            _ => {}
        }
    }
    tx
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
            let cert_pem = issued_chain(
                c,
                ca::issue(
                    &ca_keys(c, &secrets),
                    &j.csr_pem,
                    &c.id,
                    &node_id,
                    role,
                    c.cert_expiry_ms,
                )
                .map_err(|e| ApiError::invalid(format!("{e:#}")))?,
            );
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
                        ca_pem: trust_bundle(c),
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
/// with the CA's key (`secrets`, opened from the state with the data key). (A manager renewing
/// its own certificate calls it on its own state.)
pub fn renew_cert(
    state: &ClusterState,
    secrets: &ClusterSecrets,
    node_id: &Id,
    csr_pem: &str,
) -> Result<Reply, ApiError> {
    let c = cluster(state)?;
    let node = state.nodes.get(node_id).ok_or_else(|| {
        ApiError::denied(format!(
            "node {node_id} is not part of this swarm (removed?)"
        ))
    })?;
    let cert_pem = issued_chain(
        c,
        ca::issue(
            &ca_keys(c, secrets),
            csr_pem,
            &c.id,
            node_id,
            node.spec.role,
            c.cert_expiry_ms,
        )
        .map_err(|e| ApiError::invalid(format!("{e:#}")))?,
    );
    let raft_id = match (&node.spec.role, &node.manager_status) {
        (NodeRole::Manager, Some(m)) => m.raft_id,
        _ => 0,
    };
    Ok(Reply::Cert {
        cert_pem,
        raft_id,
        ca_pem: trust_bundle(c),
    })
}

/// The current root CA (its key opened in `secrets`).
fn root_keys<'a>(c: &'a ClusterInfo, secrets: &'a ClusterSecrets) -> ca::CaKeys<'a> {
    ca::CaKeys {
        cert_pem: &c.root_ca_cert_pem,
        key_pem: &secrets.ca_key_pem,
    }
}

/// The CA that signs: the new root while a rotation is under way, else the current one.
pub fn ca_keys<'a>(c: &'a ClusterInfo, secrets: &'a ClusterSecrets) -> ca::CaKeys<'a> {
    match (&c.ca_rotation, &secrets.rotation_key_pem) {
        (Some(r), Some(key_pem)) => ca::CaKeys {
            cert_pem: &r.new_cert_pem,
            key_pem,
        },
        _ => root_keys(c, secrets),
    }
}

/// A certificate the CA signed, as its holder shows it: with the cross-signed new root during a
/// rotation (nodes that trust only the current root accept it through it).
pub fn issued_chain(c: &ClusterInfo, cert_pem: String) -> String {
    match &c.ca_rotation {
        Some(r) => format!("{}\n{}", cert_pem.trim_end(), r.cross_signed_pem),
        None => cert_pem,
    }
}

/// The roots a node trusts: both during a rotation (the current one first: the join tokens'
/// digest is its), else the current one.
pub fn trust_bundle(c: &ClusterInfo) -> String {
    match &c.ca_rotation {
        Some(r) => format!("{}\n{}", c.root_ca_cert_pem.trim_end(), r.new_cert_pem),
        None => c.root_ca_cert_pem.clone(),
    }
}

/// `swarm ca --rotate`: the rotation `rotated` (new root, its key, the new root cross-signed by
/// the current one) starts; refused while one is under way.
pub(crate) fn ca_rotate_tx(
    state: &ClusterState,
    rotated: (String, Sealed<String>, String),
) -> Result<Option<Tx>, ApiError> {
    let mut c = cluster(state)?.clone();
    if c.ca_rotation.is_some() {
        return Err(ApiError::precondition(
            "a root CA rotation is already under way: `meshctl swarm inspect` shows how many nodes have still to renew",
        ));
    }
    let (new_cert_pem, new_key_pem, cross_signed_pem) = rotated;
    c.ca_rotation = Some(mesh_cluster::state::CaRotation {
        new_cert_pem,
        new_key_pem,
        cross_signed_pem,
        renewed: std::collections::BTreeSet::new(),
    });
    Ok(Some(Tx {
        at: now_millis(),
        ops: vec![Op::Put(Object::Cluster(c))],
    }))
}

/// `swarm ca --rotate` on `state`: a new root, cross-signed by the current one (whose key
/// `key` opens); the new key sealed with `key` too.
pub(crate) fn ca_rotate_plan(state: &ClusterState, key: &DataKey) -> Result<Option<Tx>, ApiError> {
    let c = cluster(state)?;
    if c.ca_rotation.is_some() {
        return ca_rotate_tx(state, Default::default());
    }
    let secrets = ClusterSecrets::open(c, key)?;
    let (cert_pem, key_pem, cross_signed_pem) =
        ca::generate_rotated_ca(&c.id, &root_keys(c, &secrets))
            .map_err(|e| ApiError::internal(format!("making the new root CA: {e:#}")))?;
    ca_rotate_tx(
        state,
        (cert_pem, key.seal_value(&key_pem), cross_signed_pem),
    )
}

/// Node `node_id` holds a certificate of the new root: note it, and once every node of the
/// swarm does, the new root replaces the current one (the nodes then renew again, to drop the
/// old root). No transaction when there is no rotation, or nothing changes.
pub fn ca_renewed_tx(state: &ClusterState, node_id: &Id) -> Result<Option<Tx>, ApiError> {
    let mut c = cluster(state)?.clone();
    let Some(r) = c.ca_rotation.as_mut() else {
        return Ok(None);
    };
    let noted = r.renewed.insert(node_id.clone());
    let all = state.nodes.keys().all(|n| r.renewed.contains(n));
    // (Noted already, yet all renewed: the last one missing was removed meanwhile.)
    if !noted && !all {
        return Ok(None);
    }
    if all {
        let r = c.ca_rotation.take().expect("a rotation");
        c.root_ca_cert_pem = r.new_cert_pem;
        c.root_ca_key_pem = r.new_key_pem;
        tracing::info!("root CA rotation done: every node has a certificate of the new root");
    }
    Ok(Some(Tx {
        at: now_millis(),
        ops: vec![Op::Put(Object::Cluster(c))],
    }))
}

/// Nodes still to renew in the rotation under way.
pub fn rotation_pending(state: &ClusterState, c: &ClusterInfo) -> Option<usize> {
    c.ca_rotation.as_ref().map(|r| {
        state
            .nodes
            .keys()
            .filter(|n| !r.renewed.contains(*n))
            .count()
    })
}

/// `swarm inspect`: the cluster's settings.
pub(crate) fn swarm_info(state: &ClusterState) -> Result<Reply, ApiError> {
    let c = cluster(state)?;
    Ok(Reply::Swarm(Box::new(SwarmInfo {
        id: c.id.clone(),
        created_at: c.meta.created_at,
        updated_at: c.meta.updated_at,
        version: c.meta.version,
        cert_expiry_ms: c.cert_expiry_ms,
        root_ca_cert_pem: c.root_ca_cert_pem.clone(),
        root_rotation_pending: rotation_pending(state, c),
        default_routing: c.default_routing,
    })))
}

/// `swarm update`: the cluster with the settings `u` gives, checked first (a certificate
/// expiry under `min_cert_expiry_ms` is refused, and nothing changes). No transaction when
/// nothing changes.
pub(crate) fn swarm_update_tx(
    state: &ClusterState,
    u: &SwarmUpdate,
    min_cert_expiry_ms: u64,
) -> Result<Option<Tx>, ApiError> {
    let mut c = cluster(state)?.clone();
    if let Some(ms) = u.cert_expiry_ms {
        c.cert_expiry_ms = mesh_cluster::certs::check_cert_expiry(ms, min_cert_expiry_ms)
            .map_err(ApiError::invalid)?;
    }
    if Some(&c) == state.cluster.as_ref() {
        return Ok(None);
    }
    Ok(Some(Tx {
        at: now_millis(),
        ops: vec![Op::Put(Object::Cluster(c))],
    }))
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
            mesh_cluster::certs::DEFAULT_CERT_EXPIRY_MS,
        );
        let mut s = ClusterState::default();
        s.apply(&seal_bootstrap(tx, key, unlock), 1).unwrap();
        s
    }

    /// `--default-routing native` is the cluster's default and `ingress`'s routing.
    #[test]
    fn default_routing_reaches_the_cluster_and_ingress() {
        use mesh_cluster::net::{Routing, network_routing};
        let key = DataKey::random();
        let plain = bootstrapped(&key, None);
        assert_eq!(cluster(&plain).unwrap().default_routing, Routing::Vxlan);
        let tx = with_default_routing(
            bootstrap_tx(
                &Id::from("c"),
                &Id::from("n1"),
                &("CA".into(), "-----BEGIN PRIVATE KEY-----KEY".into()),
                NodeDescription::default(),
                std::net::Ipv4Addr::LOCALHOST,
                2377,
                mesh_cluster::certs::DEFAULT_CERT_EXPIRY_MS,
            ),
            Routing::Native,
        );
        let mut s = ClusterState::default();
        s.apply(&seal_bootstrap(tx, &key, None), 1).unwrap();
        assert_eq!(cluster(&s).unwrap().default_routing, Routing::Native);
        let ingress = s.networks.values().find(|n| n.spec.ingress).unwrap();
        assert_eq!(network_routing(ingress), Routing::Native);
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

    #[test]
    fn swarm_update_checks_the_expiry_before_changing_anything() {
        use mesh_cluster::certs::{DEFAULT_CERT_EXPIRY_MS, MIN_CERT_EXPIRY_MS};
        let mut s = ClusterState::default();
        let boot = bootstrap_tx(
            &Id::from("c"),
            &Id::from("n1"),
            &("CA".into(), "KEY".into()),
            NodeDescription::default(),
            std::net::Ipv4Addr::LOCALHOST,
            2377,
            DEFAULT_CERT_EXPIRY_MS,
        );
        s.apply(&boot, 1).unwrap();
        let update = |ms| SwarmUpdate {
            cert_expiry_ms: Some(ms),
        };
        let e = swarm_update_tx(&s, &update(60_000), MIN_CERT_EXPIRY_MS).unwrap_err();
        assert_eq!(e.code, Code::InvalidArgument);
        assert!(
            e.message
                .contains("minimum certificate expiry time is: 1h0m0s"),
            "{e}"
        );
        let tx = swarm_update_tx(&s, &update(7_200_000), MIN_CERT_EXPIRY_MS)
            .unwrap()
            .expect("a change");
        let Op::Put(Object::Cluster(c)) = &tx.ops[0] else {
            panic!("the cluster")
        };
        assert_eq!(c.cert_expiry_ms, 7_200_000);
        // The same value again, or nothing asked: no transaction.
        let same = update(DEFAULT_CERT_EXPIRY_MS);
        assert!(
            swarm_update_tx(&s, &same, MIN_CERT_EXPIRY_MS)
                .unwrap()
                .is_none()
        );
        assert!(
            swarm_update_tx(&s, &SwarmUpdate::default(), MIN_CERT_EXPIRY_MS)
                .unwrap()
                .is_none()
        );
        // A test's lower minimum.
        assert!(
            swarm_update_tx(&s, &update(60_000), 1_000)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_ca_rotation_ends_once_every_node_renewed() {
        let mut s = ClusterState::default();
        let boot = bootstrap_tx(
            &Id::from("c"),
            &Id::from("n1"),
            &("OLD".into(), "OLDKEY".into()),
            NodeDescription::default(),
            std::net::Ipv4Addr::LOCALHOST,
            2377,
            mesh_cluster::certs::DEFAULT_CERT_EXPIRY_MS,
        );
        s.apply(&boot, 1).unwrap();
        let mut n2 = s.nodes[&Id::from("n1")].clone();
        n2.id = Id::from("n2");
        n2.meta = Meta::default();
        n2.manager_status = None;
        s.apply(
            &Tx {
                at: 2,
                ops: vec![Op::Put(Object::Node(n2))],
            },
            2,
        )
        .unwrap();
        let rotated = (
            "NEW".to_owned(),
            Sealed::Clear("NEWKEY".to_owned()),
            "CROSS".to_owned(),
        );
        let tx = ca_rotate_tx(&s, rotated.clone()).unwrap().unwrap();
        s.apply(&tx, 3).unwrap();
        let c = cluster(&s).unwrap();
        let secrets = ClusterSecrets::open(c, &DataKey::random()).unwrap();
        assert_eq!(ca_keys(c, &secrets).key_pem, "NEWKEY", "the new root signs");
        assert_eq!(trust_bundle(c), "OLD\nNEW");
        assert_eq!(issued_chain(c, "LEAF\n".into()), "LEAF\nCROSS");
        assert_eq!(rotation_pending(&s, c), Some(2));
        let e = ca_rotate_tx(&s, rotated).unwrap_err();
        assert!(e.message.contains("already under way"), "{e}");
        // n1 renewed: counted once.
        let tx = ca_renewed_tx(&s, &Id::from("n1")).unwrap().unwrap();
        s.apply(&tx, 4).unwrap();
        assert!(ca_renewed_tx(&s, &Id::from("n1")).unwrap().is_none());
        assert_eq!(rotation_pending(&s, cluster(&s).unwrap()), Some(1));
        // Had n2 been removed, n1's next renewal would end the rotation.
        let mut without_n2 = s.clone();
        without_n2.nodes.remove(&Id::from("n2"));
        let tx = ca_renewed_tx(&without_n2, &Id::from("n1"))
            .unwrap()
            .unwrap();
        let Op::Put(Object::Cluster(c)) = &tx.ops[0] else {
            panic!("the cluster")
        };
        assert!(c.ca_rotation.is_none());
        // n2 too: the new root replaces the old one.
        let tx = ca_renewed_tx(&s, &Id::from("n2")).unwrap().unwrap();
        s.apply(&tx, 5).unwrap();
        let c = cluster(&s).unwrap();
        assert!(c.ca_rotation.is_none());
        assert_eq!(
            (c.root_ca_cert_pem.as_str(), &c.root_ca_key_pem),
            ("NEW", &Sealed::Clear("NEWKEY".to_owned()))
        );
        assert_eq!(trust_bundle(c), "NEW");
        assert_eq!(issued_chain(c, "LEAF".into()), "LEAF");
        assert!(ca_renewed_tx(&s, &Id::from("n1")).unwrap().is_none());
    }
}
