//! A network's devices: the bridge and the VXLAN device, planned from the links as read.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use super::links::{LinkKind, LinkState, VXLAN_PORT_FLAGS, VxlanConfig, find};
use crate::OverlayError;
use crate::model::{
    DeviceRole, MIN_MTU, Mac, NetworkDevices, VXLAN_OVERHEAD, VXLAN_PORT, bridge_name, check_vni,
    overlay_mtu, vni_of, vxlan_name,
};

/// One change to a network's devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkStep {
    Delete {
        name: String,
        why: String,
    },
    CreateBridge {
        name: String,
        mtu: u32,
        mac: Mac,
    },
    CreateVxlan {
        name: String,
        vni: u32,
        local: Ipv4Addr,
        underlay: String,
        mtu: u32,
    },
    SetMtu {
        name: String,
        mtu: u32,
    },
    SetMac {
        name: String,
        mac: Mac,
    },
    /// Networks are isolated at layer 3 too: the node does not route between its bridges.
    DisableForwarding {
        name: String,
    },
    AddAddress {
        name: String,
        addr: Ipv4Addr,
        prefix_len: u8,
    },
    DelAddress {
        name: String,
        addr: Ipv4Addr,
        prefix_len: u8,
    },
    Enslave {
        name: String,
        bridge: String,
    },
    SetPortFlags {
        name: String,
    },
    SetUp {
        name: String,
    },
}

impl fmt::Display for NetworkStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Delete { name, why } => write!(f, "delete {name} ({why})"),
            Self::CreateBridge { name, mtu, mac } => {
                write!(f, "create bridge {name} (mtu {mtu}, address {mac})")
            }
            Self::CreateVxlan {
                name,
                vni,
                local,
                underlay,
                mtu,
            } => write!(
                f,
                "create vxlan {name} (id {vni}, dstport {VXLAN_PORT}, local {local}, dev {underlay}, nolearning, proxy, mtu {mtu})"
            ),
            Self::SetMtu { name, mtu } => write!(f, "set {name} mtu {mtu}"),
            Self::SetMac { name, mac } => write!(f, "set {name} address {mac}"),
            Self::DisableForwarding { name } => write!(f, "set {name} ipv4 forwarding off"),
            Self::AddAddress {
                name,
                addr,
                prefix_len,
            } => write!(f, "add {addr}/{prefix_len} to {name}"),
            Self::DelAddress {
                name,
                addr,
                prefix_len,
            } => write!(f, "remove {addr}/{prefix_len} from {name}"),
            Self::Enslave { name, bridge } => write!(f, "set {name} master {bridge}"),
            Self::SetPortFlags { name } => write!(
                f,
                "set bridge port {name} learning off, neigh_suppress on, flood off"
            ),
            Self::SetUp { name } => write!(f, "set {name} up"),
        }
    }
}

/// The steps that give network `want` a correct bridge and VXLAN device on a node whose links
/// are `links`. Correct devices are kept; fixable differences are fixed in place; a device of
/// the wrong kind, or a VXLAN device with other fixed settings, is recreated.
pub fn plan_network(
    want: &NetworkDevices,
    links: &[LinkState],
) -> Result<Vec<NetworkStep>, OverlayError> {
    want.validate()?;
    let underlay = check_underlay(want, links)?;
    let target = Target {
        br: bridge_name(want.vni),
        vx: vxlan_name(want.vni),
        mtu: network_mtu(want, underlay)?,
        mac: want.bridge_mac(),
        vxlan: VxlanConfig {
            vni: Some(want.vni),
            port: Some(VXLAN_PORT),
            local: Some(want.underlay_addr),
            underlay: Some(underlay.index),
            learning: false,
            proxy: true,
        },
    };
    let bridge = find(links, &target.br);
    let vxlan = find(links, &target.vx);
    let good_bridge = bridge.filter(|b| b.kind == LinkKind::Bridge);
    let good_vxlan =
        vxlan.filter(|v| v.kind == LinkKind::Vxlan && v.vxlan.as_ref() == Some(&target.vxlan));

    let mut steps = delete_wrong_devices(&target, bridge, vxlan, good_bridge, good_vxlan);
    match good_bridge {
        None => create_bridge(want, &target, &mut steps),
        Some(b) => fix_bridge(want, &target, b, &mut steps),
    }
    match good_vxlan {
        None => create_vxlan(want, underlay, &target, &mut steps),
        Some(v) => fix_vxlan(&target, v, good_bridge, &mut steps),
    }
    Ok(steps)
}

