//! The thin runtime: reads the kernel into the plans' inputs and carries the plans out, over
//! one rtnetlink connection per network namespace.
//!
//! [`netlink`] is the connection and what it reads, [`decode`] turns netlink messages into the
//! plans' inputs, and the steps are carried out by concern: [`network`] (bridges and VXLAN
//! devices), [`endpoints`] (static FDB and neighbour entries), [`task`] (veths, task addresses
//! and routes).

mod decode;
mod endpoints;
mod netlink;
mod network;
mod task;

use std::net::Ipv4Addr;

use crate::OverlayError;
use crate::model::{NetworkDevices, RemoteEndpoint, TaskInterface, bridge_name, vxlan_name};
use crate::netns::NetNs;
use crate::plan::{
    EndpointOp, LinkKind, NetworkState, NetworkStep, TaskObserved, TaskStep, networks_from_links,
    plan_endpoints, plan_network, plan_remove_network, plan_task, plan_unplumb, run_undoable,
};
use netlink::Netlink;

pub(super) type Result<T> = std::result::Result<T, OverlayError>;

/// The overlay's devices in one network namespace: a node's, where meshd lives.
///
/// Every method reads the kernel, plans with the pure functions of [`crate::plan`] (which refuse
/// bad input before anything changes), executes the plan and returns the steps it applied (empty
/// when everything was already right). Calls for one network should not run concurrently.
#[derive(Clone)]
pub struct Overlay {
    nl: Netlink,
}

impl Overlay {
    /// Connects to the namespace of the calling thread (meshd's node namespace). Call it inside
    /// a tokio runtime: the connection runs as a task on it.
    pub fn connect() -> Result<Self> {
        Ok(Self {
            nl: Netlink::connect_here("this namespace")?,
        })
    }

    /// Connects to namespace `ns`, from any thread (tests drive each lab node this way).
    pub fn connect_in(ns: &NetNs) -> Result<Self> {
        Ok(Self {
            nl: Netlink::connect_in(ns)?,
        })
    }

    /// Creates or repairs network `net`'s bridge `mbr<vni>` and VXLAN device `mvx<vni>`. A VXLAN
    /// device that had to be recreated has lost its entries: call
    /// [`set_remote_endpoints`](Self::set_remote_endpoints) after this (it is cheap when nothing
    /// changed).
    pub async fn ensure_network(&self, net: &NetworkDevices) -> Result<Vec<NetworkStep>> {
        let links = self.nl.links().await?;
        let steps = plan_network(net, &links)?;
        for step in &steps {
            self.apply_network_step(step).await?;
        }
        Ok(steps)
    }

    /// Deletes network `vni`'s devices (with their FDB and neighbour entries). Refused while a
    /// task veth is still in its bridge. Nothing to delete is not an error.
    pub async fn remove_network(&self, vni: u32) -> Result<Vec<NetworkStep>> {
        let links = self.nl.links().await?;
        let steps = plan_remove_network(vni, &links)?;
        for step in &steps {
            self.apply_network_step(step).await?;
        }
        Ok(steps)
    }

    /// The networks whose devices exist in this namespace, read from the kernel.
    pub async fn list_networks(&self) -> Result<Vec<NetworkState>> {
        Ok(networks_from_links(&self.nl.links().await?))
    }

    /// Makes network `vni`'s static entries for remote tasks exactly `endpoints`: on `mvx<vni>`
    /// an FDB entry (self, dst = VTEP, permanent) and a neighbour (permanent, for the proxy ARP
    /// answer), on the bridge an FDB entry to the VXLAN port (master, static). Returns the
    /// changes applied.
    pub async fn set_remote_endpoints(
        &self,
        vni: u32,
        endpoints: &[RemoteEndpoint],
    ) -> Result<Vec<EndpointOp>> {
        let links = self.nl.links().await?;
        let vx = vxlan_name(vni);
        let br = bridge_name(vni);
        let vxlan = links
            .iter()
            .find(|l| l.name == vx && l.kind == LinkKind::Vxlan);
        let bridge = links
            .iter()
            .find(|l| l.name == br && l.kind == LinkKind::Bridge);
        let (Some(vxlan), Some(bridge)) = (vxlan, bridge) else {
            return Err(OverlayError::invalid(format!(
                "network {vni} has no {vx} in a bridge {br} on this node; call ensure_network first"
            )));
        };
        if vxlan.master != Some(bridge.index) {
            return Err(OverlayError::invalid(format!(
                "{vx} is not a port of {br}; call ensure_network first"
            )));
        }
        let actual = self.nl.endpoint_tables(vxlan.index).await?;
        let ops = plan_endpoints(endpoints, &actual)?;
        for op in &ops {
            self.nl
                .apply_endpoint_op(vxlan.index, *op)
                .await
                .map_err(|e| with_context(e, &format!("network {vni}: {op}")))?;
        }
        Ok(ops)
    }

    /// Gives the task whose namespace is `netns` (a container's: [`NetNs::of_pid`]) exactly the
    /// interfaces `ifaces`, `lo` up, and a default route via `gateway` (the node's address on the
    /// task's first network). Interfaces already in place are kept. When a step fails, the veths
    /// this call created are deleted again, so the task is left as it was found.
    pub async fn plumb_task(
        &self,
        netns: &NetNs,
        ifaces: &[TaskInterface],
        gateway: Option<Ipv4Addr>,
    ) -> Result<Vec<TaskStep>> {
        let task = Netlink::connect_in(netns)?;
        let seen = TaskObserved {
            node_links: self.nl.links().await?,
            task_links: task.links().await?,
            default_gateway: task.default_gateway().await?,
            rp_filter: task::rp_filter(netns)?,
        };
        let steps = plan_task(ifaces, gateway, &seen)?;
        let task = &task;
        run_undoable(
            &steps,
            |step: &TaskStep| async move {
                self.apply_task_step(task, netns, step)
                    .await
                    .map_err(|e| with_context(e, &step.to_string()))
            },
            |host: String| async move {
                let index = self.nl.index_of(&host).await?;
                self.nl.delete(index, &host).await
            },
        )
        .await?;
        Ok(steps)
    }

