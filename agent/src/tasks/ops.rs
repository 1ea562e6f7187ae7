//! The operations the runner carries [`Action`]s out with (one per task at a time, on the
//! engine and the node's networking), and what their results do to the runner's state.

use std::sync::Arc;
use std::time::Duration;

use mesh_api::{AssignedTask, TaskStatusUpdate, now_millis};
use mesh_cluster::Id;
use mesh_cluster::state::{TaskState, TaskStatus};
use mesh_engine::{ContainerSpec, DEFAULT_STOP_GRACE, Engine, EngineError};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::RETRY_AFTER;
use super::decide::{Action, Observed, Seen, serves};
use super::runner::Runner;
use super::spec::{container_spec, grace};
use super::status::status;
use crate::networking::TaskNetworking;

/// What an operation reports back to the runner.
pub(super) enum Done {
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

impl Runner {
    pub(super) fn act(&mut self, engine: &Engine, action: Action) {
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
                let files = self.cfg.files.clone();
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
                        start(&engine, &*networking, &assigned, spec, &files, &reports).await;
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
                // An adopted container whose health check has not passed stays out of the mesh.
                if let Some(Seen::Running { health, .. }) =
                    self.containers.get(&container).map(|c| c.state)
                    && !serves(health)
                {
                    networking.serving(&task, false);
                    self.serving.insert(task.clone(), false);
                }
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
                self.ops
                    .spawn(stop(engine, networking, task, container, grace, detach));
            }
            Action::Remove { task, container } => {
                self.in_flight.insert(task.clone());
                let detach = self.attached.contains(&task);
                let engine = engine.clone();
                let files = self.cfg.files.clone();
                self.ops.spawn(async move {
                    if detach && let Err(e) = networking.detach(&task).await {
                        tracing::warn!(%task, "unplumbing: {e}");
                    }
                    let error = engine.remove(&container).await.err().map(|e| e.to_string());
                    if error.is_none() {
                        files.remove(task.as_str());
                    }
                    Done::Removed {
                        task,
                        container,
                        error,
                    }
                });
            }
        }
    }

    pub(super) fn on_done(&mut self, done: Done) {
        match done {
            Done::Started {
                task,
                result,
                failed,
            } => {
                self.in_flight.remove(&task);
                match result {
                    Ok((mut observed, attached)) => {
                        if let Some((verdict, _)) = self.verdicts.remove(&observed.id)
                            && let Seen::Running { health, .. } = &mut observed.state
                        {
                            *health = Some(verdict);
                        }
                        if let Some((code, _)) = self.exits.remove(&observed.id) {
                            observed.state = Seen::Exited { code };
                        }
                        if attached {
                            self.attached.insert(task.clone());
                            if let Seen::Running { health, .. } = observed.state {
                                self.serving.insert(task.clone(), serves(health));
                            }
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
}

/// Stops a task: no new flows first; the container stops with its interfaces, so that the flows
/// it has end as it ends them (SIGTERM), not cut by a deleted veth; then its interfaces go.
async fn stop(
    engine: Engine,
    networking: Arc<dyn TaskNetworking>,
    task: Id,
    container: String,
    grace: Duration,
    detach: bool,
) -> Done {
    if detach {
        networking.withdraw(&task).await;
    }
    let result = match engine.stop(&container, grace).await {
        Ok(()) => Ok(engine
            .inspect_state(&container)
            .await
            .ok()
            .and_then(|s| s.exit_code)),
        Err(e) => Err(e.to_string()),
    };
    if detach && let Err(e) = networking.detach(&task).await {
        tracing::warn!(%task, "unplumbing: {e}");
    }
    Done::Stopped {
        task,
        container,
        result,
    }
}

/// Starts a task's container: the image (pulled in `preparing` if missing), `starting`, then
/// the container, then its networks. `Err` is the task's end (`rejected`); `failed` a failure after the start.
async fn start(
    engine: &Engine,
    networking: &dyn TaskNetworking,
    assigned: &AssignedTask,
    mut spec: ContainerSpec,
    files: &super::files::TaskFiles,
    reports: &mpsc::UnboundedSender<Vec<TaskStatusUpdate>>,
) -> (Result<(Observed, bool), TaskStatus>, Option<TaskStatus>) {
    let task = &assigned.task;
    let rejected = |err: String| status(TaskState::Rejected, "preparing", err, None, now_millis());
    // Secrets and configs first: a task that cannot have them does not start without them.
    let c = &task.spec.container;
    match files.write(task.id.as_str(), (&c.secrets, &c.configs), &assigned.files) {
        Ok(binds) => spec.binds.extend(binds),
        Err(err) => return (Err(rejected(err)), None),
    }
    let spec = &spec;
    // In `preparing`, as Swarm: the image is pulled when missing, with a few tries.
    let login = assigned
        .registry_auth
        .as_ref()
        .map(super::pull::registry_login);
    if let Err(err) = super::pull::ensure_image(engine, &spec.image, login.as_ref()).await {
        return (Err(rejected(err)), None);
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
        state: Seen::Running {
            pid: running.pid,
            health: running.health,
        },
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
    // A container with a health check joins the mesh only once healthy: held back before its
    // interfaces appear, so no flow reaches it meanwhile.
    if !serves(running.health) {
        networking.serving(&task.id, false);
    }
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
