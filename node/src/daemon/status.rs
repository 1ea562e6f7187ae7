//! `Request::Status` (`meshctl status`, and meshd's metrics): the node's own parts, gathered
//! from what each already keeps.

use std::time::Duration;

use mesh_api::status::NodeStatus;
use mesh_manager::Manager;

use super::Daemon;

/// A ping of the engine that takes longer counts as unreachable (status must answer quickly).
const ENGINE_TIMEOUT: Duration = Duration::from_secs(2);

impl Daemon {
    pub(super) async fn status(&self) -> NodeStatus {
        let mut out = NodeStatus {
            hostname: self.cfg.hostname.clone(),
            engine_error: self.engine_error().await,
            ..NodeStatus::default()
        };
        if let Some(id) = self.locked() {
            out.node_id = Some(id.node_id.clone());
            out.role = Some(id.role);
            out.addr = Some(id.advertise_addr);
            out.locked = true;
        }
        if let Some(m) = self.member() {
            let id = m.identity();
            out.node_id = Some(id.node_id.clone());
            out.role = Some(id.role);
            out.addr = Some(id.advertise_addr);
            out.raft = m.manager.as_ref().map(Manager::raft_status);
            out.tasks = m
                .manager
                .as_ref()
                .map(Manager::tasks_by_state)
                .unwrap_or_default();
            self.cfg.task_networking.0.status(&mut out);
        }
        out
    }

    async fn engine_error(&self) -> Option<String> {
        let ping = async {
            let engine = self.cfg.engine.get().await?;
            engine.version().await
        };
        match tokio::time::timeout(ENGINE_TIMEOUT, ping).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => {
                // A restarted engine needs a new connection.
                self.cfg.engine.reset().await;
                Some(e.to_string())
            }
            Err(_) => Some(format!(
                "no answer from {} within {ENGINE_TIMEOUT:?}",
                self.cfg.engine.socket()
            )),
        }
    }
}
