//! Tasks: Swarm's task states and where a task stands on its node and networks.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::ids::Id;
use crate::state::{EndpointSpec, Meta, Millis, TaskSpec};

/// Swarm's task states, in the order a task goes through them.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    #[default]
    New,
    Pending,
    Assigned,
    Accepted,
    Preparing,
    Ready,
    Starting,
    Running,
    Complete,
    Shutdown,
    Failed,
    Rejected,
    Remove,
    Orphaned,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Pending => "pending",
            Self::Assigned => "assigned",
            Self::Accepted => "accepted",
            Self::Preparing => "preparing",
            Self::Ready => "ready",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Complete => "complete",
            Self::Shutdown => "shutdown",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
            Self::Remove => "remove",
            Self::Orphaned => "orphaned",
        }
    }
    /// A task in a terminal state never runs again (a new task replaces it).
    pub fn is_terminal(self) -> bool {
        self > Self::Running
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub timestamp: Millis,
    pub state: TaskState,
    pub message: String,
    /// Why the task failed or is pending (shown in `service ps`'s ERROR column).
    pub err: String,
    pub container_id: String,
    pub pid: u32,
    pub exit_code: Option<i64>,
}

/// A task's place on one network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskNetwork {
    pub network_id: Id,
    pub addr: Ipv4Addr,
    pub mac: [u8; 6],
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: Id,
    pub meta: Meta,
    pub service_id: Id,
    /// Replicated services: the replica number (1-based). Global: 0.
    pub slot: u64,
    /// Set by the scheduler (replicated) or at creation (global).
    pub node_id: Option<Id>,
    pub spec: TaskSpec,
    /// The service's `meta.version` the spec was taken from.
    pub spec_version: u64,
    pub desired_state: TaskState,
    pub status: TaskStatus,
    pub networks: Vec<TaskNetwork>,
    /// A task made with desired state `Ready` (a restart replacement or a stop-first update) is
    /// started (desired `Running`) by the orchestrator once `start_at` has passed and the slot's
    /// previous task has stopped.
    #[serde(default)]
    pub start_at: Millis,
    /// When the restart policy replaced earlier tasks of this slot with the same spec, carried
    /// from each task to its replacement (for `max_attempts` within `window`).
    #[serde(default)]
    pub restart_history: Vec<Millis>,
    /// The service's endpoint spec when the task was made (its published ports, for host-mode
    /// bindings); a change of the service's ports replaces the task, as a spec change does.
    #[serde(default)]
    pub endpoint: EndpointSpec,
}
