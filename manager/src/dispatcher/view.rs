//! The dispatcher's pure parts: what a node's agent must hold ([`agent_view`]) and what to send
//! it ([`diff_assignments`]), the writes for reported task states ([`status_ops`]), log line
//! contexts and the rows of `mesh stats`.

use std::collections::BTreeMap;

use mesh_cluster::Id;
use mesh_cluster::alloc::service_networks;
use mesh_cluster::gossip_keys::GossipKeyEntry;
use mesh_cluster::naming::{ports_column, task_name};
use mesh_cluster::spec::limits::{MAX_DESCRIPTION_FIELD, MAX_STATUS_TEXT, truncate_in_place};
use mesh_cluster::state::{
    ClusterState, EndpointMode, Network, NetworkAttachmentConfig, Object, Op, RegistryAuth, Sealed,
    ServiceMode, Task, TaskState,
};

use crate::datakey::DataKey;

use mesh_api::{
    ApiError, AssignedTask, Assignments, BlobData, BlobKind, MeshStatsRow, NodeNet,
    ServiceCounters, ServiceNet, ServiceTaskName, TaskFile, TaskStatusUpdate,
};

/// Does the agent need to hear about this change of the task? Its status (which the agent
/// itself reports) does not count.
fn same_for_agent(a: &AssignedTask, b: &AssignedTask) -> bool {
    let (x, y) = (&a.task, &b.task);
    x.desired_state == y.desired_state
        && x.spec == y.spec
        && x.spec_version == y.spec_version
        && x.networks == y.networks
        && x.endpoint == y.endpoint
        && x.slot == y.slot
        && x.service_id == y.service_id
        && x.node_id == y.node_id
        && a.service_name == b.service_name
        && a.registry_auth == b.registry_auth
        && a.files == b.files
}

/// The tasks a node must know about: every task assigned to it (status `assigned` or later),
/// history included, until the orchestrator deletes it.
/// `key` opens the services' registry logins (sealed in raft).
pub(crate) fn node_assignments(
    state: &ClusterState,
    node: &Id,
    key: &DataKey,
) -> BTreeMap<Id, AssignedTask> {
    state
        .tasks
        .values()
        .filter(|t| t.node_id.as_ref() == Some(node) && t.status.state >= TaskState::Assigned)
        .map(|t| {
            let service = state.services.get(&t.service_id);
            (
                t.id.clone(),
                AssignedTask {
                    task: t.clone(),
                    service_name: service.map(|s| s.spec.name.clone()).unwrap_or_default(),
                    registry_auth: service
                        .and_then(|s| s.registry_auth.as_ref())
                        .and_then(|login| open_login(login, key)),
                    files: task_files(state, t),
                },
            )
        })
        .collect()
}

/// A service's registry login opened for its nodes; None (logged) when it does not open.
fn open_login(login: &Sealed<RegistryAuth>, key: &DataKey) -> Option<RegistryAuth> {
    key.open_value(login)
        .inspect_err(|e| tracing::error!("a service's registry login is not sent: {e}"))
        .ok()
}

/// The secrets and configs of a task meant to run, their data still sealed (the dispatcher
/// opens it just before sending). One whose object is gone is left out: the agent refuses to
/// start a task that lacks one.
fn task_files(state: &ClusterState, t: &mesh_cluster::state::Task) -> Vec<TaskFile> {
    if t.desired_state > TaskState::Running {
        return Vec::new();
    }
    let c = &t.spec.container;
    let secrets = c.secrets.iter().filter_map(|r| {
        state.secrets.get(&r.id).map(|b| TaskFile {
            kind: BlobKind::Secret,
            reference: r.clone(),
            data: BlobData(b.data.clone()),
        })
    });
    let configs = c.configs.iter().filter_map(|r| {
        state.configs.get(&r.id).map(|b| TaskFile {
            kind: BlobKind::Config,
            reference: r.clone(),
            data: BlobData(b.data.clone()),
        })
    });
    secrets.chain(configs).collect()
}

