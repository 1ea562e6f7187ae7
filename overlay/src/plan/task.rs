//! Tasks: the veth pairs, addresses and default route that plumb a task into its networks.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;

use super::links::{LinkKind, LinkState, find};
use crate::OverlayError;
use crate::model::{
    MIN_MTU, Mac, TaskInterface, bridge_name, check_host_addr, check_ifname, check_prefix,
    check_vni, network_of, vni_of,
};

/// One change to a task's interfaces. `host` names live in the node's namespace, `ifname`s in
/// the task's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskStep {
    /// A stale host end (its peer is not the task's interface): deleting it deletes the pair.
    DeleteHostLink {
        host: String,
        why: String,
    },
    /// The pair in one request: the host end in the bridge and up, the peer created directly
    /// in the task's namespace under its final name, MAC and MTU.
    CreateVeth {
        host: String,
        ifname: String,
        bridge: String,
        mac: Mac,
        mtu: u32,
    },
    Enslave {
        host: String,
        bridge: String,
    },
    SetHostMtu {
        host: String,
        mtu: u32,
    },
    SetHostUp {
        host: String,
    },
    SetTaskMtu {
        ifname: String,
        mtu: u32,
    },
    SetTaskMac {
        ifname: String,
        mac: Mac,
    },
    DelTaskAddress {
        ifname: String,
        addr: Ipv4Addr,
        prefix_len: u8,
    },
    AddTaskAddress {
        ifname: String,
        addr: Ipv4Addr,
        prefix_len: u8,
    },
    SetTaskUp {
        ifname: String,
    },
    SetLoopbackUp,
    /// The task's `net.ipv4.conf.all.rp_filter` from strict (1) to loose (2): a client's packet
    /// through the routing mesh arrives on its `ingress` interface while its route back to the
    /// client is its first network's, and a strict filter drops it.
    LoosenRpFilter,
    SetDefaultRoute {
        gateway: Ipv4Addr,
    },
}

impl fmt::Display for TaskStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DeleteHostLink { host, why } => write!(f, "delete {host} ({why})"),
            Self::CreateVeth {
                host,
                ifname,
                bridge,
                mac,
                mtu,
            } => write!(
                f,
                "create veth {host} (master {bridge}) peer {ifname} in the task (address {mac}, mtu {mtu})"
            ),
            Self::Enslave { host, bridge } => write!(f, "set {host} master {bridge}"),
            Self::SetHostMtu { host, mtu } => write!(f, "set {host} mtu {mtu}"),
            Self::SetHostUp { host } => write!(f, "set {host} up"),
            Self::SetTaskMtu { ifname, mtu } => write!(f, "set task {ifname} mtu {mtu}"),
            Self::SetTaskMac { ifname, mac } => write!(f, "set task {ifname} address {mac}"),
            Self::DelTaskAddress {
                ifname,
                addr,
                prefix_len,
            } => write!(f, "remove {addr}/{prefix_len} from task {ifname}"),
            Self::AddTaskAddress {
                ifname,
                addr,
                prefix_len,
            } => write!(f, "add {addr}/{prefix_len} to task {ifname}"),
            Self::SetTaskUp { ifname } => write!(f, "set task {ifname} up"),
            Self::SetLoopbackUp => write!(f, "set task lo up"),
            Self::LoosenRpFilter => write!(f, "set task net.ipv4.conf.all.rp_filter 2 (loose)"),
            Self::SetDefaultRoute { gateway } => write!(f, "task default via {gateway}"),
        }
    }
}

/// What [`plan_task`] reads: the node's links, the task's links, the task's default gateway
/// and reverse-path filter (`net.ipv4.conf.all.rp_filter`, which a new namespace takes from the
/// host's; `None` when unread).
#[derive(Clone, Debug, Default)]
pub struct TaskObserved {
    pub node_links: Vec<LinkState>,
    pub task_links: Vec<LinkState>,
    pub default_gateway: Option<Ipv4Addr>,
    pub rp_filter: Option<u8>,
}

