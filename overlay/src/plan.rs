//! Pure planning: the kernel's state as read (links, FDB and neighbour entries) and what is
//! wanted go in; the steps that make the one equal to the other come out, after every check
//! that can refuse the request. Nothing here does I/O; [`crate::Overlay`] reads and executes.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::net::Ipv4Addr;

use crate::OverlayError;
use crate::model::{
    DeviceRole, MIN_MTU, Mac, NetworkDevices, RemoteEndpoint, TaskInterface, VXLAN_OVERHEAD,
    VXLAN_PORT, bridge_name, check_host_addr, check_ifname, check_prefix, check_vni, network_of,
    overlay_mtu, vni_of, vxlan_name,
};

// ---------------------------------------------------------------------------------------------
// The kernel's state, reduced to what the plans compare.

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

fn find<'a>(links: &'a [LinkState], name: &str) -> Option<&'a LinkState> {
    links.iter().find(|l| l.name == name)
}

// ---------------------------------------------------------------------------------------------
// Networks.

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
    let max_mtu = overlay_mtu(underlay.mtu);
    let mtu = want.mtu.unwrap_or(max_mtu);
    if mtu > max_mtu || mtu < MIN_MTU {
        return Err(OverlayError::invalid(format!(
            "network {} mtu {mtu}: use {MIN_MTU} to {max_mtu} ({}'s MTU {} minus {VXLAN_OVERHEAD} for VXLAN)",
            want.vni, underlay.name, underlay.mtu
        )));
    }

    let br = bridge_name(want.vni);
    let vx = vxlan_name(want.vni);
    let mac = want.bridge_mac();
    let want_vxlan = VxlanConfig {
        vni: Some(want.vni),
        port: Some(VXLAN_PORT),
        local: Some(want.underlay_addr),
        underlay: Some(underlay.index),
        learning: false,
        proxy: true,
    };
    let bridge = find(links, &br);
    let vxlan = find(links, &vx);
    let good_bridge = bridge.filter(|b| b.kind == LinkKind::Bridge);
    let good_vxlan =
        vxlan.filter(|v| v.kind == LinkKind::Vxlan && v.vxlan.as_ref() == Some(&want_vxlan));

    let mut steps = Vec::new();
    if let Some(b) = bridge
        && good_bridge.is_none()
    {
        steps.push(NetworkStep::Delete {
            name: br.clone(),
            why: format!("a {:?} device, not a bridge", b.kind),
        });
    }
    if let Some(v) = vxlan
        && good_vxlan.is_none()
    {
        let why = if v.kind == LinkKind::Vxlan {
            format!(
                "VXLAN settings {:?}, want {want_vxlan:?}",
                v.vxlan.clone().unwrap_or_default()
            )
        } else {
            format!("a {:?} device, not VXLAN", v.kind)
        };
        steps.push(NetworkStep::Delete {
            name: vx.clone(),
            why,
        });
    }

    let want_addr = (want.node_addr, want.prefix_len);
    match good_bridge {
        None => {
            steps.push(NetworkStep::CreateBridge {
                name: br.clone(),
                mtu,
                mac,
            });
            steps.push(NetworkStep::DisableForwarding { name: br.clone() });
            steps.push(NetworkStep::AddAddress {
                name: br.clone(),
                addr: want.node_addr,
                prefix_len: want.prefix_len,
            });
            steps.push(NetworkStep::SetUp { name: br.clone() });
        }
        Some(b) => {
            if b.mtu != mtu {
                steps.push(NetworkStep::SetMtu {
                    name: br.clone(),
                    mtu,
                });
            }
            if b.mac != Some(mac) {
                steps.push(NetworkStep::SetMac {
                    name: br.clone(),
                    mac,
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
    }

    match good_vxlan {
        None => {
            steps.push(NetworkStep::CreateVxlan {
                name: vx.clone(),
                vni: want.vni,
                local: want.underlay_addr,
                underlay: underlay.name.clone(),
                mtu,
            });
            steps.push(NetworkStep::Enslave {
                name: vx.clone(),
                bridge: br.clone(),
            });
            steps.push(NetworkStep::SetPortFlags { name: vx.clone() });
            steps.push(NetworkStep::SetUp { name: vx });
        }
        Some(v) => {
            if v.mtu != mtu {
                steps.push(NetworkStep::SetMtu {
                    name: vx.clone(),
                    mtu,
                });
            }
            // A recreated bridge has released its ports; enslaving resets the port's flags.
            let enslaved = good_bridge.is_some_and(|b| v.master == Some(b.index));
            if !enslaved {
                steps.push(NetworkStep::Enslave {
                    name: vx.clone(),
                    bridge: br,
                });
            }
            if !enslaved || v.port != Some(VXLAN_PORT_FLAGS) {
                steps.push(NetworkStep::SetPortFlags { name: vx.clone() });
            }
            if !v.up {
                steps.push(NetworkStep::SetUp { name: vx });
            }
        }
    }
    Ok(steps)
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

// ---------------------------------------------------------------------------------------------
// Remote endpoints.

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

// ---------------------------------------------------------------------------------------------
// Tasks.

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
            Self::SetDefaultRoute { gateway } => write!(f, "task default via {gateway}"),
        }
    }
}

/// What [`plan_task`] reads: the node's links, the task's links, the task's default gateway.
#[derive(Clone, Debug, Default)]
pub struct TaskObserved {
    pub node_links: Vec<LinkState>,
    pub task_links: Vec<LinkState>,
    pub default_gateway: Option<Ipv4Addr>,
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

/// Runs `steps` in order. `run` reports the host veth a step created, if any; when a step
/// fails, the veths created so far are deleted (newest first), so a failed plumb leaves the
/// task as it found it, and the step's error is returned.
///
/// Plain closures returning futures, not async closures: the future of an async closure that
/// takes a reference is `Send` for one lifetime only, which made [`crate::Overlay::plumb_task`]
/// impossible to spawn on a multi-threaded runtime.
pub async fn run_undoable<'s, S, Run, RunFut, Undo, UndoFut>(
    steps: &'s [S],
    mut run: Run,
    mut undo: Undo,
) -> Result<(), OverlayError>
where
    S: fmt::Display,
    Run: FnMut(&'s S) -> RunFut,
    RunFut: Future<Output = Result<Option<String>, OverlayError>>,
    Undo: FnMut(String) -> UndoFut,
    UndoFut: Future<Output = Result<(), OverlayError>>,
{
    let mut created: Vec<String> = Vec::new();
    for step in steps {
        match run(step).await {
            Ok(Some(host)) => created.push(host),
            Ok(None) => {}
            Err(error) => {
                let mut failures = Vec::new();
                for host in created.iter().rev() {
                    if let Err(e) = undo(host.clone()).await {
                        failures.push(format!("{host}: {e}"));
                    }
                }
                return Err(if failures.is_empty() {
                    error
                } else {
                    OverlayError::UndoFailed {
                        error: Box::new(error),
                        undo: failures.join("; "),
                    }
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const N1: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
    const N2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 12);
    const N3: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 13);

    fn eth0() -> LinkState {
        LinkState {
            index: 2,
            name: "eth0".into(),
            kind: LinkKind::Veth,
            mtu: 1500,
            up: true,
            ipv4: vec![(N1, 24)],
            ..Default::default()
        }
    }

    fn net() -> NetworkDevices {
        NetworkDevices {
            vni: 4097,
            node_addr: Ipv4Addr::new(10, 0, 1, 2),
            prefix_len: 24,
            mtu: None,
            underlay_addr: N1,
            underlay_ifname: "eth0".into(),
        }
    }

    /// The links a correct network 4097 leaves behind.
    fn good_links() -> Vec<LinkState> {
        let n = net();
        vec![
            eth0(),
            LinkState {
                index: 10,
                name: "mbr4097".into(),
                kind: LinkKind::Bridge,
                mtu: 1450,
                up: true,
                mac: Some(n.bridge_mac()),
                ipv4_forwarding: Some(false),
                ipv4: vec![(n.node_addr, 24)],
                ..Default::default()
            },
            LinkState {
                index: 11,
                name: "mvx4097".into(),
                kind: LinkKind::Vxlan,
                mtu: 1450,
                up: true,
                master: Some(10),
                vxlan: Some(VxlanConfig {
                    vni: Some(4097),
                    port: Some(4789),
                    local: Some(N1),
                    underlay: Some(2),
                    learning: false,
                    proxy: true,
                }),
                port: Some(VXLAN_PORT_FLAGS),
                ..Default::default()
            },
        ]
    }

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

    fn iface(vni: u32, n: u8) -> TaskInterface {
        let addr = Ipv4Addr::new(10, 0, (vni - 4096) as u8, 11);
        TaskInterface {
            vni,
            host_ifname: format!("mvabcdefghij{n}"),
            ifname: format!("eth{n}"),
            addr,
            prefix_len: 24,
            mac: Mac::from_ipv4(addr),
            mtu: 1450,
        }
    }

    fn node_with_bridges() -> Vec<LinkState> {
        let mut links = good_links();
        links.push(LinkState {
            index: 12,
            name: "mbr4098".into(),
            kind: LinkKind::Bridge,
            ..Default::default()
        });
        links
    }

    fn fresh_task() -> TaskObserved {
        TaskObserved {
            node_links: node_with_bridges(),
            task_links: vec![LinkState {
                index: 1,
                name: "lo".into(),
                ..Default::default()
            }],
            default_gateway: None,
        }
    }

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

    #[test]
    fn a_failed_step_undoes_the_veths_created_before_it() {
        let plan = plan_task(&[iface(4097, 0), iface(4098, 1)], None, &fresh_task()).unwrap();
        for fail_at in 0..plan.len() {
            let undone = std::cell::RefCell::new(Vec::<String>::new());
            let mut ran = 0;
            let result = futures::executor::block_on(run_undoable(
                &plan,
                |s: &TaskStep| {
                    let r = if ran == fail_at {
                        Err(OverlayError::invalid(format!("injected at {s}")))
                    } else {
                        ran += 1;
                        Ok(match s {
                            TaskStep::CreateVeth { host, .. } => Some(host.clone()),
                            _ => None,
                        })
                    };
                    async move { r }
                },
                |h: String| {
                    undone.borrow_mut().push(h);
                    async { Ok(()) }
                },
            ));
            let e = result.unwrap_err().to_string();
            assert!(e.starts_with("injected at"), "{e}");
            let want: Vec<String> = match fail_at {
                0 => vec![],
                1 => vec!["mvabcdefghij0".into()],
                _ => vec!["mvabcdefghij1".into(), "mvabcdefghij0".into()],
            };
            assert_eq!(*undone.borrow(), want, "failing at step {fail_at}");
        }
        // A failed undo is reported with the original error.
        let result = futures::executor::block_on(run_undoable(
            &plan,
            |s: &TaskStep| {
                let r = match s {
                    TaskStep::CreateVeth { host, .. } => Ok(Some(host.clone())),
                    _ => Err(OverlayError::invalid("boom")),
                };
                async move { r }
            },
            |_h: String| async { Err(OverlayError::invalid("gone")) },
        ));
        let e = result.unwrap_err().to_string();
        assert!(e.contains("boom; undoing what was done failed too"), "{e}");
    }
}
