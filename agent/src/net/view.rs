//! What the node's networking knows, as one value that others subscribe to
//! ([`super::NodeNetworking::subscribe`]): the leader's networks and nodes, this node's devices
//! and plumbed tasks, and what gossip says of the other nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use mesh_cluster::Id;
use mesh_cluster::state::Network;
use mesh_gossip::GossipView;
use mesh_overlay::Mac;

use mesh_api::{NodeNet, ServiceNet};

/// This node, once it is in a swarm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelfNode {
    pub id: Id,
    pub cluster_id: Id,
    pub hostname: String,
    /// The advertised underlay address: the VXLAN source and the gossip address.
    pub addr: Ipv4Addr,
}

/// A network whose devices exist on this node (`mbr<vni>` with the node's address, `mvx<vni>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalNetwork {
    pub network_id: Id,
    pub vni: u32,
    /// The node's own address on it (on the bridge): its tasks' gateway and DNS server.
    pub node_addr: Ipv4Addr,
    pub prefix_len: u8,
    pub mtu: u32,
    pub bridge: String,
    pub vxlan: String,
}

/// One interface of a task plumbed on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalInterface {
    pub network_id: Id,
    pub vni: u32,
    /// The veth's end in the node's namespace, a port of `mbr<vni>`
    /// ([`mesh_overlay::task_host_ifname`]): where per-task programs attach.
    pub host_ifname: String,
    /// Its name inside the task: `eth0`, `eth1`, ... in the order of the task's networks.
    pub ifname: String,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    pub mac: Mac,
}

/// A task whose interfaces are plumbed on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalTask {
    pub task_id: Id,
    pub service_id: Id,
    pub container_id: String,
    pub interfaces: Vec<LocalInterface>,
    /// The cookie of the task's network namespace (socket-level balancing acts on its sockets),
    /// when it could be read.
    pub netns_cookie: Option<u64>,
}

/// Everything the node's networking knows now. Rebuilt (and sent to subscribers) on every
/// change: a leader's message, an attach or detach, a device created or removed, a gossip view.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetView {
    /// None until the node is in a swarm (and again after it left).
    pub node: Option<SelfNode>,
    /// Every allocated network, by id, as the leader last said.
    pub networks: BTreeMap<Id, Network>,
    /// Every node, by id, with its underlay address and its address on each network.
    pub nodes: BTreeMap<Id, NodeNet>,
    /// Every service, by id, as the routing mesh and DNS need it.
    pub services: BTreeMap<Id, ServiceNet>,
    /// Networks with devices on this node, by VNI.
    pub devices: BTreeMap<u32, LocalNetwork>,
    /// Tasks plumbed on this node, by id.
    pub tasks: BTreeMap<Id, LocalTask>,
    /// Local tasks being withdrawn before their interfaces go (see
    /// [`super::WITHDRAW_GRACE`]): they drain, published by gossip as draining, backends in
    /// no ring (their flows go on), not in DNS.
    pub leaving: BTreeSet<Id>,
    /// Local tasks plumbed but not (or no longer) ready: their health check has not passed, or
    /// failed: not published by gossip, no backend (their flows are swept), not in DNS.
    pub unready: BTreeSet<Id>,
    /// Networks kept up on this node without a local task
    /// ([`super::NodeNetworking::pin_network`]).
    pub pinned: BTreeSet<Id>,
    /// The cluster as this node's gossip sees it: live nodes with their endpoints, dead nodes;
    /// only endpoints of tasks the leader assigned to the node that announces them
    /// ([`assigned_only`] of `gossip_heard`).
    pub gossip: GossipView,
    /// What gossip says, unfiltered.
    pub gossip_heard: GossipView,
    /// Gossip has run long enough to have heard from every live node. Until then an empty or
    /// partial `gossip` means "not heard yet", not "dead": entries left by an earlier run are
    /// kept rather than removed.
    pub gossip_ready: bool,
    /// The task runner has the leader's full task list and has adopted every running container:
    /// `tasks` and `services` are complete (until then, after a restart, what the earlier meshd
    /// programmed is kept rather than replaced from a partial view).
    pub settled: bool,
}

/// `heard` without the endpoints the leader does not vouch for: a node announces only tasks the
/// leader assigned to it, on networks of the task's service with those networks' VNIs. A node
/// that holds the gossip key but lies (a compromised worker) cannot draw another service's
/// traffic to itself, nor claim another node's task.
pub fn assigned_only(
    heard: &GossipView,
    services: &BTreeMap<Id, ServiceNet>,
    networks: &BTreeMap<Id, Network>,
) -> GossipView {
    let vouched = |node: &str, ep: &mesh_gossip::TaskEndpoint| {
        let Some(service) = services.get(&Id::from(ep.service_id.as_str())) else {
            return false;
        };
        let assigned = service
            .tasks
            .iter()
            .any(|t| t.id.as_str() == ep.task_id && t.node_id.as_str() == node);
        let network = service
            .networks
            .iter()
            .any(|n| n.target.as_str() == ep.network_id)
            && networks
                .get(&Id::from(ep.network_id.as_str()))
                .is_some_and(|n| n.vni == ep.vni);
        assigned && network
    };
    let mut out = heard.clone();
    for (node, eps) in &mut out.endpoints {
        eps.retain(|ep| vouched(node, ep));
    }
    out
}