fn check_task_input(
    ifaces: &[TaskInterface],
    gateway: Option<Ipv4Addr>,
    seen: &TaskObserved,
) -> Result<(), OverlayError> {
    let mut hosts = HashSet::new();
    let mut names = HashSet::new();
    let mut vnis = HashSet::new();
    let mut addrs = HashSet::new();
    let mut macs = HashSet::new();
    for i in ifaces {
        let what = format!("task interface {} (network {})", i.ifname, i.vni);
        check_vni(i.vni)?;
        check_ifname(&i.host_ifname, "host veth")?;
        check_ifname(&i.ifname, "task interface")?;
        if vni_of(&i.host_ifname).is_some() {
            return Err(OverlayError::invalid(format!(
                "host veth name {:?}: names mbr<VNI> and mvx<VNI> belong to networks; use task_host_ifname()",
                i.host_ifname
            )));
        }
        if i.ifname == "lo" {
            return Err(OverlayError::invalid(format!(
                "{what}: \"lo\" is the task's loopback; use eth0, eth1, ..."
            )));
        }
        check_prefix(i.prefix_len, &what)?;
        check_host_addr(i.addr, i.prefix_len, &what)?;
        if !i.mac.is_unicast() {
            return Err(OverlayError::invalid(format!(
                "{what}: MAC {} is not a unicast address (use Mac::from_ipv4)",
                i.mac
            )));
        }
        if !(MIN_MTU..=65_535).contains(&i.mtu) {
            return Err(OverlayError::invalid(format!(
                "{what}: mtu {} outside {MIN_MTU}..=65535",
                i.mtu
            )));
        }
        for (set, key, label) in [
            (&mut hosts, i.host_ifname.clone(), "host veth name"),
            (&mut names, i.ifname.clone(), "interface name"),
            (&mut vnis, i.vni.to_string(), "network"),
            (&mut addrs, i.addr.to_string(), "address"),
            (&mut macs, i.mac.to_string(), "MAC"),
        ] {
            if !set.insert(key.clone()) {
                return Err(OverlayError::invalid(format!(
                    "{label} {key} is given twice for one task; each interface needs its own"
                )));
            }
        }
        let br = bridge_name(i.vni);
        if !find(&seen.node_links, &br).is_some_and(|b| b.kind == LinkKind::Bridge) {
            return Err(OverlayError::invalid(format!(
                "network {} has no bridge {br} on this node; call ensure_network first",
                i.vni
            )));
        }
        if let Some(h) = find(&seen.node_links, &i.host_ifname)
            && h.kind != LinkKind::Veth
        {
            return Err(OverlayError::conflict(format!(
                "host veth name {}: taken by a {:?} device on this node",
                i.host_ifname, h.kind
            )));
        }
    }
    if let Some(gw) = gateway {
        let on_link = ifaces.iter().any(|i| {
            network_of(gw, i.prefix_len) == network_of(i.addr, i.prefix_len) && gw != i.addr
        });
        if !on_link {
            return Err(OverlayError::invalid(format!(
                "gateway {gw}: must be another address inside one of the task's networks (the node's address on it)"
            )));
        }
    }
    Ok(())
}

