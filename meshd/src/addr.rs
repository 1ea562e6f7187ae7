//! The node's advertised address: `--advertise-addr` as an IPv4 address or an interface name,
//! or, when not given, the address of the interface of the one default route.
//!
//! The parsing and the choice are pure (`parse`, `default_route_interfaces`, `choose`); only
//! [`resolve`] reads the system (`/proc/net/route` and `getifaddrs`), in meshd's network
//! namespace, so it runs after `--netns` is entered.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;

/// What `--advertise-addr` (or `MESHD_ADVERTISE_ADDR`) names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Advertise {
    Addr(Ipv4Addr),
    Interface(String),
}

/// What both forms accept, for every error message.
const ACCEPTED: &str =
    "give an IPv4 address (192.0.2.10) or the name of an interface that has one (eth0)";

/// The clap parser of `--advertise-addr`.
pub fn parse(s: &str) -> Result<Advertise, String> {
    if let Ok(a) = s.parse::<Ipv4Addr>() {
        return Ok(Advertise::Addr(a));
    }
    if s.contains(':') {
        return Err(format!(
            "invalid --advertise-addr {s:?}: IPv6 (or a port) is not supported; {ACCEPTED}"
        ));
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!(
            "invalid --advertise-addr {s:?}: not an IPv4 address; {ACCEPTED}"
        ));
    }
    // The kernel's rule for a device name: 1 to 15 bytes, no '/', no whitespace.
    let bad = s.is_empty()
        || s.len() > 15
        || s == "."
        || s == ".."
        || s.bytes()
            .any(|b| b == b'/' || b.is_ascii_whitespace() || b.is_ascii_control());
    if bad {
        return Err(format!(
            "invalid --advertise-addr {s:?}: neither an IPv4 address nor an interface name (1 to 15 characters, no '/' or spaces); {ACCEPTED}"
        ));
    }
    Ok(Advertise::Interface(s.to_owned()))
}

/// The interfaces of the default routes in `/proc/net/route` (destination and mask 0, route
/// up), each once, in the table's order.
pub fn default_route_interfaces(proc_net_route: &str) -> Vec<String> {
    const RTF_UP: u32 = 0x1;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    // The first line is the header: Iface Destination Gateway Flags RefCnt Use Metric Mask ...
    for line in proc_net_route.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [iface, dest, _gw, flags, _refcnt, _use, _metric, mask, ..] = f[..] else {
            continue;
        };
        let up = u32::from_str_radix(flags, 16).is_ok_and(|fl| fl & RTF_UP != 0);
        let zero = |h: &str| u32::from_str_radix(h, 16) == Ok(0);
        if up && zero(dest) && zero(mask) && seen.insert(iface.to_owned()) {
            out.push(iface.to_owned());
        }
    }
    out
}

/// One row of `getifaddrs`: an interface and, when the row is an IPv4 address, the address.
/// Every interface has at least one row (its link-layer one, without IPv4).
pub type IfRow = (String, Option<Ipv4Addr>);

/// Why an interface gave no address.
#[derive(Debug, PartialEq, Eq)]
pub enum IfError {
    NoSuchInterface { name: String, known: Vec<String> },
    NoIpv4 { name: String },
}

impl fmt::Display for IfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IfError::NoSuchInterface { name, known } => write!(
                f,
                "no interface {name:?} in meshd's network namespace (there are: {})",
                known.join(", ")
            ),
            IfError::NoIpv4 { name } => write!(f, "interface {name:?} has no IPv4 address"),
        }
    }
}

/// The first IPv4 address of interface `name` among `rows`.
pub fn interface_ipv4(name: &str, rows: &[IfRow]) -> Result<Ipv4Addr, IfError> {
    if let Some(a) = rows
        .iter()
        .find_map(|(n, a)| (n == name).then_some(*a).flatten())
    {
        return Ok(a);
    }
    if rows.iter().any(|(n, _)| n == name) {
        return Err(IfError::NoIpv4 {
            name: name.to_owned(),
        });
    }
    let known: BTreeSet<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
    Err(IfError::NoSuchInterface {
        name: name.to_owned(),
        known: known.into_iter().map(str::to_owned).collect(),
    })
}

/// The address meshd gives the daemon as the default of `swarm init/join --advertise-addr`,
/// and how it was found (for the log).
#[derive(Debug, PartialEq, Eq)]
pub struct Chosen {
    pub addr: Option<Ipv4Addr>,
    pub how: String,
}

