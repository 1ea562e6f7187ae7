//! The task runner: turns the node's [`Assignments`] into containers through `mesh-engine`, and
//! what happens to those containers into task states for the leader.
//!
//! A pure core, [`decide`], looks at the assignments, the containers the node has (found by
//! their `meshd.node` label, kept current by Docker's events and a periodic listing) and what
//! the runner itself last reported, and returns [`Action`]s: start a task meant to run, stop one
//! meant to stop, remove a container whose task is gone, report a state. The runner carries the
//! actions out one task at a time (an operation in flight blocks further ones for its task) and
//! feeds the results back in.
//!
//! The rules, as Swarm's agent has them:
//! - desired `running` and nothing started yet: start (`preparing`, `starting`, `running`, or
//!   `rejected` when the image is missing or Docker refuses the container); desired `ready`
//!   means assigned but not to be started yet.
//! - the container ended on its own: `complete` (exit 0) or `failed` (`task: non-zero exit (N)`).
//! - desired `shutdown` (or later): stop the container and report `shutdown`, not `failed`.
//! - a task no longer listed (the orchestrator deleted it from history, or the service is gone):
//!   remove its container. Nothing is removed before the session's first full list arrives.
//! - after a restart of meshd, running containers are adopted by their `meshd.task` label, not
//!   started again; a state the leader missed is reported again on the next full list.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use mesh_cluster::Id;
use mesh_cluster::naming::container_name;
use mesh_cluster::state::{Millis, TaskState, TaskStatus};
use mesh_engine::{
    ContainerEventKind, ContainerSpec, ContainerStatus, DEFAULT_STOP_GRACE, Engine, EngineError,
    EngineHandle, LABEL_NODE, LABEL_TASK, task_labels,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::networking::Networking;
use mesh_api::now_millis;
use mesh_api::{AssignedTask, Assignments, TaskStatusUpdate};

/// Containers are listed again this often, to catch anything the events missed.
const RESYNC_EVERY: Duration = Duration::from_secs(10);
/// A failed operation on a task is retried after this long.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// What the runner knows of one container of this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Observed {
    pub id: String,
    pub task_id: Id,
    pub state: Seen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Created, never started (an interrupted start).
    Created,
    Running {
        pid: Option<u32>,
    },
    Exited {
        code: Option<i64>,
    },
}

/// What the runner should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
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
pub(crate) struct Facts<'a> {
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

fn status(
    state: TaskState,
    message: &str,
    err: String,
    c: Option<&Observed>,
    now: Millis,
) -> TaskStatus {
    let (pid, exit_code) = match c.map(|c| c.state) {
        Some(Seen::Running { pid }) => (pid.unwrap_or(0), None),
        Some(Seen::Exited { code }) => (0, code),
        _ => (0, None),
    };
    TaskStatus {
        timestamp: now,
        state,
        message: message.into(),
        err,
        container_id: c.map(|c| c.id.clone()).unwrap_or_default(),
        pid,
        exit_code,
    }
}

/// How a container that ended on its own ends its task.
fn ended(c: &Observed, code: Option<i64>, now: Millis) -> TaskStatus {
    match code {
        Some(0) => status(TaskState::Complete, "finished", String::new(), Some(c), now),
        Some(n) => status(
            TaskState::Failed,
            "failed",
            format!("task: non-zero exit ({n})"),
            Some(c),
            now,
        ),
        None => status(
            TaskState::Failed,
            "failed",
            "task: the container ended, its exit code is unknown".into(),
            Some(c),
            now,
        ),
    }
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
pub(crate) fn decide(f: &Facts) -> Vec<Action> {
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
                Seen::Running { pid } => {
                    if let (false, Some(pid)) = (f.attached.contains(id), pid) {
                        actions.push(Action::Attach {
                            task: id.clone(),
                            container: c.id.clone(),
                            pid,
                        });
                    } else if known < TaskState::Running {
                        actions.push(report(status(
                            TaskState::Running,
                            "started",
                            String::new(),
                            Some(c),
                            f.now,
                        )));
                    }
                }
                Seen::Exited { code } => actions.push(report(ended(c, code, f.now))),
            },
        }
    }
    actions
}

