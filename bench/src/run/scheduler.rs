//! meshd's real scheduler (`mesh_cluster::scheduler::schedule`, the pure planner the leader
//! runs) on swarmkit's benchmark size: 10,000 pending tasks onto 1,000 nodes, with the mix of
//! filters `cluster/benches/schedule.rs` uses (reservations, constraints, spread preferences,
//! max replicas per node). Pure computation, timed.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use mesh_cluster::Id;
use mesh_cluster::orchestrator::new_service;
use mesh_cluster::scheduler::schedule;
use mesh_cluster::state::{
    ClusterState, Meta, Node, NodeDescription, NodeRole, NodeSpec, NodeState, NodeStatus,
    Resources, ServiceMode, ServiceSpec, SpreadPreference, Task, TaskState, TaskStatus,
};

pub const NODES: usize = 1_000;
const SERVICES: usize = 10;
const TASKS_PER_SERVICE: u64 = 1_000;
pub const TASKS: usize = 10_000;

/// The best of `runs` timings of one `schedule` pass over the whole cluster (seconds), and the
/// runs made. Every run must place every task.
pub fn time_schedule(runs: usize) -> anyhow::Result<(f64, usize)> {
    let state = cluster();
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

/// 1,000 ready nodes (3 managers) in 3 zones and 20 racks, 10 services of 1,000 pending tasks.
fn cluster() -> ClusterState {
    let mut state = ClusterState::default();
    for i in 0..NODES {
        let id = Id::from(format!("node{i:04}"));
        let labels = [
            ("zone".to_owned(), format!("z{}", i % 3)),
            ("rack".to_owned(), format!("r{}", i % 20)),
        ];
        state.nodes.insert(
            id.clone(),
            Node {
                id,
                meta: Meta::default(),
                spec: NodeSpec {
                    role: if i < 3 {
                        NodeRole::Manager
                    } else {
                        NodeRole::Worker
                    },
                    labels: labels.into(),
                    ..NodeSpec::default()
                },
                description: NodeDescription {
                    hostname: format!("host{i}"),
                    resources: Resources {
                        nano_cpus: 16_000_000_000,
                        memory_bytes: 64 << 30,
                    },
                    ..NodeDescription::default()
                },
                status: NodeStatus {
                    state: NodeState::Ready,
                    ..NodeStatus::default()
                },
                manager_status: None,
                attachments: BTreeMap::new(),
            },
        );
    }
    for s in 0..SERVICES {
        let mut spec = ServiceSpec {
            name: format!("svc{s}"),
            mode: ServiceMode::Replicated {
                replicas: TASKS_PER_SERVICE,
            },
            ..ServiceSpec::default()
        };
        spec.task.container.image = "busybox".into();
        let placement = &mut spec.task.placement;
        let reservations = &mut spec.task.resources.reservations;
        match s {
            4 | 5 => {
                reservations.nano_cpus = 500_000_000;
                reservations.memory_bytes = 512 << 20;
            }
            6 => placement.constraints = vec!["node.labels.zone!=z2".into()],
            7 => {
                placement.preferences = vec![
                    SpreadPreference {
                        spread: "node.labels.zone".into(),
                    },
                    SpreadPreference {
                        spread: "node.labels.rack".into(),
                    },
                ];
            }
            8 => placement.max_replicas_per_node = 2,
            9 => {
                placement.constraints = vec!["node.role==worker".into()];
                reservations.memory_bytes = 1 << 30;
            }
            _ => {}
        }
        let service = new_service(spec, Id::from(format!("svc{s}")));
        for slot in 1..=TASKS_PER_SERVICE {
            let id = Id::from(format!("svc{s}-task{slot:05}"));
            state.tasks.insert(
                id.clone(),
                Task {
                    id,
                    meta: Meta::default(),
                    service_id: service.id.clone(),
                    slot,
                    node_id: None,
                    spec: service.spec.task.clone(),
                    spec_version: 0,
                    desired_state: TaskState::Running,
                    status: TaskStatus {
                        state: TaskState::Pending,
                        ..TaskStatus::default()
                    },
                    networks: Vec::new(),
                    start_at: 0,
                    restart_history: Vec::new(),
                    endpoint: service.spec.endpoint.clone(),
                },
            );
        }
        state.services.insert(service.id.clone(), service);
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_has_swarmkits_size() {
        let c = cluster();
        assert_eq!((c.nodes.len(), c.tasks.len()), (NODES, TASKS));
    }
}
