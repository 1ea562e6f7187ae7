//! The runner's loop: one engine connection at a time, assignments and container events in,
//! [`decide`]'s actions out as operations, task states up to the leader.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use mesh_api::{AssignedTask, Assignments, TaskStatusUpdate, now_millis};
use mesh_cluster::Id;
use mesh_cluster::state::TaskStatus;
use mesh_engine::{Engine, EngineHandle, HealthStatus};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::decide::{Facts, Observed, Seen, decide, serves};
use super::ops::Done;
use super::{RESYNC_EVERY, RETRY_AFTER};
use crate::networking::Networking;

/// Who the runner runs for.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    pub node_id: Id,
    pub hostname: String,
    pub networking: Networking,
    /// The node's engine, where its tasks run.
    pub engine: EngineHandle,
    /// Where the tasks' secrets and configs are written.
    pub files: super::files::TaskFiles,
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
        // Unbounded, and safe so: assignments come only from the leader (a manager certificate
        // of this swarm, over a session whose frames are bounded) and the runner takes each in
        // as it comes; reports are this node's own task states, a few per task change.
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
            verdicts: HashMap::new(),
            serving: HashMap::new(),
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

pub(super) struct Runner {
    pub(super) cfg: RunnerConfig,
    pub(super) tasks: BTreeMap<Id, AssignedTask>,
    pub(super) complete: bool,
    pub(super) containers: BTreeMap<String, Observed>,
    pub(super) local: HashMap<Id, TaskStatus>,
    pub(super) in_flight: HashSet<Id>,
    pub(super) retry_at: HashMap<Id, Instant>,
    pub(super) attached: HashSet<Id>,
    /// The networking was told that every kept container is attached.
    settled: bool,
    /// Containers that died before the runner knew them (a start still in flight), by id.
    pub(super) exits: HashMap<String, (Option<i64>, Instant)>,
    /// Health verdicts of containers the runner did not know yet (a start in flight), by id.
    pub(super) verdicts: HashMap<String, (HealthStatus, Instant)>,
    /// What the networking was last told of each attached task: may it take traffic.
    pub(super) serving: HashMap<Id, bool>,
    pub(super) ops: JoinSet<Done>,
    pub(super) reports: mpsc::UnboundedSender<Vec<TaskStatusUpdate>>,
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

    /// Records a state of `task` and queues it for the leader.
    pub(super) fn report(&mut self, task: &Id, status: TaskStatus) {
        tracing::debug!(%task, state = status.state.as_str(), err = %status.err, "task state");
        self.local.insert(task.clone(), status.clone());
        self.pending.push(TaskStatusUpdate {
            task_id: task.clone(),
            status,
        });
    }

    /// Tells the networking which attached tasks may take traffic: those whose container runs
    /// and has no health check or a passed one. A task in `starting` (its check not passed yet)
    /// or `unhealthy` stays plumbed but out of the mesh, DNS and gossip.
    fn sync_serving(&mut self) {
        let mut want: HashMap<Id, bool> = HashMap::new();
        for c in self.containers.values() {
            if let Seen::Running { health, .. } = c.state
                && self.attached.contains(&c.task_id)
            {
                // A task that ended (failed as unhealthy) never serves again, whatever its
                // container's health says while it stops. One being stopped is not taken out
                // here: its stop withdraws it first, so that it drains (no new flows, its own
                // go on) rather than having its flows cut at once.
                let ended = self
                    .local
                    .get(&c.task_id)
                    .is_some_and(|s| s.state.is_terminal());
                want.insert(c.task_id.clone(), serves(health) && !ended);
            }
        }
        self.serving.retain(|id, _| self.attached.contains(id));
        for (id, serving) in want {
            if self.serving.get(&id) != Some(&serving) {
                self.cfg.networking.0.serving(&id, serving);
                self.serving.insert(id, serving);
            }
        }
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
        self.sync_serving();
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
}
