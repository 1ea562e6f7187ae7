//! A synthetic cluster for timing the scheduler (`cluster/benches/schedule.rs` and the bench's
//! control scenario): many nodes and pending tasks with the mix of filters a real cluster has
//! (reservations, constraints, spread preferences, max replicas per node).

use std::collections::BTreeMap;

use crate::Id;
use crate::orchestrator::new_service;
use crate::state::{
    ClusterState, Meta, Node, NodeDescription, NodeRole, NodeSpec, NodeState, NodeStatus,
    Resources, ServiceMode, ServiceSpec, SpreadPreference, Task, TaskState, TaskStatus,
};

/// Nodes of [`pending_cluster`].
pub const NODES: usize = 1_000;
/// Services of [`pending_cluster`].
pub const SERVICES: usize = 10;
/// Pending tasks per service of [`pending_cluster`].
pub const TASKS_PER_SERVICE: u64 = 1_000;

/// A ready node `id` named `hostname`, with `spec` and `resources` (every synthetic and test
/// node's shape).
#[must_use]
pub fn ready_node(id: Id, spec: NodeSpec, hostname: String, resources: Resources) -> Node {
    Node {
        id,
        meta: Meta::default(),
        spec,
        description: NodeDescription {
            hostname,
            resources,
            ..NodeDescription::default()
        },
        status: NodeStatus {
            state: NodeState::Ready,
            ..NodeStatus::default()
        },
        manager_status: None,
        attachments: BTreeMap::new(),
    }
}

/// Swarmkit's benchmark size: 1,000 ready nodes (3 managers) in 3 zones and 20 racks, 10
/// services of 1,000 pending tasks each (10,000 tasks to place).
#[must_use]
pub fn pending_cluster() -> ClusterState {
    let mut state = ClusterState::default();
    for i in 0..NODES {
        let id = Id::from(format!("node{i:04}"));
        let labels = [
            ("zone".to_owned(), format!("z{}", i % 3)),
            ("rack".to_owned(), format!("r{}", i % 20)),
        ];
        let spec = NodeSpec {
            role: if i < 3 {
                NodeRole::Manager
            } else {
                NodeRole::Worker
            },
            labels: labels.into(),
            ..NodeSpec::default()
        };
        let resources = Resources {
            nano_cpus: 16_000_000_000,
            memory_bytes: 64 << 30,
        };
        state.nodes.insert(
            id.clone(),
            ready_node(id, spec, format!("host{i}"), resources),
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
