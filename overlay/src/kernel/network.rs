//! Carrying out a network's steps: bridges, VXLAN devices, their addresses and port flags.

use std::net::IpAddr;

use rtnetlink::packet_core::{DefaultNla, NLA_F_NESTED};
use rtnetlink::packet_route::link::{AfSpecInet, AfSpecUnspec, LinkAttribute, LinkMessage};
use rtnetlink::{LinkBridge, LinkBridgePort, LinkUnspec, LinkVxlan};

use super::{Overlay, Result};
use crate::OverlayError;
use crate::model::VXLAN_PORT;
use crate::plan::{NetworkStep, PortFlags, VXLAN_PORT_FLAGS};

/// `IFLA_INET_CONF` inside `IFLA_AF_SPEC`/`AF_INET`, and `IPV4_DEVCONF_FORWARDING` in it.
const IFLA_INET_CONF: u16 = 1;
const IPV4_DEVCONF_FORWARDING: u16 = 1;

impl Overlay {
    pub(super) async fn apply_network_step(&self, step: &NetworkStep) -> Result<()> {
        let nl = &self.nl;
        let what = step.to_string();
        let link = nl.handle.link();
        let result = match step {
            NetworkStep::Delete { name, .. } => {
                let index = nl.index_of(name).await?;
                link.del(index).execute().await
            }
            NetworkStep::CreateBridge { name, mtu, mac } => {
                link.add(
                    LinkBridge::new(name)
                        .mtu(*mtu)
                        .address(mac.octets().to_vec())
                        .build(),
                )
                .execute()
                .await
            }
            NetworkStep::CreateVxlan {
                name,
                vni,
                local,
                underlay,
                mtu,
            } => {
                let dev = nl.index_of(underlay).await?;
                link.add(
                    LinkVxlan::new(name, *vni)
                        .dev(dev)
                        .port(VXLAN_PORT)
                        .local(*local)
                        .learning(false)
                        .proxy(true)
                        .mtu(*mtu)
                        .build(),
                )
                .execute()
                .await
            }
            NetworkStep::SetMtu { name, mtu } => {
                let index = nl.index_of(name).await?;
                link.change(LinkUnspec::new_with_index(index).mtu(*mtu).build())
                    .execute()
                    .await
            }
            NetworkStep::SetMac { name, mac } => {
                let index = nl.index_of(name).await?;
                link.change(
                    LinkUnspec::new_with_index(index)
                        .address(mac.octets().to_vec())
                        .build(),
                )
                .execute()
                .await
            }
            NetworkStep::DisableForwarding { name } => {
                let index = nl.index_of(name).await?;
                link.change(disable_forwarding(index)).execute().await
            }
            NetworkStep::AddAddress {
                name,
                addr,
                prefix_len,
            } => {
                let index = nl.index_of(name).await?;
                nl.handle
                    .address()
                    .add(index, IpAddr::V4(*addr), *prefix_len)
                    .replace()
                    .execute()
                    .await
            }
            NetworkStep::DelAddress {
                name,
                addr,
                prefix_len,
            } => {
                let index = nl.index_of(name).await?;
                nl.del_address(index, *addr, *prefix_len).await
            }
            NetworkStep::Enslave { name, bridge } => {
                let index = nl.index_of(name).await?;
                let master = nl.index_of(bridge).await?;
                link.change(LinkUnspec::new_with_index(index).controller(master).build())
                    .execute()
                    .await
            }
            NetworkStep::SetPortFlags { name } => {
                let index = nl.index_of(name).await?;
                let PortFlags {
                    learning,
                    neigh_suppress,
                    unicast_flood,
                } = VXLAN_PORT_FLAGS;
                link.set_port(
                    LinkBridgePort::new(index)
                        .learning(learning)
                        .neigh_suppress(neigh_suppress)
                        .flood(unicast_flood)
                        .build(),
                )
                .execute()
                .await
            }
            NetworkStep::SetUp { name } => {
                let index = nl.index_of(name).await?;
                link.change(LinkUnspec::new_with_index(index).up().build())
                    .execute()
                    .await
            }
        };
        result.map_err(OverlayError::netlink(what))
    }
}

/// `net.ipv4.conf.<index>.forwarding = 0`, by netlink: `IFLA_AF_SPEC` / `AF_INET` /
/// `IFLA_INET_CONF` / `IPV4_DEVCONF_FORWARDING`. (The crate's own devconf request leaves zero
/// values out, so the one attribute is built by hand.)
fn disable_forwarding(index: u32) -> LinkMessage {
    let mut conf = Vec::with_capacity(8);
    conf.extend_from_slice(&8u16.to_ne_bytes()); // nla_len: header + u32
    conf.extend_from_slice(&IPV4_DEVCONF_FORWARDING.to_ne_bytes());
    conf.extend_from_slice(&0u32.to_ne_bytes());
    let inet = AfSpecInet::Other(DefaultNla::new(IFLA_INET_CONF | NLA_F_NESTED, conf));
    LinkUnspec::new_with_index(index)
        .append_extra_attribute(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
            inet,
        ])]))
        .build()
}
