//! Links, networks and task interfaces the plan tests share.

use std::net::Ipv4Addr;

use super::links::{LinkKind, LinkState, VXLAN_PORT_FLAGS, VxlanConfig};
use super::task::TaskObserved;
use crate::model::{Mac, NetworkDevices, TaskInterface};

pub(super) const N1: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
pub(super) const N2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 12);
pub(super) const N3: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 13);

pub(super) fn eth0() -> LinkState {
    LinkState {
        index: 2,
        name: "eth0".into(),
        kind: LinkKind::Veth,
        mtu: 1500,
        up: true,
        ipv4: vec![(N1, 24)],
        ..Default::default()
    }
}

pub(super) fn net() -> NetworkDevices {
    NetworkDevices {
        vni: 4097,
        node_addr: Ipv4Addr::new(10, 0, 1, 2),
        prefix_len: 24,
        mtu: None,
        underlay_addr: N1,
        underlay_ifname: "eth0".into(),
    }
}

/// The links a correct network 4097 leaves behind.
pub(super) fn good_links() -> Vec<LinkState> {
    let n = net();
    vec![
        eth0(),
        LinkState {
            index: 10,
            name: "mbr4097".into(),
            kind: LinkKind::Bridge,
            mtu: 1450,
            up: true,
            mac: Some(n.bridge_mac()),
            ipv4_forwarding: Some(false),
            ipv4: vec![(n.node_addr, 24)],
            ..Default::default()
        },
        LinkState {
            index: 11,
            name: "mvx4097".into(),
            kind: LinkKind::Vxlan,
            mtu: 1450,
            up: true,
            master: Some(10),
            vxlan: Some(VxlanConfig {
                vni: Some(4097),
                port: Some(4789),
                local: Some(N1),
                underlay: Some(2),
                learning: false,
                proxy: true,
            }),
            port: Some(VXLAN_PORT_FLAGS),
            ..Default::default()
        },
    ]
}

pub(super) fn iface(vni: u32, n: u8) -> TaskInterface {
    let addr = Ipv4Addr::new(10, 0, (vni - 4096) as u8, 11);
    TaskInterface {
        vni,
        host_ifname: format!("mvabcdefghij{n}"),
        ifname: format!("eth{n}"),
        addr,
        prefix_len: 24,
        mac: Mac::from_ipv4(addr),
        mtu: 1450,
    }
}

pub(super) fn node_with_bridges() -> Vec<LinkState> {
    let mut links = good_links();
    links.push(LinkState {
        index: 12,
        name: "mbr4098".into(),
        kind: LinkKind::Bridge,
        ..Default::default()
    });
    links
}

pub(super) fn fresh_task() -> TaskObserved {
    TaskObserved {
        node_links: node_with_bridges(),
        task_links: vec![LinkState {
            index: 1,
            name: "lo".into(),
            ..Default::default()
        }],
        default_gateway: None,
        rp_filter: Some(0),
    }
}
