//! Egress: what the programs must know before a task's packet may leave the cluster
//! (`ebpf/lib/egress.h`). They source-NAT a task's packet to the node's address only when its
//! destination is in no overlay subnet, so the subnets are written first and `MESH_CFG_EGRESS`
//! is set after them: until then no task reaches the outside.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use mesh_ebpf::abi::{MESH_CFG_EGRESS, MeshNetKey};

use super::Mesh;

/// An overlay network's subnet and VNI: its destinations are never egress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OverlayNet {
    /// The subnet's address with the host bits cleared.
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    pub vni: u32,
}

impl OverlayNet {
    /// The subnet `addr/prefix_len` (host bits dropped) of network `vni`, or an error naming a
    /// prefix length over 32.
    pub fn new(addr: Ipv4Addr, prefix_len: u8, vni: u32) -> anyhow::Result<Self> {
        if prefix_len > 32 {
            anyhow::bail!("subnet {addr}/{prefix_len}: the prefix length must be 0 to 32");
        }
        let mask = u32::MAX
            .checked_shl(32 - u32::from(prefix_len))
            .unwrap_or(0);
        Ok(Self {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            prefix_len,
            vni,
        })
    }

    fn key(&self) -> MeshNetKey {
        MeshNetKey {
            prefixlen: u32::from(self.prefix_len),
            addr: self.addr.octets(),
        }
    }
}

/// What [`Mesh::set_overlay_nets`] writes: entries to put (new or with another VNI) and keys
/// to remove.
#[derive(Debug, Default, PartialEq, Eq)]
struct NetChanges {
    put: Vec<(MeshNetKey, u32)>,
    remove: Vec<MeshNetKey>,
}

impl NetChanges {
    fn between(current: &BTreeMap<MeshNetKey, u32>, wanted: &BTreeSet<OverlayNet>) -> Self {
        let wanted: BTreeMap<MeshNetKey, u32> = wanted.iter().map(|n| (n.key(), n.vni)).collect();
        Self {
            put: wanted
                .iter()
                .filter(|(k, v)| current.get(k) != Some(v))
                .map(|(k, v)| (*k, *v))
                .collect(),
            remove: current
                .keys()
                .filter(|k| !wanted.contains_key(k))
                .copied()
                .collect(),
        }
    }
}

impl Mesh {
    /// Makes `mesh_overlay_nets` hold exactly `nets` (every overlay network of the cluster, the
    /// ingress network's included) and lets tasks reach the outside. An empty set stops egress
    /// (the flag goes off before the table empties). Returns how many entries changed.
    pub fn set_overlay_nets(&mut self, nets: &BTreeSet<OverlayNet>) -> anyhow::Result<usize> {
        let current = self.programs.overlay_nets()?;
        let changes = NetChanges::between(&current, nets);
        if nets.is_empty() {
            self.set_config_flag(MESH_CFG_EGRESS, false)?;
        }
        // Put before removed, so a subnet that changed its VNI is never missing.
        for (key, vni) in &changes.put {
            self.programs.put_overlay_net(*key, *vni)?;
        }
        for key in &changes.remove {
            self.programs.del_overlay_net(*key)?;
        }
        if !nets.is_empty() {
            self.set_config_flag(MESH_CFG_EGRESS, true)?;
        }
        Ok(changes.put.len() + changes.remove.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str, vni: u32) -> OverlayNet {
        let (addr, len) = s.split_once('/').unwrap();
        OverlayNet::new(addr.parse().unwrap(), len.parse().unwrap(), vni).unwrap()
    }

    #[test]
    fn host_bits_are_dropped_and_long_prefixes_refused() {
        assert_eq!(net("10.0.1.7/24", 1).addr, Ipv4Addr::new(10, 0, 1, 0));
        assert_eq!(net("10.0.1.7/32", 1).addr, Ipv4Addr::new(10, 0, 1, 7));
        assert_eq!(net("10.0.1.7/0", 1).addr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(net("10.255.0.9/16", 1).addr, Ipv4Addr::new(10, 255, 0, 0));
        let err = OverlayNet::new(Ipv4Addr::new(10, 0, 0, 0), 33, 1).unwrap_err();
        assert!(err.to_string().contains("0 to 32"), "{err}");
    }

    #[test]
    fn changes_put_new_and_changed_and_remove_gone() {
        let current: BTreeMap<MeshNetKey, u32> = [
            (net("10.0.1.0/24", 4097).key(), 4097),
            (net("10.0.2.0/24", 4098).key(), 4098),
            (net("10.0.3.0/24", 4099).key(), 4099),
        ]
        .into();
        let wanted: BTreeSet<OverlayNet> = [
            net("10.0.1.0/24", 4097),
            net("10.0.2.0/24", 5000),
            net("10.0.4.0/24", 4100),
        ]
        .into();
        let changes = NetChanges::between(&current, &wanted);
        assert_eq!(
            changes.put,
            vec![
                (net("10.0.2.0/24", 0).key(), 5000),
                (net("10.0.4.0/24", 0).key(), 4100)
            ]
        );
        assert_eq!(changes.remove, vec![net("10.0.3.0/24", 0).key()]);
        let same: BTreeSet<OverlayNet> = [
            net("10.0.1.0/24", 4097),
            net("10.0.2.0/24", 4098),
            net("10.0.3.0/24", 4099),
        ]
        .into();
        assert_eq!(NetChanges::between(&current, &same), NetChanges::default());
    }
}
