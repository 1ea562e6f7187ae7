//! The runner's pure core: the assignments, the node's containers and what the runner last
//! reported in, [`Action`]s out (see the rules in the [module's description](super)).

use std::collections::{BTreeMap, HashMap, HashSet};

use mesh_api::AssignedTask;
use mesh_cluster::Id;
use mesh_cluster::state::{Millis, TaskState, TaskStatus};
use mesh_engine::HealthStatus;

use super::status::{UNHEALTHY, ended, status};

/// What the runner knows of one container of this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Observed {
    pub id: String,
    pub task_id: Id,
    pub state: Seen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Seen {
    /// Created, never started (an interrupted start).
    Created,
    Running {
        pid: Option<u32>,
        /// The health check's verdict; `None` when the container has none.
        health: Option<HealthStatus>,
    },
    Exited {
        code: Option<i64>,
    },
}

/// What the runner should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Action {
    Start(Id),
    /// Plumb an adopted running container.
    Attach {
        task: Id,
        container: String,
        pid: u32,
    },
    /// Unplumb a task whose container no longer runs (it ended on its own, or is gone).
    Detach(Id),
    Stop {
        task: Id,
        container: String,
    },
    Remove {
        task: Id,
        container: String,
    },
    Report {
        task: Id,
        status: TaskStatus,
    },
}

/// Everything [`decide`] looks at.
pub(super) struct Facts<'a> {
    pub tasks: &'a BTreeMap<Id, AssignedTask>,
    /// The whole list has arrived (containers of unlisted tasks may be removed).
    pub complete: bool,
    pub containers: &'a BTreeMap<String, Observed>,
    /// What the runner last reported of each task.
    pub local: &'a HashMap<Id, TaskStatus>,
    /// Tasks with an operation in flight (or waiting to retry one).
    pub busy: &'a HashSet<Id>,
    /// Tasks whose networks are plumbed.
    pub attached: &'a HashSet<Id>,
    pub now: Millis,
}

/// Whether a running container may take traffic and count as `running`: it has no health
/// check, or the check passed (Swarm's controller waits for `healthy` likewise).
pub(super) fn serves(health: Option<HealthStatus>) -> bool {
    matches!(health, None | Some(HealthStatus::Healthy))
}

/// The one container a task should have: a running one first, then the newest state.
fn rank(o: &Observed) -> u8 {
    match o.state {
        Seen::Running { .. } => 0,
        Seen::Exited { .. } => 1,
        Seen::Created => 2,
    }
}

/// The runner's pure core (see the module's description).
pub(super) fn decide(f: &Facts) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut by_task: BTreeMap<&Id, Vec<&Observed>> = BTreeMap::new();
    for c in f.containers.values() {
        by_task.entry(&c.task_id).or_default().push(c);
    }
    for list in by_task.values_mut() {
        list.sort_by(|a, b| (rank(a), &a.id).cmp(&(rank(b), &b.id)));
    }
    // Attached tasks whose container no longer runs: their interfaces go first (the kernel
    // took the veths with the container's namespace, but the node's view, its endpoints and
    // maybe a network's devices still hold them). Nothing else happens to them in this pass.
    let mut busy = f.busy.clone();
    for id in f.attached {
        let running = by_task
            .get(id)
            .is_some_and(|l| l.iter().any(|c| matches!(c.state, Seen::Running { .. })));
        if !running && !busy.contains(id) {
            actions.push(Action::Detach(id.clone()));
            busy.insert(id.clone());
        }
    }
    let f = &Facts { busy: &busy, ..*f };
    // Containers of tasks that are no longer listed.
    if f.complete {
        for (task, list) in &by_task {
            if !f.tasks.contains_key(*task) && !f.busy.contains(*task) {
                actions.push(Action::Remove {
                    task: (*task).clone(),
                    container: list[0].id.clone(),
                });
            }
        }
    }
    for (id, assigned) in f.tasks {
        if f.busy.contains(id) {
            continue;
        }
        let t = &assigned.task;
        let list = by_task.get(id).map_or(&[][..], Vec::as_slice);
        // A second container for one task (an interrupted start): keep the best one.
        if let Some(extra) = list.get(1) {
            actions.push(Action::Remove {
                task: id.clone(),
                container: extra.id.clone(),
            });
            continue;
        }
        let c = list.first().copied();
        let running = matches!(c.map(|c| c.state), Some(Seen::Running { .. }));
        let known = match f.local.get(id) {
            Some(l) if l.state >= t.status.state => l.state,
            _ => t.status.state,
        };
        let report = |s: TaskStatus| Action::Report {
            task: id.clone(),
            status: s,
        };
        if known.is_terminal() {
            if let (true, Some(c)) = (running, c) {
                actions.push(Action::Stop {
                    task: id.clone(),
                    container: c.id.clone(),
                });
            }
            continue;
        }
        if t.desired_state >= TaskState::Shutdown {
            match c {
                Some(c) if running => actions.push(Action::Stop {
                    task: id.clone(),
                    container: c.id.clone(),
                }),
                _ => actions.push(report(status(
                    TaskState::Shutdown,
                    "shutdown",
                    String::new(),
                    c,
                    f.now,
                ))),
            }
            continue;
        }
        if t.desired_state != TaskState::Running {
            continue; // `ready`: assigned, not to be started yet
        }
        match c {
            None if known < TaskState::Running => actions.push(Action::Start(id.clone())),
            None => actions.push(report(status(
                TaskState::Failed,
                "failed",
                "task: its container was removed outside meshd".into(),
                None,
                f.now,
            ))),
            Some(c) => match c.state {
                Seen::Created => actions.push(Action::Remove {
                    task: id.clone(),
                    container: c.id.clone(),
                }),
                Seen::Running { pid, health } => {
                    actions.extend(while_running(f, id, c, pid, health, known));
                }
                Seen::Exited { code } => actions.push(report(ended(c, code, f.now))),
            },
        }
    }
    actions
}

