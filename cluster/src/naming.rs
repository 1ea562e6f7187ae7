//! What `service ls` and `service ps` print, as Docker prints it: task names (`web.1`,
//! `web.<node id>`), container names (`web.1.<task id>`), history rows (`\_ web.1`), states with
//! their age (`Running 9 minutes ago`), quoted errors and published ports (`*:8080->80/tcp`).

use crate::Id;
use crate::spec::format_published;
use crate::state::{
    ClusterState, Millis, NodeState, PublishMode, Service, ServiceMode, Task, TaskState,
};

/// The task's name in `service ps`: `web.1` for a replica, `web.<node id>` for a global task.
pub fn task_name(service_name: &str, task: &Task) -> String {
    match (&task.node_id, task.slot) {
        (Some(node), 0) => format!("{service_name}.{node}"),
        (_, slot) => format!("{service_name}.{slot}"),
    }
}

/// The container's name: the task's name and its id (`web.1.<task id>`), as Docker names it.
pub fn container_name(service_name: &str, task: &Task) -> String {
    format!("{}.{}", task_name(service_name, task), task.id)
}

/// A state as Docker prints it: `Running`, `Shutdown`.
pub fn state_title(state: TaskState) -> String {
    let s = state.as_str();
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// Docker's (go-units) human duration: `Less than a second`, `About a minute`, `9 minutes`.
pub fn human_duration(ms: Millis) -> String {
    let seconds = ms / 1_000;
    let minutes = seconds / 60;
    // Hours round to the nearest, as go-units does.
    let hours = (ms + 1_800_000) / 3_600_000;
    match () {
        () if seconds < 1 => "Less than a second".into(),
        () if seconds == 1 => "1 second".into(),
        () if seconds < 60 => format!("{seconds} seconds"),
        () if minutes == 1 => "About a minute".into(),
        () if minutes < 60 => format!("{minutes} minutes"),
        () if hours == 1 => "About an hour".into(),
        () if hours < 48 => format!("{hours} hours"),
        () if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        () if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        () if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        () => format!("{} years", ms / 3_600_000 / 24 / 365),
    }
}

/// One row of `service ps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PsRow {
    pub task_id: Id,
    /// The ID column: the task id cut to 12.
    pub id: String,
    /// `web.1`, or `\_ web.1` for an older task of the same slot.
    pub name: String,
    pub image: String,
    /// The node's hostname (empty while unassigned).
    pub node: String,
    /// `Running`, `Shutdown`.
    pub desired: String,
    /// `Running 9 minutes ago`.
    pub current: String,
    /// The error, quoted (`"task: non-zero exit (1)"`), cut to 30 characters unless `no_trunc`.
    pub error: String,
    /// Host-mode published ports, `*:8080->80/tcp`.
    pub ports: String,
}

/// Docker's `formatter.Ellipsis`.
fn ellipsis(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else {
        s.chars()
            .take(width - 1)
            .chain(std::iter::once('…'))
            .collect()
    }
}

/// The rows of `service ps SERVICE...`: services by name, slots in order (nodes for global
/// services), and in each slot the newest task first, older ones as `\_` history rows.
pub fn ps_rows(state: &ClusterState, services: &[&Id], now: Millis, no_trunc: bool) -> Vec<PsRow> {
    let mut services: Vec<&Service> = services
        .iter()
        .filter_map(|id| state.services.get(*id))
        .collect();
    services.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    let mut rows = Vec::new();
    for s in services {
        let mut tasks: Vec<&Task> = state.tasks_of(&s.id).collect();
        let slot_key = |t: &Task| (t.slot, t.node_id.clone().filter(|_| t.slot == 0));
        tasks.sort_by(|a, b| {
            slot_key(a)
                .cmp(&slot_key(b))
                .then((b.meta.created_at, &b.id).cmp(&(a.meta.created_at, &a.id)))
        });
        let mut previous = None;
        for t in tasks {
            let name = task_name(&s.spec.name, t);
            let history = previous.as_ref() == Some(&name);
            let err = if no_trunc {
                t.status.err.clone()
            } else {
                ellipsis(&t.status.err, 30)
            };
            let ports: Vec<String> = t
                .endpoint
                .ports
                .iter()
                .filter(|p| p.publish_mode == PublishMode::Host && p.published_port != 0)
                .map(format_published)
                .collect();
            rows.push(PsRow {
                task_id: t.id.clone(),
                id: t.id.short().to_owned(),
                name: if history {
                    format!("\\_ {name}")
                } else {
                    name.clone()
                },
                image: t.spec.container.image.clone(),
                node: t
                    .node_id
                    .as_ref()
                    .and_then(|n| state.nodes.get(n))
                    .map(|n| n.description.hostname.clone())
                    .unwrap_or_default(),
                desired: state_title(t.desired_state),
                current: format!(
                    "{} {} ago",
                    state_title(t.status.state),
                    human_duration(now.saturating_sub(t.status.timestamp)).to_lowercase()
                ),
                error: if err.is_empty() {
                    err
                } else {
                    format!("\"{err}\"")
                },
                ports: ports.join(", "),
            });
            previous = Some(name);
        }
    }
    rows
}

