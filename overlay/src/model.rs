//! What callers hand to the overlay: networks, remote endpoints and task interfaces, with the
//! names and numbers derived from them. Pure data and pure functions.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::OverlayError;

/// The VXLAN port and overhead and the smallest MTU are the cluster's, said once in
/// `mesh_cluster::net`.
pub use mesh_cluster::net::{MIN_MTU, VXLAN_OVERHEAD, VXLAN_PORT};

/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// Linux's limit on interface names (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;

/// The MTU inside VXLAN over IPv4 when the underlay has `underlay_mtu`.
pub fn overlay_mtu(underlay_mtu: u32) -> u32 {
    underlay_mtu.saturating_sub(VXLAN_OVERHEAD)
}

/// The bridge of network `vni` on a node: `mbr<vni>`.
pub fn bridge_name(vni: u32) -> String {
    format!("mbr{vni}")
}

/// The VXLAN device of network `vni` on a node: `mvx<vni>`.
pub fn vxlan_name(vni: u32) -> String {
    format!("mvx{vni}")
}

/// The VNI in `mbr<vni>` or `mvx<vni>` (digits only, no leading zero), if `name` is one of ours.
pub fn vni_of(name: &str) -> Option<(DeviceRole, u32)> {
    let (role, digits) = if let Some(d) = name.strip_prefix("mbr") {
        (DeviceRole::Bridge, d)
    } else {
        (DeviceRole::Vxlan, name.strip_prefix("mvx")?)
    };
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !(digits.len() > 1 && digits.starts_with('0'));
    let vni: u32 = digits.parse().ok().filter(|_| canonical)?;
    (1..=MAX_VNI).contains(&vni).then_some((role, vni))
}

/// Which of a network's two devices a name stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceRole {
    Bridge,
    Vxlan,
}

/// The host side of a task's veth: `mv` + the first 10 characters of the task id + the index of
/// the network in the task (`mv3f9c0a12b40`, `mv3f9c0a12b41`, ...): at most 15 characters.
pub fn task_host_ifname(task_id: &str, index: usize) -> Result<String, OverlayError> {
    let id: String = task_id.chars().take(10).collect();
    if id.len() < 10
        || !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return Err(OverlayError::invalid(format!(
            "task id {task_id:?}: needs at least 10 characters of a-z and 0-9 to name its veth"
        )));
    }
    let name = format!("mv{id}{index}");
    if name.len() > MAX_IFNAME {
        return Err(OverlayError::invalid(format!(
            "task network index {index}: at most 999 networks per task"
        )));
    }
    Ok(name)
}

/// An Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The locally administered unicast address `02:42:a:b:c:d` for `a.b.c.d` (Docker's scheme):
    /// unique wherever addresses are, and readable in captures.
    pub fn from_ipv4(ip: Ipv4Addr) -> Self {
        Self(mesh_cluster::net::mac_for(ip))
    }

    /// A unicast address other than all zeros: what a task or a bridge may carry.
    pub fn is_unicast(self) -> bool {
        self.0[0] & 1 == 0 && self.0 != [0; 6]
    }

    pub fn octets(self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Mac {
    type Err = OverlayError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            OverlayError::invalid(format!(
                "MAC address {s:?}: use six hex pairs separated by ':', such as 02:42:0a:00:01:0b"
            ))
        };
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self(out))
    }
}

impl TryFrom<&[u8]> for Mac {
    type Error = ();
    fn try_from(b: &[u8]) -> Result<Self, ()> {
        <[u8; 6]>::try_from(b).map(Self).map_err(|_| ())
    }
}

/// One overlay network's devices on this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkDevices {
    pub vni: u32,
    /// The node's own address on the network (its gateway and DNS address), on the bridge.
    pub node_addr: Ipv4Addr,
    pub prefix_len: u8,
    /// The network's `mtu` option; `None` takes [`overlay_mtu`] of the underlay.
    pub mtu: Option<u32>,
    /// The VXLAN source address: the node's advertised underlay address.
    pub underlay_addr: Ipv4Addr,
    /// The interface that carries `underlay_addr` (`eth0` in the lab).
    pub underlay_ifname: String,
}

