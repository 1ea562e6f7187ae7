//! Global services: one task per eligible node (ready, active, meeting the constraints), also on
//! nodes that join later. Tasks leave nodes that drain, go down or stop meeting the constraints;
//! on a paused node they stay, but no new one comes.

use super::{NodeFit, SlotKey, Work};

/// The nodes that should run a task of the service, in id order.
pub(super) fn eligible_nodes(w: &Work) -> Vec<SlotKey> {
    w.state
        .nodes
        .keys()
        .filter(|id| w.node_fit(id) == NodeFit::Keep { eligible: true })
        .map(|id| SlotKey::Node(id.clone()))
        .collect()
}