/// Everything a node's agent holds from the leader: its tasks, the networks, the nodes and the
/// services (for its networking, routing mesh and DNS).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct AgentView {
    pub tasks: BTreeMap<Id, AssignedTask>,
    pub networks: Vec<Network>,
    pub nodes: Vec<NodeNet>,
    pub services: Vec<ServiceNet>,
    /// The cluster's gossip keyring (the only secret a worker holds besides its own key).
    pub gossip_keys: Vec<GossipKeyEntry>,
}

/// What a node must hold now: [`node_assignments`], every allocated network, every node, every
/// service, and the gossip keyring (opened with the data key `key`).
pub(crate) fn agent_view(
    state: &ClusterState,
    node: &Id,
    key: &DataKey,
) -> Result<AgentView, ApiError> {
    let gossip_keys = match state.cluster.as_ref() {
        Some(c) => key.open_value(&c.gossip_keys)?,
        None => Vec::new(),
    };
    Ok(AgentView {
        tasks: node_assignments(state, node, key),
        networks: state
            .networks
            .values()
            .filter(|n| n.is_allocated())
            .cloned()
            .collect(),
        nodes: state.nodes.values().map(NodeNet::of).collect(),
        services: service_nets(state),
        gossip_keys,
    })
}

/// Every service as the nodes' routing mesh and DNS need it (the same for every node).
pub(crate) fn service_nets(state: &ClusterState) -> Vec<ServiceNet> {
    state
        .services
        .values()
        .map(|s| {
            let networks = service_networks(state, s)
                .into_iter()
                .map(|id| {
                    let aliases = s
                        .spec
                        .task
                        .networks
                        .iter()
                        .find(|a| a.target == id)
                        .map(|a| a.aliases.clone())
                        .unwrap_or_default();
                    NetworkAttachmentConfig {
                        target: id,
                        aliases,
                    }
                })
                .collect();
            let tasks = state
                .tasks_of(&s.id)
                .filter(|t| !t.status.state.is_terminal())
                .filter_map(|t| {
                    Some(ServiceTaskName {
                        id: t.id.clone(),
                        slot: t.slot,
                        node_id: t.node_id.clone()?,
                    })
                })
                .collect();
            ServiceNet {
                id: s.id.clone(),
                name: s.spec.name.clone(),
                endpoint_mode: s.spec.endpoint.mode,
                ports: s.endpoint.ports.clone(),
                vips: if s.spec.endpoint.mode == EndpointMode::Vip {
                    s.endpoint.virtual_ips.clone()
                } else {
                    Vec::new()
                },
                networks,
                tasks,
            }
        })
        .collect()
}

/// The rows of `mesh stats` for `services` (all when None): one per service and node that
/// reported, with zeros where a node has no counter for the service.
pub(crate) fn mesh_stats_rows(
    state: &ClusterState,
    services: Option<&[Id]>,
    reports: &BTreeMap<Id, (u64, Vec<ServiceCounters>)>,
) -> Vec<MeshStatsRow> {
    let mut rows = Vec::new();
    let mut wanted: Vec<&mesh_cluster::state::Service> = state
        .services
        .values()
        .filter(|s| services.is_none_or(|ids| ids.contains(&s.id)))
        .collect();
    wanted.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    let mut nodes: Vec<(&Id, &str)> = reports
        .keys()
        .map(|id| {
            let host = state
                .nodes
                .get(id)
                .map_or(id.as_str(), |n| n.description.hostname.as_str());
            (id, host)
        })
        .collect();
    nodes.sort_by(|a, b| a.1.cmp(b.1));
    for s in wanted {
        for (node, hostname) in &nodes {
            let (age_ms, counters) = &reports[*node];
            let c = counters.iter().find(|c| c.service_id == s.id);
            rows.push(MeshStatsRow {
                service_id: s.id.clone(),
                service_name: s.spec.name.clone(),
                ports: ports_column(s),
                node_id: (*node).clone(),
                hostname: (*hostname).to_owned(),
                packets: c.map_or(0, |c| c.packets),
                bytes: c.map_or(0, |c| c.bytes),
                connections: c.map_or(0, |c| c.connections),
                age_ms: *age_ms,
            });
        }
    }
    rows
}

