//! meshd's real scheduler (`mesh_cluster::scheduler::schedule`, the pure planner the leader
//! runs) on swarmkit's benchmark size: 10,000 pending tasks onto 1,000 nodes, with the mix of
//! filters `cluster/benches/schedule.rs` uses (reservations, constraints, spread preferences,
//! max replicas per node). Pure computation, timed.

use std::hint::black_box;
use std::time::{Duration, Instant};

use mesh_cluster::scheduler::schedule;
use mesh_cluster::synthetic::pending_cluster;

pub use mesh_cluster::synthetic::NODES;
pub const TASKS: usize = 10_000;

/// The best of `runs` timings of one `schedule` pass over the whole cluster (seconds), and the
/// runs made. Every run must place every task.
pub fn time_schedule(runs: usize) -> anyhow::Result<(f64, usize)> {
    let state = pending_cluster();
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let start = Instant::now();
        let tx = black_box(schedule(&state, 1));
        best = best.min(start.elapsed());
        anyhow::ensure!(
            tx.ops.len() == TASKS,
            "the scheduler placed {} of {TASKS} tasks",
            tx.ops.len()
        );
    }
    Ok((best.as_secs_f64(), runs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_has_swarmkits_size() {
        let c = pending_cluster();
        assert_eq!((c.nodes.len(), c.tasks.len()), (NODES, TASKS));
    }
}
