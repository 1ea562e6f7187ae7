//! A network's static entries for remote tasks: reading and writing the VXLAN FDB, the
//! bridge FDB and the permanent neighbours.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};

use super::Result;
use super::netlink::Netlink;
use crate::OverlayError;
use crate::model::Mac;
use crate::plan::{EndpointOp, EndpointTables};

impl Netlink {
    /// The static entries on VXLAN device `vxlan` (its own FDB, the bridge's FDB entries that
    /// point at it, its permanent neighbours).
    pub(super) async fn endpoint_tables(&self, vxlan: u32) -> Result<EndpointTables> {
        let _dump = self.dumps.lock().await;
        let mut t = EndpointTables::default();
        let fdb: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute()
            .try_collect()
            .await
            .map_err(OverlayError::netlink(format!(
                "listing FDB entries in {}",
                self.place
            )))?;
        for n in fdb.iter().filter(|n| n.header.ifindex == vxlan) {
            let Some(mac) = lladdr_of(n) else { continue };
            // The bridge reports its entries with NDA_MASTER (not always NTF_MASTER); the VXLAN
            // device reports its own with NTF_SELF.
            let of_bridge = n.header.flags.contains(NeighbourFlags::Controller)
                || n.attributes
                    .iter()
                    .any(|a| matches!(a, NeighbourAttribute::Controller(_)));
            if of_bridge {
                // Static entries are ours; permanent ones are the port's own address.
                if n.header.state == NeighbourState::Noarp {
                    t.bridge_fdb.insert(mac);
                }
            } else if n.header.flags.contains(NeighbourFlags::Own) {
                // In an AF_BRIDGE message the crate leaves NDA_DST as raw bytes.
                let dst = n
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
                        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                            <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from)
                        }
                        _ => None,
                    })
                    .unwrap_or(Ipv4Addr::UNSPECIFIED);
                t.vxlan_fdb.entry(mac).or_default().push(dst);
            }
        }
        let neighbours = self.inet_neighbours().await?;
        for n in neighbours
            .iter()
            .filter(|n| n.header.ifindex == vxlan && n.header.state == NeighbourState::Permanent)
        {
            let ip = n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
                _ => None,
            });
            if let (Some(ip), Some(mac)) = (ip, lladdr_of(n)) {
                t.neighbours.insert(ip, mac);
            }
        }
        Ok(t)
    }

    /// Every IPv4 neighbour entry (the caller holds the dump lock).
    async fn inet_neighbours(&self) -> Result<Vec<NeighbourMessage>> {
        self.handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Inet)
            .execute()
            .try_collect()
            .await
            .map_err(OverlayError::netlink(format!(
                "listing neighbours in {}",
                self.place
            )))
    }

    /// The IPv4 neighbours of interface `ifindex` with a link-layer address (resolved,
    /// stale or being checked; not failed or incomplete).
    pub(super) async fn resolved_neighbours(
        &self,
        ifindex: u32,
    ) -> Result<std::collections::BTreeMap<Ipv4Addr, Mac>> {
        let _dump = self.dumps.lock().await;
        let neighbours = self.inet_neighbours().await?;
        Ok(neighbours
            .iter()
            .filter(|n| {
                n.header.ifindex == ifindex
                    && !matches!(
                        n.header.state,
                        NeighbourState::Failed | NeighbourState::Incomplete | NeighbourState::None
                    )
            })
            .filter_map(|n| {
                let ip = n.attributes.iter().find_map(|a| match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
                    _ => None,
                })?;
                Some((ip, lladdr_of(n)?))
            })
            .collect())
    }

    pub(super) async fn apply_endpoint_op(&self, vxlan: u32, op: EndpointOp) -> Result<()> {
        let neigh = self.handle.neighbours();
        let result = match op {
            EndpointOp::SetVxlanFdb { mac, vtep } => {
                neigh
                    .add_bridge(vxlan, &mac.octets())
                    .flags(NeighbourFlags::Own)
                    .state(NeighbourState::Permanent)
                    .destination(IpAddr::V4(vtep))
                    .replace()
                    .execute()
                    .await
            }
            EndpointOp::DelVxlanFdb { mac } => {
                neigh
                    .del(fdb_message(vxlan, mac, NeighbourFlags::Own))
                    .execute()
                    .await
            }
            EndpointOp::SetBridgeFdb { mac } => {
                neigh
                    .add_bridge(vxlan, &mac.octets())
                    .flags(NeighbourFlags::Controller)
                    .state(NeighbourState::Noarp)
                    .replace()
                    .execute()
                    .await
            }
            EndpointOp::DelBridgeFdb { mac } => {
                neigh
                    .del(fdb_message(vxlan, mac, NeighbourFlags::Controller))
                    .execute()
                    .await
            }
            EndpointOp::SetNeighbour { ip, mac } => {
                neigh
                    .add(vxlan, IpAddr::V4(ip))
                    .link_layer_address(&mac.octets())
                    .state(NeighbourState::Permanent)
                    .replace()
                    .execute()
                    .await
            }
            EndpointOp::DelNeighbour { ip } => {
                let mut msg = NeighbourMessage::default();
                msg.header.family = AddressFamily::Inet;
                msg.header.ifindex = vxlan;
                msg.attributes
                    .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
                neigh.del(msg).execute().await
            }
        };
        result.map_err(OverlayError::netlink(format!("{op} in {}", self.place)))
    }
}

fn fdb_message(ifindex: u32, mac: Mac, flags: NeighbourFlags) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = ifindex;
    msg.header.flags = flags;
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.octets().to_vec()));
    msg
}

fn lladdr_of(n: &NeighbourMessage) -> Option<Mac> {
    n.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(b) => Mac::try_from(b.as_slice()).ok(),
        _ => None,
    })
}