/// The container a task runs in.
pub(crate) fn container_spec(t: &AssignedTask, node_id: &Id, hostname: &str) -> ContainerSpec {
    let task = &t.task;
    let c = &task.spec.container;
    let mut labels = c.labels.clone();
    labels.extend(task_labels(
        task.id.as_str(),
        task.service_id.as_str(),
        node_id.as_str(),
        hostname,
    ));
    let limits = &task.spec.resources.limits;
    ContainerSpec {
        name: container_name(&t.service_name, task),
        image: c.image.clone(),
        command: c.command.clone(),
        args: c.args.clone(),
        env: c.env.clone(),
        labels,
        hostname: c.hostname.clone(),
        workdir: c.workdir.clone(),
        user: c.user.clone(),
        nano_cpus: limits.nano_cpus,
        memory_bytes: limits.memory_bytes,
        stop_grace: grace(t),
        binds: Vec::new(),
    }
}

fn grace(t: &AssignedTask) -> Duration {
    match t.task.spec.container.stop_grace_period_ms {
        0 => DEFAULT_STOP_GRACE,
        ms => Duration::from_millis(ms),
    }
}

/// What an operation reports back to the runner.
enum Done {
    Started {
        task: Id,
        result: Result<(Observed, bool), TaskStatus>,
        /// Plumbing failed: the task fails with this status (its container is then stopped).
        failed: Option<TaskStatus>,
    },
    Attached {
        task: Id,
        error: Option<String>,
    },
    Detached {
        task: Id,
        error: Option<String>,
    },
    Stopped {
        task: Id,
        container: String,
        result: Result<Option<i64>, String>,
    },
    Removed {
        task: Id,
        container: String,
        error: Option<String>,
    },
}

/// Who the runner runs for.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    pub node_id: Id,
    pub hostname: String,
    pub networking: Networking,
    /// The node's engine, where its tasks run.
    pub engine: EngineHandle,
}

/// The runner's handle: give it assignments; it reports task states on the channel returned by
/// [`TaskRunner::spawn`]. Dropping the handle stops the runner (containers keep running and are
/// adopted by the next one).
pub struct TaskRunner {
    assignments: mpsc::UnboundedSender<Assignments>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TaskRunner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TaskRunner {
    pub fn spawn(cfg: RunnerConfig) -> (Self, mpsc::UnboundedReceiver<Vec<TaskStatusUpdate>>) {
        let (assignments, rx) = mpsc::unbounded_channel();
        let (reports, reports_rx) = mpsc::unbounded_channel();
        let runner = Runner {
            cfg,
            tasks: BTreeMap::new(),
            complete: false,
            containers: BTreeMap::new(),
            local: HashMap::new(),
            in_flight: HashSet::new(),
            retry_at: HashMap::new(),
            attached: HashSet::new(),
            settled: false,
            exits: HashMap::new(),
            ops: JoinSet::new(),
            reports,
            pending: Vec::new(),
        };
        let task = tokio::spawn(runner.run(rx));
        (Self { assignments, task }, reports_rx)
    }

    /// New assignments from the leader.
    pub fn assign(&self, a: Assignments) {
        let _ = self.assignments.send(a);
    }
}

struct Runner {
    cfg: RunnerConfig,
    tasks: BTreeMap<Id, AssignedTask>,
    complete: bool,
    containers: BTreeMap<String, Observed>,
    local: HashMap<Id, TaskStatus>,
    in_flight: HashSet<Id>,
    retry_at: HashMap<Id, Instant>,
    attached: HashSet<Id>,
    /// The networking was told that every kept container is attached.
    settled: bool,
    /// Containers that died before the runner knew them (a start still in flight), by id.
    exits: HashMap<String, (Option<i64>, Instant)>,
    ops: JoinSet<Done>,
    reports: mpsc::UnboundedSender<Vec<TaskStatusUpdate>>,
    pending: Vec<TaskStatusUpdate>,
}

impl Runner {
    async fn run(mut self, mut assignments: mpsc::UnboundedReceiver<Assignments>) {
        let mut complained = false;
        loop {
            let engine = match self.cfg.engine.get().await {
                Ok(e) => e,
                Err(e) => {
                    if !complained {
                        tracing::warn!("task runner: {e}; retrying every 2s");
                        complained = true;
                    }
                    let until = Instant::now() + RETRY_AFTER;
                    loop {
                        tokio::select! {
                            () = tokio::time::sleep_until(until) => break,
                            a = assignments.recv() => match a {
                                Some(a) => self.assign(a),
                                None => return,
                            },
                        }
                    }
                    continue;
                }
            };
            complained = false;
            if !self.serve(&engine, &mut assignments).await {
                return;
            }
            // The connection failed somewhere: make a new one.
            self.cfg.engine.reset().await;
        }
    }

