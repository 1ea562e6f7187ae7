//! What the node's networking says of itself for `meshctl status` and the metrics: the routing
//! mesh's and the DNS server's last reports (their runtimes set them), and the other nodes as
//! gossip sees them.

use mesh_api::status::{DnsStatus, GossipPeer, MeshStatus, NodeStatus, PeerState};

use super::view::NetView;
use super::{NodeNetworking, lock};

/// Every node the leader lists but this one, with what gossip says of it (pure).
pub fn gossip_peers(view: &NetView) -> Vec<GossipPeer> {
    let me = view.node.as_ref().map(|n| n.id.as_str());
    view.nodes
        .values()
        .filter(|n| Some(n.id.as_str()) != me)
        .map(|n| GossipPeer {
            node_id: n.id.clone(),
            hostname: n.hostname.clone(),
            state: if view.gossip.live.contains_key(n.id.as_str()) {
                PeerState::Alive
            } else if view.gossip.dead.contains(n.id.as_str()) {
                PeerState::Dead
            } else {
                PeerState::Unknown
            },
        })
        .collect()
}

impl NodeNetworking {
    /// The routing mesh's runtime reports itself (None: it runs no mesh now).
    pub fn set_mesh_status(&self, status: Option<MeshStatus>) {
        *lock(&self.inner.mesh_status) = status;
    }

    /// The DNS runtime reports itself.
    pub fn set_dns_status(&self, status: DnsStatus) {
        *lock(&self.inner.dns_status) = status;
    }

    /// Fills the networking's part of `out`: mesh, DNS, gossip peers.
    pub fn fill_status(&self, out: &mut NodeStatus) {
        out.mesh.clone_from(&lock(&self.inner.mesh_status));
        out.dns.clone_from(&lock(&self.inner.dns_status));
        out.gossip = gossip_peers(&self.view());
    }
}

#[cfg(test)]
mod tests {
    use mesh_api::NodeNet;
    use mesh_cluster::Id;

    use super::*;
    use crate::net::fixtures::live_nodes;
    use crate::net::view::SelfNode;

    fn node(id: &str) -> NodeNet {
        NodeNet {
            id: Id::from(id),
            hostname: format!("host-{id}"),
            addr: None,
            attachments: std::collections::BTreeMap::new(),
        }
    }

    #[test]
    fn peers_are_alive_dead_or_unknown() {
        let mut view = NetView {
            node: Some(SelfNode {
                id: Id::from("n1"),
                cluster_id: Id::from("c"),
                hostname: "host-n1".into(),
                addr: "198.18.0.1".parse().unwrap(),
            }),
            gossip: live_nodes(&[("n1", "198.18.0.1"), ("n2", "198.18.0.2")]),
            ..NetView::default()
        };
        view.gossip.dead.insert("n3".into());
        for id in ["n1", "n2", "n3", "n4"] {
            view.nodes.insert(Id::from(id), node(id));
        }
        let peers: Vec<(String, PeerState)> = gossip_peers(&view)
            .into_iter()
            .map(|p| (p.hostname, p.state))
            .collect();
        assert_eq!(
            peers,
            vec![
                ("host-n2".into(), PeerState::Alive),
                ("host-n3".into(), PeerState::Dead),
                ("host-n4".into(), PeerState::Unknown),
            ]
        );
    }
}
