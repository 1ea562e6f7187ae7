//! Native routing (issue 19) on this node: the `mesh_native` table of the data path, from the
//! view. For every network routed natively (`--opt routing=native`) with devices here: its
//! local tasks (their veth, to which packets from other nodes are handed) and its remote
//! addresses, tasks and nodes, exactly those the overlay has FDB entries for
//! ([`remote_endpoints`]: live nodes only, so a node that gossip declares dead leaves the table
//! at once). A remote address is DIRECT (reached without encapsulation) only when its node is
//! on-link by this node's main routing table; otherwise its packets keep the network's VXLAN
//! device, which every network keeps as that fallback, and the fallback is logged.
//!
//! `ingress` routed natively (`swarm init --default-routing native`) is in the table like any
//! network: tc sends a published-port flow to a remote backend's node unencapsulated, and the
//! backend's replies come back the same way (`ebpf/lib/native.h`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use mesh_cluster::net::{Routing, network_routing};
use mesh_dataplane::{NativeAddr, NativePlace};
use mesh_overlay::Mac;
use mesh_overlay::plan::{NativeRoute, NextHop};

use super::{MeshInterface, Runtime};
use crate::net::remote_endpoints;
use crate::net::view::NetView;

/// The VNIs of this node's devices whose networks are routed natively.
pub fn native_vnis(view: &NetView) -> BTreeSet<u32> {
    view.devices
        .keys()
        .copied()
        .filter(|vni| {
            view.network_by_vni(*vni)
                .is_some_and(|n| network_routing(n) == Routing::Native)
        })
        .collect()
}

/// The underlay addresses of the nodes behind the remote addresses of native networks.
pub fn native_peers(view: &NetView) -> BTreeSet<Ipv4Addr> {
    native_vnis(view)
        .into_iter()
        .flat_map(|vni| remote_endpoints(view, vni))
        .map(|r| r.vtep)
        .collect()
}

/// What `mesh_native` should hold (pure): local tasks of native networks whose veth the programs
/// serve (`ifindexes`, by name), and the remote addresses, DIRECT where `hops` says their node
/// is on-link.
pub fn desired_native(
    view: &NetView,
    ifindexes: &BTreeMap<String, u32>,
    hops: &BTreeMap<Ipv4Addr, NextHop>,
) -> BTreeMap<Ipv4Addr, NativeAddr> {
    let mut out = BTreeMap::new();
    for vni in native_vnis(view) {
        let Some(dev) = view.devices.get(&vni) else {
            continue;
        };
        for i in view.tasks.values().flat_map(|t| &t.interfaces) {
            let Some(ifindex) = ifindexes.get(&i.host_ifname) else {
                continue;
            };
            if i.vni == vni {
                let place = NativePlace::Local {
                    ifindex: *ifindex,
                    mac: i.mac.octets(),
                    gateway_mac: Mac::from_ipv4(dev.node_addr).octets(),
                };
                out.insert(i.addr, NativeAddr { vni, place });
            }
        }
        for r in remote_endpoints(view, vni) {
            let direct = hops.get(&r.vtep) == Some(&NextHop::OnLink);
            let place = NativePlace::Remote {
                node: r.vtep,
                direct,
            };
            out.entry(r.ip).or_insert(NativeAddr { vni, place });
        }
    }
    out
}

/// The host routes for `table` (pure): every DIRECT remote address via its node, from this
/// node's own address on the address's network, so that the node's own packets to it (from
/// that address) go unencapsulated too, and are accepted as from the network.
pub fn native_routes(
    view: &NetView,
    table: &BTreeMap<Ipv4Addr, NativeAddr>,
) -> BTreeMap<Ipv4Addr, NativeRoute> {
    table
        .iter()
        .filter_map(|(addr, n)| match n.place {
            NativePlace::Remote { node, direct: true } => Some((
                *addr,
                NativeRoute {
                    via: node,
                    src: view.devices.get(&n.vni)?.node_addr,
                },
            )),
            _ => None,
        })
        .collect()
}

/// What the runtime last did for native routing.
#[derive(Default)]
pub(super) struct NativeState {
    /// The table last written.
    applied: Option<BTreeMap<Ipv4Addr, NativeAddr>>,
    /// The peers last found not on-link (logged once each time the set changes).
    fallbacks: BTreeMap<Ipv4Addr, NextHop>,
    /// The host routes last written.
    routes: Option<BTreeMap<Ipv4Addr, NativeRoute>>,
    /// The other nodes' underlay MACs last written (`mesh_node_macs`).
    node_macs: Option<BTreeMap<[u8; 6], Ipv4Addr>>,
}

impl NativeState {
    /// Forgets what was written (the maps were loaded again).
    pub(super) fn forget(&mut self) {
        self.applied = None;
        self.routes = None;
        self.node_macs = None;
    }
}

