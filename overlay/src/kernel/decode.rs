//! Netlink messages reduced to what the plans compare.

use std::net::{IpAddr, Ipv4Addr};

use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    AfSpecInet, AfSpecUnspec, InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoVxlan,
    LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};

use crate::model::Mac;
use crate::plan::{LinkKind, LinkState, PortFlags, VxlanConfig};

pub(super) fn ipv4_of(a: &AddressMessage) -> Option<Ipv4Addr> {
    if a.header.family != AddressFamily::Inet {
        return None;
    }
    let pick = |want_local: bool| {
        a.attributes.iter().find_map(|attr| match attr {
            AddressAttribute::Local(IpAddr::V4(ip)) if want_local => Some(*ip),
            AddressAttribute::Address(IpAddr::V4(ip)) if !want_local => Some(*ip),
            _ => None,
        })
    };
    pick(true).or_else(|| pick(false))
}

/// A link message reduced to what the plans compare.
pub(super) fn link_state(msg: &LinkMessage) -> LinkState {
    let mut l = LinkState {
        index: msg.header.index,
        up: msg.header.flags.contains(LinkFlags::Up),
        ..LinkState::default()
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => l.name.clone_from(n),
            LinkAttribute::Mtu(m) => l.mtu = *m,
            LinkAttribute::Address(a) => l.mac = Mac::try_from(a.as_slice()).ok(),
            LinkAttribute::Controller(m) if *m != 0 => l.master = Some(*m),
            LinkAttribute::Link(p) => l.peer = Some(*p),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(k) => {
                            l.kind = match k {
                                InfoKind::Bridge => LinkKind::Bridge,
                                InfoKind::Vxlan => LinkKind::Vxlan,
                                InfoKind::Veth => LinkKind::Veth,
                                _ => LinkKind::Other,
                            };
                        }
                        LinkInfo::Data(InfoData::Vxlan(v)) => l.vxlan = Some(vxlan_config(v)),
                        LinkInfo::PortData(InfoPortData::BridgePort(p)) => {
                            l.port = Some(port_flags(p));
                        }
                        _ => {}
                    }
                }
            }
            LinkAttribute::AfSpecUnspec(specs) => {
                for spec in specs {
                    if let AfSpecUnspec::Inet(inet) = spec {
                        for i in inet {
                            if let AfSpecInet::DevConf(c) = i {
                                l.ipv4_forwarding = Some(c.forwarding != 0);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    l
}

fn vxlan_config(attrs: &[InfoVxlan]) -> VxlanConfig {
    let mut c = VxlanConfig {
        learning: true,
        ..VxlanConfig::default()
    };
    for a in attrs {
        match a {
            InfoVxlan::Id(v) => c.vni = Some(*v),
            InfoVxlan::Port(p) => c.port = Some(*p),
            InfoVxlan::Local(ip) => c.local = Some(*ip),
            InfoVxlan::Link(i) if *i != 0 => c.underlay = Some(*i),
            InfoVxlan::Learning(b) => c.learning = *b,
            InfoVxlan::Proxy(b) => c.proxy = *b,
            _ => {}
        }
    }
    c
}

fn port_flags(attrs: &[InfoBridgePort]) -> PortFlags {
    // The kernel's defaults for a new port, overridden by what it reports.
    let mut f = PortFlags {
        learning: true,
        neigh_suppress: false,
        unicast_flood: true,
    };
    for a in attrs {
        match a {
            InfoBridgePort::Learning(b) => f.learning = *b,
            InfoBridgePort::NeighSupress(b) => f.neigh_suppress = *b,
            InfoBridgePort::UnicastFlood(b) => f.unicast_flood = *b,
            _ => {}
        }
    }
    f
}
