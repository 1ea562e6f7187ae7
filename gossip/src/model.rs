//! What nodes publish by gossip and what a node sees of the others.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

/// What a node says about itself (the `info` key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's underlay address: its VTEP, the VXLAN `remote` for its tasks.
    pub addr: IpAddr,
    pub hostname: String,
}

/// One task's place on one overlay network, as its node publishes it (one key per endpoint, so
/// that a change sends one small delta).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskEndpoint {
    pub task_id: String,
    pub service_id: String,
    pub network_id: String,
    /// The network's VXLAN id (24 bits).
    pub vni: u32,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    /// The task is being withdrawn before it stops: still reachable (the overlay keeps its
    /// entries), but no longer a backend for new flows nor in DNS; its flows go on.
    #[serde(default)]
    pub draining: bool,
}

/// The cluster as one node's gossip sees it now. Rebuilt on every membership or key change.
///
/// A node is in at most one of `live` and `dead`. A node just heard of is in neither until its
/// heartbeats are sampled; `dead` lists the nodes this node saw live and the failure detector
/// then declared dead, until they come back (a new incarnation counts) or are forgotten after
/// [`crate::GossipTiming::dead_node_grace`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GossipView {
    /// Live nodes by node id, this node included.
    pub live: BTreeMap<String, NodeInfo>,
    /// The endpoints of live nodes only (this node's included), sorted by (task, network); a
    /// live node without endpoints has an empty list.
    pub endpoints: BTreeMap<String, Vec<TaskEndpoint>>,
    /// Nodes the failure detector declared dead (no live incarnation of the same node id).
    pub dead: BTreeSet<String>,
}

impl GossipView {
    /// Every endpoint of every live node except `node_id`'s own: what the data plane programs as
    /// remote (FDB, neighbour and backend entries), with the node it lives behind.
    pub fn remote_endpoints<'a>(
        &'a self,
        node_id: &'a str,
    ) -> impl Iterator<Item = (&'a NodeInfo, &'a TaskEndpoint)> + 'a {
        self.endpoints
            .iter()
            .filter(move |(id, _)| id.as_str() != node_id)
            .filter_map(|(id, eps)| Some((self.live.get(id)?, eps)))
            .flat_map(|(info, eps)| eps.iter().map(move |ep| (info, ep)))
    }
}
