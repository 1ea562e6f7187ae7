//! Network facts that the managers and every node's agent both rely on, said once: the ports
//! meshd keeps for itself, the ingress network's VNI, how a network's MTU is given, and how
//! its tasks' packets cross between nodes (its routing: VXLAN or native).

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

/// The option that chooses how a network's packets cross between nodes (`--opt routing=native`).
pub const ROUTING_OPTION: &str = "routing";

/// How a network's task packets cross from node to node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Routing {
    /// Encapsulated in VXLAN between the nodes' underlay addresses (Swarm's way, the default).
    #[default]
    Vxlan,
    /// Not encapsulated: routed on the underlay to the node that runs the task, where the
    /// nodes share a segment (a node whose next hop to a peer is not on-link falls back to
    /// VXLAN for the network).
    Native,
}

impl Routing {
    /// The accepted values, as errors list them.
    pub const ACCEPTED: &'static str = "native or vxlan";

    /// The option's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vxlan => "vxlan",
            Self::Native => "native",
        }
    }
}

impl std::fmt::Display for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Routing {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "vxlan" => Ok(Self::Vxlan),
            "native" => Ok(Self::Native),
            other => Err(format!(
                "invalid routing {other:?}: expected {}",
                Self::ACCEPTED
            )),
        }
    }
}

/// A network's routing: its [`ROUTING_OPTION`] (stored at create, the cluster default when the
/// option was not given), VXLAN for a network made before the option existed.
pub fn network_routing(network: &Network) -> Routing {
    network
        .spec
        .options
        .get(ROUTING_OPTION)
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both values print back as they parse; anything else is refused naming what is accepted.
    #[test]
    fn routing_parses_its_two_values_only() {
        for r in [Routing::Vxlan, Routing::Native] {
            assert_eq!(r.as_str().parse::<Routing>(), Ok(r));
        }
        let e = "geneve".parse::<Routing>().unwrap_err();
        assert_eq!(e, "invalid routing \"geneve\": expected native or vxlan");
        assert!("".parse::<Routing>().is_err());
        assert!("Native".parse::<Routing>().is_err());
    }
}
