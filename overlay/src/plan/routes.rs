//! How this node reaches another node on the underlay, from its main routing table as read:
//! native routing (issue 19) sends a task's packet to another node's underlay address without
//! encapsulation, which works only where that address is on-link (no gateway in between, which
//! would not know the task addresses).

use std::fmt;
use std::net::Ipv4Addr;

/// A unicast route of the main table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Route {
    pub dst: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
}

/// How an address is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextHop {
    /// On a segment of this node: a packet goes straight to it.
    OnLink,
    /// Through a gateway.
    Via(Ipv4Addr),
    /// No route.
    Unreachable,
}

impl fmt::Display for NextHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OnLink => f.write_str("on-link"),
            Self::Via(gw) => write!(f, "via gateway {gw}"),
            Self::Unreachable => f.write_str("no route"),
        }
    }
}

/// The next hop to `to`: the longest matching prefix of `routes` decides.
pub fn next_hop(to: Ipv4Addr, routes: &[Ipv4Route]) -> NextHop {
    let covers = |r: &&Ipv4Route| {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(r.prefix_len.min(32)))
            .unwrap_or(0);
        u32::from(to) & mask == u32::from(r.dst) & mask
    };
    match routes.iter().filter(covers).max_by_key(|r| r.prefix_len) {
        None => NextHop::Unreachable,
        Some(Ipv4Route { gateway: None, .. }) => NextHop::OnLink,
        Some(Ipv4Route {
            gateway: Some(gw), ..
        }) => NextHop::Via(*gw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dst: &str, prefix_len: u8, gateway: Option<&str>) -> Ipv4Route {
        Ipv4Route {
            dst: dst.parse().unwrap(),
            prefix_len,
            gateway: gateway.map(|g| g.parse().unwrap()),
        }
    }

    /// The most specific route wins: a peer on the node's segment is on-link, one behind the
    /// default route or a more specific routed prefix is via its gateway, and nothing is
    /// unreachable without a default route.
    #[test]
    fn the_longest_prefix_decides() {
        let routes = [
            route("0.0.0.0", 0, Some("198.18.0.1")),
            route("198.18.0.0", 24, None),
            route("198.18.0.128", 25, Some("198.18.0.2")),
        ];
        let hop = |a: &str| next_hop(a.parse().unwrap(), &routes);
        assert_eq!(hop("198.18.0.12"), NextHop::OnLink);
        assert_eq!(
            hop("198.18.0.200"),
            NextHop::Via("198.18.0.2".parse().unwrap())
        );
        assert_eq!(
            hop("198.19.0.5"),
            NextHop::Via("198.18.0.1".parse().unwrap())
        );
        assert_eq!(
            next_hop("10.0.0.1".parse().unwrap(), &routes[1..]),
            NextHop::Unreachable
        );
        assert_eq!(
            next_hop("10.0.0.1".parse().unwrap(), &[route("10.0.0.1", 32, None)]),
            NextHop::OnLink
        );
    }
}
