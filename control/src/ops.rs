//! The cluster API as a manager serves it: nodes, join tokens, joins and certificates (services
//! are in [`crate::services`]).
//!
//! Reads are linearizable views of the local state ([`Manager::read`]); writes run on the leader
//! (a follower forwards the whole request), as read-modify-write under the leader's write lock,
//! retried when a control loop's write got in between.

use std::collections::BTreeMap;

use mesh_cluster::Id;
use mesh_cluster::state::{
    Availability, ClusterState, ManagerStatus, Meta, Node, NodeDescription, NodeRole, NodeSpec,
    NodeState, NodeStatus, Object, Op, Reachability, Tx, TxError,
};
use mesh_cluster::token::{self, JoinToken};

use crate::api::{
    ApiError, Code, JoinClusterReply, JoinClusterRequest, JoinTokenReply, MANAGER_PORT, NodeReply,
    NodeUpdate, NodesReply, Reply, Request,
};
use crate::manager::{Manager, ProposeError, ReadView, now_millis};
use crate::pki;
use crate::transport::Peer;

/// How many rotated secrets the cluster remembers (to say "rotated" rather than "wrong").
const RETIRED_KEPT: usize = 8;

/// Finds a node as Docker does: its full id, its hostname, or a unique id prefix.
pub fn find_node<'a>(state: &'a ClusterState, query: &str) -> Result<&'a Node, ApiError> {
    if let Some(n) = state.nodes.get(&Id::from(query)) {
        return Ok(n);
    }
    let by_name: Vec<&Node> = state
        .nodes
        .values()
        .filter(|n| n.description.hostname == query)
        .collect();
    let found: Vec<&Node> = if by_name.is_empty() {
        state
            .nodes
            .values()
            .filter(|n| n.id.matches_prefix(query))
            .collect()
    } else {
        by_name
    };
    match found.as_slice() {
        [n] => Ok(n),
        [] => Err(ApiError::not_found(format!("node {query} not found"))),
        many => Err(ApiError::invalid(format!(
            "node {query} is ambiguous ({} matches found)",
            many.len()
        ))),
    }
}

/// The nodes as the read saw them, with `manager_status.leader`/`reachability` filled in.
pub fn nodes_as_seen(view: &ReadView) -> Vec<Node> {
    view.applied
        .state
        .nodes
        .values()
        .map(|n| {
            let mut n = n.clone();
            if let Some(m) = &mut n.manager_status {
                m.leader = m.raft_id == view.leader;
                m.reachability = if m.leader || view.reachable.get(&m.raft_id) == Some(&true) {
                    Reachability::Reachable
                } else {
                    Reachability::Unreachable
                };
            }
            n
        })
        .collect()
}

fn secret() -> String {
    token::secret_from(rand::random())
}