    /// Runs with one engine connection; false when the handle is gone.
    async fn serve(
        &mut self,
        engine: &Engine,
        assignments: &mut mpsc::UnboundedReceiver<Assignments>,
    ) -> bool {
        let mut events = engine.events();
        if let Err(e) = self.resync(engine).await {
            tracing::warn!("task runner: listing containers: {e}");
            tokio::time::sleep(RETRY_AFTER).await;
            return true;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last_sync = Instant::now();
        loop {
            self.step(engine);
            tokio::select! {
                a = assignments.recv() => match a {
                    Some(a) => self.assign(a),
                    None => return false,
                },
                ev = events.next() => match ev {
                    Some(Ok(ev)) => self.on_event(ev.id, ev.kind),
                    Some(Err(e)) => {
                        tracing::debug!("task runner: container events: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        events = engine.events_since(SystemTime::now() - Duration::from_secs(5));
                        if self.resync(engine).await.is_err() {
                            return true;
                        }
                        last_sync = Instant::now();
                    }
                    None => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        events = engine.events_since(SystemTime::now() - Duration::from_secs(5));
                        if self.resync(engine).await.is_err() {
                            return true;
                        }
                        last_sync = Instant::now();
                    }
                },
                Some(done) = self.ops.join_next() => match done {
                    Ok(done) => self.on_done(done),
                    Err(e) => tracing::warn!("task runner: an operation panicked: {e}"),
                },
                _ = tick.tick() => {
                    if last_sync.elapsed() >= RESYNC_EVERY {
                        if let Err(e) = self.resync(engine).await {
                            tracing::warn!("task runner: listing containers: {e}");
                        }
                        last_sync = Instant::now();
                    }
                }
            }
        }
    }

    fn assign(&mut self, a: Assignments) {
        if a.full {
            self.tasks = a
                .tasks
                .into_iter()
                .map(|t| (t.task.id.clone(), t))
                .collect();
            self.complete = true;
            // A new session: report again what the leader has not seen.
            for (id, l) in &self.local {
                if let Some(t) = self.tasks.get(id)
                    && l.state > t.task.status.state
                    && !t.task.status.state.is_terminal()
                {
                    self.pending.push(TaskStatusUpdate {
                        task_id: id.clone(),
                        status: l.clone(),
                    });
                }
            }
        } else {
            for id in &a.removed {
                self.tasks.remove(id);
            }
            for t in a.tasks {
                self.tasks.insert(t.task.id.clone(), t);
            }
        }
    }

    /// Lists this node's containers and takes that as the truth.
    async fn resync(&mut self, engine: &Engine) -> Result<(), EngineError> {
        let label = format!("{LABEL_NODE}={}", self.cfg.node_id);
        let rows = engine.list(&[&label]).await?;
        let mut containers = BTreeMap::new();
        for row in rows {
            let Some(task) = row.labels.get(LABEL_TASK) else {
                continue;
            };
            let known_pid = match self.containers.get(&row.id).map(|c| c.state) {
                Some(Seen::Running { pid }) => pid,
                _ => None,
            };
            let state = match row.state {
                ContainerStatus::Created => Seen::Created,
                ContainerStatus::Running => {
                    let pid = match known_pid {
                        Some(p) => Some(p),
                        None => engine.inspect_state(&row.id).await.ok().and_then(|s| s.pid),
                    };
                    Seen::Running { pid }
                }
                ContainerStatus::Exited | ContainerStatus::Dead => Seen::Exited {
                    code: row.exit_code,
                },
            };
            containers.insert(
                row.id.clone(),
                Observed {
                    id: row.id,
                    task_id: Id::from(task.as_str()),
                    state,
                },
            );
        }
        self.containers = containers;
        Ok(())
    }

    fn on_event(&mut self, id: String, kind: ContainerEventKind) {
        match kind {
            ContainerEventKind::Die { exit_code } => {
                if let Some(c) = self.containers.get_mut(&id) {
                    c.state = Seen::Exited { code: exit_code };
                } else {
                    // Maybe ours, with its start still in flight; other nodes' too (one dockerd
                    // may serve several lab nodes): kept briefly, by container id.
                    let now = Instant::now();
                    self.exits
                        .retain(|_, (_, at)| now.duration_since(*at) < Duration::from_mins(1));
                    self.exits.insert(id, (exit_code, now));
                }
            }
            ContainerEventKind::Destroy => {
                self.containers.remove(&id);
            }
            ContainerEventKind::Start | ContainerEventKind::Oom => {}
        }
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Started {
                task,
                result,
                failed,
            } => {
                self.in_flight.remove(&task);
                match result {
                    Ok((mut observed, attached)) => {
                        if let Some((code, _)) = self.exits.remove(&observed.id) {
                            observed.state = Seen::Exited { code };
                        }
                        if attached {
                            self.attached.insert(task.clone());
                        }
                        self.containers.insert(observed.id.clone(), observed);
                        if let Some(s) = failed {
                            self.report(&task, s);
                        }
                    }
                    Err(s) => self.report(&task, s),
                }
            }
            Done::Attached { task, error } => {
                self.in_flight.remove(&task);
                match error {
                    None => {
                        self.attached.insert(task);
                    }
                    Some(e) => {
                        let c = self
                            .containers
                            .values()
                            .find(|c| c.task_id == task)
                            .cloned();
                        let s = status(
                            TaskState::Failed,
                            "failed",
                            format!("task: plumbing its networks failed: {e}"),
                            c.as_ref(),
                            now_millis(),
                        );
                        self.report(&task, s);
                    }
                }
            }
            Done::Detached { task, error } => {
                self.in_flight.remove(&task);
                match error {
                    None => {
                        self.attached.remove(&task);
                    }
                    Some(e) => {
                        tracing::warn!(%task, "unplumbing: {e}");
                        self.retry_at.insert(task, Instant::now() + RETRY_AFTER);
                    }
                }
            }
            Done::Stopped {
                task,
                container,
                result,
            } => {
                self.in_flight.remove(&task);
                self.attached.remove(&task);
                match result {
                    Ok(code) => {
                        if let Some(c) = self.containers.get_mut(&container) {
                            c.state = Seen::Exited { code };
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%task, "stopping container {container}: {e}");
                        self.retry_at.insert(task, Instant::now() + RETRY_AFTER);
                    }
                }
            }
            Done::Removed {
                task,
                container,
                error,
            } => {
                self.in_flight.remove(&task);
                match error {
                    None => {
                        self.containers.remove(&container);
                        if !self.containers.values().any(|c| c.task_id == task) {
                            self.attached.remove(&task);
                            if !self.tasks.contains_key(&task) {
                                self.local.remove(&task);
                            }
                        }
                    }
                    Some(e) => {
                        tracing::warn!(%task, "removing container {container}: {e}");
                        self.retry_at.insert(task, Instant::now() + RETRY_AFTER);
                    }
                }
            }
        }
    }

