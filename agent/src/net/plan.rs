//! The node networking's decisions, as pure functions of the [`NetView`]: what plumbing a task
//! takes, which static entries each network's VXLAN device needs, what this node publishes by
//! gossip and whom it seeds it with, and which veths in a bridge belong to nobody.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use mesh_cluster::Id;
use mesh_cluster::state::{Network, Task};
use mesh_gossip::{DEFAULT_PORT, TaskEndpoint};
use mesh_overlay::{
    Mac, NetworkDevices, RemoteEndpoint, TaskInterface, bridge_name, overlay_mtu, task_host_ifname,
    vxlan_name,
};

use super::view::{LocalInterface, LocalNetwork, LocalTask, NetView};
use mesh_cluster::net::network_mtu;

/// Where this node sits on the underlay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Underlay {
    pub addr: Ipv4Addr,
    /// The interface that carries `addr`.
    pub ifname: String,
    /// That interface's MTU.
    pub mtu: u32,
}

/// Everything plumbing one task takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskPlan {
    /// Each of the task's networks, in the task's order, with its devices on this node.
    pub devices: Vec<(Id, NetworkDevices)>,
    /// `eth0`, `eth1`, ... in the same order.
    pub interfaces: Vec<TaskInterface>,
    /// The node's address on the task's first network: its default gateway, and its
    /// nameserver (the DNS server answers there).
    pub gateway: Ipv4Addr,
    /// What the view records once the task is plumbed (container id filled by the caller).
    pub local: LocalTask,
}

/// Why a task cannot be plumbed (yet).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("this node is not in a swarm")]
    NotInSwarm,
    #[error("network {0} is not known to this node (not in the leader's view yet)")]
    UnknownNetwork(Id),
    #[error("this node has no address on network {0} yet")]
    NoNodeAddress(String),
    #[error("{0}")]
    Invalid(String),
}

impl PlanError {
    /// Might the leader's next message cure it?
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::NotInSwarm | Self::UnknownNetwork(_) | Self::NoNodeAddress(_)
        )
    }
}

/// The MTU inside network `n` on a node whose underlay carries `underlay_mtu`: the network's
/// `mtu` option, or the underlay's minus VXLAN's 50 bytes.
pub fn network_mtu_on(n: &Network, underlay_mtu: u32) -> u32 {
    network_mtu(n).unwrap_or_else(|| overlay_mtu(underlay_mtu))
}

/// Network `n`'s devices on this node, if the leader gave the node an address on it.
pub fn network_devices(
    view: &NetView,
    n: &Network,
    underlay: &Underlay,
) -> Result<NetworkDevices, PlanError> {
    let node_addr = view
        .own_addr(&n.id)
        .ok_or_else(|| PlanError::NoNodeAddress(n.spec.name.clone()))?;
    Ok(NetworkDevices {
        vni: n.vni,
        node_addr,
        prefix_len: n.subnet.len,
        mtu: network_mtu(n),
        underlay_addr: underlay.addr,
        underlay_ifname: underlay.ifname.clone(),
    })
}

/// What the view records of a network once its devices exist.
pub fn local_network(network_id: &Id, d: &NetworkDevices, underlay_mtu: u32) -> LocalNetwork {
    LocalNetwork {
        network_id: network_id.clone(),
        vni: d.vni,
        node_addr: d.node_addr,
        prefix_len: d.prefix_len,
        mtu: d.mtu.unwrap_or_else(|| overlay_mtu(underlay_mtu)),
        bridge: bridge_name(d.vni),
        vxlan: vxlan_name(d.vni),
    }
}