/// What a network's devices should be on this node.
struct Target {
    br: String,
    vx: String,
    mtu: u32,
    mac: Mac,
    vxlan: VxlanConfig,
}

/// The underlay interface, after checking that it exists and carries the underlay address.
fn check_underlay<'a>(
    want: &NetworkDevices,
    links: &'a [LinkState],
) -> Result<&'a LinkState, OverlayError> {
    let underlay = find(links, &want.underlay_ifname).ok_or_else(|| {
        OverlayError::invalid(format!(
            "underlay interface {:?} does not exist on this node; give the interface that carries {}",
            want.underlay_ifname, want.underlay_addr
        ))
    })?;
    if !underlay.ipv4.iter().any(|(a, _)| *a == want.underlay_addr) {
        return Err(OverlayError::invalid(format!(
            "underlay address {} is not on {}; it has {}",
            want.underlay_addr,
            underlay.name,
            list_addrs(&underlay.ipv4)
        )));
    }
    Ok(underlay)
}

/// The network's MTU: the one asked for, or the most the underlay allows, within bounds.
fn network_mtu(want: &NetworkDevices, underlay: &LinkState) -> Result<u32, OverlayError> {
    let max_mtu = overlay_mtu(underlay.mtu);
    let mtu = want.mtu.unwrap_or(max_mtu);
    if mtu > max_mtu || mtu < MIN_MTU {
        return Err(OverlayError::invalid(format!(
            "network {} mtu {mtu}: use {MIN_MTU} to {max_mtu} ({}'s MTU {} minus {VXLAN_OVERHEAD} for VXLAN)",
            want.vni, underlay.name, underlay.mtu
        )));
    }
    Ok(mtu)
}

/// Deletes a device under the network's names that is of the wrong kind or, for VXLAN, has
/// other fixed settings.
fn delete_wrong_devices(
    target: &Target,
    bridge: Option<&LinkState>,
    vxlan: Option<&LinkState>,
    good_bridge: Option<&LinkState>,
    good_vxlan: Option<&LinkState>,
) -> Vec<NetworkStep> {
    let mut steps = Vec::new();
    if let Some(b) = bridge
        && good_bridge.is_none()
    {
        steps.push(NetworkStep::Delete {
            name: target.br.clone(),
            why: format!("a {:?} device, not a bridge", b.kind),
        });
    }
    if let Some(v) = vxlan
        && good_vxlan.is_none()
    {
        let why = if v.kind == LinkKind::Vxlan {
            format!(
                "VXLAN settings {:?}, want {:?}",
                v.vxlan.clone().unwrap_or_default(),
                target.vxlan
            )
        } else {
            format!("a {:?} device, not VXLAN", v.kind)
        };
        steps.push(NetworkStep::Delete {
            name: target.vx.clone(),
            why,
        });
    }
    steps
}

fn create_bridge(want: &NetworkDevices, target: &Target, steps: &mut Vec<NetworkStep>) {
    let br = &target.br;
    steps.push(NetworkStep::CreateBridge {
        name: br.clone(),
        mtu: target.mtu,
        mac: target.mac,
    });
    steps.push(NetworkStep::DisableForwarding { name: br.clone() });
    steps.push(NetworkStep::AddAddress {
        name: br.clone(),
        addr: want.node_addr,
        prefix_len: want.prefix_len,
    });
    steps.push(NetworkStep::SetUp { name: br.clone() });
}