/// The choice: the address asked for; the first IPv4 address of the interface asked for (an
/// error when it has none); else, with exactly one default route interface, that interface's
/// first IPv4 address; else none (`swarm init/join` then ask for `--advertise-addr`).
pub fn choose(
    asked: Option<&Advertise>,
    route_table: &str,
    rows: &[IfRow],
) -> Result<Chosen, String> {
    match asked {
        Some(Advertise::Addr(a)) => Ok(Chosen {
            addr: Some(*a),
            how: "--advertise-addr".into(),
        }),
        Some(Advertise::Interface(name)) => match interface_ipv4(name, rows) {
            Ok(a) => Ok(Chosen {
                addr: Some(a),
                how: format!("the first IPv4 address of {name} (--advertise-addr)"),
            }),
            Err(e) => Err(format!(
                "invalid --advertise-addr {name:?}: {e}; {ACCEPTED}"
            )),
        },
        None => {
            let ifaces = default_route_interfaces(route_table);
            let none = |how: String| Ok(Chosen { addr: None, how });
            match &ifaces[..] {
                [] => none(
                    "no default route: give --advertise-addr to meshd or to swarm init/join".into(),
                ),
                [one] => match interface_ipv4(one, rows) {
                    Ok(a) => Ok(Chosen {
                        addr: Some(a),
                        how: format!(
                            "the first IPv4 address of {one}, the interface of the default route"
                        ),
                    }),
                    Err(e) => none(format!(
                        "the default route's interface gives none ({e}): give --advertise-addr"
                    )),
                },
                many => none(format!(
                    "default routes over several interfaces ({}): give --advertise-addr",
                    many.join(", ")
                )),
            }
        }
    }
}