/// The plumbing of `task` on this node: for each of its networks (in order) the devices and
/// the interface `eth<i>` (host side `mv<task id><i>`), with the task's address and MAC.
pub fn plan_task(view: &NetView, underlay: &Underlay, task: &Task) -> Result<TaskPlan, PlanError> {
    if view.node.is_none() {
        return Err(PlanError::NotInSwarm);
    }
    let mut devices = Vec::new();
    let mut interfaces = Vec::new();
    let mut local = Vec::new();
    for (i, tn) in task.networks.iter().enumerate() {
        let n = view
            .networks
            .get(&tn.network_id)
            .ok_or_else(|| PlanError::UnknownNetwork(tn.network_id.clone()))?;
        let d = network_devices(view, n, underlay)?;
        let host_ifname =
            task_host_ifname(task.id.as_str(), i).map_err(|e| PlanError::Invalid(e.to_string()))?;
        let iface = TaskInterface {
            vni: n.vni,
            host_ifname: host_ifname.clone(),
            ifname: format!("eth{i}"),
            addr: tn.addr,
            prefix_len: n.subnet.len,
            mac: Mac(tn.mac),
            mtu: network_mtu_on(n, underlay.mtu),
        };
        local.push(LocalInterface {
            network_id: n.id.clone(),
            vni: n.vni,
            host_ifname,
            ifname: iface.ifname.clone(),
            addr: iface.addr,
            prefix_len: iface.prefix_len,
            mac: iface.mac,
        });
        devices.push((n.id.clone(), d));
        interfaces.push(iface);
    }
    let gateway = devices
        .first()
        .map(|(_, d)| d.node_addr)
        .ok_or_else(|| PlanError::Invalid(format!("task {} has no network", task.id)))?;
    Ok(TaskPlan {
        devices,
        interfaces,
        gateway,
        local: LocalTask {
            task_id: task.id.clone(),
            service_id: task.service_id.clone(),
            container_id: String::new(),
            interfaces: local,
            netns_cookie: None,
        },
    })
}

/// The static entries network `vni`'s VXLAN device needs: every task that a live remote node
/// publishes on the network, and every live remote node's own address on it (replies to a
/// node's address cross the overlay too), each behind that node's underlay address. Nodes that
/// gossip does not call live contribute nothing, so a dead node's entries go at once. What would
/// shadow something local (this node's address, a local task) or contradict an entry already
/// taken (one address or MAC behind two nodes, while a stale publication lingers) is left out:
/// node addresses (the leader's allocation) first, then tasks, by node id.
pub fn remote_endpoints(view: &NetView, vni: u32) -> Vec<RemoteEndpoint> {
    let (Some(me), Some(dev)) = (&view.node, view.devices.get(&vni)) else {
        return Vec::new();
    };
    let mut ips: BTreeSet<Ipv4Addr> = BTreeSet::new();
    let mut macs: BTreeSet<Mac> = BTreeSet::new();
    ips.insert(dev.node_addr);
    macs.insert(Mac::from_ipv4(dev.node_addr));
    for i in view.tasks.values().flat_map(|t| &t.interfaces) {
        if i.vni == vni {
            ips.insert(i.addr);
            macs.insert(i.mac);
        }
    }
    let vtep_of = |node: &str| match view.gossip.live.get(node).map(|i| i.addr) {
        Some(IpAddr::V4(a)) if node != me.id.as_str() => Some(a),
        _ => None,
    };
    let nodes = view.gossip.live.keys().filter_map(|id| {
        let vtep = vtep_of(id)?;
        let addr = *view
            .nodes
            .get(&Id::from(id.as_str()))?
            .attachments
            .get(&dev.network_id)?;
        Some((addr, Mac::from_ipv4(addr), vtep))
    });
    let tasks = view.gossip.endpoints.iter().flat_map(|(id, eps)| {
        let vtep = vtep_of(id);
        eps.iter()
            .filter(move |e| e.network_id == dev.network_id.as_str() && e.vni == vni)
            .filter_map(move |e| Some((e.ip, Mac(e.mac), vtep?)))
    });
    let mut out = Vec::new();
    for (ip, mac, vtep) in nodes.chain(tasks) {
        if ips.contains(&ip) || macs.contains(&mac) || !mac.is_unicast() {
            continue;
        }
        ips.insert(ip);
        macs.insert(mac);
        out.push(RemoteEndpoint { ip, mac, vtep });
    }
    out.sort();
    out
}

