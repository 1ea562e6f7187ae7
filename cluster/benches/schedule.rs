//! Scheduling 10,000 pending tasks onto 1,000 nodes, with the mix of filters a cluster has
//! (reservations, constraints, spread preferences, max replicas per node); then one orchestrator
//! and one allocator pass over the placed tasks for scale. Prints the best of several runs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use mesh_cluster::Id;
use mesh_cluster::alloc::allocate;
use mesh_cluster::orchestrator::reconcile;
use mesh_cluster::scheduler::schedule;
use mesh_cluster::state::Tx;
use mesh_cluster::synthetic::{NODES, pending_cluster};

const RUNS: usize = 10;

fn best_of<T>(mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..RUNS {
        let start = Instant::now();
        let r = black_box(f());
        best = best.min(start.elapsed());
        out = Some(r);
    }
    (best, out.expect("RUNS > 0"))
}

fn main() {
    let mut state = pending_cluster();
    let tasks = state.tasks.len();
    let (took, tx): (Duration, Tx) = best_of(|| schedule(&state, 1));
    assert_eq!(tx.ops.len(), tasks, "every task is placed");
    println!(
        "schedule: {tasks} tasks onto {NODES} nodes in {:.1} ms: {:.0} tasks/s",
        took.as_secs_f64() * 1e3,
        f64::from(u32::try_from(tasks).expect("few tasks")) / took.as_secs_f64()
    );

    state
        .apply(&tx, 1)
        .expect("the scheduler's transaction applies");
    let mut n = 0u64;
    let mut ids = || {
        n += 1;
        Id::from(format!("new{n}"))
    };
    let (took, r) = best_of(|| reconcile(&state, 2, &mut ids));
    println!(
        "reconcile: {tasks} placed tasks, {} changes, in {:.1} ms",
        r.tx.ops.len(),
        took.as_secs_f64() * 1e3
    );
    let (took, a) = best_of(|| allocate(&state, 2));
    println!(
        "allocate: {} nodes and {tasks} tasks, {} changes, in {:.1} ms",
        NODES,
        a.tx.ops.len(),
        took.as_secs_f64() * 1e3
    );
}
