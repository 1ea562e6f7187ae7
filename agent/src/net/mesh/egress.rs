//! Egress: the overlay subnets the mesh's programs must know before a task's packet may leave
//! the cluster (source-NATed to the node's address, `ebpf/lib/egress.h`).

use std::collections::BTreeSet;

use mesh_dataplane::mesh::OverlayNet;

use super::Runtime;
use crate::net::view::NetView;

/// Every overlay network of the cluster, the ingress network's included (pure): a task's
/// packet to one of them is never egress. Empty until the node is in a swarm (no egress then).
pub fn overlay_nets(view: &NetView) -> BTreeSet<OverlayNet> {
    if view.node.is_none() {
        return BTreeSet::new();
    }
    view.networks
        .values()
        .filter_map(|n| OverlayNet::new(n.subnet.addr, n.subnet.len, n.vni).ok())
        .collect()
}

impl Runtime {
    /// Writes the cluster's overlay subnets into the mesh: tasks reach the outside from then on.
    pub(super) async fn apply_overlay_nets(&mut self, view: &NetView) {
        let nets = overlay_nets(view);
        if self.nets_applied.as_ref() == Some(&nets) {
            return;
        }
        let n = nets.clone();
        match self.with_mesh(move |m| m.set_overlay_nets(&n)).await {
            Some(Ok(changed)) => {
                if changed > 0 {
                    tracing::info!(
                        networks = nets.len(),
                        changed,
                        "egress: overlay subnets written"
                    );
                }
                self.nets_applied = Some(nets);
            }
            Some(Err(e)) => self.warn(format!("writing the overlay subnets (egress): {e:#}")),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use mesh_cluster::Id;
    use mesh_cluster::state::{Network, NetworkSpec};

    use super::*;
    use crate::net::view::SelfNode;

    fn network(id: &str, vni: u32, subnet: &str) -> Network {
        Network {
            id: Id::from(id),
            meta: mesh_cluster::state::Meta::default(),
            spec: NetworkSpec {
                name: id.into(),
                ..NetworkSpec::default()
            },
            subnet: subnet.parse().unwrap(),
            vni,
        }
    }

    #[test]
    fn every_network_of_the_cluster_once_in_a_swarm() {
        let mut view = NetView::default();
        for n in [
            network("ingress", 4096, "10.255.0.0/16"),
            network("front", 4097, "10.0.1.0/24"),
        ] {
            view.networks.insert(n.id.clone(), n);
        }
        assert!(overlay_nets(&view).is_empty(), "no swarm, no egress");
        view.node = Some(SelfNode {
            id: Id::from("n1"),
            cluster_id: Id::from("c1"),
            hostname: "n1".into(),
            addr: Ipv4Addr::new(198, 18, 1, 11),
        });
        let nets: Vec<(Ipv4Addr, u8, u32)> = overlay_nets(&view)
            .into_iter()
            .map(|n| (n.addr, n.prefix_len, n.vni))
            .collect();
        assert_eq!(
            nets,
            vec![
                (Ipv4Addr::new(10, 0, 1, 0), 24, 4097),
                (Ipv4Addr::new(10, 255, 0, 0), 16, 4096)
            ]
        );
    }
}
