//! Native routing's tables (`ebpf/lib/native.h`): `mesh_native`, every address of a natively
//! routed network that this node deals with, and where it is ([`NativeAddr`] is what callers
//! hand in; [`Mesh::set_native`] makes the map hold exactly that, changing only what differs),
//! and `mesh_node_macs`, the other nodes by their underlay MAC ([`Mesh::set_node_macs`]).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use anyhow::Context as _;
use mesh_ebpf::abi::{MESH_NATIVE_DIRECT, MESH_NATIVE_LOCAL, MeshMacKey, MeshNative};
use mesh_ebpf::maps::{MeshMap, Native, NodeMacs};

use crate::Mesh;
use crate::programs::Programs;

/// Where an address of a natively routed network is, as this node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NativePlace {
    /// A task on this node: packets for it from the underlay go to its veth.
    Local {
        /// The host side of its veth.
        ifindex: u32,
        mac: [u8; 6],
        /// Its gateway's (the bridge's) MAC: the L2 source of what is handed to it.
        gateway_mac: [u8; 6],
    },
    /// A task or node address on another node.
    Remote {
        /// That node's underlay address.
        node: Ipv4Addr,
        /// The node is on-link: packets to the address leave unencapsulated. Otherwise they
        /// take the VXLAN device (the address still counts as a source of its network).
        direct: bool,
    },
}

/// One address of a natively routed network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NativeAddr {
    pub vni: u32,
    pub place: NativePlace,
}

impl NativeAddr {
    /// The map value.
    pub fn to_abi(self) -> MeshNative {
        let mut v = MeshNative {
            vni: self.vni,
            ..MeshNative::default()
        };
        match self.place {
            NativePlace::Local {
                ifindex,
                mac,
                gateway_mac,
            } => {
                v.ifindex = ifindex;
                v.mac = mac;
                v.gw_mac = gateway_mac;
                v.flags = MESH_NATIVE_LOCAL;
            }
            NativePlace::Remote { node, direct } => {
                v.node = node.octets();
                v.flags = if direct { MESH_NATIVE_DIRECT } else { 0 };
            }
        }
        v
    }
}

/// What to write and remove to go from `current` to `wanted` (pure).
fn native_changes<K: Ord + Copy, V: PartialEq + Copy>(
    current: &BTreeMap<K, V>,
    wanted: &BTreeMap<K, V>,
) -> (Vec<(K, V)>, Vec<K>) {
    let put = wanted
        .iter()
        .filter(|(a, v)| current.get(a) != Some(v))
        .map(|(a, v)| (*a, *v))
        .collect();
    let remove = current
        .keys()
        .filter(|a| !wanted.contains_key(a))
        .copied()
        .collect();
    (put, remove)
}

impl Programs {
    fn native_addrs(&mut self) -> anyhow::Result<BTreeMap<Ipv4Addr, MeshNative>> {
        Ok(self
            .map::<Native>()?
            .iter()
            .map(|kv| kv.map(|(k, v)| (Ipv4Addr::from(k), v)))
            .collect::<Result<_, _>>()?)
    }

    fn put_native(&mut self, addr: Ipv4Addr, v: MeshNative) -> anyhow::Result<()> {
        self.map::<Native>()?
            .insert(addr.octets(), v, 0)
            .with_context(|| format!("write {} ({addr})", Native::NAME))
    }

    fn del_native(&mut self, addr: Ipv4Addr) -> anyhow::Result<()> {
        self.map::<Native>()?
            .remove(&addr.octets())
            .with_context(|| format!("remove {addr} from {}", Native::NAME))
    }

    fn node_macs(&mut self) -> anyhow::Result<BTreeMap<[u8; 6], [u8; 4]>> {
        Ok(self
            .map::<NodeMacs>()?
            .iter()
            .map(|kv| kv.map(|(k, v)| (k.mac, v)))
            .collect::<Result<_, _>>()?)
    }

    fn put_node_mac(&mut self, mac: [u8; 6], node: [u8; 4]) -> anyhow::Result<()> {
        self.map::<NodeMacs>()?
            .insert(MeshMacKey { mac, pad: [0; 2] }, node, 0)
            .with_context(|| format!("write {}", NodeMacs::NAME))
    }