impl NetworkDevices {
    /// The bridge's MAC: fixed, so that it does not follow its ports as they come and go (tasks
    /// would keep a stale gateway MAC).
    pub fn bridge_mac(&self) -> Mac {
        Mac::from_ipv4(self.node_addr)
    }

    /// Checks what can be checked without the kernel.
    pub fn validate(&self) -> Result<(), OverlayError> {
        check_vni(self.vni)?;
        check_prefix(self.prefix_len, "node address")?;
        check_host_addr(self.node_addr, self.prefix_len, "node address")?;
        if !usable_unicast(self.underlay_addr) {
            return Err(OverlayError::invalid(format!(
                "underlay address {}: give the node's unicast underlay address (such as 198.18.0.11)",
                self.underlay_addr
            )));
        }
        check_ifname(&self.underlay_ifname, "underlay interface")?;
        if let Some(mtu) = self.mtu
            && mtu < MIN_MTU
        {
            return Err(OverlayError::invalid(format!(
                "network {} mtu {mtu}: use at least {MIN_MTU} and at most the underlay MTU minus {VXLAN_OVERHEAD}",
                self.vni
            )));
        }
        Ok(())
    }
}

/// A task on another node, as the endpoint table knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RemoteEndpoint {
    /// The task's address on this network.
    pub ip: Ipv4Addr,
    pub mac: Mac,
    /// The underlay address of the node that runs it.
    pub vtep: Ipv4Addr,
}

/// One network interface of a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInterface {
    pub vni: u32,
    /// The veth's end in the node's namespace, enslaved to `mbr<vni>` ([`task_host_ifname`]).
    pub host_ifname: String,
    /// The name inside the task: `eth0`, `eth1`, ...
    pub ifname: String,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    pub mac: Mac,
    pub mtu: u32,
}

/// Which IPv4 network `addr/prefix_len` lies in.
pub fn network_of(addr: Ipv4Addr, prefix_len: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(addr) & mask(prefix_len))
}

fn mask(prefix_len: u8) -> u32 {
    if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix_len.min(32)))
    }
}

pub(crate) fn check_vni(vni: u32) -> Result<(), OverlayError> {
    if (1..=MAX_VNI).contains(&vni) {
        Ok(())
    } else {
        Err(OverlayError::invalid(format!(
            "VNI {vni}: use 1 to {MAX_VNI} (24 bits)"
        )))
    }
}

pub(crate) fn check_prefix(prefix_len: u8, what: &str) -> Result<(), OverlayError> {
    if (8..=30).contains(&prefix_len) {
        Ok(())
    } else {
        Err(OverlayError::invalid(format!(
            "{what} prefix length /{prefix_len}: use /8 to /30"
        )))
    }
}

/// A unicast address that is neither the network nor the broadcast address of its prefix.
pub(crate) fn check_host_addr(
    addr: Ipv4Addr,
    prefix_len: u8,
    what: &str,
) -> Result<(), OverlayError> {
    let host_bits = u32::from(addr) & !mask(prefix_len);
    if !usable_unicast(addr) || host_bits == 0 || host_bits == !mask(prefix_len) {
        return Err(OverlayError::invalid(format!(
            "{what} {addr}/{prefix_len}: give a unicast host address, not the network or broadcast address"
        )));
    }
    Ok(())
}

fn usable_unicast(addr: Ipv4Addr) -> bool {
    !(addr.is_unspecified()
        || addr.is_loopback()
        || addr.is_multicast()
        || addr.is_broadcast()
        || addr.is_link_local())
}