fn fix_bridge(want: &NetworkDevices, target: &Target, b: &LinkState, steps: &mut Vec<NetworkStep>) {
    let br = &target.br;
    let want_addr = (want.node_addr, want.prefix_len);
    if b.mtu != target.mtu {
        steps.push(NetworkStep::SetMtu {
            name: br.clone(),
            mtu: target.mtu,
        });
    }
    if b.mac != Some(target.mac) {
        steps.push(NetworkStep::SetMac {
            name: br.clone(),
            mac: target.mac,
        });
    }
    if b.ipv4_forwarding != Some(false) {
        steps.push(NetworkStep::DisableForwarding { name: br.clone() });
    }
    for &(addr, prefix_len) in b.ipv4.iter().filter(|a| **a != want_addr) {
        steps.push(NetworkStep::DelAddress {
            name: br.clone(),
            addr,
            prefix_len,
        });
    }
    if !b.ipv4.contains(&want_addr) {
        steps.push(NetworkStep::AddAddress {
            name: br.clone(),
            addr: want.node_addr,
            prefix_len: want.prefix_len,
        });
    }
    if !b.up {
        steps.push(NetworkStep::SetUp { name: br.clone() });
    }
}

fn create_vxlan(
    want: &NetworkDevices,
    underlay: &LinkState,
    target: &Target,
    steps: &mut Vec<NetworkStep>,
) {
    let vx = &target.vx;
    steps.push(NetworkStep::CreateVxlan {
        name: vx.clone(),
        vni: want.vni,
        local: want.underlay_addr,
        underlay: underlay.name.clone(),
        mtu: target.mtu,
    });
    steps.push(NetworkStep::Enslave {
        name: vx.clone(),
        bridge: target.br.clone(),
    });
    steps.push(NetworkStep::SetPortFlags { name: vx.clone() });
    steps.push(NetworkStep::SetUp { name: vx.clone() });
}

fn fix_vxlan(
    target: &Target,
    v: &LinkState,
    good_bridge: Option<&LinkState>,
    steps: &mut Vec<NetworkStep>,
) {
    let vx = &target.vx;
    if v.mtu != target.mtu {
        steps.push(NetworkStep::SetMtu {
            name: vx.clone(),
            mtu: target.mtu,
        });
    }
    // A recreated bridge has released its ports; enslaving resets the port's flags.
    let enslaved = good_bridge.is_some_and(|b| v.master == Some(b.index));
    if !enslaved {
        steps.push(NetworkStep::Enslave {
            name: vx.clone(),
            bridge: target.br.clone(),
        });
    }
    if !enslaved || v.port != Some(VXLAN_PORT_FLAGS) {
        steps.push(NetworkStep::SetPortFlags { name: vx.clone() });
    }
    if !v.up {
        steps.push(NetworkStep::SetUp { name: vx.clone() });
    }
}