/// [`choose`] on this network namespace's routes and interfaces.
pub fn resolve(asked: Option<&Advertise>) -> anyhow::Result<Chosen> {
    if let Some(Advertise::Addr(a)) = asked {
        return Ok(Chosen {
            addr: Some(*a),
            how: "--advertise-addr".into(),
        });
    }
    // Without a routing table (no IPv4 in this namespace), there is no default route.
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let rows: Vec<IfRow> = nix::ifaddrs::getifaddrs()
        .map_err(|e| anyhow::anyhow!("listing the network interfaces (getifaddrs): {e}"))?
        .map(|i| {
            let v4 = i
                .address
                .as_ref()
                .and_then(|a| a.as_sockaddr_in())
                .map(nix::sys::socket::SockaddrIn::ip);
            (i.interface_name, v4)
        })
        .collect();
    choose(asked, &routes, &rows).map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

    fn table(rows: &[&str]) -> String {
        let mut t = HEADER.to_owned();
        for r in rows {
            t.push_str(r);
            t.push('\n');
        }
        t
    }

    const DEFAULT_ETH0: &str = "eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0";
    const LAN_ETH0: &str = "eth0\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0";
    const DEFAULT_WG0: &str = "wg0\t00000000\t00000000\t0001\t0\t0\t50\t00000000\t0\t0\t0";

    fn rows() -> Vec<IfRow> {
        vec![
            ("lo".into(), None),
            ("eth0".into(), None),
            ("eth1".into(), None),
            ("lo".into(), Some(Ipv4Addr::LOCALHOST)),
            ("eth0".into(), Some(Ipv4Addr::new(192, 168, 0, 7))),
            ("eth0".into(), Some(Ipv4Addr::new(192, 168, 0, 8))),
        ]
    }

    #[test]
    fn parse_takes_an_address_or_an_interface_name() {
        assert_eq!(
            parse("192.0.2.10"),
            Ok(Advertise::Addr(Ipv4Addr::new(192, 0, 2, 10)))
        );
        for name in ["eth0", "enp3s0", "eth0.100", "br-lan", "wlp2s0"] {
            assert_eq!(parse(name), Ok(Advertise::Interface(name.into())));
        }
    }

    #[test]
    fn parse_refuses_what_is_neither_and_says_what_is_accepted() {
        for (bad, why) in [
            ("10.0.0.300", "not an IPv4 address"),
            ("10.0.0", "not an IPv4 address"),
            ("2001:db8::1", "IPv6"),
            ("10.0.0.1:2377", "IPv6 (or a port)"),
            ("", "neither"),
            ("a-very-long-interface", "neither"),
            ("eth 0", "neither"),
            ("eth/0", "neither"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(e.contains(&format!("{bad:?}")), "{e}");
            assert!(e.contains("IPv4 address") && e.contains("interface"), "{e}");
        }
    }

    #[test]
    fn default_routes_are_found_once_per_interface() {
        assert_eq!(
            default_route_interfaces(&table(&[LAN_ETH0, DEFAULT_ETH0])),
            ["eth0"]
        );
        // Two default routes over one interface (different metrics) are one interface.
        let second = DEFAULT_ETH0.replace("\t100\t", "\t200\t");
        assert_eq!(
            default_route_interfaces(&table(&[DEFAULT_ETH0, &second])),
            ["eth0"]
        );
        assert_eq!(
            default_route_interfaces(&table(&[DEFAULT_ETH0, DEFAULT_WG0])),
            ["eth0", "wg0"]
        );
        assert!(default_route_interfaces(&table(&[LAN_ETH0])).is_empty());
        assert!(default_route_interfaces("").is_empty());
        assert!(default_route_interfaces(HEADER).is_empty());
        // A route that is not up does not count.
        let down = DEFAULT_ETH0.replace("\t0003\t", "\t0002\t");
        assert!(default_route_interfaces(&table(&[&down])).is_empty());
    }

    #[test]
    fn an_interface_gives_its_first_ipv4_address() {
        assert_eq!(
            interface_ipv4("eth0", &rows()),
            Ok(Ipv4Addr::new(192, 168, 0, 7))
        );
        assert_eq!(
            interface_ipv4("eth1", &rows()),
            Err(IfError::NoIpv4 {
                name: "eth1".into()
            })
        );
        let e = interface_ipv4("eth9", &rows()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no interface \"eth9\" in meshd's network namespace (there are: eth0, eth1, lo)"
        );
    }

    #[test]
    fn an_asked_address_is_taken_as_it_is() {
        let a = Advertise::Addr(Ipv4Addr::new(198, 18, 0, 11));
        let c = choose(Some(&a), "", &[]).unwrap();
        assert_eq!(c.addr, Some(Ipv4Addr::new(198, 18, 0, 11)));
    }

    #[test]
    fn an_asked_interface_gives_its_address_or_a_clear_error() {
        let eth0 = Advertise::Interface("eth0".into());
        let c = choose(Some(&eth0), "", &rows()).unwrap();
        assert_eq!(c.addr, Some(Ipv4Addr::new(192, 168, 0, 7)));
        assert!(c.how.contains("eth0"), "{}", c.how);

        let e = choose(Some(&Advertise::Interface("eth1".into())), "", &rows()).unwrap_err();
        assert!(e.contains("\"eth1\" has no IPv4 address"), "{e}");
        assert!(e.contains(ACCEPTED), "{e}");
        let e = choose(Some(&Advertise::Interface("eth9".into())), "", &rows()).unwrap_err();
        assert!(e.contains("no interface \"eth9\""), "{e}");
        assert!(e.contains(ACCEPTED), "{e}");
    }

    #[test]
    fn without_a_flag_the_one_default_route_gives_the_address() {
        let c = choose(None, &table(&[LAN_ETH0, DEFAULT_ETH0]), &rows()).unwrap();
        assert_eq!(c.addr, Some(Ipv4Addr::new(192, 168, 0, 7)));
        assert!(c.how.contains("default route"), "{}", c.how);
    }

    #[test]
    fn without_a_flag_no_single_default_route_gives_none() {
        // No default route.
        let c = choose(None, &table(&[LAN_ETH0]), &rows()).unwrap();
        assert_eq!(c.addr, None);
        assert!(c.how.contains("no default route"), "{}", c.how);
        // Default routes over two interfaces: ambiguous.
        let c = choose(None, &table(&[DEFAULT_ETH0, DEFAULT_WG0]), &rows()).unwrap();
        assert_eq!(c.addr, None);
        assert!(c.how.contains("eth0, wg0"), "{}", c.how);
        // The default route's interface has no IPv4 address: none, not an error.
        let eth1 = DEFAULT_ETH0.replace("eth0", "eth1");
        let c = choose(None, &table(&[&eth1]), &rows()).unwrap();
        assert_eq!(c.addr, None);
        assert!(c.how.contains("\"eth1\" has no IPv4 address"), "{}", c.how);
    }

    #[test]
    fn resolve_reads_this_namespace() {
        // Loopback exists in every namespace and always has 127.0.0.1.
        let lo = Advertise::Interface("lo".into());
        assert_eq!(resolve(Some(&lo)).unwrap().addr, Some(Ipv4Addr::LOCALHOST));
        let e = resolve(Some(&Advertise::Interface("nosuchif0".into()))).unwrap_err();
        assert!(e.to_string().contains("no interface \"nosuchif0\""), "{e}");
        // Without a flag: whatever this machine has, no error.
        resolve(None).unwrap();
    }
}
