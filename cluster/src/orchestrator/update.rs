//! Rolling updates and rollbacks, as Swarm's updater runs them but without its goroutines: every
//! fact the update needs is read back from the tasks. A slot is dirty when its task was made from
//! another spec (or other ports) than the service's. At most `parallelism` slots are in flight: a
//! slot is in flight from the moment its new task is made until it has been running for `delay`.
//! Stop-first shuts the old task down and starts the new one once the old has stopped;
//! start-first starts the new one and shuts the old one down once the new one runs. An updated
//! task that fails counts against `max_failure_ratio`; past it, `failure_action` pauses, rolls
//! back (to `previous_spec`, with the rollback config) or continues. The update completes when
//! every slot runs the new spec and the monitor period has passed since the last one started.

use std::collections::HashSet;

use super::{CONSTRAINT_REJECTED, SlotKey, Work, ended_on_its_own, newest_first, runnable};
use crate::Id;
use crate::spec::{matches_all, parse_constraints};
use crate::state::{
    FailureAction, Node, Service, Task, TaskSpec, TaskState, UpdateConfig, UpdateOrder,
    UpdateState, UpdateStatus,
};

/// Was `t` made from something other than the service's current spec and ports? A change of
/// placement alone leaves a task whose node still meets the constraints in place, as Swarm does.
pub fn is_task_dirty(service: &Service, t: &Task, node: Option<&Node>) -> bool {
    let s: &TaskSpec = &service.spec.task;
    if t.endpoint != service.spec.endpoint {
        return true;
    }
    if t.spec == *s {
        return false;
    }
    let placement_only = t.spec.container == s.container
        && t.spec.resources == s.resources
        && t.spec.restart == s.restart
        && t.spec.networks == s.networks
        && t.spec.force_update == s.force_update;
    let still_fits = node.is_some_and(|n| {
        parse_constraints(&s.placement.constraints).is_ok_and(|c| matches_all(&c, n))
    });
    !(placement_only && still_fits)
}

/// A slot waiting for its update: the runnable tasks to replace (none for a slot whose last task
/// ended and was not restarted).
struct Candidate {
    slot: SlotKey,
    old: Vec<usize>,
}

pub(super) fn advance(w: &mut Work, ids: &mut dyn FnMut() -> Id) {
    let rolling_back = w.rolling_back();
    let cfg: UpdateConfig = if rolling_back {
        w.service.spec.rollback.clone()
    } else {
        w.service.spec.update.clone()
    };
    let live = w.live_slots();
    let (candidates, converging) = find_candidates(w, &live);
    start_update(w, &candidates);
    let Some(status) = w.service.update_status.clone() else {
        return;
    };
    if !matches!(
        status.state,
        UpdateState::Updating | UpdateState::RollbackStarted
    ) {
        return;
    }
    if check_failures(w, &status, &cfg, live.len()) {
        return;
    }

    let flight = in_flight(w, &live, &status, &cfg);
    let room = if cfg.parallelism == 0 {
        usize::MAX
    } else {
        (cfg.parallelism as usize).saturating_sub(flight.count)
    };
    let finished = candidates.is_empty() && !converging;
    for c in candidates.into_iter().take(room) {
        match cfg.order {
            UpdateOrder::StopFirst if !c.old.is_empty() => {
                for i in c.old {
                    w.set_desired(i, TaskState::Shutdown);
                }
                w.create(&c.slot, TaskState::Ready, ids);
            }
            _ => {
                w.create(&c.slot, TaskState::Running, ids);
            }
        }
    }
    if finished && flight.all_running {
        complete(w, &cfg, rolling_back, flight.last_started);
    }
}

/// The live slots still to update, and whether a start-first slot is still converging (its new
/// task not yet running). A start-first slot whose new task runs has its old tasks shut down.
fn find_candidates(w: &mut Work, live: &[SlotKey]) -> (Vec<Candidate>, bool) {
    let slots = w.slots();
    let mut candidates = Vec::new();
    let mut converging = false;
    for slot in live {
        let members = slots.get(slot).map_or(&[][..], Vec::as_slice);
        let (clean, dirty): (Vec<usize>, Vec<usize>) = members
            .iter()
            .copied()
            .filter(|i| runnable(&w.tasks[*i]))
            .partition(|i| !w.is_dirty(&w.tasks[*i]));
        if !clean.is_empty() && !dirty.is_empty() {
            // Start-first: the old task goes once the new one runs.
            let started = clean.iter().any(|i| {
                let t = &w.tasks[*i];
                t.desired_state == TaskState::Running && t.status.state == TaskState::Running
            });
            if started {
                for i in dirty {
                    w.set_desired(i, TaskState::Shutdown);
                }
            } else {
                converging = true;
            }
        } else if !dirty.is_empty() {
            candidates.push(Candidate {
                slot: slot.clone(),
                old: dirty,
            });
        } else if clean.is_empty() && w.is_dead(members) {
            let newest = members
                .iter()
                .map(|i| &w.tasks[*i])
                .min_by(|a, b| newest_first(a, b));
            if newest.is_some_and(|t| w.is_dirty(t)) {
                candidates.push(Candidate {
                    slot: slot.clone(),
                    old: Vec::new(),
                });
            }
        }
    }
    (candidates, converging)
}