fn list_addrs(addrs: &[(Ipv4Addr, u8)]) -> String {
    if addrs.is_empty() {
        return "no IPv4 address".to_owned();
    }
    addrs
        .iter()
        .map(|(a, p)| format!("{a}/{p}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The steps that remove network `vni`'s devices; refused while task veths are still ports of
/// its bridge (unplumb them first), so a task never silently loses its network.
pub fn plan_remove_network(
    vni: u32,
    links: &[LinkState],
) -> Result<Vec<NetworkStep>, OverlayError> {
    check_vni(vni)?;
    let br = bridge_name(vni);
    let vx = vxlan_name(vni);
    let mut steps = Vec::new();
    if let Some(b) = find(links, &br) {
        let ports: Vec<&str> = links
            .iter()
            .filter(|l| l.master == Some(b.index) && l.name != vx)
            .map(|l| l.name.as_str())
            .collect();
        if !ports.is_empty() {
            return Err(OverlayError::conflict(format!(
                "network {vni} is still in use on this node: {br} has task interfaces {}; unplumb those tasks first",
                ports.join(", ")
            )));
        }
    }
    if find(links, &vx).is_some() {
        steps.push(NetworkStep::Delete {
            name: vx,
            why: format!("network {vni} removed"),
        });
    }
    if find(links, &br).is_some() {
        steps.push(NetworkStep::Delete {
            name: br,
            why: format!("network {vni} removed"),
        });
    }
    Ok(steps)
}

/// A network whose devices exist on this node (for reconciliation after a restart).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkState {
    pub vni: u32,
    /// A bridge `mbr<vni>` exists.
    pub bridge: bool,
    /// A VXLAN device `mvx<vni>` exists.
    pub vxlan: bool,
    /// The node's address on the bridge (the first IPv4 address).
    pub node_addr: Option<(Ipv4Addr, u8)>,
    pub mtu: Option<u32>,
    /// Links other than `mvx<vni>` enslaved to the bridge: the host ends of task veths.
    pub task_ports: Vec<String>,
}

/// Every network with at least one of its devices among `links`, by VNI.
pub fn networks_from_links(links: &[LinkState]) -> Vec<NetworkState> {
    let mut nets: BTreeMap<u32, NetworkState> = BTreeMap::new();
    for l in links {
        let Some((role, vni)) = vni_of(&l.name) else {
            continue;
        };
        let n = nets.entry(vni).or_insert_with(|| NetworkState {
            vni,
            bridge: false,
            vxlan: false,
            node_addr: None,
            mtu: None,
            task_ports: Vec::new(),
        });
        match role {
            DeviceRole::Bridge if l.kind == LinkKind::Bridge => {
                n.bridge = true;
                n.node_addr = l.ipv4.first().copied();
                n.mtu = Some(l.mtu);
                let vx = vxlan_name(vni);
                n.task_ports = links
                    .iter()
                    .filter(|p| p.master == Some(l.index) && p.name != vx)
                    .map(|p| p.name.clone())
                    .collect();
            }
            DeviceRole::Vxlan if l.kind == LinkKind::Vxlan => n.vxlan = true,
            // A device under our name of the wrong kind: reported so reconciliation removes it.
            DeviceRole::Bridge => n.bridge = true,
            DeviceRole::Vxlan => n.vxlan = true,
        }
    }
    nets.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PortFlags;
    use crate::plan::fixtures::*;

    fn names(steps: &[NetworkStep]) -> Vec<String> {
        steps.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_new_network_gets_both_devices_in_order() {
        let steps = plan_network(&net(), &[eth0()]).unwrap();
        assert_eq!(
            names(&steps),
            [
                "create bridge mbr4097 (mtu 1450, address 02:42:0a:00:01:02)",
                "set mbr4097 ipv4 forwarding off",
                "add 10.0.1.2/24 to mbr4097",
                "set mbr4097 up",
                "create vxlan mvx4097 (id 4097, dstport 4789, local 198.18.0.11, dev eth0, nolearning, proxy, mtu 1450)",
                "set mvx4097 master mbr4097",
                "set bridge port mvx4097 learning off, neigh_suppress on, flood off",
                "set mvx4097 up",
            ]
        );
    }

    #[test]
    fn a_correct_network_needs_nothing() {
        assert_eq!(plan_network(&net(), &good_links()).unwrap(), vec![]);
    }

    #[test]
    fn drift_is_fixed_in_place() {
        let mut links = good_links();
        links[1].mtu = 1400;
        links[1].up = false;
        links[1].ipv4 = vec![(Ipv4Addr::new(10, 0, 9, 9), 24)];
        links[1].ipv4_forwarding = Some(true);
        links[2].master = None;
        links[2].port = None;
        let steps = plan_network(&net(), &links).unwrap();
        assert_eq!(
            names(&steps),
            [
                "set mbr4097 mtu 1450",
                "set mbr4097 ipv4 forwarding off",
                "remove 10.0.9.9/24 from mbr4097",
                "add 10.0.1.2/24 to mbr4097",
                "set mbr4097 up",
                "set mvx4097 master mbr4097",
                "set bridge port mvx4097 learning off, neigh_suppress on, flood off",
            ]
        );
        let mut links = good_links();
        links[2].port = Some(PortFlags {
            learning: true,
            ..VXLAN_PORT_FLAGS
        });
        assert_eq!(
            names(&plan_network(&net(), &links).unwrap()),
            ["set bridge port mvx4097 learning off, neigh_suppress on, flood off"]
        );
    }

    #[test]
    fn wrong_devices_are_recreated() {
        // A VXLAN device with learning on (or another VNI, port, source) is recreated.
        let mut links = good_links();
        links[2].vxlan.as_mut().unwrap().learning = true;
        let steps = plan_network(&net(), &links).unwrap();
        assert!(matches!(&steps[0], NetworkStep::Delete { name, .. } if name == "mvx4097"));
        assert!(matches!(&steps[1], NetworkStep::CreateVxlan { .. }));
        assert_eq!(steps.len(), 5, "{steps:#?}");

        // A dummy where the bridge belongs: the bridge is recreated and the VXLAN port rejoins it.
        let mut links = good_links();
        links[1].kind = LinkKind::Other;
        let steps = names(&plan_network(&net(), &links).unwrap());
        assert_eq!(steps[0], "delete mbr4097 (a Other device, not a bridge)");
        assert_eq!(
            steps[1],
            "create bridge mbr4097 (mtu 1450, address 02:42:0a:00:01:02)"
        );
        assert!(
            steps.contains(&"set mvx4097 master mbr4097".to_owned()),
            "{steps:?}"
        );
        assert!(
            steps.last().unwrap().starts_with("set bridge port mvx4097"),
            "{steps:?}"
        );
    }

    #[test]
    fn network_requests_the_node_cannot_take_are_refused() {
        let e = plan_network(
            &NetworkDevices {
                underlay_ifname: "eth9".into(),
                ..net()
            },
            &[eth0()],
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"eth9\" does not exist"), "{e}");
        let e = plan_network(
            &NetworkDevices {
                underlay_addr: N2,
                ..net()
            },
            &[eth0()],
        )
        .unwrap_err();
        assert!(e.to_string().contains("198.18.0.12 is not on eth0"), "{e}");
        let e = plan_network(
            &NetworkDevices {
                mtu: Some(1451),
                ..net()
            },
            &[eth0()],
        )
        .unwrap_err();
        assert!(e.to_string().contains("use 576 to 1450"), "{e}");
        let steps = plan_network(
            &NetworkDevices {
                mtu: Some(1400),
                ..net()
            },
            &[eth0()],
        )
        .unwrap();
        assert!(names(&steps)[0].contains("mtu 1400"));
    }

    #[test]
    fn removal_deletes_both_and_refuses_while_tasks_remain() {
        let links = good_links();
        assert_eq!(
            names(&plan_remove_network(4097, &links).unwrap()),
            [
                "delete mvx4097 (network 4097 removed)",
                "delete mbr4097 (network 4097 removed)"
            ]
        );
        assert_eq!(plan_remove_network(4097, &[eth0()]).unwrap(), vec![]);
        let mut links = good_links();
        links.push(LinkState {
            index: 20,
            name: "mvabcdefghij0".into(),
            kind: LinkKind::Veth,
            master: Some(10),
            ..Default::default()
        });
        let e = plan_remove_network(4097, &links).unwrap_err();
        assert!(e.to_string().contains("mvabcdefghij0; unplumb"), "{e}");
    }

    #[test]
    fn networks_are_listed_from_the_kernel() {
        let mut links = good_links();
        links.push(LinkState {
            index: 20,
            name: "mvabcdefghij0".into(),
            kind: LinkKind::Veth,
            master: Some(10),
            ..Default::default()
        });
        links.push(LinkState {
            index: 30,
            name: "mvx4098".into(),
            kind: LinkKind::Vxlan,
            ..Default::default()
        });
        let nets = networks_from_links(&links);
        assert_eq!(nets.len(), 2);
        assert_eq!(
            nets[0],
            NetworkState {
                vni: 4097,
                bridge: true,
                vxlan: true,
                node_addr: Some((Ipv4Addr::new(10, 0, 1, 2), 24)),
                mtu: Some(1450),
                task_ports: vec!["mvabcdefghij0".into()],
            }
        );
        assert!(!nets[1].bridge && nets[1].vxlan && nets[1].vni == 4098);
    }
}
