//! What the runner sees of the node's containers: a full listing (at the start, after a lost
//! event stream, and every [`RESYNC_EVERY`](super::RESYNC_EVERY)) and Docker's events between.

use std::collections::BTreeMap;
use std::time::Duration;

use mesh_cluster::Id;
use mesh_engine::{
    ContainerEventKind, ContainerStatus, Engine, EngineError, LABEL_NODE, LABEL_TASK,
};
use tokio::time::Instant;

use super::decide::{Observed, Seen};
use super::runner::Runner;

impl Runner {
    /// Lists this node's containers and takes that as the truth.
    pub(super) async fn resync(&mut self, engine: &Engine) -> Result<(), EngineError> {
        let label = format!("{LABEL_NODE}={}", self.cfg.node_id);
        let rows = engine.list(&[&label]).await?;
        let mut containers = BTreeMap::new();
        for row in rows {
            let Some(task) = row.labels.get(LABEL_TASK) else {
                continue;
            };
            let known_pid = match self.containers.get(&row.id).map(|c| c.state) {
                Some(Seen::Running { pid, .. }) => pid,
                _ => None,
            };
            let state = match row.state {
                ContainerStatus::Created => Seen::Created,
                ContainerStatus::Running => {
                    let pid = match known_pid {
                        Some(p) => Some(p),
                        None => engine.inspect_state(&row.id).await.ok().and_then(|s| s.pid),
                    };
                    Seen::Running {
                        pid,
                        health: row.health,
                    }
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

    pub(super) fn on_event(&mut self, id: String, kind: ContainerEventKind) {
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
            ContainerEventKind::Health(verdict) => {
                if let Some(c) = self.containers.get_mut(&id) {
                    if let Seen::Running { health, .. } = &mut c.state {
                        *health = Some(verdict);
                    }
                } else {
                    // Maybe ours, with its start still in flight (as for `Die` above).
                    let now = Instant::now();
                    self.verdicts
                        .retain(|_, (_, at)| now.duration_since(*at) < Duration::from_mins(1));
                    self.verdicts.insert(id, (verdict, now));
                }
            }
            ContainerEventKind::Start | ContainerEventKind::Oom => {}
        }
    }
}