    fn del_node_mac(&mut self, mac: [u8; 6]) -> anyhow::Result<()> {
        self.map::<NodeMacs>()?
            .remove(&MeshMacKey { mac, pad: [0; 2] })
            .with_context(|| format!("remove a MAC from {}", NodeMacs::NAME))
    }
}

impl Mesh {
    /// Makes `mesh_native` hold exactly `addrs`. Returns how many entries changed.
    pub fn set_native(&mut self, addrs: &BTreeMap<Ipv4Addr, NativeAddr>) -> anyhow::Result<usize> {
        let wanted: BTreeMap<Ipv4Addr, MeshNative> =
            addrs.iter().map(|(a, n)| (*a, n.to_abi())).collect();
        let programs = self.programs_mut();
        let (put, remove) = native_changes(&programs.native_addrs()?, &wanted);
        // Written before removed: an address that moves never goes missing in between.
        for (addr, v) in &put {
            programs.put_native(*addr, *v)?;
        }
        for addr in &remove {
            programs.del_native(*addr)?;
        }
        Ok(put.len() + remove.len())
    }

    /// Makes `mesh_node_macs` hold exactly `macs` (the other nodes' underlay MACs, each with
    /// the node's underlay address). Returns how many entries changed.
    pub fn set_node_macs(&mut self, macs: &BTreeMap<[u8; 6], Ipv4Addr>) -> anyhow::Result<usize> {
        let wanted: BTreeMap<[u8; 6], [u8; 4]> =
            macs.iter().map(|(m, a)| (*m, a.octets())).collect();
        let programs = self.programs_mut();
        let (put, remove) = native_changes(&programs.node_macs()?, &wanted);
        for (mac, node) in &put {
            programs.put_node_mac(*mac, *node)?;
        }
        for mac in &remove {
            programs.del_node_mac(*mac)?;
        }
        Ok(put.len() + remove.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// A local task carries its veth and MACs, a remote address its node; only an on-link
    /// node's addresses are DIRECT.
    #[test]
    fn places_become_map_values() {
        let local = NativeAddr {
            vni: 4097,
            place: NativePlace::Local {
                ifindex: 7,
                mac: [2, 0x42, 10, 0, 0, 5],
                gateway_mac: [2, 0x42, 10, 0, 0, 2],
            },
        }
        .to_abi();
        assert_eq!(
            (local.vni, local.ifindex, local.flags, local.node),
            (4097, 7, MESH_NATIVE_LOCAL, [0; 4])
        );
        assert_eq!(local.gw_mac, [2, 0x42, 10, 0, 0, 2]);
        let remote = |direct| {
            NativeAddr {
                vni: 4097,
                place: NativePlace::Remote {
                    node: ip("198.18.0.12"),
                    direct,
                },
            }
            .to_abi()
        };
        assert_eq!(remote(true).flags, MESH_NATIVE_DIRECT);
        assert_eq!(remote(false).flags, 0);
        assert_eq!(remote(true).node, [198, 18, 0, 12]);
    }

    /// Only what differs is written; what is no longer wanted is removed.
    #[test]
    fn changes_are_the_difference() {
        let v = |vni| MeshNative {
            vni,
            ..MeshNative::default()
        };
        let current = BTreeMap::from([(ip("10.0.0.3"), v(1)), (ip("10.0.0.4"), v(1))]);
        let wanted = BTreeMap::from([
            (ip("10.0.0.3"), v(1)),
            (ip("10.0.0.4"), v(2)),
            (ip("10.0.0.5"), v(1)),
        ]);
        let (put, remove) = native_changes(&current, &wanted);
        assert_eq!(put, [(ip("10.0.0.4"), v(2)), (ip("10.0.0.5"), v(1))]);
        assert!(remove.is_empty());
        let (put, remove) = native_changes(&wanted, &BTreeMap::new());
        assert!(put.is_empty());
        assert_eq!(remove.len(), 3);
    }
}