    /// Records a state of `task` and queues it for the leader.
    fn report(&mut self, task: &Id, status: TaskStatus) {
        tracing::debug!(%task, state = status.state.as_str(), err = %status.err, "task state");
        self.local.insert(task.clone(), status.clone());
        self.pending.push(TaskStatusUpdate {
            task_id: task.clone(),
            status,
        });
    }

    /// Decides, starts the operations, and sends the reports.
    fn step(&mut self, engine: &Engine) {
        let now = Instant::now();
        self.retry_at.retain(|_, at| *at > now);
        // Forget what the runner said about tasks that are gone and have no container left.
        let containers = &self.containers;
        let tasks = &self.tasks;
        self.local.retain(|id, _| {
            tasks.contains_key(id) || containers.values().any(|c| &c.task_id == id)
        });
        let busy: HashSet<Id> = self
            .in_flight
            .iter()
            .chain(self.retry_at.keys())
            .cloned()
            .collect();
        let actions = decide(&Facts {
            tasks: &self.tasks,
            complete: self.complete,
            containers: &self.containers,
            local: &self.local,
            busy: &busy,
            attached: &self.attached,
            now: now_millis(),
        });
        for action in actions {
            self.act(engine, action);
        }
        // Once the whole list is in and nothing is under way, every container kept is attached:
        // the networking may clear what earlier runs left behind.
        if !self.settled && self.complete && self.in_flight.is_empty() && self.retry_at.is_empty() {
            self.settled = true;
            let networking = self.cfg.networking.0.clone();
            tokio::spawn(async move { networking.settled().await });
        }
        if !self.pending.is_empty() {
            let _ = self.reports.send(std::mem::take(&mut self.pending));
        }
    }

