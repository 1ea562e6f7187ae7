//! Replicated services: slots `1..=replicas`; a task pushed off its node is replaced in its slot
//! on another node.

use super::{SlotKey, Work};
use crate::Id;
use crate::state::TaskState;

/// A replacement for a task that had to leave its node (drain, node down or gone, constraints no
/// longer met). It is not a restart: no delay, and it does not count against `max_attempts`. It
/// waits, as Swarm's does, for the old task to stop when its node can still report that.
pub(super) fn relocate(w: &mut Work, slot: &SlotKey, ids: &mut dyn FnMut() -> Id) {
    if matches!(slot, SlotKey::Replica(_)) && w.slot_kept(slot) {
        w.create(slot, TaskState::Ready, ids);
    }
}