impl Runtime {
    /// Writes `mesh_native` from the view, once the view is complete.
    pub(super) async fn apply_native(&mut self, view: &NetView) {
        let peers = native_peers(view);
        let hops = if peers.is_empty() {
            BTreeMap::new()
        } else {
            match self.net.overlay().next_hops(&peers).await {
                Ok(h) => h,
                Err(e) => {
                    self.warn(format!("reading the routes to other nodes: {e}"));
                    return;
                }
            }
        };
        let fallbacks: BTreeMap<Ipv4Addr, NextHop> = hops
            .iter()
            .filter(|(_, h)| **h != NextHop::OnLink)
            .map(|(p, h)| (*p, *h))
            .collect();
        if fallbacks != self.native.fallbacks {
            for (peer, hop) in &fallbacks {
                tracing::warn!(
                    %peer, %hop,
                    "native routing: node {peer} is not on-link ({hop}): tasks of native networks on it are reached over VXLAN"
                );
            }
            self.native.fallbacks = fallbacks;
        }
        let ifindexes: BTreeMap<String, u32> = self
            .attached
            .iter()
            .filter(|(_, a)| matches!(a.iface, MeshInterface::TaskVeth { .. }))
            .map(|(n, a)| (n.clone(), a.ifindex))
            .collect();
        let want = desired_native(view, &ifindexes, &hops);
        self.apply_native_routes(native_routes(view, &want)).await;
        let ingress_native = view
            .ingress()
            .is_some_and(|n| native_vnis(view).contains(&n.vni));
        let peers = if ingress_native {
            peers
        } else {
            BTreeSet::new()
        };
        self.apply_node_macs(&peers).await;
        if self.native.applied.as_ref() == Some(&want) {
            return;
        }
        let w = want.clone();
        match self.with_mesh(move |m| m.set_native(&w)).await {
            Some(Ok(changed)) => {
                if changed > 0 {
                    tracing::info!(addresses = want.len(), changed, "native routing table set");
                }
                self.native.applied = Some(want);
            }
            Some(Err(e)) => self.warn(format!("writing the native routing table: {e:#}")),
            None => {}
        }
    }

    /// The underlay interface's name, once the mesh is loaded.
    fn underlay_ifname(&self) -> Option<String> {
        self.mesh
            .as_ref()
            .map(|m| m.options().underlay_ifname.clone())
    }

    /// Writes the underlay MACs of `peers` (the nodes of a natively routed ingress), the only
    /// senders of published-port clients' packets to local tasks (`ebpf/lib/native.h`), from
    /// the neighbour table (gossip keeps an entry for every live peer).
    async fn apply_node_macs(&mut self, peers: &BTreeSet<Ipv4Addr>) {
        let Some(underlay) = self.underlay_ifname() else {
            return;
        };
        let macs = if peers.is_empty() {
            BTreeMap::new()
        } else {
            match self.net.overlay().peer_macs(peers, &underlay).await {
                Ok(m) => m.into_iter().map(|(ip, mac)| (mac.octets(), ip)).collect(),
                Err(e) => {
                    self.warn(format!("reading the other nodes' MACs: {e}"));
                    return;
                }
            }
        };
        if self.native.node_macs.as_ref() == Some(&macs) {
            return;
        }
        let m = macs.clone();
        match self.with_mesh(move |mesh| mesh.set_node_macs(&m)).await {
            Some(Ok(_)) => self.native.node_macs = Some(macs),
            Some(Err(e)) => self.warn(format!("writing the other nodes' MACs: {e:#}")),
            None => {}
        }
    }

    /// Makes meshd's native host routes exactly `routes`.
    async fn apply_native_routes(&mut self, routes: BTreeMap<Ipv4Addr, NativeRoute>) {
        if self.native.routes.as_ref() == Some(&routes) {
            return;
        }
        let Some(underlay) = self.underlay_ifname() else {
            return;
        };
        match self
            .net
            .overlay()
            .set_native_routes(&routes, &underlay)
            .await
        {
            Ok(changed) => {
                if changed > 0 {
                    tracing::info!(routes = routes.len(), changed, "native routes set");
                }
                self.native.routes = Some(routes);
            }
            Err(e) => self.warn(format!("writing the native routes: {e}")),
        }
    }

    /// Removes meshd's native host routes (the node left its swarm).
    pub(super) async fn clear_native_routes(&mut self) {
        if let Some(underlay) = self.underlay_ifname()
            && let Err(e) = self
                .net
                .overlay()
                .set_native_routes(&BTreeMap::new(), &underlay)
                .await
        {
            tracing::warn!("removing the native routes: {e}");
        }
        self.native.routes = None;
    }
}