    fn act(&mut self, engine: &Engine, action: Action) {
        let networking = self.cfg.networking.0.clone();
        match action {
            Action::Report { task, status } => self.report(&task, status),
            Action::Start(id) => {
                let Some(assigned) = self.tasks.get(&id).cloned() else {
                    return;
                };
                self.in_flight.insert(id.clone());
                self.report(
                    &id,
                    status(
                        TaskState::Preparing,
                        "preparing",
                        String::new(),
                        None,
                        now_millis(),
                    ),
                );
                let spec = container_spec(&assigned, &self.cfg.node_id, &self.cfg.hostname);
                let engine = engine.clone();
                let reports = self.reports.clone();
                // The operation reports `starting` itself once the image is there.
                self.local.insert(
                    id.clone(),
                    status(
                        TaskState::Starting,
                        "starting",
                        String::new(),
                        None,
                        now_millis(),
                    ),
                );
                self.ops.spawn(async move {
                    let (result, failed) =
                        start(&engine, &*networking, &assigned, &spec, &reports).await;
                    Done::Started {
                        task: id,
                        result,
                        failed,
                    }
                });
            }
            Action::Attach {
                task,
                container,
                pid,
            } => {
                let Some(assigned) = self.tasks.get(&task).cloned() else {
                    return;
                };
                self.in_flight.insert(task.clone());
                self.ops.spawn(async move {
                    let error = networking
                        .attach(&assigned.task, &container, pid)
                        .await
                        .err();
                    Done::Attached { task, error }
                });
            }
            Action::Detach(task) => {
                self.in_flight.insert(task.clone());
                self.ops.spawn(async move {
                    let error = networking.detach(&task).await.err();
                    Done::Detached { task, error }
                });
            }
            Action::Stop { task, container } => {
                self.in_flight.insert(task.clone());
                let grace = self.tasks.get(&task).map_or(DEFAULT_STOP_GRACE, grace);
                let detach = self.attached.contains(&task);
                let engine = engine.clone();
                self.ops.spawn(async move {
                    if detach && let Err(e) = networking.detach(&task).await {
                        tracing::warn!(%task, "unplumbing: {e}");
                    }
                    let result = match engine.stop(&container, grace).await {
                        Ok(()) => Ok(engine
                            .inspect_state(&container)
                            .await
                            .ok()
                            .and_then(|s| s.exit_code)),
                        Err(e) => Err(e.to_string()),
                    };
                    Done::Stopped {
                        task,
                        container,
                        result,
                    }
                });
            }
            Action::Remove { task, container } => {
                self.in_flight.insert(task.clone());
                let detach = self.attached.contains(&task);
                let engine = engine.clone();
                self.ops.spawn(async move {
                    if detach && let Err(e) = networking.detach(&task).await {
                        tracing::warn!(%task, "unplumbing: {e}");
                    }
                    let error = engine.remove(&container).await.err().map(|e| e.to_string());
                    Done::Removed {
                        task,
                        container,
                        error,
                    }
                });
            }
        }
    }
}

/// Removes every container of the node's tasks (`swarm leave`), as far as dockerd answers.
pub async fn remove_node_containers(engine: &EngineHandle, node_id: &Id) {
    let engine = match engine.get().await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!("removing this node's task containers: {e}");
            return;
        }
    };
    let label = format!("{LABEL_NODE}={node_id}");
    match engine.list(&[&label]).await {
        Ok(list) => {
            for c in list {
                if let Err(e) = engine.remove(&c.id).await {
                    tracing::warn!("removing container {}: {e}", c.name);
                }
            }
        }
        Err(e) => tracing::warn!("removing this node's task containers: {e}"),
    }
}

