//! The seam where a task's networks are plumbed: the task runner calls [`TaskNetworking::attach`]
//! once the task's container runs (with the pid whose namespace to plumb) and
//! [`TaskNetworking::detach`] before it stops or removes the container. Containers run with
//! Docker's `none` network, so [`NoNetworking`] (nothing to do) is right for tasks without
//! networks; the overlay issue plugs its implementation in through `DaemonConfig`.
//!
//! `attach` is also called for a running container the agent adopts after a meshd restart, so
//! an implementation must be idempotent (plumbing what is already there changes nothing), and
//! `detach` is called for tasks that may never have been attached.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use mesh_cluster::Id;
use mesh_cluster::state::Task;

/// Plumbs and unplumbs tasks' network interfaces.
pub trait TaskNetworking: Send + Sync + 'static {
    /// The task's container runs as `pid`: give it its interfaces on the task's networks
    /// (`task.networks`: network, address, MAC). An error fails the task (its message is the
    /// task's error).
    fn attach<'a>(&'a self, task: &'a Task, pid: u32) -> BoxFuture<'a, Result<(), String>>;

    /// The task's container is about to stop or be removed: take its interfaces away.
    fn detach<'a>(&'a self, task_id: &'a Id) -> BoxFuture<'a, Result<(), String>>;
}

/// Plumbs nothing: Docker's `none` is all a task gets. Right for tasks without networks; a
/// task with attachments (the allocator gives tasks of a service that publishes ports an
/// `ingress` address) runs unplumbed until the overlay's implementation replaces this one.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoNetworking;

impl TaskNetworking for NoNetworking {
    fn attach<'a>(&'a self, task: &'a Task, _pid: u32) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if !task.networks.is_empty() {
                tracing::debug!(task = %task.id, "no task networking here: its {} network attachment(s) stay unplumbed", task.networks.len());
            }
            Ok(())
        })
    }

    fn detach<'a>(&'a self, _task_id: &'a Id) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// The implementation a daemon gives its agent (`DaemonConfig::task_networking`).
#[derive(Clone)]
pub struct Networking(pub Arc<dyn TaskNetworking>);

impl Default for Networking {
    fn default() -> Self {
        Self(Arc::new(NoNetworking))
    }
}

impl fmt::Debug for Networking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Networking")
    }
}
