//! The task runner: turns the node's [`Assignments`](mesh_api::Assignments) into containers
//! through `mesh-engine`, and what happens to those containers into task states for the leader.
//!
//! A pure core, [`decide`](decide::decide), looks at the assignments, the containers the node
//! has (found by their `meshd.node` label, kept current by Docker's events and a periodic
//! listing) and what the runner itself last reported, and returns [`Action`](decide::Action)s:
//! start a task meant to run, stop one meant to stop, remove a container whose task is gone,
//! report a state. The runner carries the actions out one task at a time (an operation in
//! flight blocks further ones for its task) and feeds the results back in.
//!
//! The rules, as Swarm's agent has them:
//! - desired `running` and nothing started yet: start (`preparing` while the image is pulled,
//!   `starting`, `running`, or `rejected` when the pull failed after a few tries or Docker
//!   refuses the container); desired `ready` means assigned but not to be started yet.
//! - a container with a health check stays `starting` until Docker says `healthy`, and is kept
//!   out of the mesh, DNS and gossip until then; `unhealthy` (before or after) fails the task
//!   (`dockerexec: unhealthy container`, moby's words) and stops its container.
//! - the container ended on its own: `complete` (exit 0) or `failed` (`task: non-zero exit (N)`).
//! - desired `shutdown` (or later): stop the container and report `shutdown`, not `failed`.
//! - a task no longer listed (the orchestrator deleted it from history, or the service is gone):
//!   remove its container. Nothing is removed before the session's first full list arrives.
//! - after a restart of meshd, running containers are adopted by their `meshd.task` label, not
//!   started again; a state the leader missed is reported again on the next full list.
//!
//! The parts: [`decide`] (the pure core and the container states it reads), [`status`] (the
//! task states reported), [`spec`] (the container a task runs in), [`runner`] (the handle and
//! the loop), [`observe`] (listing the containers and following their events), [`ops`] (the
//! operations on the engine and the networking, and their results) and [`pull`] (getting the
//! image).

mod decide;
pub mod files;
mod observe;
mod ops;
mod pull;
mod runner;
mod spec;
mod status;

use std::time::Duration;

use mesh_cluster::Id;
use mesh_engine::{EngineHandle, LABEL_NODE};

pub use pull::registry_login;
pub use runner::{RunnerConfig, TaskRunner};

/// Containers are listed again this often, to catch anything the events missed.
const RESYNC_EVERY: Duration = Duration::from_secs(10);
/// A failed operation on a task is retried after this long.
const RETRY_AFTER: Duration = Duration::from_secs(2);

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

#[cfg(test)]
mod fixtures {
    use mesh_api::AssignedTask;
    use mesh_cluster::Id;
    use mesh_cluster::state::{EndpointSpec, Meta, Task, TaskSpec, TaskState, TaskStatus};

    pub(super) fn assigned(id: &str, status: TaskState, desired: TaskState) -> (Id, AssignedTask) {
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
                registry_auth: None,
                files: Vec::new(),
            },
        )
    }
}
