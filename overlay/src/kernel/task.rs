//! Carrying out a task's steps: the veth pairs and host ends in the node's namespace, the
//! interfaces, addresses and route inside the task's.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};

use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::netlink::Netlink;
use super::{Overlay, Result};
use crate::OverlayError;
use crate::netns::NetNs;
use crate::plan::TaskStep;

impl Overlay {
    /// Runs one task step; returns the host veth it created, if it created one.
    pub(super) async fn apply_task_step(
        &self,
        task: &Netlink,
        netns: &NetNs,
        step: &TaskStep,
    ) -> Result<Option<String>> {
        match step {
            TaskStep::CreateVeth { host, .. } => {
                self.create_veth(netns, step).await?;
                return Ok(Some(host.clone()));
            }
            TaskStep::DeleteHostLink { .. }
            | TaskStep::Enslave { .. }
            | TaskStep::SetHostMtu { .. }
            | TaskStep::SetHostUp { .. } => self.apply_host_step(step).await?,
            TaskStep::SetTaskMtu { .. }
            | TaskStep::SetTaskMac { .. }
            | TaskStep::DelTaskAddress { .. }
            | TaskStep::AddTaskAddress { .. }
            | TaskStep::SetTaskUp { .. }
            | TaskStep::SetLoopbackUp
            | TaskStep::SetDefaultRoute { .. } => apply_in_task(task, step).await?,
            TaskStep::LoosenRpFilter => netns
                .run(|| std::fs::write(RP_FILTER, "2"))
                .and_then(|r| r)
                .map_err(OverlayError::io(format!(
                    "{step} in {}",
                    netns.path().display()
                )))?,
        }
        Ok(None)
    }

    /// The pair in one request: the host end in `bridge` and up, the peer made directly in the
    /// task's namespace under its final name, MAC and MTU.
    async fn create_veth(&self, netns: &NetNs, step: &TaskStep) -> Result<()> {
        let TaskStep::CreateVeth {
            host,
            ifname,
            bridge,
            mac,
            mtu,
        } = step
        else {
            unreachable!("{step} does not create a veth pair");
        };
        let node = &self.nl;
        let master = node.index_of(bridge).await?;
        let peer = LinkUnspec::new_with_name(ifname)
            .address(mac.octets().to_vec())
            .mtu(*mtu)
            .setns_by_fd(netns.as_fd().as_raw_fd())
            .build();
        let pair = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(host.clone())
            .mtu(*mtu)
            .controller(master)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        node.handle
            .link()
            .add(pair)
            .execute()
            .await
            .map_err(OverlayError::netlink(step.to_string()))
    }

    /// A step on a host end, in the node's namespace.
    async fn apply_host_step(&self, step: &TaskStep) -> Result<()> {
        let node = &self.nl;
        let result = match step {
            TaskStep::DeleteHostLink { host, .. } => {
                let index = node.index_of(host).await?;
                node.handle.link().del(index).execute().await
            }
            TaskStep::Enslave { host, bridge } => {
                let index = node.index_of(host).await?;
                let master = node.index_of(bridge).await?;
                node.handle
                    .link()
                    .change(LinkUnspec::new_with_index(index).controller(master).build())
                    .execute()
                    .await
            }
            TaskStep::SetHostMtu { host, mtu } => {
                let index = node.index_of(host).await?;
                node.handle
                    .link()
                    .change(LinkUnspec::new_with_index(index).mtu(*mtu).build())
                    .execute()
                    .await
            }
            TaskStep::SetHostUp { host } => {
                let index = node.index_of(host).await?;
                node.handle
                    .link()
                    .change(LinkUnspec::new_with_index(index).up().build())
                    .execute()
                    .await
            }
            _ => unreachable!("{step} is not a step on a host end"),
        };
        result.map_err(OverlayError::netlink(step.to_string()))
    }
}

/// The reverse-path filter of every interface of a namespace (an interface's own setting counts
/// only above it), as the thread reading it sees it: its namespace's.
const RP_FILTER: &str = "/proc/sys/net/ipv4/conf/all/rp_filter";

/// The task's reverse-path filter (`net.ipv4.conf.all.rp_filter`).
pub(super) fn rp_filter(netns: &NetNs) -> Result<Option<u8>> {
    let text = netns
        .run(|| std::fs::read_to_string(RP_FILTER))
        .and_then(|r| r)
        .map_err(OverlayError::io(format!(
            "read {RP_FILTER} in {}",
            netns.path().display()
        )))?;
    Ok(text.trim().parse().ok())
}

/// A step inside the task's namespace, over the task's connection.
async fn apply_in_task(task: &Netlink, step: &TaskStep) -> Result<()> {
    let result = match step {
        TaskStep::SetTaskMtu { ifname, mtu } => {
            let index = task.index_of(ifname).await?;
            task.handle
                .link()
                .change(LinkUnspec::new_with_index(index).mtu(*mtu).build())
                .execute()
                .await
        }
        TaskStep::SetTaskMac { ifname, mac } => {
            let index = task.index_of(ifname).await?;
            task.handle
                .link()
                .change(
                    LinkUnspec::new_with_index(index)
                        .address(mac.octets().to_vec())
                        .build(),
                )
                .execute()
                .await
        }
        TaskStep::DelTaskAddress {
            ifname,
            addr,
            prefix_len,
        } => {
            let index = task.index_of(ifname).await?;
            task.del_address(index, *addr, *prefix_len).await
        }
        TaskStep::AddTaskAddress {
            ifname,
            addr,
            prefix_len,
        } => {
            let index = task.index_of(ifname).await?;
            task.handle
                .address()
                .add(index, IpAddr::V4(*addr), *prefix_len)
                .replace()
                .execute()
                .await
        }
        TaskStep::SetTaskUp { ifname } => {
            let index = task.index_of(ifname).await?;
            task.handle
                .link()
                .change(LinkUnspec::new_with_index(index).up().build())
                .execute()
                .await
        }
        TaskStep::SetLoopbackUp => {
            let index = task.index_of("lo").await?;
            task.handle
                .link()
                .change(LinkUnspec::new_with_index(index).up().build())
                .execute()
                .await
        }
        TaskStep::SetDefaultRoute { gateway } => {
            task.handle
                .route()
                .add(
                    RouteMessageBuilder::<Ipv4Addr>::new()
                        .gateway(*gateway)
                        .build(),
                )
                .replace()
                .execute()
                .await
        }
        _ => unreachable!("{step} is not a step inside the task"),
    };
    result.map_err(OverlayError::netlink(step.to_string()))
}
