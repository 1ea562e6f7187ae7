//! How this node reaches another node on the underlay, from its main routing table as read:
//! native routing (issue 19) sends a task's packet to another node's underlay address without
//! encapsulation, which works only where that address is on-link (no gateway in between, which
//! would not know the task addresses). Also the host routes meshd writes for it, so that the
//! node's own packets to remote addresses of a native network go the same way.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

/// The routing protocol number that marks meshd's native routes (`ip route ... proto 77`), so
/// that meshd changes only its own routes.
pub const NATIVE_ROUTE_PROTOCOL: u8 = 77;

/// A host route for native routing: a remote address of a native network (the key of the maps
/// below) via its node's underlay address, from this node's own address on that network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NativeRoute {
    pub via: Ipv4Addr,
    pub src: Ipv4Addr,
}

/// The routes to write (new or changed, by destination) and the destinations whose route goes,
/// to turn `current` into `wanted`.
pub fn native_route_changes(
    current: &BTreeMap<Ipv4Addr, NativeRoute>,
    wanted: &BTreeMap<Ipv4Addr, NativeRoute>,
) -> (Vec<(Ipv4Addr, NativeRoute)>, Vec<Ipv4Addr>) {
    let put = wanted
        .iter()
        .filter(|(d, r)| current.get(d) != Some(r))
        .map(|(d, r)| (*d, *r))
        .collect();
    let remove = current
        .keys()
        .filter(|d| !wanted.contains_key(d))
        .copied()
        .collect();
    (put, remove)
}

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

    /// A moved address is written again, a gone one removed, an unchanged one left alone.
    #[test]
    fn route_changes_are_the_difference() {
        let ip = |s: &str| -> Ipv4Addr { s.parse().unwrap() };
        let r = |via: &str| NativeRoute {
            via: ip(via),
            src: ip("10.0.0.2"),
        };
        let current = BTreeMap::from([
            (ip("10.0.0.5"), r("198.18.0.12")),
            (ip("10.0.0.6"), r("198.18.0.12")),
            (ip("10.0.0.7"), r("198.18.0.13")),
        ]);
        let wanted = BTreeMap::from([
            (ip("10.0.0.5"), r("198.18.0.12")),
            (ip("10.0.0.6"), r("198.18.0.13")),
            (ip("10.0.0.8"), r("198.18.0.13")),
        ]);
        let (put, remove) = native_route_changes(&current, &wanted);
        assert_eq!(
            put,
            [
                (ip("10.0.0.6"), r("198.18.0.13")),
                (ip("10.0.0.8"), r("198.18.0.13"))
            ]
        );
        assert_eq!(remove, [ip("10.0.0.7")]);
    }

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
