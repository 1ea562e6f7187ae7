//! Remote endpoints: the static VXLAN FDB, bridge FDB and neighbour entries for remote tasks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use crate::OverlayError;
use crate::model::{Mac, RemoteEndpoint};

/// A network's static entries for remote tasks, as the kernel holds them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointTables {
    /// `bridge fdb ... dev mvx<vni> self dst VTEP`: where the VXLAN device sends a MAC (the
    /// kernel allows several destinations per MAC; we want exactly one).
    pub vxlan_fdb: BTreeMap<Mac, Vec<Ipv4Addr>>,
    /// `bridge fdb ... dev mvx<vni> master static`: MACs the bridge sends to the VXLAN port.
    pub bridge_fdb: BTreeSet<Mac>,
    /// `ip neigh ... dev mvx<vni> nud permanent`: what the VXLAN device answers ARP with.
    pub neighbours: BTreeMap<Ipv4Addr, Mac>,
}

/// One change to a network's static entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointOp {
    /// Create or replace the VXLAN FDB entry (one destination).
    SetVxlanFdb {
        mac: Mac,
        vtep: Ipv4Addr,
    },
    /// Remove the VXLAN FDB entry with all its destinations.
    DelVxlanFdb {
        mac: Mac,
    },
    SetBridgeFdb {
        mac: Mac,
    },
    DelBridgeFdb {
        mac: Mac,
    },
    SetNeighbour {
        ip: Ipv4Addr,
        mac: Mac,
    },
    DelNeighbour {
        ip: Ipv4Addr,
    },
}

impl fmt::Display for EndpointOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SetVxlanFdb { mac, vtep } => write!(f, "fdb {mac} self dst {vtep} permanent"),
            Self::DelVxlanFdb { mac } => write!(f, "fdb del {mac} self"),
            Self::SetBridgeFdb { mac } => write!(f, "fdb {mac} master static"),
            Self::DelBridgeFdb { mac } => write!(f, "fdb del {mac} master"),
            Self::SetNeighbour { ip, mac } => write!(f, "neigh {ip} lladdr {mac} permanent"),
            Self::DelNeighbour { ip } => write!(f, "neigh del {ip}"),
        }
    }
}

/// The tables that `endpoints` call for, after checking that they agree with each other.
pub fn desired_tables(endpoints: &[RemoteEndpoint]) -> Result<EndpointTables, OverlayError> {
    let mut t = EndpointTables::default();
    for e in endpoints {
        if !e.mac.is_unicast() {
            return Err(OverlayError::invalid(format!(
                "endpoint {}: MAC {} is not a unicast address",
                e.ip, e.mac
            )));
        }
        if e.ip.is_unspecified() || e.ip.is_multicast() || e.ip.is_broadcast() {
            return Err(OverlayError::invalid(format!(
                "endpoint address {}: give a task's unicast address",
                e.ip
            )));
        }
        if e.vtep.is_unspecified() || e.vtep.is_multicast() || e.vtep.is_broadcast() {
            return Err(OverlayError::invalid(format!(
                "endpoint {}: VTEP {} is not a node's unicast underlay address",
                e.ip, e.vtep
            )));
        }
        match t.vxlan_fdb.get(&e.mac) {
            Some(v) if v[0] != e.vtep => {
                return Err(OverlayError::invalid(format!(
                    "MAC {} is given behind two nodes, {} and {}; one MAC lives on one node",
                    e.mac, v[0], e.vtep
                )));
            }
            _ => {}
        }
        match t.neighbours.get(&e.ip) {
            Some(m) if *m != e.mac => {
                return Err(OverlayError::invalid(format!(
                    "address {} is given with two MACs, {m} and {}; one address has one MAC",
                    e.ip, e.mac
                )));
            }
            _ => {}
        }
        t.vxlan_fdb.insert(e.mac, vec![e.vtep]);
        t.bridge_fdb.insert(e.mac);
        t.neighbours.insert(e.ip, e.mac);
    }
    Ok(t)
}

