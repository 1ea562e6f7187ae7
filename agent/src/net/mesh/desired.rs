//! What the node's maps and programs should hold, from the view (pure): the desired mesh, the
//! interfaces the programs serve, the task namespaces of socket-level balancing and the
//! cluster's node addresses.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use mesh_cluster::net::INGRESS_VNI;
use mesh_cluster::state::{PortConfig, PublishMode as StatePublishMode};
use mesh_dataplane::{
    DesiredMesh, Protocol, PublishMode, PublishedPort, Service, Task, TaskAddress, Vip,
};

use super::MeshInterface;
use crate::net::remote_endpoints;
use crate::net::view::NetView;

fn protocol(p: mesh_cluster::state::Protocol) -> Protocol {
    match p {
        mesh_cluster::state::Protocol::Tcp => Protocol::Tcp,
        mesh_cluster::state::Protocol::Udp => Protocol::Udp,
    }
}

fn published_port(p: &PortConfig) -> PublishedPort {
    PublishedPort {
        protocol: protocol(p.protocol),
        published: p.published_port,
        target: p.target_port,
        mode: match p.publish_mode {
            StatePublishMode::Ingress => PublishMode::Ingress,
            StatePublishMode::Host => PublishMode::Host,
        },
    }
}

/// The underlay addresses of every node of the view that has one, this node's included (pure):
/// the only sources the mesh accepts VXLAN from. Empty until the node is in a swarm.
pub fn cluster_node_addrs(view: &NetView) -> BTreeSet<Ipv4Addr> {
    let Some(me) = &view.node else {
        return BTreeSet::new();
    };
    view.nodes
        .values()
        .filter_map(|n| n.addr)
        .chain([me.addr])
        .collect()
}

/// What this node's maps should hold (pure). Empty until the node is in a swarm.
///
/// Services are taken in id order; a port or VIP that an earlier service already holds, a port
/// not yet allocated (0) and a reserved port are left out rather than refusing the whole state
/// (the managers refuse them at `service create`; this only guards against a stale view).
/// Services without a frontend on this node are left out (they would only take counter slots).
pub fn desired_mesh(view: &NetView) -> DesiredMesh {
    let Some(me) = &view.node else {
        return DesiredMesh::default();
    };
    // The remote endpoints the overlay programs, per network: the only remote backends the
    // mesh may point at.
    let reachable: BTreeSet<(u32, Ipv4Addr, [u8; 6], Ipv4Addr)> = view
        .devices
        .keys()
        .flat_map(|vni| {
            remote_endpoints(view, *vni)
                .into_iter()
                .map(move |r| (*vni, r.ip, r.mac.octets(), r.vtep))
        })
        .collect();
    let mut ports_taken: BTreeSet<(Protocol, u16)> = mesh_cluster::net::RESERVED_PORTS
        .iter()
        .map(|(proto, port, _)| (protocol(*proto), *port))
        .collect();
    let mut vips_taken: BTreeSet<(u32, Ipv4Addr)> = BTreeSet::new();
    let mut services = Vec::new();
    for svc in view.services.values() {
        let mut ports = Vec::new();
        for p in svc.ports.iter().filter(|p| p.published_port != 0) {
            let p = published_port(p);
            if ports_taken.insert((p.protocol, p.published)) {
                ports.push(p);
            }
        }
        let mut vips = Vec::new();
        for v in &svc.vips {
            let Some(net) = view.networks.get(&v.network_id) else {
                continue;
            };
            if view.devices.contains_key(&net.vni) && vips_taken.insert((net.vni, v.addr)) {
                vips.push(Vip {
                    vni: net.vni,
                    addr: v.addr,
                });
            }
        }
        if ports.is_empty() && vips.is_empty() {
            continue;
        }
        // Local tasks being withdrawn drain: no new flows, their own go on until they stop.
        let mut tasks: Vec<Task> = view
            .tasks
            .values()
            .filter(|t| t.service_id == svc.id && !view.unready.contains(&t.task_id))
            .map(|t| Task {
                id: t.task_id.to_string(),
                node_addr: me.addr,
                local: true,
                endpoints: t
                    .interfaces
                    .iter()
                    .map(|i| TaskAddress {
                        vni: i.vni,
                        addr: i.addr,
                        mac: i.mac.octets(),
                    })
                    .collect(),
                draining: view.leaving.contains(&t.task_id),
            })
            .collect();
        let mut remote: BTreeMap<(&str, Ipv4Addr), (Vec<TaskAddress>, bool)> = BTreeMap::new();
        for (info, ep) in view.gossip.remote_endpoints(me.id.as_str()) {
            let IpAddr::V4(vtep) = info.addr else {
                continue;
            };
            if ep.service_id != svc.id.as_str()
                || view
                    .tasks
                    .contains_key(&mesh_cluster::Id::from(ep.task_id.as_str()))
                || !reachable.contains(&(ep.vni, ep.ip, ep.mac, vtep))
            {
                continue;
            }
            let (endpoints, draining) = remote.entry((ep.task_id.as_str(), vtep)).or_default();
            endpoints.push(TaskAddress {
                vni: ep.vni,
                addr: ep.ip,
                mac: ep.mac,
            });
            *draining |= ep.draining;
        }
        tasks.extend(
            remote
                .into_iter()
                .map(|((id, vtep), (endpoints, draining))| Task {
                    id: id.to_owned(),
                    node_addr: vtep,
                    local: false,
                    endpoints,
                    draining,
                }),
        );
        services.push(Service {
            id: svc.id.to_string(),
            ports,
            vips,
            tasks,
        });
    }
    DesiredMesh { services }
}

/// The interfaces the programs should serve, by name (pure): the ingress bridge once its
/// devices exist, and every plumbed task veth.
pub fn mesh_interfaces(view: &NetView) -> BTreeMap<String, MeshInterface> {
    let mut out = BTreeMap::new();
    if view.node.is_none() {
        return out;
    }
    let ingress_vni = view.ingress().map_or(INGRESS_VNI, |n| n.vni);
    if let Some(d) = view.devices.get(&ingress_vni) {
        out.insert(
            d.bridge.clone(),
            MeshInterface::IngressBridge {
                vni: d.vni,
                node_addr: d.node_addr,
            },
        );
        out.insert(d.vxlan.clone(), MeshInterface::IngressVxlan { vni: d.vni });
    }
    for i in view.tasks.values().flat_map(|t| &t.interfaces) {
        out.insert(
            i.host_ifname.clone(),
            MeshInterface::TaskVeth {
                vni: i.vni,
                mac: i.mac.octets(),
            },
        );
    }
    out
}

/// The task namespaces whose sockets the socket programs serve (pure): each plumbed task's
/// netns cookie and the VNIs of its networks (the VIPs its sockets reach by socket-level
/// balancing, as its veth reaches them per packet).
pub fn task_namespaces(view: &NetView) -> BTreeMap<u64, BTreeSet<u32>> {
    view.tasks
        .values()
        .filter_map(|t| {
            let vnis = t.interfaces.iter().map(|i| i.vni).collect();
            Some((t.netns_cookie?, vnis))
        })
        .collect()
}