/// What to send a node whose agent holds `sent` (None: nothing yet) so that it holds `now`;
/// None when there is nothing new.
pub(crate) fn diff_assignments(sent: Option<&AgentView>, now: &AgentView) -> Option<Assignments> {
    let Some(sent) = sent else {
        return Some(Assignments {
            full: true,
            tasks: now.tasks.values().cloned().collect(),
            removed: Vec::new(),
            networks: Some(now.networks.clone()),
            nodes: Some(now.nodes.clone()),
            services: Some(now.services.clone()),
            gossip_keys: Some(now.gossip_keys.clone()),
        });
    };
    let tasks: Vec<AssignedTask> = now
        .tasks
        .iter()
        .filter(|(id, t)| {
            sent.tasks
                .get(*id)
                .is_none_or(|old| !same_for_agent(old, t))
        })
        .map(|(_, t)| t.clone())
        .collect();
    let removed: Vec<Id> = sent
        .tasks
        .keys()
        .filter(|id| !now.tasks.contains_key(*id))
        .cloned()
        .collect();
    let networks = (sent.networks != now.networks).then(|| now.networks.clone());
    let nodes = (sent.nodes != now.nodes).then(|| now.nodes.clone());
    let services = (sent.services != now.services).then(|| now.services.clone());
    let gossip_keys = (sent.gossip_keys != now.gossip_keys).then(|| now.gossip_keys.clone());
    (!tasks.is_empty()
        || !removed.is_empty()
        || networks.is_some()
        || nodes.is_some()
        || services.is_some()
        || gossip_keys.is_some())
    .then_some(Assignments {
        full: false,
        tasks,
        removed,
        networks,
        nodes,
        services,
        gossip_keys,
    })
}

/// Is `new` a step forward from `cur`? Terminal states are final; a state never goes back; the
/// same state is written again only when it says something new (a container id, a pid, ...).
fn moves_forward(
    cur: &mesh_cluster::state::TaskStatus,
    new: &mesh_cluster::state::TaskStatus,
) -> bool {
    if cur.state.is_terminal() || new.state < cur.state {
        return false;
    }
    new.state > cur.state
        || new.message != cur.message
        || new.err != cur.err
        || new.container_id != cur.container_id
        || new.pid != cur.pid
        || new.exit_code != cur.exit_code
}

/// The writes for a batch of reports, each `(node, updates)` as it came: reports about tasks
/// that are gone, that are not the node's, or that would move a task backwards are ignored.
pub(crate) fn status_ops(state: &ClusterState, batch: &[(Id, Vec<TaskStatusUpdate>)]) -> Vec<Op> {
    let mut changed: BTreeMap<Id, Task> = BTreeMap::new();
    for (node, updates) in batch {
        for u in updates {
            let Some(cur) = changed
                .get(&u.task_id)
                .or_else(|| state.tasks.get(&u.task_id))
            else {
                continue;
            };
            if cur.node_id.as_ref() != Some(node) || !moves_forward(&cur.status, &u.status) {
                continue;
            }
            let mut t = cur.clone();
            t.status = u.status.clone();
            // A node's words are kept cut to the bounds of `spec::limits`.
            truncate_in_place(&mut t.status.message, MAX_STATUS_TEXT);
            truncate_in_place(&mut t.status.err, MAX_STATUS_TEXT);
            truncate_in_place(&mut t.status.container_id, MAX_DESCRIPTION_FIELD);
            changed.insert(t.id.clone(), t);
        }
    }
    changed
        .into_values()
        .map(|t| Op::Put(Object::Task(t)))
        .collect()
}

/// Docker's context for a log line: `web.1.abc123def456@node1`, padded so that lines of replicas
/// with fewer digits line up with the service's highest slot.
pub(crate) fn log_context(state: &ClusterState, task: &Task, no_trunc: bool) -> Option<String> {
    let service = state.services.get(&task.service_id)?;
    let node = task
        .node_id
        .as_ref()
        .and_then(|n| state.nodes.get(n))
        .map(|n| n.description.hostname.clone())
        .unwrap_or_default();
    let id = if no_trunc {
        task.id.as_str()
    } else {
        task.id.short()
    };
    let mut s = format!("{}.{id}@{node}", task_name(&service.spec.name, task));
    if let ServiceMode::Replicated { replicas } = service.spec.mode {
        let digits = |n: u64| n.max(1).to_string().len();
        let pad = digits(replicas).saturating_sub(digits(task.slot));
        s.extend(std::iter::repeat_n(' ', pad));
    }
    Some(s)
}