impl NetView {
    /// Filters what gossip said again (the leader's services or networks changed).
    pub fn refilter_gossip(&mut self) -> bool {
        let g = assigned_only(&self.gossip_heard, &self.services, &self.networks);
        if g == self.gossip {
            return false;
        }
        self.gossip = g;
        true
    }

    /// The `ingress` network (the routing mesh's), once the leader's view names it.
    pub fn ingress(&self) -> Option<&Network> {
        self.networks.values().find(|n| n.spec.ingress)
    }

    /// The network with VNI `vni`, as the leader knows it.
    pub fn network_by_vni(&self, vni: u32) -> Option<&Network> {
        self.networks.values().find(|n| n.vni == vni)
    }

    /// This node's own address on network `id`, from the leader's allocation.
    pub fn own_addr(&self, network: &Id) -> Option<Ipv4Addr> {
        let me = self.node.as_ref()?;
        self.nodes.get(&me.id)?.attachments.get(network).copied()
    }

    /// The plumbed tasks that serve: those not being withdrawn and not waiting to be healthy.
    pub fn serving_tasks(&self) -> impl Iterator<Item = &LocalTask> {
        self.tasks
            .values()
            .filter(|t| !self.leaving.contains(&t.task_id) && !self.unready.contains(&t.task_id))
    }

    /// Does a plumbed task use VNI `vni`?
    pub fn vni_in_use(&self, vni: u32) -> bool {
        self.tasks
            .values()
            .any(|t| t.interfaces.iter().any(|i| i.vni == vni))
    }

    /// Should network `vni`'s devices stay on this node: a local task uses it, or it is pinned.
    pub fn keeps(&self, vni: u32) -> bool {
        self.vni_in_use(vni)
            || self
                .pinned
                .iter()
                .any(|id| self.networks.get(id).is_some_and(|n| n.vni == vni))
    }
}

#[cfg(test)]
mod tests {
    use mesh_api::ServiceTaskName;
    use mesh_cluster::state::{EndpointMode, NetworkAttachmentConfig};
    use mesh_gossip::TaskEndpoint;

    use super::*;

    fn ep(task: &str, service: &str, network: &str, vni: u32) -> TaskEndpoint {
        TaskEndpoint {
            task_id: task.into(),
            service_id: service.into(),
            network_id: network.into(),
            vni,
            ip: Ipv4Addr::new(10, 0, 0, 9),
            mac: [2, 0x42, 10, 0, 0, 9],
            draining: false,
        }
    }

    #[test]
    fn only_endpoints_the_leader_assigned_to_their_announcer_are_kept() {
        let services = BTreeMap::from([(
            Id::from("web"),
            ServiceNet {
                id: Id::from("web"),
                name: "web".into(),
                endpoint_mode: EndpointMode::Vip,
                ports: Vec::new(),
                vips: Vec::new(),
                networks: vec![NetworkAttachmentConfig {
                    target: Id::from("net1"),
                    aliases: Vec::new(),
                }],
                tasks: vec![ServiceTaskName {
                    id: Id::from("t1"),
                    slot: 1,
                    node_id: Id::from("n2"),
                }],
            },
        )]);
        let networks = BTreeMap::from([(
            Id::from("net1"),
            Network {
                id: Id::from("net1"),
                meta: mesh_cluster::state::Meta::default(),
                spec: mesh_cluster::state::NetworkSpec::default(),
                subnet: "10.0.1.0/24".parse().expect("a prefix"),
                vni: 4097,
            },
        )]);
        let mut heard = GossipView::default();
        heard.endpoints.insert(
            "n2".into(),
            vec![
                ep("t1", "web", "net1", 4097),   // assigned to n2: kept
                ep("t1", "web", "net1", 4098),   // another VNI
                ep("t1", "web", "net9", 4097),   // a network the service is not on
                ep("tx", "web", "net1", 4097),   // a task the leader does not know
                ep("t1", "other", "net1", 4097), // a service the leader does not know
            ],
        );
        // n3 claims n2's task.
        heard
            .endpoints
            .insert("n3".into(), vec![ep("t1", "web", "net1", 4097)]);
        let kept = assigned_only(&heard, &services, &networks);
        assert_eq!(kept.endpoints["n2"], vec![ep("t1", "web", "net1", 4097)]);
        assert!(kept.endpoints["n3"].is_empty());
    }
}
