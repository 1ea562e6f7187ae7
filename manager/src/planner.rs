//! The leader's control loop: orchestrator, allocator and scheduler together
//! ([`mesh_cluster::plan::plan`]), run on every applied change (debounced) and whenever the plan
//! asked to be woken (a restart delay, an update's delay or monitor period ending). Its
//! transaction is proposed as is; on a conflict (a heartbeat or an agent's report wrote an
//! object meanwhile) the loop simply plans again on the newer state.
//!
//! `meshd` attaches it to every manager with [`hook`]; it runs only while that manager leads.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mesh_cluster::Id;
use mesh_cluster::plan::plan;
use mesh_cluster::state::{ClusterState, TaskState, TxError};
use tokio::time::Instant;

use mesh_api::now_millis;

use crate::manager::{Manager, ManagerHook, ProposeError};

/// Changes applied within this long are planned for together.
const DEBOUNCE: Duration = Duration::from_millis(25);
/// Plan at least this often even if nothing changes (a safety net; `wake_at` is the real clock).
const IDLE_PLAN: Duration = Duration::from_secs(5);
/// The same allocation or scheduling complaint is logged at most this often.
const COMPLAINT_EVERY: Duration = Duration::from_mins(1);

/// The hook `meshd` gives the daemon: the control loop on every manager, active while it leads.
pub fn hook() -> ManagerHook {
    ManagerHook(Arc::new(|m: &Manager| {
        m.spawn_while_leader("orchestrator, allocator and scheduler", run);
    }))
}

/// Logs each distinct message at most once per period.
#[derive(Debug)]
pub(crate) struct Complaints {
    every: Duration,
    last: HashMap<String, Instant>,
}

impl Complaints {
    pub(crate) fn new(every: Duration) -> Self {
        Self {
            every,
            last: HashMap::new(),
        }
    }

    /// Should `message` be logged now?
    pub(crate) fn fresh(&mut self, message: &str, now: Instant) -> bool {
        if self.last.len() > 1000 {
            let every = self.every;
            self.last.retain(|_, at| now.duration_since(*at) < every);
        }
        match self.last.get(message) {
            Some(at) if now.duration_since(*at) < self.every => false,
            _ => {
                self.last.insert(message.to_owned(), now);
                true
            }
        }
    }
}

/// Why tasks wait for a node, per service (`web: no suitable node (...)`).
fn pending_reasons(state: &ClusterState) -> Vec<String> {
    let mut out: Vec<String> = state
        .tasks
        .values()
        .filter(|t| {
            t.status.state == TaskState::Pending
                && t.desired_state <= TaskState::Running
                && !t.status.err.is_empty()
        })
        .filter_map(|t| {
            let name = &state.services.get(&t.service_id)?.spec.name;
            Some(format!("service {name}: tasks wait: {}", t.status.err))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The loop itself (see the module's description).
pub async fn run(m: Manager) {
    let mut applied = m.watch();
    let mut complaints = Complaints::new(COMPLAINT_EVERY);
    let mut ids = || Id::random();
    loop {
        applied.borrow_and_update();
        let state = m.state();
        let mut wake_at = None;
        if state.cluster.is_some() {
            let now = now_millis();
            let p = plan(&state, now, &mut ids);
            wake_at = p.wake_at;
            let at = Instant::now();
            for e in &p.errors {
                let e = e.to_string();
                if complaints.fresh(&e, at) {
                    tracing::warn!("allocator: {e}");
                }
            }
            for reason in pending_reasons(&state) {
                if complaints.fresh(&reason, at) {
                    tracing::info!("scheduler: {reason}");
                }
            }
            if !p.tx.ops.is_empty() {
                let ops = p.tx.ops.len();
                match m.propose(p.tx).await {
                    // Plan again on the state this produced (it should change nothing more).
                    Ok(_) => {
                        tracing::debug!(ops, "control loop wrote the plan");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    Err(ProposeError::Tx(TxError::Conflict { .. })) => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    Err(e) => {
                        let e = format!("proposing the control loop's plan: {e}");
                        if complaints.fresh(&e, Instant::now()) {
                            tracing::warn!("{e}");
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
            }
        }
        let idle = Instant::now() + IDLE_PLAN;
        let wake = wake_at.map_or(idle, |w| {
            let wait = Duration::from_millis(w.saturating_sub(now_millis()));
            idle.min(Instant::now() + wait)
        });
        tokio::select! {
            changed = applied.changed() => {
                if changed.is_err() {
                    return;
                }
                tokio::time::sleep(DEBOUNCE).await;
            }
            () = tokio::time::sleep_until(wake) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complaints_repeat_only_after_their_period() {
        let mut c = Complaints::new(Duration::from_mins(1));
        let t0 = Instant::now();
        assert!(c.fresh("no free port", t0));
        assert!(!c.fresh("no free port", t0 + Duration::from_secs(59)));
        assert!(c.fresh("another", t0 + Duration::from_secs(1)));
        assert!(c.fresh("no free port", t0 + Duration::from_secs(61)));
    }
}