/// This node's endpoints as gossip publishes them: every plumbed task interface but those of
/// tasks not (yet) healthy; those of tasks being withdrawn marked draining.
pub fn published_endpoints(view: &NetView) -> Vec<TaskEndpoint> {
    let mut out: Vec<TaskEndpoint> = view
        .tasks
        .values()
        .filter(|t| !view.unready.contains(&t.task_id))
        .flat_map(|t| {
            let draining = view.leaving.contains(&t.task_id);
            t.interfaces.iter().map(move |i| TaskEndpoint {
                task_id: t.task_id.to_string(),
                service_id: t.service_id.to_string(),
                network_id: i.network_id.to_string(),
                vni: i.vni,
                ip: i.addr,
                mac: i.mac.octets(),
                draining,
            })
        })
        .collect();
    out.sort();
    out
}

/// Whom gossip contacts until they are live: every other node's underlay address.
pub fn seeds(view: &NetView) -> Vec<SocketAddr> {
    let Some(me) = &view.node else {
        return Vec::new();
    };
    let mut out: Vec<SocketAddr> = view
        .nodes
        .values()
        .filter(|n| n.id != me.id)
        .filter_map(|n| n.addr)
        .filter(|a| *a != me.addr)
        .map(|a| SocketAddr::new(IpAddr::V4(a), DEFAULT_PORT))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The ports of a bridge (`task_ports` as the kernel lists them) that look like task veths
/// (`mv...`) and belong to no plumbed task.
pub fn stale_ports(task_ports: &[String], view: &NetView) -> Vec<String> {
    let ours: BTreeSet<&str> = view
        .tasks
        .values()
        .flat_map(|t| t.interfaces.iter().map(|i| i.host_ifname.as_str()))
        .collect();
    task_ports
        .iter()
        .filter(|p| p.starts_with("mv") && !ours.contains(p.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use mesh_cluster::state::{
        EndpointSpec, Meta, NetworkSpec, TaskNetwork, TaskSpec, TaskState, TaskStatus,
    };
    use mesh_gossip::NodeInfo;

    use super::*;
    use crate::net::view::SelfNode;
    use mesh_api::NodeNet;

    const NET: &str = "netfront";
    const OTHER: &str = "netback";

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn network(id: &str, vni: u32, subnet: &str, mtu: Option<&str>) -> Network {
        let mut spec = NetworkSpec {
            name: format!("{id}-name"),
            driver: "overlay".into(),
            ..NetworkSpec::default()
        };
        if let Some(m) = mtu {
            spec.options.insert("mtu".into(), m.into());
        }
        Network {
            id: Id::from(id),
            meta: Meta::default(),
            spec,
            subnet: subnet.parse().unwrap(),
            vni,
        }
    }

    fn node(id: &str, addr: &str, attachments: &[(&str, &str)]) -> NodeNet {
        NodeNet {
            id: Id::from(id),
            hostname: format!("host-{id}"),
            addr: Some(ip(addr)),
            attachments: attachments
                .iter()
                .map(|(n, a)| (Id::from(*n), ip(a)))
                .collect(),
        }
    }

    fn underlay() -> Underlay {
        Underlay {
            addr: ip("198.18.1.11"),
            ifname: "eth0".into(),
            mtu: 1500,
        }
    }

    /// n1 (this node), n2 and n3, on two networks; n1 has devices for `NET`.
    fn view() -> NetView {
        let mut v = NetView {
            node: Some(SelfNode {
                id: Id::from("n1"),
                cluster_id: Id::from("c"),
                hostname: "host-n1".into(),
                addr: ip("198.18.1.11"),
            }),
            ..NetView::default()
        };
        for n in [
            network(NET, 4097, "10.0.0.0/24", None),
            network(OTHER, 4098, "10.0.1.0/24", Some("1400")),
        ] {
            v.networks.insert(n.id.clone(), n);
        }
        for n in [
            node(
                "n1",
                "198.18.1.11",
                &[(NET, "10.0.0.1"), (OTHER, "10.0.1.1")],
            ),
            node(
                "n2",
                "198.18.1.12",
                &[(NET, "10.0.0.2"), (OTHER, "10.0.1.2")],
            ),
            node("n3", "198.18.1.13", &[(NET, "10.0.0.3")]),
        ] {
            v.nodes.insert(n.id.clone(), n);
        }
        let d = network_devices(&v, &v.networks[&Id::from(NET)], &underlay()).unwrap();
        v.devices
            .insert(4097, local_network(&Id::from(NET), &d, 1500));
        v
    }

    fn task(id: &str, nets: &[(&str, &str)]) -> Task {
        Task {
            id: Id::from(id),
            meta: Meta::default(),
            service_id: Id::from("svc"),
            slot: 1,
            node_id: Some(Id::from("n1")),
            spec: TaskSpec::default(),
            spec_version: 1,
            desired_state: TaskState::Running,
            status: TaskStatus::default(),
            networks: nets
                .iter()
                .map(|(n, a)| TaskNetwork {
                    network_id: Id::from(*n),
                    addr: ip(a),
                    mac: Mac::from_ipv4(ip(a)).octets(),
                })
                .collect(),
            start_at: 0,
            restart_history: Vec::new(),
            endpoint: EndpointSpec::default(),
        }
    }

    fn ep(task: &str, net: &str, vni: u32, addr: &str) -> TaskEndpoint {
        TaskEndpoint {
            task_id: task.into(),
            service_id: "svc".into(),
            network_id: net.into(),
            vni,
            ip: ip(addr),
            mac: Mac::from_ipv4(ip(addr)).octets(),
            draining: false,
        }
    }

    fn live(v: &mut NetView, id: &str, addr: &str, eps: Vec<TaskEndpoint>) {
        v.gossip.live.insert(
            id.into(),
            NodeInfo {
                addr: IpAddr::V4(ip(addr)),
                hostname: format!("host-{id}"),
            },
        );
        v.gossip.endpoints.insert(id.into(), eps);
    }

    fn remote(addr: &str, vtep: &str) -> RemoteEndpoint {
        RemoteEndpoint {
            ip: ip(addr),
            mac: Mac::from_ipv4(ip(addr)),
            vtep: ip(vtep),
        }
    }

    /// A task on two networks: eth0 and eth1 in the task's order, host veths named from the
    /// task id, MTUs from the network's option or the underlay, the gateway on the first.
    #[test]
    fn a_task_is_planned_per_network_in_order() {
        let v = view();
        let two = task(
            "3f9c0a12b4deadbeef0000000",
            &[(OTHER, "10.0.1.7"), (NET, "10.0.0.9")],
        );
        let p = plan_task(&v, &underlay(), &two).unwrap();
        assert_eq!(p.gateway, ip("10.0.1.1"));
        let names: Vec<(&str, &str, u32, u32)> = p
            .interfaces
            .iter()
            .map(|i| (i.ifname.as_str(), i.host_ifname.as_str(), i.vni, i.mtu))
            .collect();
        assert_eq!(
            names,
            [
                ("eth0", "mv3f9c0a12b40", 4098, 1400),
                ("eth1", "mv3f9c0a12b41", 4097, 1450)
            ]
        );
        assert_eq!(p.interfaces[0].mac, Mac::from_ipv4(ip("10.0.1.7")));
        assert_eq!(p.interfaces[1].prefix_len, 24);
        let devices: Vec<(u32, Ipv4Addr, Option<u32>)> = p
            .devices
            .iter()
            .map(|(_, d)| (d.vni, d.node_addr, d.mtu))
            .collect();
        assert_eq!(
            devices,
            [
                (4098, ip("10.0.1.1"), Some(1400)),
                (4097, ip("10.0.0.1"), None)
            ]
        );
        assert_eq!(p.local.interfaces[1].host_ifname, "mv3f9c0a12b41");

        let unknown = task("3f9c0a12b4deadbeef0000001", &[("nope", "10.0.9.9")]);
        let e = plan_task(&v, &underlay(), &unknown).unwrap_err();
        assert!(e.is_transient(), "{e}");
        let mut no_addr = v.clone();
        no_addr
            .nodes
            .get_mut(&Id::from("n1"))
            .unwrap()
            .attachments
            .clear();
        let e = plan_task(&no_addr, &underlay(), &two).unwrap_err();
        assert_eq!(
            e.to_string(),
            "this node has no address on network netback-name yet"
        );
        let e = plan_task(&NetView::default(), &underlay(), &two).unwrap_err();
        assert_eq!(e, PlanError::NotInSwarm);
    }

    /// Remote entries: live remote tasks on the network and live remote nodes' own addresses,
    /// behind their VTEPs; nothing from this node, another network, or a dead node; nothing that
    /// would shadow a local address or contradict an entry already taken.
    #[test]
    fn remote_entries_come_from_live_nodes_only() {
        let mut v = view();
        v.tasks.insert(
            Id::from("local"),
            LocalTask {
                task_id: Id::from("local"),
                service_id: Id::from("svc"),
                container_id: "c".into(),
                netns_cookie: None,
                interfaces: vec![LocalInterface {
                    network_id: Id::from(NET),
                    vni: 4097,
                    host_ifname: "mvlocal00000".into(),
                    ifname: "eth0".into(),
                    addr: ip("10.0.0.20"),
                    prefix_len: 24,
                    mac: Mac::from_ipv4(ip("10.0.0.20")),
                }],
            },
        );
        live(
            &mut v,
            "n1",
            "198.18.1.11",
            vec![ep("local", NET, 4097, "10.0.0.20")],
        );
        live(
            &mut v,
            "n2",
            "198.18.1.12",
            vec![
                ep("t2", NET, 4097, "10.0.0.21"),
                ep("t2", OTHER, 4098, "10.0.1.21"),
                // A stale publication of an address now local: left out.
                ep("old", NET, 4097, "10.0.0.20"),
            ],
        );
        live(
            &mut v,
            "n3",
            "198.18.1.13",
            vec![
                ep("t3", NET, 4097, "10.0.0.31"),
                // The same address as n2's task (n2 still publishes a task that moved): the
                // first node keeps it.
                ep("dup", NET, 4097, "10.0.0.21"),
            ],
        );
        let want = vec![
            remote("10.0.0.2", "198.18.1.12"),
            remote("10.0.0.21", "198.18.1.12"),
            remote("10.0.0.3", "198.18.1.13"),
            remote("10.0.0.31", "198.18.1.13"),
        ];
        let mut sorted = want.clone();
        sorted.sort();
        assert_eq!(remote_endpoints(&v, 4097), sorted);
        assert!(
            remote_endpoints(&v, 4098).is_empty(),
            "no devices for 4098 here"
        );

        // n3 is declared dead: gossip drops it from `live` and `endpoints`.
        v.gossip.live.remove("n3");
        v.gossip.endpoints.remove("n3");
        v.gossip.dead.insert("n3".into());
        assert_eq!(
            remote_endpoints(&v, 4097),
            [
                remote("10.0.0.2", "198.18.1.12"),
                remote("10.0.0.21", "198.18.1.12")
            ]
        );
        // Out of the swarm: nothing.
        v.node = None;
        assert!(remote_endpoints(&v, 4097).is_empty());
    }

    #[test]
    fn published_endpoints_seeds_and_stale_ports() {
        let mut v = view();
        let t = task("3f9c0a12b4deadbeef0000000", &[(NET, "10.0.0.9")]);
        let mut p = plan_task(&v, &underlay(), &t).unwrap();
        p.local.container_id = "c1".into();
        v.tasks.insert(t.id.clone(), p.local);
        assert_eq!(
            published_endpoints(&v),
            [TaskEndpoint {
                task_id: t.id.to_string(),
                service_id: "svc".into(),
                network_id: NET.into(),
                vni: 4097,
                ip: ip("10.0.0.9"),
                mac: [2, 0x42, 10, 0, 0, 9],
                draining: false,
            }]
        );
        // A task being withdrawn is published draining.
        let mut leaving = v.clone();
        leaving.leaving.insert(t.id.clone());
        let drained = published_endpoints(&leaving);
        assert!(drained.len() == 1 && drained[0].draining, "{drained:?}");
        // Nor one whose health check has not passed (or failed).
        let mut unready = v.clone();
        unready.unready.insert(t.id.clone());
        assert!(published_endpoints(&unready).is_empty());
        assert_eq!(
            seeds(&v),
            [
                "198.18.1.12:7946".parse::<SocketAddr>().unwrap(),
                "198.18.1.13:7946".parse().unwrap()
            ]
        );
        assert_eq!(
            stale_ports(
                &[
                    "mv3f9c0a12b40".into(),
                    "mvzzzzzzzzzz0".into(),
                    "veth0".into()
                ],
                &v
            ),
            ["mvzzzzzzzzzz0"]
        );
    }
}
