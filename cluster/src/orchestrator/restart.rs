//! The restart policy: a task that ended is replaced by a new task in its slot (never restarted
//! in place), after `delay`, if the condition says so and fewer than `max_attempts` restarts
//! happened within `window`. The history of restarts travels from each task to its replacement
//! (`Task::restart_history`), so it survives a change of leader.

use super::{SlotKey, Work, runnable};
use crate::Id;
use crate::state::{Millis, RestartCondition, Task, TaskState};

/// The replacement's restart history if the policy restarts `t` at `now`, else `None`.
pub(crate) fn restart_history(t: &Task, same_spec: bool, now: Millis) -> Option<Vec<Millis>> {
    let policy = &t.spec.restart;
    let restart = match policy.condition {
        RestartCondition::Any => true,
        RestartCondition::OnFailure => t.status.state != TaskState::Complete,
        RestartCondition::None => false,
    };
    if !restart {
        return None;
    }
    if policy.max_attempts == 0 {
        return Some(Vec::new());
    }
    // Past failures do not count against a new spec.
    let mut history: Vec<Millis> = if same_spec {
        t.restart_history
            .iter()
            .copied()
            .filter(|at| policy.window_ms == 0 || now.saturating_sub(*at) < policy.window_ms)
            .collect()
    } else {
        Vec::new()
    };
    if history.len() as u64 >= policy.max_attempts {
        return None;
    }
    history.push(now);
    Some(history)
}

/// Tasks that ended while meant to run: asked to shut down (so they stay as history), and
/// replaced per the restart policy. A task orphaned by its node is moved, not restarted.
pub(super) fn handle_ended(w: &mut Work, ids: &mut dyn FnMut() -> Id) {
    for i in 0..w.tasks.len() {
        let t = &w.tasks[i];
        if !runnable(t) || !t.status.state.is_terminal() {
            continue;
        }
        let slot = w.slot_of(t);
        let orphaned = t.status.state == TaskState::Orphaned;
        let same_spec = !w.is_dirty(t);
        let history = restart_history(t, same_spec, w.now);
        let delay = t.spec.restart.delay_ms;
        w.set_desired(i, TaskState::Shutdown);
        if !w.slot_kept(&slot) {
            continue;
        }
        if orphaned {
            super::replicated::relocate(w, &slot, ids);
        } else if let Some(history) = history {
            let r = w.create(&slot, TaskState::Ready, ids);
            let replacement = w.tasks[r].to_mut();
            replacement.start_at = w.now + delay;
            replacement.restart_history = history;
        }
    }
}

/// Starts (desired `running`) the tasks made `ready` whose time has come and whose slot has no
/// task still stopping.
pub(super) fn start_ready(w: &mut Work) {
    let slots = w.slots();
    let mut start = Vec::new();
    let mut wakes = Vec::new();
    for (i, t) in w.tasks.iter().enumerate() {
        if t.desired_state != TaskState::Ready || t.status.state.is_terminal() {
            continue;
        }
        if t.start_at > w.now {
            wakes.push(t.start_at);
            continue;
        }
        let slot: SlotKey = w.slot_of(t);
        let waiting = slots[&slot]
            .iter()
            .any(|j| *j != i && w.is_stopping(&w.tasks[*j]));
        if !waiting {
            start.push(i);
        }
    }
    for at in wakes {
        w.wake(at);
    }
    for i in start {
        w.tasks[i].to_mut().desired_state = TaskState::Running;
        w.changed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{RestartPolicy, TaskSpec};

    fn failed(policy: RestartPolicy, history: Vec<Millis>, state: TaskState) -> Task {
        let mut t: Task = serde_json::from_value(serde_json::json!({
            "id": "t", "meta": {"version": 0, "created_at": 0, "updated_at": 0},
            "service_id": "s", "slot": 1, "node_id": null,
            "spec": TaskSpec::default(), "spec_version": 0, "desired_state": "running",
            "status": {"timestamp": 0, "state": "failed", "message": "", "err": "",
                       "container_id": "", "pid": 0, "exit_code": 1},
            "networks": []
        }))
        .unwrap();
        t.spec.restart = policy;
        t.restart_history = history;
        t.status.state = state;
        t
    }

    /// What, the policy, the history so far, how the task ended, same spec, the new history.
    type Row = (
        &'static str,
        RestartPolicy,
        Vec<Millis>,
        TaskState,
        bool,
        Option<Vec<Millis>>,
    );

    #[test]
    fn conditions_attempts_and_windows() {
        use RestartCondition::{Any, None, OnFailure};
        use TaskState::{Complete, Failed};
        let p = |condition, max_attempts, window_ms| RestartPolicy {
            condition,
            delay_ms: 0,
            max_attempts,
            window_ms,
        };
        let rows: &[Row] = &[
            (
                "any restarts a failure",
                p(Any, 0, 0),
                vec![],
                Failed,
                true,
                Some(vec![]),
            ),
            (
                "any restarts an exit 0",
                p(Any, 0, 0),
                vec![],
                Complete,
                true,
                Some(vec![]),
            ),
            (
                "on-failure skips exit 0",
                p(OnFailure, 0, 0),
                vec![],
                Complete,
                true,
                Option::None,
            ),
            (
                "on-failure restarts a failure",
                p(OnFailure, 0, 0),
                vec![],
                Failed,
                true,
                Some(vec![]),
            ),
            (
                "none never",
                p(None, 0, 0),
                vec![],
                Failed,
                true,
                Option::None,
            ),
            (
                "first of three",
                p(Any, 3, 0),
                vec![],
                Failed,
                true,
                Some(vec![100]),
            ),
            (
                "third of three",
                p(Any, 3, 0),
                vec![10, 20],
                Failed,
                true,
                Some(vec![10, 20, 100]),
            ),
            (
                "no fourth",
                p(Any, 3, 0),
                vec![10, 20, 30],
                Failed,
                true,
                Option::None,
            ),
            (
                "old ones leave the window",
                p(Any, 3, 50),
                vec![10, 20, 60],
                Failed,
                true,
                Some(vec![60, 100]),
            ),
            (
                "a new spec starts afresh",
                p(Any, 3, 0),
                vec![10, 20, 30],
                Failed,
                false,
                Some(vec![100]),
            ),
        ];
        for (what, policy, history, state, same, want) in rows {
            let t = failed(policy.clone(), history.clone(), *state);
            assert_eq!(restart_history(&t, *same, 100), *want, "{what}");
        }
    }
}