/// The REPLICAS column of `service ls`: running tasks over desired ones (`3/3`), with Docker's
/// `(max N per node)` note.
pub fn replicas_column(state: &ClusterState, service: &Service) -> String {
    let node_up = |t: &Task| {
        t.node_id
            .as_ref()
            .and_then(|n| state.nodes.get(n))
            .is_some_and(|n| n.status.state != NodeState::Down)
    };
    let tasks = || state.tasks_of(&service.id);
    let running = tasks()
        .filter(|t| {
            t.desired_state == TaskState::Running
                && t.status.state == TaskState::Running
                && node_up(t)
        })
        .count();
    let desired = match service.spec.mode {
        ServiceMode::Replicated { replicas } => replicas,
        ServiceMode::Global => tasks()
            .filter(|t| t.desired_state == TaskState::Running)
            .count() as u64,
    };
    let max = service.spec.task.placement.max_replicas_per_node;
    if max > 0 && matches!(service.spec.mode, ServiceMode::Replicated { .. }) {
        format!("{running}/{desired} (max {max} per node)")
    } else {
        format!("{running}/{desired}")
    }
}

/// The PORTS column of `service ls`: the ingress ports as allocated, `*:8080->80/tcp`.
pub fn ports_column(service: &Service) -> String {
    let ports: Vec<String> = service
        .endpoint
        .ports
        .iter()
        .filter(|p| p.publish_mode == PublishMode::Ingress && p.published_port != 0)
        .map(format_published)
        .collect();
    ports.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse_port;
    use crate::state::{Meta, ServiceSpec, TaskStatus};

    fn task(id: &str, slot: u64, node: Option<&str>, created: Millis, state: TaskState) -> Task {
        Task {
            id: Id::from(id),
            meta: Meta {
                version: 1,
                created_at: created,
                updated_at: created,
            },
            service_id: Id::from("svc"),
            slot,
            node_id: node.map(Id::from),
            spec: crate::state::TaskSpec::default(),
            spec_version: 0,
            desired_state: if state == TaskState::Running {
                TaskState::Running
            } else {
                TaskState::Shutdown
            },
            status: TaskStatus {
                state,
                timestamp: created,
                ..TaskStatus::default()
            },
            networks: vec![],
            start_at: 0,
            restart_history: vec![],
            endpoint: crate::state::EndpointSpec::default(),
        }
    }

    #[test]
    fn names_as_docker() {
        let t = task(
            "ngbknb89dzyxdas81emw0jz63",
            1,
            Some("n1"),
            0,
            TaskState::Running,
        );
        assert_eq!(task_name("helloworld", &t), "helloworld.1");
        assert_eq!(
            container_name("helloworld", &t),
            "helloworld.1.ngbknb89dzyxdas81emw0jz63"
        );
        let g = task(
            "qgi46v9jcgkh",
            0,
            Some("q1n9ztahdj489pltf3gl5pomj"),
            0,
            TaskState::Running,
        );
        assert_eq!(
            task_name("wordpress_db", &g),
            "wordpress_db.q1n9ztahdj489pltf3gl5pomj"
        );
        assert_eq!(state_title(TaskState::Shutdown), "Shutdown");
    }

    #[test]
    fn human_durations_as_go_units() {
        for (ms, want) in [
            (500, "Less than a second"),
            (1_000, "1 second"),
            (54_000, "54 seconds"),
            (61_000, "About a minute"),
            (9 * 60_000, "9 minutes"),
            (3_600_000, "About an hour"),
            (5 * 3_600_000, "5 hours"),
            (72 * 3_600_000, "3 days"),
            (21 * 24 * 3_600_000, "3 weeks"),
            (90 * 24 * 3_600_000, "3 months"),
            (3 * 365 * 24 * 3_600_000, "3 years"),
        ] {
            assert_eq!(human_duration(ms), want, "{ms}");
        }
    }

    #[test]
    fn service_ps_rows_newest_first_with_history() {
        let mut s = ClusterState::default();
        let mut spec = ServiceSpec {
            name: "helloworld".into(),
            ..ServiceSpec::default()
        };
        spec.task.container.image = "alpine:latest".into();
        spec.endpoint.ports = vec![parse_port("8080:80").unwrap()];
        let mut svc = crate::orchestrator::new_service(spec, Id::from("svc"));
        svc.endpoint.ports = svc.spec.endpoint.ports.clone();
        s.services.insert(svc.id.clone(), svc.clone());
        let mut n1 = crate::scheduler::tests::node("n1");
        n1.description.hostname = "james-CW65".into();
        s.nodes.insert(n1.id.clone(), n1);
        let now = 10 * 60_000;
        let mut failed = task("cbiq1ne3ij9aaaa", 1, Some("n1"), 0, TaskState::Failed);
        failed.status.err = "task: non-zero exit (1)".into();
        failed.status.timestamp = 60_000;
        let running = task("ngbknb89dzyxbbb", 1, Some("n1"), 60_000, TaskState::Running);
        let mut host = task("hy5pqcmqfw67ccc", 10, None, 500_000, TaskState::Running);
        host.endpoint.ports = vec![parse_port("published=9000,target=90,mode=host").unwrap()];
        let second = task(
            "3fl3mfrvubu1ddd",
            2,
            Some("n1"),
            540_000,
            TaskState::Running,
        );
        for t in [failed, running, host, second] {
            s.tasks.insert(t.id.clone(), t);
        }
        let rows = ps_rows(&s, &[&svc.id], now, false);
        let table: Vec<(&str, &str, &str, &str, &str)> = rows
            .iter()
            .map(|r| {
                (
                    r.id.as_str(),
                    r.name.as_str(),
                    r.desired.as_str(),
                    r.current.as_str(),
                    r.error.as_str(),
                )
            })
            .collect();
        assert_eq!(
            table,
            [
                (
                    "ngbknb89dzyx",
                    "helloworld.1",
                    "Running",
                    "Running 9 minutes ago",
                    ""
                ),
                (
                    "cbiq1ne3ij9a",
                    "\\_ helloworld.1",
                    "Shutdown",
                    "Failed 9 minutes ago",
                    "\"task: non-zero exit (1)\"",
                ),
                (
                    "3fl3mfrvubu1",
                    "helloworld.2",
                    "Running",
                    "Running about a minute ago",
                    ""
                ),
                (
                    "hy5pqcmqfw67",
                    "helloworld.10",
                    "Running",
                    "Running about a minute ago",
                    ""
                ),
            ]
        );
        assert_eq!(rows[0].node, "james-CW65");
        assert_eq!(rows[3].ports, "*:9000->90/tcp");
        assert_eq!(rows[3].node, "");
        let long = "x".repeat(40);
        let mut t = s.tasks[&Id::from("cbiq1ne3ij9aaaa")].clone();
        t.status.err.clone_from(&long);
        s.tasks.insert(t.id.clone(), t);
        assert_eq!(
            ps_rows(&s, &[&svc.id], now, false)[1].error.chars().count(),
            32
        );
        assert_eq!(
            ps_rows(&s, &[&svc.id], now, true)[1].error,
            format!("\"{long}\"")
        );
        assert_eq!(
            replicas_column(&s, &svc),
            "2/1",
            "the unassigned task is not running"
        );
        assert_eq!(ports_column(&svc), "*:8080->80/tcp");
    }
}
