//! Network facts that the managers and every node's agent both rely on, said once: the ports
//! meshd keeps for itself, the ingress network's VNI, and how a network's MTU is given.

use crate::state::{Network, Protocol};

pub use crate::alloc::{INGRESS_VNI, mac_for};

/// Ports every node's meshd uses itself, which the routing mesh therefore cannot publish: the
/// managers' API and raft, gossip, and VXLAN.
pub const RESERVED_PORTS: [(Protocol, u16, &str); 4] = [
    (Protocol::Tcp, 2377, "meshd's API and raft"),
    (Protocol::Tcp, 7946, "meshd's gossip"),
    (Protocol::Udp, 7946, "meshd's gossip"),
    (Protocol::Udp, VXLAN_PORT, "the overlay's VXLAN"),
];

/// The option that sets a network's MTU, as meshd stores it.
pub const MTU_OPTION: &str = "mtu";
/// Docker's name for the same option (`--opt com.docker.network.driver.mtu=1400`).
pub const DOCKER_MTU_OPTION: &str = "com.docker.network.driver.mtu";
/// The IANA VXLAN port; every node's VXLAN devices send and listen on it.
pub const VXLAN_PORT: u16 = 4789;
/// What VXLAN over IPv4 adds to a frame: outer Ethernet (14) + IPv4 (20) + UDP (8) + VXLAN (8).
pub const VXLAN_OVERHEAD: u32 = 50;
/// The smallest MTU a network may have (every IPv4 host takes 576-byte datagrams).
pub const MIN_MTU: u32 = 576;
/// The largest: a 9000-byte jumbo underlay minus VXLAN's overhead. A node whose underlay is
/// smaller refuses to plumb the network's tasks, saying what it can carry.
pub const MAX_MTU: u32 = 9000 - VXLAN_OVERHEAD;

/// A network's MTU option, if it has one (stored under [`MTU_OPTION`], checked at create).
pub fn network_mtu(network: &Network) -> Option<u32> {
    network
        .spec
        .options
        .get(MTU_OPTION)
        .and_then(|v| v.parse().ok())
}