/// Starts a task's container: `starting` once the image is there, then the container, then its
/// networks. `Err` is the task's end (`rejected`); `failed` a failure after the start.
async fn start(
    engine: &Engine,
    networking: &dyn super::networking::TaskNetworking,
    assigned: &AssignedTask,
    spec: &ContainerSpec,
    reports: &mpsc::UnboundedSender<Vec<TaskStatusUpdate>>,
) -> (Result<(Observed, bool), TaskStatus>, Option<TaskStatus>) {
    let task = &assigned.task;
    let rejected = |err: String| status(TaskState::Rejected, "preparing", err, None, now_millis());
    // No registry is reachable: an image missing here rejects the task rather than pulling.
    match engine.image_exists(&spec.image).await {
        Ok(true) => {}
        Ok(false) => {
            return (
                Err(rejected(format!("No such image: {}", spec.image))),
                None,
            );
        }
        Err(e) => return (Err(rejected(e.to_string())), None),
    }
    let _ = reports.send(vec![TaskStatusUpdate {
        task_id: task.id.clone(),
        status: status(
            TaskState::Starting,
            "starting",
            String::new(),
            None,
            now_millis(),
        ),
    }]);
    let running = match engine.run(spec).await {
        Ok(r) => r,
        Err(e) => {
            let starting =
                matches!(&e, EngineError::Docker { action, .. } if action.starts_with("starting"));
            let s = if starting {
                status(
                    TaskState::Failed,
                    "starting",
                    format!("starting container failed: {e}"),
                    None,
                    now_millis(),
                )
            } else {
                rejected(e.to_string())
            };
            return (Err(s), None);
        }
    };
    let mut observed = Observed {
        id: running.id.clone(),
        task_id: task.id.clone(),
        state: Seen::Running { pid: running.pid },
    };
    let Some(pid) = running.pid else {
        // It ended already: its exit code says how.
        let code = engine
            .inspect_state(&running.id)
            .await
            .ok()
            .and_then(|s| s.exit_code);
        observed.state = Seen::Exited { code };
        return (Ok((observed, false)), None);
    };
    match networking.attach(task, &running.id, pid).await {
        Ok(()) => (Ok((observed.clone(), true)), None),
        Err(e) => {
            let failed = status(
                TaskState::Failed,
                "failed",
                format!("task: plumbing its networks failed: {e}"),
                Some(&observed),
                now_millis(),
            );
            (Ok((observed, false)), Some(failed))
        }
    }
}

#[cfg(test)]
mod tests {
    use mesh_cluster::state::{EndpointSpec, Meta, Task, TaskSpec};

    use super::*;

