//! The three control loops in one call: [`plan`] runs the orchestrator, then the allocator on its
//! result, then the scheduler on theirs, and returns one [`Tx`] against the state it was given.
//! The leader may instead run the loops one by one (each proposes its own `Tx`); this saves
//! round trips and keeps a new task's creation, addresses and node in one raft entry.

use std::collections::HashMap;

use crate::Id;
use crate::alloc::{AllocError, allocate};
use crate::orchestrator::reconcile;
use crate::scheduler::schedule;
use crate::state::{ClusterState, Kind, Millis, Object, Op, Tx};

/// What the control loops decided together.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub tx: Tx,
    /// When to plan again even if the state does not change (see [`crate::orchestrator::Reconciled`]).
    pub wake_at: Option<Millis>,
    /// What the allocator could not do (also recorded in the objects concerned).
    pub errors: Vec<AllocError>,
}

fn kind_index(kind: Kind) -> u8 {
    match kind {
        Kind::Cluster => 0,
        Kind::Node => 1,
        Kind::Network => 2,
        Kind::Service => 3,
        Kind::Task => 4,
        Kind::Secret => 5,
        Kind::Config => 6,
    }
}

fn object_id(o: &Object) -> &Id {
    match o {
        Object::Cluster(c) => &c.id,
        Object::Node(n) => &n.id,
        Object::Network(n) => &n.id,
        Object::Service(s) => &s.id,
        Object::Task(t) => &t.id,
        Object::Secret(b) | Object::Config(b) => &b.id,
    }
}

/// Applies `tx` to a scratch copy without touching versions, so that later loops produce
/// operations carrying the versions of the original state.
fn apply_scratch(state: &mut ClusterState, tx: &Tx) {
    for op in &tx.ops {
        match op {
            Op::Put(o) => state.insert(o.clone()),
            Op::Delete { kind, id, .. } => state.remove(*kind, id),
        }
    }
}

/// One transaction doing what `txs` do in order, checked against `base`: the last operation on
/// an object wins, and an object made and deleted within them disappears.
fn merge(base: &ClusterState, at: Millis, txs: Vec<Tx>) -> Tx {
    let mut slots: HashMap<(u8, Id), usize> = HashMap::new();
    let mut ops: Vec<Option<Op>> = Vec::new();
    for op in txs.into_iter().flat_map(|t| t.ops) {
        let (kind, id) = match &op {
            Op::Put(o) => (o.kind(), object_id(o).clone()),
            Op::Delete { kind, id, .. } => (*kind, id.clone()),
        };
        let op = match op {
            Op::Delete { .. } if base.version_of(kind, &id) == 0 => None,
            other => Some(other),
        };
        if let Some(&i) = slots.get(&(kind_index(kind), id.clone())) {
            ops[i] = op;
        } else {
            slots.insert((kind_index(kind), id), ops.len());
            ops.push(op);
        }
    }
    Tx {
        at,
        ops: ops.into_iter().flatten().collect(),
    }
}

/// Orchestrator, allocator and scheduler over `state` at `now`, as one transaction. Calling it
/// again on the state that transaction produces (at the same time) returns an empty one.
pub fn plan(state: &ClusterState, now: Millis, ids: &mut dyn FnMut() -> Id) -> Plan {
    let reconciled = reconcile(state, now, ids);
    let mut scratch = state.clone();
    apply_scratch(&mut scratch, &reconciled.tx);
    let allocation = allocate(&scratch, now);
    apply_scratch(&mut scratch, &allocation.tx);
    let scheduled = schedule(&scratch, now);
    Plan {
        tx: merge(state, now, vec![reconciled.tx, allocation.tx, scheduled]),
        wake_at: reconciled.wake_at,
        errors: allocation.errors,
    }
}