/// The steps that give a task exactly `ifaces` (plus `lo` up and a default route via
/// `gateway`). Interfaces already correctly in place are kept; all checks run first.
pub fn plan_task(
    ifaces: &[TaskInterface],
    gateway: Option<Ipv4Addr>,
    seen: &TaskObserved,
) -> Result<Vec<TaskStep>, OverlayError> {
    check_task_input(ifaces, gateway, seen)?;
    let (mut delete, mut create, mut host_fix, mut task_fix) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in ifaces {
        let bridge = bridge_name(i.vni);
        let host = find(&seen.node_links, &i.host_ifname);
        let inner = find(&seen.task_links, &i.ifname);
        let paired = match (host, inner) {
            (Some(h), Some(t)) => {
                h.kind == LinkKind::Veth
                    && t.kind == LinkKind::Veth
                    && h.peer == Some(t.index)
                    && t.peer == Some(h.index)
            }
            _ => false,
        };
        if let Some(t) = inner
            && !paired
        {
            return Err(OverlayError::conflict(format!(
                "the task's namespace already has an interface {} ({:?}) that is not the peer of {}; nothing was changed",
                t.name, t.kind, i.host_ifname
            )));
        }
        let want_addr = (i.addr, i.prefix_len);
        match (host, inner) {
            (Some(h), Some(t)) if paired => {
                let br_index = find(&seen.node_links, &bridge).map(|b| b.index);
                if h.master != br_index {
                    host_fix.push(TaskStep::Enslave {
                        host: i.host_ifname.clone(),
                        bridge,
                    });
                }
                if h.mtu != i.mtu {
                    host_fix.push(TaskStep::SetHostMtu {
                        host: i.host_ifname.clone(),
                        mtu: i.mtu,
                    });
                }
                if !h.up {
                    host_fix.push(TaskStep::SetHostUp {
                        host: i.host_ifname.clone(),
                    });
                }
                if t.mtu != i.mtu {
                    task_fix.push(TaskStep::SetTaskMtu {
                        ifname: i.ifname.clone(),
                        mtu: i.mtu,
                    });
                }
                if t.mac != Some(i.mac) {
                    task_fix.push(TaskStep::SetTaskMac {
                        ifname: i.ifname.clone(),
                        mac: i.mac,
                    });
                }
                for &(addr, prefix_len) in t.ipv4.iter().filter(|a| **a != want_addr) {
                    task_fix.push(TaskStep::DelTaskAddress {
                        ifname: i.ifname.clone(),
                        addr,
                        prefix_len,
                    });
                }
                if !t.ipv4.contains(&want_addr) {
                    task_fix.push(TaskStep::AddTaskAddress {
                        ifname: i.ifname.clone(),
                        addr: i.addr,
                        prefix_len: i.prefix_len,
                    });
                }
                if !t.up {
                    task_fix.push(TaskStep::SetTaskUp {
                        ifname: i.ifname.clone(),
                    });
                }
            }
            _ => {
                if host.is_some() {
                    delete.push(TaskStep::DeleteHostLink {
                        host: i.host_ifname.clone(),
                        why: format!("its peer is not {} in the task's namespace", i.ifname),
                    });
                }
                create.push(TaskStep::CreateVeth {
                    host: i.host_ifname.clone(),
                    ifname: i.ifname.clone(),
                    bridge,
                    mac: i.mac,
                    mtu: i.mtu,
                });
                task_fix.push(TaskStep::AddTaskAddress {
                    ifname: i.ifname.clone(),
                    addr: i.addr,
                    prefix_len: i.prefix_len,
                });
                task_fix.push(TaskStep::SetTaskUp {
                    ifname: i.ifname.clone(),
                });
            }
        }
    }
    let mut steps = delete;
    steps.append(&mut create);
    steps.append(&mut host_fix);
    steps.append(&mut task_fix);
    if !find(&seen.task_links, "lo").is_some_and(|l| l.up) {
        steps.push(TaskStep::SetLoopbackUp);
    }
    // Loose (2) and off (0) both let the mesh's packets in; only strict is changed.
    if seen.rp_filter == Some(1) {
        steps.push(TaskStep::LoosenRpFilter);
    }
    if let Some(gateway) = gateway
        && seen.default_gateway != Some(gateway)
    {
        steps.push(TaskStep::SetDefaultRoute { gateway });
    }
    Ok(steps)
}