    fn assigned(id: &str, status: TaskState, desired: TaskState) -> (Id, AssignedTask) {
        let mut spec = TaskSpec::default();
        spec.container.image = "meshd/busybox:latest".into();
        (
            Id::from(id),
            AssignedTask {
                task: Task {
                    id: Id::from(id),
                    meta: Meta::default(),
                    service_id: Id::from("svc"),
                    slot: 1,
                    node_id: Some(Id::from("n1")),
                    spec,
                    spec_version: 1,
                    desired_state: desired,
                    status: TaskStatus {
                        state: status,
                        ..TaskStatus::default()
                    },
                    networks: Vec::new(),
                    start_at: 0,
                    restart_history: Vec::new(),
                    endpoint: EndpointSpec::default(),
                },
                service_name: "web".into(),
            },
        )
    }

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

    #[test]
    fn assignments_and_containers_make_actions() {
        use TaskState::{Assigned, Complete, Failed, Ready, Running, Shutdown, Starting};
        let run = |pid| Seen::Running { pid: Some(pid) };
        // A task whose container runs was attached when it started.
        let case = |what, tasks, containers: Vec<(String, Observed)>, want: &[&str]| Case {
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
        };
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
            case(
                "a running task whose container vanished has failed",
                vec![assigned("a", Running, Running)],
                vec![],
                &["report a failed: task: its container was removed outside meshd"],
            ),
            case(
                "a complete task is not touched",
                vec![assigned("a", Complete, Shutdown)],
                vec![],
                &[],
            ),
        ];
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
        // Nothing is removed before the whole list arrived.
        let mut partial = case(
            "no removal before the full list",
            vec![],
            vec![container("c1", "gone", run(7))],
            &[],
        );
        partial.complete = false;
        cases.push(partial);
        // What the runner reported itself counts: no second report, no second start.
        let mut reported = case(
            "reported already",
            vec![assigned("a", Starting, Running)],
            vec![container("c1", "a", run(7))],
            &[],
        );
        reported.local = vec![("a", Running)];
        cases.push(reported);
        let mut failed = case(
            "failed locally, then asked to stop: nothing more",
            vec![assigned("a", Running, Shutdown)],
            vec![container("c1", "a", Seen::Exited { code: Some(1) })],
            &[],
        );
        failed.local = vec![("a", Failed)];
        cases.push(failed);
        let mut busy = case(
            "an operation in flight blocks the task",
            vec![assigned("a", Assigned, Running)],
            vec![],
            &[],
        );
        busy.busy = vec!["a"];
        cases.push(busy);

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
    fn containers_are_named_and_labelled_as_swarm_does() {
        let (_, mut t) = assigned(
            "ngbknb89dzyxdas81emw0jz63",
            TaskState::Assigned,
            TaskState::Running,
        );
        t.task.spec.container.args = vec!["httpd".into(), "-f".into()];
        t.task
            .spec
            .container
            .labels
            .insert("meshd.task".into(), "spoofed".into());
        t.task
            .spec
            .container
            .labels
            .insert("tier".into(), "web".into());
        t.task.spec.container.stop_grace_period_ms = 1500;
        t.task.spec.resources.limits.memory_bytes = 64 << 20;
        let spec = container_spec(&t, &Id::from("node1"), "mesh-n1");
        assert_eq!(spec.name, "web.1.ngbknb89dzyxdas81emw0jz63");
        assert_eq!(spec.labels["meshd.task"], "ngbknb89dzyxdas81emw0jz63");
        assert_eq!(spec.labels["meshd.service"], "svc");
        assert_eq!(spec.labels["meshd.node"], "node1");
        assert_eq!(spec.labels["meshd.hostname"], "mesh-n1");
        assert_eq!(spec.labels["tier"], "web");
        assert_eq!(spec.args, ["httpd", "-f"]);
        assert_eq!(spec.stop_grace, Duration::from_millis(1500));
        assert_eq!(spec.memory_bytes, 64 << 20);
        spec.validate().unwrap();
    }
}