#[cfg(test)]
pub(crate) mod tests {
    use mesh_cluster::state::{EndpointSpec, Meta, ServiceSpec, TaskSpec, TaskStatus};

    use super::*;

    pub(crate) fn task(id: &str, node: Option<&str>, state: TaskState, desired: TaskState) -> Task {
        Task {
            id: Id::from(id),
            meta: Meta {
                version: 1,
                ..Meta::default()
            },
            service_id: Id::from("svc"),
            slot: 1,
            node_id: node.map(Id::from),
            spec: TaskSpec::default(),
            spec_version: 1,
            desired_state: desired,
            status: TaskStatus {
                state,
                ..TaskStatus::default()
            },
            networks: Vec::new(),
            start_at: 0,
            restart_history: Vec::new(),
            endpoint: EndpointSpec::default(),
        }
    }

    fn state(tasks: Vec<Task>) -> ClusterState {
        let mut s = ClusterState::default();
        let svc = mesh_cluster::orchestrator::new_service(
            ServiceSpec {
                name: "web".into(),
                mode: ServiceMode::Replicated { replicas: 12 },
                ..ServiceSpec::default()
            },
            Id::from("svc"),
        );
        s.services.insert(svc.id.clone(), svc);
        for t in tasks {
            s.tasks.insert(t.id.clone(), t);
        }
        s
    }

    fn status(state: TaskState) -> TaskStatus {
        TaskStatus {
            state,
            timestamp: 5,
            ..TaskStatus::default()
        }
    }

