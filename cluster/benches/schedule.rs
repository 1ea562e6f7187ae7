//! Scheduling 10,000 pending tasks onto 1,000 nodes, with the mix of filters a cluster has
//! (reservations, constraints, spread preferences, max replicas per node); then one orchestrator
//! and one allocator pass over the placed tasks for scale. Prints the best of several runs.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use mesh_cluster::Id;
use mesh_cluster::alloc::allocate;
use mesh_cluster::orchestrator::{new_service, reconcile};
use mesh_cluster::scheduler::schedule;
use mesh_cluster::state::{
    ClusterState, Meta, Node, NodeDescription, NodeRole, NodeSpec, NodeState, NodeStatus,
    Resources, ServiceMode, ServiceSpec, SpreadPreference, Task, TaskState, TaskStatus, Tx,
};

const NODES: usize = 1_000;
const SERVICES: usize = 10;
const TASKS_PER_SERVICE: u64 = 1_000;
const RUNS: usize = 10;

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
    let mut state = cluster();
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
