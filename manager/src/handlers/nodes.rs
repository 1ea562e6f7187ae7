//! Nodes in the cluster API: `node ls`, `inspect`, `update`, `rm` (and `promote`/`demote`, which
//! are updates of the role).

use mesh_api::{ApiError, MANAGER_PORT, NodeReply, NodeUpdate, NodesReply, Reply};
use mesh_cluster::spec::limits::check_labels;
use mesh_cluster::state::{
    ClusterState, ManagerStatus, Node, NodeRole, NodeState, Object, Op, Reachability, Tx,
};

use crate::handlers::swarm::cluster;
use crate::lookup::find_node;
use crate::manager::{Manager, ReadView};
use mesh_api::now_millis;

/// The node requests of the cluster API.
pub struct NodeApi<'m> {
    pub(crate) m: &'m Manager,
}

impl NodeApi<'_> {
    /// `node ls`.
    pub async fn list(&self) -> Result<Reply, ApiError> {
        let view = self.m.read().await?;
        Ok(Reply::Nodes(NodesReply {
            nodes: nodes_as_seen(&view),
            self_id: self.m.node_id().clone(),
        }))
    }

    /// `node inspect`.
    pub async fn inspect(&self, node: &str) -> Result<Reply, ApiError> {
        let view = self.m.read().await?;
        let id = find_node(&view.applied.state, node)?.id.clone();
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
        Ok(Reply::Node(Box::new(NodeReply {
            node,
            self_id: self.m.node_id().clone(),
            ca_pem,
        })))
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
    check_labels("node", &n.spec.labels).map_err(|e| ApiError::invalid(e.to_string()))?;
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
    use std::collections::BTreeMap;

    use mesh_cluster::Id;
    use mesh_cluster::state::{Availability, Meta, NodeDescription, NodeSpec, NodeStatus};

    use super::*;
    use crate::handlers::swarm::{bootstrap_tx, manager_addrs};

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
            mesh_cluster::certs::DEFAULT_CERT_EXPIRY_MS,
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
        assert_eq!(
            find_node(&s, "nope").unwrap_err().code,
            mesh_api::Code::NotFound
        );
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