/// What a task whose container runs needs: its networks (an adopted container), `failed` when
/// its health check failed, `running` once it serves and the leader has not heard it yet.
fn while_running(
    f: &Facts,
    id: &Id,
    c: &Observed,
    pid: Option<u32>,
    health: Option<HealthStatus>,
    known: TaskState,
) -> Option<Action> {
    let report = |s: TaskStatus| Action::Report {
        task: id.clone(),
        status: s,
    };
    if let (false, Some(pid)) = (f.attached.contains(id), pid) {
        Some(Action::Attach {
            task: id.clone(),
            container: c.id.clone(),
            pid,
        })
    } else if health == Some(HealthStatus::Unhealthy) {
        // Failed at once (out of the mesh now); the next pass stops it.
        Some(report(status(
            TaskState::Failed,
            "unhealthy",
            UNHEALTHY.into(),
            Some(c),
            f.now,
        )))
    } else if known < TaskState::Running && serves(health) {
        Some(report(status(
            TaskState::Running,
            "started",
            String::new(),
            Some(c),
            f.now,
        )))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::assigned;
    use super::*;

    fn container(id: &str, task: &str, state: Seen) -> (String, Observed) {
        (
            id.to_owned(),
            Observed {
                id: id.into(),
                task_id: Id::from(task),
                state,
            },
        )
    }

    struct Case {
        what: &'static str,
        tasks: Vec<(Id, AssignedTask)>,
        containers: Vec<(String, Observed)>,
        local: Vec<(&'static str, TaskState)>,
        busy: Vec<&'static str>,
        attached: Vec<&'static str>,
        complete: bool,
        want: Vec<String>,
    }

    /// Actions in a short form: `start a`, `stop a c1`, `remove a c1`, `attach a 7`,
    /// `report a running` (with the error after a colon when there is one).
    fn short(a: &Action) -> String {
        match a {
            Action::Start(t) => format!("start {t}"),
            Action::Attach {
                task,
                container,
                pid,
            } => format!("attach {task} {container} {pid}"),
            Action::Detach(task) => format!("detach {task}"),
            Action::Stop { task, container } => format!("stop {task} {container}"),
            Action::Remove { task, container } => format!("remove {task} {container}"),
            Action::Report { task, status } => {
                if status.err.is_empty() {
                    format!("report {task} {}", status.state.as_str())
                } else {
                    format!("report {task} {}: {}", status.state.as_str(), status.err)
                }
            }
        }
    }

    fn run(pid: u32) -> Seen {
        Seen::Running {
            pid: Some(pid),
            health: None,
        }
    }

    fn run_health(pid: u32, health: HealthStatus) -> Seen {
        Seen::Running {
            pid: Some(pid),
            health: Some(health),
        }
    }

    /// A case with the whole list in, nothing reported or in flight, and every task whose
    /// container runs attached (as it was when it started).
    fn case(
        what: &'static str,
        tasks: Vec<(Id, AssignedTask)>,
        containers: Vec<(String, Observed)>,
        want: &[&str],
    ) -> Case {
        Case {
            what,
            tasks,
            attached: containers
                .iter()
                .filter(|(_, c)| matches!(c.state, Seen::Running { .. }))
                .map(|(_, c)| {
                    if c.task_id.as_str() == "a" {
                        "a"
                    } else {
                        "gone"
                    }
                })
                .collect(),
            containers,
            local: vec![],
            busy: vec![],
            complete: true,
            want: want.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// Runs [`decide`] on each case and compares its actions with the wanted ones.
    fn check(cases: Vec<Case>) {
        for c in cases {
            let tasks: BTreeMap<Id, AssignedTask> = c.tasks.into_iter().collect();
            let containers: BTreeMap<String, Observed> = c.containers.into_iter().collect();
            let local: HashMap<Id, TaskStatus> = c
                .local
                .iter()
                .map(|(id, s)| {
                    (
                        Id::from(*id),
                        TaskStatus {
                            state: *s,
                            ..TaskStatus::default()
                        },
                    )
                })
                .collect();
            let busy: HashSet<Id> = c.busy.iter().map(|s| Id::from(*s)).collect();
            let attached: HashSet<Id> = c.attached.iter().map(|s| Id::from(*s)).collect();
            let got: Vec<String> = decide(&Facts {
                tasks: &tasks,
                complete: c.complete,
                containers: &containers,
                local: &local,
                busy: &busy,
                attached: &attached,
                now: 1,
            })
            .iter()
            .map(short)
            .collect();
            assert_eq!(got, c.want, "{}", c.what);
        }
    }

    #[test]
    fn tasks_meant_to_run_are_started_and_reported() {
        use TaskState::{Assigned, Ready, Running, Starting};
        let mut cases = vec![
            case(
                "a new task starts",
                vec![assigned("a", Assigned, Running)],
                vec![],
                &["start a"],
            ),
            case(
                "ready means not yet",
                vec![assigned("a", Assigned, Ready)],
                vec![],
                &[],
            ),
            case(
                "a running container of a task the leader saw start is reported running",
                vec![assigned("a", Starting, Running)],
                vec![container("c1", "a", run(7))],
                &["report a running"],
            ),
            case(
                "running and known: nothing",
                vec![assigned("a", Running, Running)],
                vec![container("c1", "a", run(7))],
                &[],
            ),
        ];
        // What the runner reported itself counts: no second report, no second start.
        let mut reported = case(
            "reported already",
            vec![assigned("a", Starting, Running)],
            vec![container("c1", "a", run(7))],
            &[],
        );
        reported.local = vec![("a", Running)];
        cases.push(reported);
        let mut busy = case(
            "an operation in flight blocks the task",
            vec![assigned("a", Assigned, Running)],
            vec![],
            &[],
        );
        busy.busy = vec!["a"];
        cases.push(busy);
        check(cases);
    }

    #[test]
    fn a_health_check_decides_when_a_task_runs_and_when_it_fails() {
        use HealthStatus::{Healthy, Starting as Checking, Unhealthy};
        use TaskState::{Running, Starting};
        let mut cases = vec![
            case(
                "a container whose health check has not passed yet stays starting",
                vec![assigned("a", Starting, Running)],
                vec![container("c1", "a", run_health(7, Checking))],
                &[],
            ),
            case(
                "healthy: running",
                vec![assigned("a", Starting, Running)],
                vec![container("c1", "a", run_health(7, Healthy))],
                &["report a running"],
            ),
            case(
                "unhealthy before it ever ran: failed with moby's words",
                vec![assigned("a", Starting, Running)],
                vec![container("c1", "a", run_health(7, Unhealthy))],
                &["report a failed: dockerexec: unhealthy container"],
            ),
            case(
                "unhealthy after running: failed too",
                vec![assigned("a", Running, Running)],
                vec![container("c1", "a", run_health(7, Unhealthy))],
                &["report a failed: dockerexec: unhealthy container"],
            ),
            case(
                "failed as unhealthy: its container is stopped",
                vec![assigned("a", TaskState::Failed, Running)],
                vec![container("c1", "a", run_health(7, Unhealthy))],
                &["stop a c1"],
            ),
        ];
        let mut adopt = case(
            "an adopted unhealthy container is plumbed first (then failed)",
            vec![assigned("a", Running, Running)],
            vec![container("c1", "a", run_health(7, Unhealthy))],
            &["attach a c1 7"],
        );
        adopt.attached = vec![];
        cases.push(adopt);
        check(cases);
        assert!(serves(None) && serves(Some(Healthy)));
        assert!(!serves(Some(Checking)) && !serves(Some(Unhealthy)));
    }

    #[test]
    fn containers_that_end_on_their_own_end_their_tasks() {
        use TaskState::Running;
        check(vec![
            case(
                "exit 0 completes",
                vec![assigned("a", Running, Running)],
                vec![container("c1", "a", Seen::Exited { code: Some(0) })],
                &["report a complete"],
            ),
            case(
                "exit 1 fails as Swarm says",
                vec![assigned("a", Running, Running)],
                vec![container("c1", "a", Seen::Exited { code: Some(1) })],
                &["report a failed: task: non-zero exit (1)"],
            ),
            case(
                "a running task whose container vanished has failed",
                vec![assigned("a", Running, Running)],
                vec![],
                &["report a failed: task: its container was removed outside meshd"],
            ),
        ]);
    }

    #[test]
    fn tasks_asked_to_stop_are_stopped_and_reported_shutdown() {
        use TaskState::{Assigned, Complete, Failed, Running, Shutdown};
        let mut cases = vec![
            case(
                "asked to stop: stop it",
                vec![assigned("a", Running, Shutdown)],
                vec![container("c1", "a", run(7))],
                &["stop a c1"],
            ),
            case(
                "stopped as asked: shutdown, not failed",
                vec![assigned("a", Running, Shutdown)],
                vec![container("c1", "a", Seen::Exited { code: Some(137) })],
                &["report a shutdown"],
            ),
            case(
                "asked to stop before it started",
                vec![assigned("a", Assigned, Shutdown)],
                vec![],
                &["report a shutdown"],
            ),
            case(
                "history keeps its container",
                vec![assigned("a", Failed, Shutdown)],
                vec![container("c1", "a", Seen::Exited { code: Some(1) })],
                &[],
            ),
            case(
                "a task moved away while the node was down is stopped",
                vec![assigned("a", TaskState::Orphaned, Shutdown)],
                vec![container("c1", "a", run(7))],
                &["stop a c1"],
            ),
            case(
                "a complete task is not touched",
                vec![assigned("a", Complete, Shutdown)],
                vec![],
                &[],
            ),
        ];
        let mut failed = case(
            "failed locally, then asked to stop: nothing more",
            vec![assigned("a", Running, Shutdown)],
            vec![container("c1", "a", Seen::Exited { code: Some(1) })],
            &[],
        );
        failed.local = vec![("a", Failed)];
        cases.push(failed);
        check(cases);
    }

    #[test]
    fn containers_not_wanted_are_removed() {
        use TaskState::{Running, Starting};
        let mut cases = vec![
            case(
                "a task no longer listed loses its container",
                vec![],
                vec![container("c1", "gone", Seen::Exited { code: Some(0) })],
                &["remove gone c1"],
            ),
            case(
                "an interrupted start is cleaned, then started again",
                vec![assigned("a", Starting, Running)],
                vec![container("c1", "a", Seen::Created)],
                &["remove a c1"],
            ),
            case(
                "two containers for one task: the extra one goes",
                vec![assigned("a", Running, Running)],
                vec![
                    container("c1", "a", Seen::Exited { code: Some(0) }),
                    container("c2", "a", run(7)),
                ],
                &["remove a c1"],
            ),
        ];
        // Nothing is removed before the whole list arrived.
        let mut partial = case(
            "no removal before the full list",
            vec![],
            vec![container("c1", "gone", run(7))],
            &[],
        );
        partial.complete = false;
        cases.push(partial);
        check(cases);
    }

    #[test]
    fn networks_are_plumbed_for_running_containers_only() {
        use TaskState::Running;
        let mut cases = Vec::new();
        // Adoption after a restart: plumbed again first, then nothing to report.
        let mut adopt = case(
            "an adopted container is plumbed",
            vec![assigned("a", Running, Running)],
            vec![container("c1", "a", run(7))],
            &["attach a c1 7"],
        );
        adopt.attached = vec![];
        cases.push(adopt);
        // A container that ended on its own (or vanished) is unplumbed before anything else.
        for (what, containers) in [
            (
                "an attached task whose container ended is unplumbed first",
                vec![container("c1", "a", Seen::Exited { code: Some(1) })],
            ),
            (
                "an attached task whose container vanished is unplumbed",
                vec![],
            ),
        ] {
            let mut ended = case(
                what,
                vec![assigned("a", Running, Running)],
                containers,
                &["detach a"],
            );
            ended.attached = vec!["a"];
            cases.push(ended);
        }
        let mut gone = case(
            "an attached task no longer listed is unplumbed, then its container removed",
            vec![],
            vec![container("c1", "gone", Seen::Exited { code: Some(0) })],
            &["detach gone"],
        );
        gone.attached = vec!["gone"];
        cases.push(gone);
        check(cases);
    }
}
