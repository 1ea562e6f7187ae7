//! The task states the runner reports, made from what it saw of the task's container.

use mesh_cluster::state::{Millis, TaskState, TaskStatus};

use super::decide::{Observed, Seen};

/// A task whose health check failed: moby's `ErrContainerUnhealthy`, word for word.
pub(super) const UNHEALTHY: &str = "dockerexec: unhealthy container";

/// A task's status at `now`, with what `c` tells of its container.
pub(super) fn status(
    state: TaskState,
    message: &str,
    err: String,
    c: Option<&Observed>,
    now: Millis,
) -> TaskStatus {
    let (pid, exit_code) = match c.map(|c| c.state) {
        Some(Seen::Running { pid, .. }) => (pid.unwrap_or(0), None),
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
pub(super) fn ended(c: &Observed, code: Option<i64>, now: Millis) -> TaskStatus {
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