/// Marks the service updating when there is something to update and no update is under way.
fn start_update(w: &mut Work, candidates: &[Candidate]) {
    let state = w.service.update_status.as_ref().map(|u| u.state);
    if !candidates.is_empty()
        && matches!(
            state,
            None | Some(UpdateState::Completed | UpdateState::RollbackCompleted)
        )
    {
        w.service.update_status = Some(UpdateStatus {
            state: UpdateState::Updating,
            started_at: w.now,
            completed_at: None,
            message: "update in progress".into(),
        });
        w.changed = true;
    }
}

/// Where the update's new tasks stand.
struct Flight {
    /// Slots in flight: new tasks of this update not yet running, or running for less than delay.
    count: usize,
    /// When the newest of them started running.
    last_started: Option<u64>,
    /// Every runnable clean task in a live slot runs.
    all_running: bool,
}

/// Counts the slots in flight; wakes the orchestrator when each one's delay ends.
fn in_flight(w: &mut Work, live: &[SlotKey], status: &UpdateStatus, cfg: &UpdateConfig) -> Flight {
    let live_set: HashSet<&SlotKey> = live.iter().collect();
    let mut flight = Flight {
        count: 0,
        last_started: None,
        all_running: true,
    };
    let mut wake = Vec::new();
    for t in &w.tasks {
        if !runnable(t) || !live_set.contains(&w.slot_of(t)) || w.is_dirty(t) {
            continue;
        }
        let running = t.status.state == TaskState::Running;
        flight.all_running &= running;
        if t.meta.created_at < status.started_at {
            continue;
        }
        if running {
            flight.last_started = Some(
                flight
                    .last_started
                    .map_or(t.status.timestamp, |l| l.max(t.status.timestamp)),
            );
            let free_at = t.status.timestamp + cfg.delay_ms;
            if w.now < free_at {
                flight.count += 1;
                wake.push(free_at);
            }
        } else {
            flight.count += 1;
        }
    }
    for at in wake {
        w.wake(at);
    }
    flight
}

/// Every slot runs the new spec: the update (or rollback) completes once the monitor period has
/// passed since the last one started.
fn complete(w: &mut Work, cfg: &UpdateConfig, rolling_back: bool, last_started: Option<u64>) {
    // Swarm watches at least a second past the delay, so that the last delay is monitored.
    let monitor = if cfg.delay_ms > 0 && cfg.delay_ms >= cfg.monitor_ms {
        cfg.delay_ms + 1_000
    } else {
        cfg.monitor_ms
    };
    let done_at = last_started.map_or(w.now, |l| l + monitor);
    if w.now >= done_at {
        let (state, message) = if rolling_back {
            (UpdateState::RollbackCompleted, "rollback completed")
        } else {
            (UpdateState::Completed, "update completed")
        };
        w.set_update_state(state, message.into());
    } else {
        w.wake(done_at);
    }
}

/// Applies the failure action once updated tasks failed past the allowed ratio; true when the
/// update stopped (paused or turned into a rollback).
fn check_failures(w: &mut Work, status: &UpdateStatus, cfg: &UpdateConfig, slots: usize) -> bool {
    if cfg.failure_action == FailureAction::Continue {
        return false;
    }
    let failed: Vec<&Task> = w
        .tasks
        .iter()
        .map(AsRef::as_ref)
        .filter(|t| {
            t.meta.created_at >= status.started_at
                && ended_on_its_own(t)
                && t.status.message != CONSTRAINT_REJECTED
                && !w.is_dirty(t)
        })
        .collect();
    let Some(newest) = failed.iter().min_by(|a, b| newest_first(a, b)) else {
        return false;
    };
    #[expect(clippy::cast_precision_loss, reason = "task counts are small")]
    let ratio = failed.len() as f64 / slots.max(1) as f64;
    if ratio <= f64::from(cfg.max_failure_ratio) {
        return false;
    }
    let task = newest.id.clone();
    let rolling_back = w.rolling_back();
    if rolling_back {
        w.set_update_state(
            UpdateState::RollbackPaused,
            format!("rollback paused due to failure or early termination of task {task}"),
        );
    } else if cfg.failure_action == FailureAction::Rollback && w.service.previous_spec.is_some() {
        if let Some(previous) = w.service.previous_spec.take() {
            w.service.spec = previous;
        }
        w.set_update_state(
            UpdateState::RollbackStarted,
            format!("update rolled back due to failure or early termination of task {task}"),
        );
    } else {
        let mut message =
            format!("update paused due to failure or early termination of task {task}");
        if cfg.failure_action == FailureAction::Rollback {
            message.push_str(" (there is no previous spec to roll back to)");
        }
        w.set_update_state(UpdateState::Paused, message);
    }
    true
}
