//! The two ways a network's packets cross between nodes (issue 19), for the overlay and mesh
//! tests that run on both: a lab made with either, and a capture of a node's underlay that says
//! whether what crossed went the way the routing says (VXLAN only, or as it is only).

use super::capture::Tcpdump;
use super::{Lab, first_and_after, host};

/// How a lab's networks (`ingress` and every network created without `--opt routing`) cross
/// between nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    /// Encapsulated in VXLAN (the default, as Swarm).
    Vxlan,
    /// On the underlay as they are (`swarm init --default-routing native`).
    Native,
}

impl Routing {
    /// The `lab up` arguments that make the swarm's networks routed this way.
    pub fn lab_args(self) -> &'static [&'static str] {
        match self {
            Self::Vxlan => &[],
            Self::Native => &["--default-routing", "native"],
        }
    }

    /// The value `network inspect` shows in `Options.routing`.
    pub fn option(self) -> &'static str {
        match self {
            Self::Vxlan => "vxlan",
            Self::Native => "native",
        }
    }

    /// Checks what crossed a node's underlay ([`underlay_capture`]): on a VXLAN lab, overlay
    /// packets only inside VXLAN; on a native lab, no VXLAN and overlay packets as they are.
    /// Returns how many packets of the overlay crossed.
    pub fn assert_crossed(self, captured: &str, what: &str) -> usize {
        let vxlan = vxlan_lines(captured).len();
        let plain = plain_overlay_lines(captured);
        match self {
            Self::Vxlan => {
                assert!(
                    plain.is_empty(),
                    "{what}: overlay packets on the underlay outside VXLAN:\n{}",
                    plain.join("\n")
                );
                assert!(vxlan > 0, "{what}: no VXLAN on the underlay:\n{captured}");
                vxlan
            }
            Self::Native => {
                assert!(
                    vxlan == 0,
                    "{what}: VXLAN on the underlay of a native lab:\n{captured}"
                );
                assert!(
                    !plain.is_empty(),
                    "{what}: no overlay packet on the underlay:\n{captured}"
                );
                plain.len()
            }
        }
    }
}

/// The VXLAN packets of a capture.
pub fn vxlan_lines(captured: &str) -> Vec<&str> {
    captured.lines().filter(|l| l.contains("VXLAN")).collect()
}

/// The overlay's packets (10.0.0.0/8 either way) that crossed as they are: lines of their own
/// (tcpdump starts them with the time, `22:50:01.123456`; it prints the inner frame of a VXLAN
/// packet on the line after it, starting with a MAC).
pub fn plain_overlay_lines(captured: &str) -> Vec<&str> {
    captured
        .lines()
        .filter(|l| l.split_whitespace().next().is_some_and(|t| t.contains('.')))
        .filter(|l| !l.contains("VXLAN") && !l.contains("ethertype ARP"))
        .filter(|l| l.contains(": 10.") || l.contains(" > 10."))
        .collect()
}

/// tcpdump on a node's underlay of VXLAN, ARP and the overlay's addresses as they are.
pub fn underlay_capture(lab: &Lab, member: &str) -> Tcpdump {
    Tcpdump::start(
        lab,
        member,
        "eth0",
        "udp port 4789 or arp or (ip and net 10.0.0.0/8)",
    )
}

/// meshd's native routes in a node (`ip route show proto 77`): `(destination, via)`.
pub fn native_routes(lab: &Lab, member: &str) -> Vec<(String, String)> {
    let text = host(
        "ip",
        &[
            "netns",
            "exec",
            &lab.ns(member),
            "ip",
            "route",
            "show",
            "proto",
            "77",
        ],
    );
    first_and_after(&text, "via")
}