    /// Deletes the task veths `host_ifnames` (each takes its peer in the task with it). Names
    /// that do not exist are skipped; a name that is not a veth is refused before anything is
    /// deleted. Returns the names deleted. A veth that vanishes between the listing and its
    /// deletion counts as deleted: a stopped container's namespace takes it when the kernel
    /// gets to it, which races with this.
    pub async fn unplumb_task(&self, host_ifnames: &[String]) -> Result<Vec<String>> {
        let links = self.nl.links().await?;
        let names = plan_unplumb(host_ifnames, &links)?;
        for name in &names {
            let deleted = match self.nl.index_of(name).await {
                Ok(index) => self.nl.delete(index, name).await,
                Err(e) => Err(e),
            };
            match deleted {
                Err(e) if !e.is_no_such_device() => return Err(e),
                _ => {}
            }
        }
        Ok(names)
    }

    /// The link-layer addresses this node knows for `peers` (other nodes' underlay addresses)
    /// on interface `ifname` (the underlay), from its neighbour table; a peer without a
    /// resolved entry is left out.
    pub async fn peer_macs(
        &self,
        peers: &std::collections::BTreeSet<Ipv4Addr>,
        ifname: &str,
    ) -> Result<std::collections::BTreeMap<Ipv4Addr, crate::model::Mac>> {
        let ifindex = self.nl.index_of(ifname).await?;
        let mut found = self.nl.resolved_neighbours(ifindex).await?;
        found.retain(|ip, _| peers.contains(ip));
        Ok(found)
    }

    /// How each of `peers` (other nodes' underlay addresses) is reached from this node, by
    /// the main routing table (native routing needs them on-link).
    pub async fn next_hops(
        &self,
        peers: &std::collections::BTreeSet<Ipv4Addr>,
    ) -> Result<std::collections::BTreeMap<Ipv4Addr, crate::plan::NextHop>> {
        let routes = self.nl.main_routes().await?;
        Ok(peers
            .iter()
            .map(|p| (*p, crate::plan::next_hop(*p, &routes)))
            .collect())
    }

    /// Makes meshd's native routes (host routes to remote addresses of native networks, via
    /// their node on the underlay interface `underlay_ifname`) exactly `wanted`; other routes are
    /// never touched. Returns how many changed.
    pub async fn set_native_routes(
        &self,
        wanted: &std::collections::BTreeMap<Ipv4Addr, crate::plan::NativeRoute>,
        underlay_ifname: &str,
    ) -> Result<usize> {
        let current = self.nl.native_routes().await?;
        let (put, remove) = crate::plan::native_route_changes(&current, wanted);
        if !put.is_empty() {
            let oif = self
                .nl
                .links()
                .await?
                .into_iter()
                .find(|l| l.name == underlay_ifname)
                .map(|l| l.index)
                .ok_or_else(|| {
                    OverlayError::invalid(format!(
                        "underlay interface {underlay_ifname:?} does not exist"
                    ))
                })?;
            for (dst, route) in &put {
                self.nl.put_native_route(*dst, *route, oif).await?;
            }
        }
        for dst in &remove {
            self.nl.del_native_route(*dst).await?;
        }
        Ok(put.len() + remove.len())
    }

    /// The MTU of interface `ifname` (the underlay); [`crate::overlay_mtu`] gives the network's.
    pub async fn underlay_mtu(&self, ifname: &str) -> Result<u32> {
        self.nl
            .links()
            .await?
            .into_iter()
            .find(|l| l.name == ifname)
            .map(|l| l.mtu)
            .ok_or_else(|| {
                OverlayError::invalid(format!("underlay interface {ifname:?} does not exist"))
            })
    }
}

fn with_context(e: OverlayError, what: &str) -> OverlayError {
    match e {
        OverlayError::Netlink { .. } => e,
        other => OverlayError::Io {
            what: what.to_owned(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clones of one overlay share a netlink socket, which runs one dump at a time: concurrent
    /// reads must not fail with EBUSY (they did before dumps were serialised). Reads only.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_reads_on_one_connection_succeed() {
        let overlay = Overlay::connect().expect("netlink");
        let mut reads = tokio::task::JoinSet::new();
        for i in 0..32 {
            let o = overlay.clone();
            reads.spawn(async move {
                if i % 2 == 0 {
                    o.list_networks().await.map(|_| ())
                } else {
                    o.underlay_mtu("lo").await.map(|_| ())
                }
            });
        }
        while let Some(r) = reads.join_next().await {
            r.expect("joined").expect("a read on a shared connection");
        }
    }

    /// meshd plumbs tasks from tasks spawned on a multi-threaded runtime: the future must be
    /// `Send` with borrowed locals in it (built, never run).
    #[test]
    fn plumbing_can_be_spawned() {
        fn spawnable<F: Future + Send + 'static>(_: F) {}
        spawnable(async {
            let overlay = Overlay::connect()?;
            let ns = NetNs::current().map_err(OverlayError::io("this namespace"))?;
            let ifaces: Vec<TaskInterface> = Vec::new();
            overlay.plumb_task(&ns, &ifaces, None).await?;
            overlay.unplumb_task(&[]).await?;
            Ok::<(), OverlayError>(())
        });
    }
}