/// What the kernel takes as an interface name (`dev_valid_name`), within 15 bytes.
pub(crate) fn check_ifname(name: &str, what: &str) -> Result<(), OverlayError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != ':');
    if ok {
        Ok(())
    } else {
        Err(OverlayError::invalid(format!(
            "{what} name {name:?}: use 1 to {MAX_IFNAME} printable ASCII characters without '/', ':' or spaces"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(bridge_name(4097), "mbr4097");
        assert_eq!(vxlan_name(MAX_VNI), "mvx16777215");
        assert_eq!(vni_of("mvx4097"), Some((DeviceRole::Vxlan, 4097)));
        assert_eq!(vni_of("mbr4096"), Some((DeviceRole::Bridge, 4096)));
        assert_eq!(vni_of("mbr04096"), None);
        assert_eq!(vni_of("mbr"), None);
        assert_eq!(vni_of("mvx16777216"), None);
        assert_eq!(vni_of("mv3f9c0a12b40"), None);
        assert_eq!(overlay_mtu(1500), 1450);
        assert_eq!(overlay_mtu(9000), 8950);
        assert_eq!(overlay_mtu(20), 0);
        assert_eq!(
            network_of(Ipv4Addr::new(10, 0, 1, 77), 24),
            Ipv4Addr::new(10, 0, 1, 0)
        );
    }

    #[test]
    fn task_host_names_fit_in_ifnamsiz() {
        let n = task_host_ifname("3f9c0a12b4deadbeef", 0).unwrap();
        assert_eq!(n, "mv3f9c0a12b40");
        assert_eq!(task_host_ifname("3f9c0a12b4", 999).unwrap().len(), 15);
        assert!(task_host_ifname("3f9c0a12b4", 1000).is_err());
        assert!(task_host_ifname("short", 0).is_err());
        assert!(task_host_ifname("3F9C0A12B4", 0).is_err());
    }

    #[test]
    fn macs_parse_print_and_derive() {
        let m: Mac = "02:42:0a:00:01:0b".parse().unwrap();
        assert_eq!(m, Mac::from_ipv4(Ipv4Addr::new(10, 0, 1, 11)));
        assert_eq!(m.to_string(), "02:42:0a:00:01:0b");
        assert!(m.is_unicast());
        assert!(!"ff:ff:ff:ff:ff:ff".parse::<Mac>().unwrap().is_unicast());
        assert!(!"00:00:00:00:00:00".parse::<Mac>().unwrap().is_unicast());
        for bad in [
            "02:42:0a:00:01",
            "02:42:0a:00:01:0b:0c",
            "2:42:0a:00:01:0b",
            "zz:42:0a:00:01:0b",
        ] {
            let e = bad.parse::<Mac>().unwrap_err().to_string();
            assert!(e.contains("six hex pairs"), "{bad}: {e}");
        }
    }

    fn net() -> NetworkDevices {
        NetworkDevices {
            vni: 4097,
            node_addr: Ipv4Addr::new(10, 0, 1, 2),
            prefix_len: 24,
            mtu: None,
            underlay_addr: Ipv4Addr::new(198, 18, 0, 11),
            underlay_ifname: "eth0".into(),
        }
    }

    #[test]
    fn network_input_is_checked_with_what_is_accepted() {
        assert!(net().validate().is_ok());
        let cases: Vec<(NetworkDevices, &str)> = vec![
            (NetworkDevices { vni: 0, ..net() }, "1 to 16777215"),
            (
                NetworkDevices {
                    vni: 1 << 24,
                    ..net()
                },
                "1 to 16777215",
            ),
            (
                NetworkDevices {
                    prefix_len: 31,
                    ..net()
                },
                "/8 to /30",
            ),
            (
                NetworkDevices {
                    node_addr: Ipv4Addr::new(10, 0, 1, 0),
                    ..net()
                },
                "not the network or broadcast",
            ),
            (
                NetworkDevices {
                    node_addr: Ipv4Addr::new(10, 0, 1, 255),
                    ..net()
                },
                "not the network or broadcast",
            ),
            (
                NetworkDevices {
                    underlay_addr: Ipv4Addr::UNSPECIFIED,
                    ..net()
                },
                "unicast underlay",
            ),
            (
                NetworkDevices {
                    underlay_ifname: "a/b".into(),
                    ..net()
                },
                "without '/'",
            ),
            (
                NetworkDevices {
                    underlay_ifname: "a".repeat(16),
                    ..net()
                },
                "1 to 15",
            ),
            (
                NetworkDevices {
                    mtu: Some(500),
                    ..net()
                },
                "at least 576",
            ),
        ];
        for (n, want) in cases {
            let e = n.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{n:?}: {e}");
        }
    }
}