    /// A node gets its scheduled tasks (history too), first all of them, then only what it must
    /// act on: a status change alone is not sent back; a desired-state change and a deletion are.
    /// Networks and nodes come whole in the first message, then only when they changed.
    #[test]
    fn assignments_are_the_nodes_tasks_then_their_changes() {
        use TaskState::{Pending, Running, Shutdown};
        let mut s = state(vec![
            task("a", Some("n1"), Running, Running),
            task("b", Some("n1"), Shutdown, Shutdown),
            task("c", Some("n2"), Running, Running),
            task("d", Some("n1"), Pending, Running), // a global task not scheduled yet
        ]);
        let node = crate::handlers::services::tests::node("n1", "node1");
        s.nodes.insert(node.id.clone(), node);
        let n1 = Id::from("n1");
        let key = DataKey::random();
        let first = agent_view(&s, &n1, &key).unwrap();
        assert_eq!(
            first.tasks.keys().map(Id::as_str).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(first.tasks[&Id::from("a")].service_name, "web");
        let full = diff_assignments(None, &first).unwrap();
        assert!(full.full && full.tasks.len() == 2 && full.removed.is_empty());
        assert_eq!(full.networks, Some(vec![]));
        assert_eq!(full.nodes.as_ref().map(Vec::len), Some(1));
        assert_eq!(diff_assignments(Some(&first), &first), None);

        s.tasks.get_mut(&Id::from("a")).unwrap().status.pid = 42;
        s.nodes.get_mut(&n1).unwrap().status.message = "a heartbeat".into();
        assert_eq!(
            diff_assignments(Some(&first), &agent_view(&s, &n1, &key).unwrap()),
            None,
            "the node's own report is not echoed, nor what networking does not use"
        );
        s.tasks.get_mut(&Id::from("a")).unwrap().desired_state = Shutdown;
        s.tasks.remove(&Id::from("b"));
        let d = diff_assignments(Some(&first), &agent_view(&s, &n1, &key).unwrap()).unwrap();
        assert!(!d.full);
        assert_eq!(d.tasks.len(), 1);
        assert_eq!(d.tasks[0].task.desired_state, Shutdown);
        assert_eq!(d.removed, [Id::from("b")]);
        assert_eq!((d.networks, d.nodes), (None, None));

        let now = agent_view(&s, &n1, &key).unwrap();
        s.nodes
            .get_mut(&n1)
            .unwrap()
            .attachments
            .insert(Id::from("net"), "10.0.0.2".parse().unwrap());
        let d = diff_assignments(Some(&now), &agent_view(&s, &n1, &key).unwrap()).unwrap();
        assert!(d.tasks.is_empty() && d.removed.is_empty() && d.networks.is_none());
        assert_eq!(d.nodes.unwrap()[0].attachments.len(), 1);
    }

    /// Reports move tasks forward only, for tasks that exist and belong to the reporting node.
    #[test]
    fn reports_are_written_forward_only() {
        use TaskState::{Assigned, Failed, Orphaned, Preparing, Running, Starting};
        let s = state(vec![
            task("a", Some("n1"), Assigned, Running),
            task("b", Some("n1"), Running, Running),
            task("c", Some("n2"), Assigned, Running),
            task("d", Some("n1"), Orphaned, TaskState::Shutdown),
        ]);
        let up = |id: &str, st: TaskState| TaskStatusUpdate {
            task_id: Id::from(id),
            status: status(st),
        };
        let mut running = status(Running);
        running.container_id = "c1".into();
        running.pid = 7;
        let batch = vec![
            (
                Id::from("n1"),
                vec![
                    up("a", Preparing),
                    up("a", Starting),
                    TaskStatusUpdate {
                        task_id: Id::from("a"),
                        status: running.clone(),
                    },
                    up("b", Starting),  // backwards
                    up("c", Running),   // not n1's
                    up("d", Running),   // orphaned is final
                    up("gone", Failed), // deleted
                ],
            ),
            (Id::from("n1"), vec![up("a", Starting)]), // stale, after Running
        ];
        let ops = status_ops(&s, &batch);
        assert_eq!(ops.len(), 1, "{ops:?}");
        let Op::Put(Object::Task(t)) = &ops[0] else {
            panic!("{ops:?}")
        };
        assert_eq!((t.id.as_str(), &t.status), ("a", &running));
        // The same report again changes nothing; a failure of a running task does.
        let mut after = s.clone();
        after.tasks.insert(t.id.clone(), t.clone());
        assert!(
            status_ops(
                &after,
                &[(
                    Id::from("n1"),
                    vec![TaskStatusUpdate {
                        task_id: Id::from("a"),
                        status: running
                    }]
                )]
            )
            .is_empty()
        );
        assert_eq!(
            status_ops(&after, &[(Id::from("n1"), vec![up("a", Failed)])]).len(),
            1
        );
        // A node's error text is cut to its bound.
        let mut failed = status(Failed);
        failed.err = "e".repeat(1_000_000);
        failed.message = "m".repeat(1_000_000);
        let ops = status_ops(
            &after,
            &[(
                Id::from("n1"),
                vec![TaskStatusUpdate {
                    task_id: Id::from("a"),
                    status: failed,
                }],
            )],
        );
        let Op::Put(Object::Task(t)) = &ops[0] else {
            panic!("{ops:?}")
        };
        assert_eq!(t.status.err.len(), MAX_STATUS_TEXT);
        assert_eq!(t.status.message.len(), MAX_STATUS_TEXT);
    }

    #[test]
    fn log_contexts_as_docker_prints_them() {
        let mut s = state(vec![task(
            "ngbknb89dzyxdas81emw0jz63",
            Some("n1"),
            TaskState::Running,
            TaskState::Running,
        )]);
        let node = crate::handlers::services::tests::node("n1", "james-CW65");
        s.nodes.insert(node.id.clone(), node);
        let t = &s.tasks[&Id::from("ngbknb89dzyxdas81emw0jz63")];
        // 12 replicas: slot 1 is padded to two digits.
        assert_eq!(
            log_context(&s, t, false).unwrap(),
            "web.1.ngbknb89dzyx@james-CW65 "
        );
        assert_eq!(
            log_context(&s, t, true).unwrap(),
            "web.1.ngbknb89dzyxdas81emw0jz63@james-CW65 "
        );
    }
}
