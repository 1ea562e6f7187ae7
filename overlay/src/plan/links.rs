//! The kernel's state, reduced to what the plans compare.

use std::net::Ipv4Addr;

use crate::model::Mac;

/// The kind of a link, as far as the overlay cares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LinkKind {
    Bridge,
    Vxlan,
    Veth,
    #[default]
    Other,
}

/// The VXLAN settings the overlay fixes; the kernel cannot change most of them on a live
/// device, so a device that differs is recreated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VxlanConfig {
    pub vni: Option<u32>,
    pub port: Option<u16>,
    pub local: Option<Ipv4Addr>,
    /// The underlay interface's index (`dev`).
    pub underlay: Option<u32>,
    pub learning: bool,
    pub proxy: bool,
}

/// A bridge port's flags that matter for the VXLAN port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortFlags {
    pub learning: bool,
    pub neigh_suppress: bool,
    pub unicast_flood: bool,
}

/// The VXLAN port of every network bridge: it never learns (remote MACs come from the endpoint
/// table), never gets unknown unicast, and gratuitous ARP is not sent to it.
pub const VXLAN_PORT_FLAGS: PortFlags = PortFlags {
    learning: false,
    neigh_suppress: true,
    unicast_flood: false,
};

/// One link as read from the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkState {
    pub index: u32,
    pub name: String,
    pub kind: LinkKind,
    pub mtu: u32,
    pub up: bool,
    pub mac: Option<Mac>,
    /// The bridge this link is a port of.
    pub master: Option<u32>,
    /// A veth's peer index, in the peer's namespace (`IFLA_LINK`).
    pub peer: Option<u32>,
    pub vxlan: Option<VxlanConfig>,
    /// Set when the link is a bridge port.
    pub port: Option<PortFlags>,
    /// `net.ipv4.conf.<link>.forwarding`.
    pub ipv4_forwarding: Option<bool>,
    /// IPv4 addresses with their prefix lengths.
    pub ipv4: Vec<(Ipv4Addr, u8)>,
}

pub(super) fn find<'a>(links: &'a [LinkState], name: &str) -> Option<&'a LinkState> {
    links.iter().find(|l| l.name == name)
}