/// The cluster's first transaction: the cluster (CA, token secrets, address pool), the first
/// manager's node, and the `ingress` network.
pub fn bootstrap_tx(
    cluster_id: &Id,
    node_id: &Id,
    ca: &(String, String),
    description: NodeDescription,
    advertise: std::net::Ipv4Addr,
    port: u16,
) -> Tx {
    use mesh_cluster::state::{ClusterInfo, Network, NetworkSpec};
    let cluster = ClusterInfo {
        id: cluster_id.clone(),
        meta: Meta::default(),
        root_ca_cert_pem: ca.0.clone(),
        root_ca_key_pem: ca.1.clone(),
        worker_token_secret: secret(),
        manager_token_secret: secret(),
        default_pool: "10.0.0.0/8".parse().expect("a valid prefix"),
        subnet_len: 24,
        last_raft_id: 1,
        retired_token_secrets: Vec::new(),
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

impl Manager {
    /// Serves a cluster API request (`Access::Api`, `Anyone`, `Node`): reads here, writes on
    /// the leader.
    pub async fn api(&self, peer: &Peer, req: Request) -> Result<Reply, ApiError> {
        if req.on_leader() && !self.is_leader() {
            let reply = self.forward(&req).await?;
            return Ok(match reply {
                // The join command names the manager the user asked.
                Reply::JoinToken(mut t) => {
                    self.addr().clone_into(&mut t.manager_addr);
                    Reply::JoinToken(t)
                }
                other => other,
            });
        }
        match req {
            Request::NodeList => {
                let view = self.read().await?;
                Ok(Reply::Nodes(NodesReply {
                    nodes: nodes_as_seen(&view),
                    self_id: self.node_id().clone(),
                }))
            }
            Request::NodeInspect { node } => {
                let view = self.read().await?;
                let id = find_node(&view.applied.state, &node)?.id.clone();
                let node = nodes_as_seen(&view)
                    .into_iter()
                    .find(|n| n.id == id)
                    .expect("found above");
                let ca_pem = view
                    .applied
                    .state
                    .cluster
                    .as_ref()
                    .map(|c| c.root_ca_cert_pem.clone())
                    .unwrap_or_default();
                Ok(Reply::Node(NodeReply {
                    node,
                    self_id: self.node_id().clone(),
                    ca_pem,
                }))
            }
            Request::JoinToken { role, rotate } => self.join_token(role, rotate).await,
            Request::NodeUpdate(u) => self.with_retries(|s| update_node(s, &u)).await,
            Request::NodeRemove { node, force } => {
                self.with_retries(|s| remove_node(s, &node, force)).await
            }
            Request::JoinCluster(j) => self.join_cluster(j).await,
            req @ (Request::ServiceCreate { .. }
            | Request::ServiceList
            | Request::ServiceInspect { .. }
            | Request::ServiceTasks { .. }
            | Request::ServiceUpdate { .. }
            | Request::ServiceRollback { .. }
            | Request::ServiceScale { .. }
            | Request::ServiceRemove { .. }) => self.service_api(req).await,
            req @ (Request::NetworkCreate { .. }
            | Request::NetworkList
            | Request::NetworkInspect { .. }
            | Request::NetworkRemove { .. }) => self.network_api(req).await,
            Request::MeshStats { services } => self.mesh_stats(&services).await,
            Request::RenewCert { csr_pem } => {
                let Peer::Node(id) = peer else {
                    return Err(ApiError::denied("renewing a certificate needs one"));
                };
                let view = self.read().await?;
                renew_cert(&view.applied.state, &id.node_id, &csr_pem)
            }
            other => Err(ApiError::internal(format!(
                "{} is not a cluster API request",
                other.name()
            ))),
        }
    }

    /// Runs `plan` on the current state and proposes its transaction, again if a concurrent
    /// write made it conflict.
    pub(crate) async fn with_retries(
        &self,
        plan: impl Fn(&ClusterState) -> Result<Option<Tx>, ApiError>,
    ) -> Result<Reply, ApiError> {
        let _g = self.inner.write_lock.lock().await;
        let mut attempts = 0;
        loop {
            let Some(tx) = plan(&self.state())? else {
                return Ok(Reply::Done);
            };
            match self.propose(tx).await {
                Ok(_) => return Ok(Reply::Done),
                Err(ProposeError::Tx(TxError::Conflict { .. })) if attempts < 5 => attempts += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn join_token(&self, role: NodeRole, rotate: bool) -> Result<Reply, ApiError> {
        if rotate {
            self.with_retries(|s| {
                let mut c = cluster(s)?.clone();
                let old = match role {
                    NodeRole::Worker => std::mem::replace(&mut c.worker_token_secret, secret()),
                    NodeRole::Manager => std::mem::replace(&mut c.manager_token_secret, secret()),
                };
                c.retired_token_secrets.push(old);
                let excess = c.retired_token_secrets.len().saturating_sub(RETIRED_KEPT);
                c.retired_token_secrets.drain(..excess);
                Ok(Some(Tx {
                    at: now_millis(),
                    ops: vec![Op::Put(Object::Cluster(c))],
                }))
            })
            .await?;
        }
        let state = if rotate {
            self.state()
        } else {
            self.read().await?.applied.state
        };
        let c = cluster(&state)?;
        let secret = match role {
            NodeRole::Worker => &c.worker_token_secret,
            NodeRole::Manager => &c.manager_token_secret,
        };
        let ca =
            pki::pem_to_der(&c.root_ca_cert_pem).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(Reply::JoinToken(JoinTokenReply {
            role,
            token: JoinToken::new(&ca, secret).to_string(),
            manager_addr: self.addr().to_owned(),
        }))
    }

    /// A joiner with a token (on the leader): check the secret, record the node, sign its key.
    async fn join_cluster(&self, j: JoinClusterRequest) -> Result<Reply, ApiError> {
        let _g = self.inner.write_lock.lock().await;
        let mut attempts = 0;
        loop {
            let state = self.state();
            let c = cluster(&state)?;
            let role = if j.secret == c.worker_token_secret {
                NodeRole::Worker
            } else if j.secret == c.manager_token_secret {
                NodeRole::Manager
            } else if c.retired_token_secrets.contains(&j.secret) {
                return Err(ApiError::new(
                    Code::TokenRotated,
                    "invalid join token: this token was rotated and no longer admits new nodes; get the current one with `meshctl swarm join-token worker` (or `manager`) on a manager",
                ));
            } else {
                return Err(ApiError::new(
                    Code::TokenInvalid,
                    "invalid join token: its secret is not a join token of this swarm; check it, or get one with `meshctl swarm join-token worker` (or `manager`) on a manager",
                ));
            };
            let node_id = Id::random();
            let mut ops = Vec::new();
            let mut raft_id = 0;
            if role == NodeRole::Manager {
                let mut c = c.clone();
                c.last_raft_id += 1;
                raft_id = c.last_raft_id;
                ops.push(Op::Put(Object::Cluster(c)));
            }
            let cert_pem = pki::issue(
                &c.root_ca_cert_pem,
                &c.root_ca_key_pem,
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
                description: j.description.clone(),
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
                        managers: manager_addrs(&self.state()),
                    }));
                }
                Err(ProposeError::Tx(TxError::Conflict { .. })) if attempts < 5 => attempts += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A node asks for a certificate for a new key: it gets the role the state gives it.
fn renew_cert(state: &ClusterState, node_id: &Id, csr_pem: &str) -> Result<Reply, ApiError> {
    let c = cluster(state)?;
    let node = state.nodes.get(node_id).ok_or_else(|| {
        ApiError::denied(format!(
            "node {node_id} is not part of this swarm (removed?)"
        ))
    })?;
    let cert_pem = pki::issue(
        &c.root_ca_cert_pem,
        &c.root_ca_key_pem,
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

fn cluster(state: &ClusterState) -> Result<&mesh_cluster::state::ClusterInfo, ApiError> {
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

/// `node update` as a transaction (None: nothing to change).
pub fn update_node(state: &ClusterState, u: &NodeUpdate) -> Result<Option<Tx>, ApiError> {
    let node = find_node(state, &u.node)?;
    let mut n = node.clone();
    let mut ops = Vec::new();
    if let Some(a) = u.availability {
        n.spec.availability = a;
    }
    for key in &u.label_rm {
        if n.spec.labels.remove(key).is_none() {
            return Err(ApiError::invalid(format!(
                "key {key} doesn't exist in node's labels"
            )));
        }
    }
    for (k, v) in &u.label_add {
        if k.is_empty() {
            return Err(ApiError::invalid(
                "invalid label: the key is empty (use --label-add key=value)",
            ));
        }
        n.spec.labels.insert(k.clone(), v.clone());
    }
    match u.role {
        Some(NodeRole::Manager) if n.spec.role != NodeRole::Manager => {
            let mut c = cluster(state)?.clone();
            c.last_raft_id += 1;
            let addr = n.status.addr.ok_or_else(|| {
                ApiError::precondition(format!("node {} has not reported its address yet", u.node))
            })?;
            n.spec.role = NodeRole::Manager;
            n.manager_status = Some(ManagerStatus {
                raft_id: c.last_raft_id,
                addr: format!("{addr}:{MANAGER_PORT}"),
                reachability: Reachability::Unknown,
                leader: false,
            });
            ops.push(Op::Put(Object::Cluster(c)));
        }
        Some(NodeRole::Worker) if n.spec.role != NodeRole::Worker => {
            let managers = state
                .nodes
                .values()
                .filter(|m| m.spec.role == NodeRole::Manager)
                .count();
            if managers <= 1 {
                return Err(ApiError::precondition(
                    "attempting to demote the last manager of the swarm",
                ));
            }
            // The leader's membership loop takes it out of raft, then clears its manager status.
            n.spec.role = NodeRole::Worker;
        }
        _ => {}
    }
    if n == *node && ops.is_empty() {
        return Ok(None);
    }
    ops.push(Op::Put(Object::Node(n)));
    Ok(Some(Tx {
        at: now_millis(),
        ops,
    }))
}

/// `node rm` as a transaction.
pub fn remove_node(state: &ClusterState, query: &str, force: bool) -> Result<Option<Tx>, ApiError> {
    let node = find_node(state, query)?;
    if node.spec.role == NodeRole::Manager {
        return Err(ApiError::precondition(format!(
            "node {} is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal",
            node.id
        )));
    }
    if node.status.state != NodeState::Down && !force {
        return Err(ApiError::precondition(format!(
            "node {} is not down and can't be removed",
            node.id
        )));
    }
    Ok(Some(Tx {
        at: now_millis(),
        ops: vec![Op::Delete {
            kind: mesh_cluster::state::Kind::Node,
            id: node.id.clone(),
            version: node.meta.version,
        }],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with(nodes: &[(&str, &str, NodeRole)]) -> ClusterState {
        let mut s = ClusterState::default();
        let tx = bootstrap_tx(
            &Id::from("c"),
            &Id::from(nodes[0].0),
            &("ca".into(), "key".into()),
            NodeDescription {
                hostname: nodes[0].1.into(),
                ..Default::default()
            },
            "198.18.0.11".parse().unwrap(),
            2377,
        );
        s.apply(&tx, 1).unwrap();
        for (i, (id, host, role)) in nodes.iter().enumerate().skip(1) {
            let n = Node {
                id: Id::from(*id),
                meta: Meta::default(),
                spec: NodeSpec {
                    role: *role,
                    ..Default::default()
                },
                description: NodeDescription {
                    hostname: (*host).into(),
                    ..Default::default()
                },
                status: NodeStatus {
                    state: NodeState::Ready,
                    message: String::new(),
                    addr: Some("198.18.0.12".parse().unwrap()),
                },
                manager_status: None,
                attachments: BTreeMap::new(),
            };
            s.apply(
                &Tx {
                    at: 1,
                    ops: vec![Op::Put(Object::Node(n))],
                },
                1 + i as u64,
            )
            .unwrap();
        }
        s
    }

    #[test]
    fn nodes_are_found_by_id_hostname_or_unique_prefix() {
        let s = state_with(&[
            ("abc111", "one", NodeRole::Manager),
            ("abc222", "two", NodeRole::Worker),
            ("xyz333", "abc111x", NodeRole::Worker),
        ]);
        assert_eq!(find_node(&s, "abc111").unwrap().id.as_str(), "abc111");
        assert_eq!(find_node(&s, "two").unwrap().id.as_str(), "abc222");
        assert_eq!(find_node(&s, "xyz").unwrap().id.as_str(), "xyz333");
        let e = find_node(&s, "abc").unwrap_err();
        assert!(e.message.contains("ambiguous"), "{e}");
        assert_eq!(find_node(&s, "nope").unwrap_err().code, Code::NotFound);
    }

    #[test]
    fn the_bootstrap_makes_cluster_node_and_ingress() {
        let s = state_with(&[("m1", "one", NodeRole::Manager)]);
        let c = s.cluster.as_ref().unwrap();
        assert_eq!(c.default_pool.to_string(), "10.0.0.0/8");
        assert_eq!(c.subnet_len, 24);
        assert_ne!(c.worker_token_secret, c.manager_token_secret);
        let ingress = s.networks.values().next().unwrap();
        assert!(ingress.spec.ingress);
        assert_eq!((ingress.spec.name.as_str(), ingress.vni), ("ingress", 4096));
        assert_eq!(ingress.subnet.to_string(), "10.255.0.0/16");
        assert_eq!(manager_addrs(&s), vec!["198.18.0.11:2377".to_owned()]);
    }

    #[test]
    fn updates_change_labels_availability_and_role() {
        let mut s = state_with(&[
            ("m1", "one", NodeRole::Manager),
            ("w1", "two", NodeRole::Worker),
        ]);
        let tx = update_node(
            &s,
            &NodeUpdate {
                node: "two".into(),
                availability: Some(Availability::Drain),
                label_add: vec![("zone".into(), "east".into())],
                ..Default::default()
            },
        )
        .unwrap()
        .unwrap();
        s.apply(&tx, 10).unwrap();
        let w = &s.nodes[&Id::from("w1")];
        assert_eq!(w.spec.availability, Availability::Drain);
        assert_eq!(w.spec.labels["zone"], "east");
        // Nothing to change: no transaction.
        let same = NodeUpdate {
            node: "two".into(),
            label_add: vec![("zone".into(), "east".into())],
            ..Default::default()
        };
        assert!(update_node(&s, &same).unwrap().is_none());
        let e = update_node(
            &s,
            &NodeUpdate {
                node: "two".into(),
                label_rm: vec!["nope".into()],
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.message.contains("doesn't exist"), "{e}");
        // Promote: a new raft id; demoting the last manager is refused.
        let e = update_node(
            &s,
            &NodeUpdate {
                node: "one".into(),
                role: Some(NodeRole::Worker),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.message.contains("last manager"), "{e}");
        let tx = update_node(
            &s,
            &NodeUpdate {
                node: "two".into(),
                role: Some(NodeRole::Manager),
                ..Default::default()
            },
        )
        .unwrap()
        .unwrap();
        s.apply(&tx, 11).unwrap();
        let w = &s.nodes[&Id::from("w1")];
        assert_eq!(w.spec.role, NodeRole::Manager);
        assert_eq!(w.manager_status.as_ref().unwrap().raft_id, 2);
        assert_eq!(s.cluster.as_ref().unwrap().last_raft_id, 2);
    }

    #[test]
    fn only_down_workers_are_removed_without_force() {
        let s = state_with(&[
            ("m1", "one", NodeRole::Manager),
            ("w1", "two", NodeRole::Worker),
        ]);
        assert!(
            remove_node(&s, "one", true)
                .unwrap_err()
                .message
                .contains("demoted")
        );
        assert!(
            remove_node(&s, "two", false)
                .unwrap_err()
                .message
                .contains("not down")
        );
        assert!(remove_node(&s, "two", true).unwrap().is_some());
    }
}