/// The changes that turn `actual` into the tables `endpoints` call for: removals first (the
/// neighbour before the FDB entries, so no ARP answer points at a MAC that cannot be reached),
/// then additions in the opposite order. A moved MAC is one replace, never a gap.
pub fn plan_endpoints(
    endpoints: &[RemoteEndpoint],
    actual: &EndpointTables,
) -> Result<Vec<EndpointOp>, OverlayError> {
    let want = desired_tables(endpoints)?;
    let mut ops = Vec::new();
    // A neighbour with another MAC is replaced below, not removed.
    for ip in actual.neighbours.keys() {
        if !want.neighbours.contains_key(ip) {
            ops.push(EndpointOp::DelNeighbour { ip: *ip });
        }
    }
    for mac in actual.bridge_fdb.difference(&want.bridge_fdb) {
        ops.push(EndpointOp::DelBridgeFdb { mac: *mac });
    }
    for (mac, vteps) in &actual.vxlan_fdb {
        let wanted = want.vxlan_fdb.get(mac);
        // Several destinations for one MAC would flood to all of them: start that one afresh.
        if wanted.is_none() || vteps.len() > 1 {
            ops.push(EndpointOp::DelVxlanFdb { mac: *mac });
        }
    }
    for (mac, vteps) in &want.vxlan_fdb {
        let vtep = vteps[0];
        let have = actual.vxlan_fdb.get(mac);
        let correct = have.is_some_and(|h| h.as_slice() == [vtep]);
        if !correct {
            ops.push(EndpointOp::SetVxlanFdb { mac: *mac, vtep });
        }
    }
    for mac in want.bridge_fdb.difference(&actual.bridge_fdb) {
        ops.push(EndpointOp::SetBridgeFdb { mac: *mac });
    }
    for (ip, mac) in &want.neighbours {
        if actual.neighbours.get(ip) != Some(mac) {
            ops.push(EndpointOp::SetNeighbour { ip: *ip, mac: *mac });
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fixtures::*;

    fn ep(last: u8, vtep: Ipv4Addr) -> RemoteEndpoint {
        let ip = Ipv4Addr::new(10, 0, 1, last);
        RemoteEndpoint {
            ip,
            mac: Mac::from_ipv4(ip),
            vtep,
        }
    }

    fn applied(ops: &[EndpointOp], mut t: EndpointTables) -> EndpointTables {
        for op in ops {
            match *op {
                EndpointOp::SetVxlanFdb { mac, vtep } => {
                    t.vxlan_fdb.insert(mac, vec![vtep]);
                }
                EndpointOp::DelVxlanFdb { mac } => {
                    t.vxlan_fdb.remove(&mac);
                }
                EndpointOp::SetBridgeFdb { mac } => {
                    t.bridge_fdb.insert(mac);
                }
                EndpointOp::DelBridgeFdb { mac } => {
                    t.bridge_fdb.remove(&mac);
                }
                EndpointOp::SetNeighbour { ip, mac } => {
                    t.neighbours.insert(ip, mac);
                }
                EndpointOp::DelNeighbour { ip } => {
                    t.neighbours.remove(&ip);
                }
            }
        }
        t
    }

    #[test]
    fn endpoints_are_added_to_all_three_tables() {
        let want = [ep(12, N2), ep(13, N3)];
        let ops = plan_endpoints(&want, &EndpointTables::default()).unwrap();
        let m12 = want[0].mac;
        assert_eq!(ops.len(), 6, "{ops:?}");
        assert_eq!(ops[0], EndpointOp::SetVxlanFdb { mac: m12, vtep: N2 });
        // FDB entries exist before the ARP answer that points at them.
        assert!(matches!(ops[4], EndpointOp::SetNeighbour { .. }));
        let t = applied(&ops, EndpointTables::default());
        assert_eq!(t, desired_tables(&want).unwrap());
        assert_eq!(plan_endpoints(&want, &t).unwrap(), vec![], "no-op");
    }

    #[test]
    fn endpoints_gone_are_removed_neighbour_first() {
        let t = desired_tables(&[ep(12, N2), ep(13, N3)]).unwrap();
        let ops = plan_endpoints(&[ep(13, N3)], &t).unwrap();
        let m12 = ep(12, N2).mac;
        assert_eq!(
            ops,
            vec![
                EndpointOp::DelNeighbour {
                    ip: Ipv4Addr::new(10, 0, 1, 12)
                },
                EndpointOp::DelBridgeFdb { mac: m12 },
                EndpointOp::DelVxlanFdb { mac: m12 },
            ]
        );
        assert_eq!(applied(&ops, t), desired_tables(&[ep(13, N3)]).unwrap());
        let ops = plan_endpoints(&[], &desired_tables(&[ep(13, N3)]).unwrap()).unwrap();
        assert_eq!(
            applied(&ops, desired_tables(&[ep(13, N3)]).unwrap()),
            EndpointTables::default()
        );
    }

    #[test]
    fn a_moved_task_is_one_replace() {
        let t = desired_tables(&[ep(12, N2)]).unwrap();
        let ops = plan_endpoints(&[ep(12, N3)], &t).unwrap();
        assert_eq!(
            ops,
            vec![EndpointOp::SetVxlanFdb {
                mac: ep(12, N2).mac,
                vtep: N3
            }]
        );
    }

    #[test]
    fn foreign_or_partial_entries_are_corrected() {
        let m = ep(12, N2).mac;
        let mut actual = EndpointTables::default();
        // Two destinations for one MAC (someone appended one), a neighbour with the wrong MAC.
        actual.vxlan_fdb.insert(m, vec![N2, N3]);
        actual
            .neighbours
            .insert(Ipv4Addr::new(10, 0, 1, 12), Mac([2, 0, 0, 0, 0, 1]));
        let ops = plan_endpoints(&[ep(12, N2)], &actual).unwrap();
        assert_eq!(
            ops,
            vec![
                EndpointOp::DelVxlanFdb { mac: m },
                EndpointOp::SetVxlanFdb { mac: m, vtep: N2 },
                EndpointOp::SetBridgeFdb { mac: m },
                EndpointOp::SetNeighbour {
                    ip: Ipv4Addr::new(10, 0, 1, 12),
                    mac: m
                },
            ]
        );
    }

    #[test]
    fn contradicting_endpoints_are_refused() {
        let a = ep(12, N2);
        let e = plan_endpoints(
            &[a, RemoteEndpoint { vtep: N3, ..a }],
            &EndpointTables::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("behind two nodes"), "{e}");
        let e = plan_endpoints(
            &[
                a,
                RemoteEndpoint {
                    mac: Mac([2, 0, 0, 0, 0, 9]),
                    ..a
                },
            ],
            &EndpointTables::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("two MACs"), "{e}");
        let e = plan_endpoints(
            &[RemoteEndpoint {
                mac: Mac([0xff; 6]),
                ..a
            }],
            &EndpointTables::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a unicast"), "{e}");
        // The same endpoint twice is fine.
        assert_eq!(
            plan_endpoints(&[a, a], &EndpointTables::default())
                .unwrap()
                .len(),
            3
        );
    }
}