/// The host veths among `names` that exist, after checking that each is a veth (a name that
/// is a network's device or anything else is refused, and nothing is deleted).
pub fn plan_unplumb(names: &[String], links: &[LinkState]) -> Result<Vec<String>, OverlayError> {
    let mut out = Vec::new();
    for n in names {
        check_ifname(n, "host veth")?;
        if let Some(l) = find(links, n) {
            if l.kind != LinkKind::Veth {
                return Err(OverlayError::conflict(format!(
                    "{n} is a {:?} device, not a task veth; nothing was deleted",
                    l.kind
                )));
            }
            out.push(n.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fixtures::*;

    /// What a correct plumb of `ifaces` leaves (indexes 100+ on the host, 2+ in the task).
    fn plumbed(ifaces: &[TaskInterface], gw: Option<Ipv4Addr>) -> TaskObserved {
        let mut seen = fresh_task();
        seen.task_links[0].up = true;
        seen.default_gateway = gw;
        for (n, i) in ifaces.iter().enumerate() {
            let (h, t) = (100 + n as u32, 2 + n as u32);
            let br = find(&seen.node_links, &bridge_name(i.vni)).unwrap().index;
            seen.node_links.push(LinkState {
                index: h,
                name: i.host_ifname.clone(),
                kind: LinkKind::Veth,
                mtu: i.mtu,
                up: true,
                master: Some(br),
                peer: Some(t),
                ..Default::default()
            });
            seen.task_links.push(LinkState {
                index: t,
                name: i.ifname.clone(),
                kind: LinkKind::Veth,
                mtu: i.mtu,
                up: true,
                mac: Some(i.mac),
                peer: Some(h),
                ipv4: vec![(i.addr, i.prefix_len)],
                ..Default::default()
            });
        }
        seen
    }

    fn steps(s: &[TaskStep]) -> Vec<String> {
        s.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_new_task_gets_its_pairs_then_addresses_then_its_route() {
        let gw = Some(Ipv4Addr::new(10, 0, 1, 2));
        let plan = plan_task(&[iface(4097, 0), iface(4098, 1)], gw, &fresh_task()).unwrap();
        assert_eq!(
            steps(&plan),
            [
                "create veth mvabcdefghij0 (master mbr4097) peer eth0 in the task (address 02:42:0a:00:01:0b, mtu 1450)",
                "create veth mvabcdefghij1 (master mbr4098) peer eth1 in the task (address 02:42:0a:00:02:0b, mtu 1450)",
                "add 10.0.1.11/24 to task eth0",
                "set task eth0 up",
                "add 10.0.2.11/24 to task eth1",
                "set task eth1 up",
                "set task lo up",
                "task default via 10.0.1.2",
            ]
        );
    }

    #[test]
    fn a_strict_reverse_path_filter_is_loosened_and_others_are_left() {
        let ifaces = [iface(4097, 0)];
        let gw = Some(Ipv4Addr::new(10, 0, 1, 2));
        for (rp, want) in [
            (Some(1), true),
            (Some(2), false),
            (Some(0), false),
            (None, false),
        ] {
            let mut seen = plumbed(&ifaces, gw);
            seen.rp_filter = rp;
            assert_eq!(
                steps(&plan_task(&ifaces, gw, &seen).unwrap()),
                if want {
                    vec!["set task net.ipv4.conf.all.rp_filter 2 (loose)"]
                } else {
                    vec![]
                },
                "rp_filter {rp:?}"
            );
        }
    }

    #[test]
    fn a_plumbed_task_needs_nothing_and_drift_is_fixed() {
        let ifaces = [iface(4097, 0), iface(4098, 1)];
        let gw = Some(Ipv4Addr::new(10, 0, 1, 2));
        assert_eq!(
            plan_task(&ifaces, gw, &plumbed(&ifaces, gw)).unwrap(),
            vec![]
        );

        let mut seen = plumbed(&ifaces, None);
        let host = seen.node_links.len() - 2;
        seen.node_links[host].master = None;
        seen.node_links[host].up = false;
        seen.task_links[1].ipv4 = vec![];
        seen.task_links[2].mac = Some(Mac([2, 0, 0, 0, 0, 7]));
        assert_eq!(
            steps(&plan_task(&ifaces, gw, &seen).unwrap()),
            [
                "set mvabcdefghij0 master mbr4097",
                "set mvabcdefghij0 up",
                "add 10.0.1.11/24 to task eth0",
                "set task eth1 address 02:42:0a:00:02:0b",
                "task default via 10.0.1.2",
            ]
        );
    }

    #[test]
    fn a_stale_host_end_is_replaced_and_a_foreign_task_interface_refused() {
        let ifaces = [iface(4097, 0)];
        let mut seen = plumbed(&ifaces, None);
        seen.task_links.truncate(1); // the task's end went away with an old namespace
        let plan = steps(&plan_task(&ifaces, None, &seen).unwrap());
        assert_eq!(
            plan[0],
            "delete mvabcdefghij0 (its peer is not eth0 in the task's namespace)"
        );
        assert!(plan[1].starts_with("create veth mvabcdefghij0"));

        let mut seen = fresh_task();
        seen.task_links.push(LinkState {
            index: 5,
            name: "eth0".into(),
            kind: LinkKind::Other,
            ..Default::default()
        });
        let e = plan_task(&ifaces, None, &seen).unwrap_err();
        assert!(
            e.to_string().contains("already has an interface eth0"),
            "{e}"
        );
    }

    #[test]
    fn bad_task_input_is_refused_before_anything() {
        let ok = iface(4097, 0);
        let cases: Vec<(Vec<TaskInterface>, Option<Ipv4Addr>, &str)> = vec![
            (vec![iface(4099, 0)], None, "no bridge mbr4099"),
            (
                vec![TaskInterface {
                    host_ifname: "mv0123456789abcdef".into(),
                    ..ok.clone()
                }],
                None,
                "1 to 15",
            ),
            (
                vec![TaskInterface {
                    host_ifname: "mvx4097".into(),
                    ..ok.clone()
                }],
                None,
                "belong to networks",
            ),
            (
                vec![TaskInterface {
                    ifname: "lo".into(),
                    ..ok.clone()
                }],
                None,
                "loopback",
            ),
            (
                vec![
                    ok.clone(),
                    TaskInterface {
                        vni: 4098,
                        host_ifname: "mvabcdefghij1".into(),
                        addr: Ipv4Addr::new(10, 0, 2, 11),
                        mac: Mac([2, 0, 0, 0, 0, 2]),
                        ..ok.clone()
                    },
                ],
                None,
                "interface name eth0 is given twice",
            ),
            (
                vec![TaskInterface {
                    mac: Mac([1, 0, 0, 0, 0, 1]),
                    ..ok.clone()
                }],
                None,
                "not a unicast",
            ),
            (
                vec![TaskInterface {
                    mtu: 100,
                    ..ok.clone()
                }],
                None,
                "mtu 100",
            ),
            (
                vec![ok.clone()],
                Some(Ipv4Addr::new(10, 0, 9, 1)),
                "gateway 10.0.9.1",
            ),
            (vec![ok.clone()], Some(ok.addr), "gateway 10.0.1.11"),
        ];
        for (ifaces, gw, want) in cases {
            let e = plan_task(&ifaces, gw, &fresh_task())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "want {want:?} in: {e}");
        }
        let mut seen = fresh_task();
        seen.node_links.push(LinkState {
            index: 50,
            name: ok.host_ifname.clone(),
            kind: LinkKind::Bridge,
            ..Default::default()
        });
        let e = plan_task(&[ok], None, &seen).unwrap_err();
        assert!(e.to_string().contains("taken by a Bridge"), "{e}");
    }

    #[test]
    fn unplumb_deletes_only_existing_veths() {
        let ifaces = [iface(4097, 0)];
        let seen = plumbed(&ifaces, None);
        let names = vec!["mvabcdefghij0".to_owned(), "mvabcdefghij1".to_owned()];
        assert_eq!(
            plan_unplumb(&names, &seen.node_links).unwrap(),
            vec!["mvabcdefghij0".to_owned()]
        );
        let e = plan_unplumb(&["mbr4097".to_owned()], &seen.node_links).unwrap_err();
        assert!(e.to_string().contains("not a task veth"), "{e}");
    }
}
