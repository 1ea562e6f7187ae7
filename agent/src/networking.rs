//! The seam where a task's networks are plumbed: the task runner calls [`TaskNetworking::attach`]
//! once the task's container runs (with the container and the pid whose namespace to plumb) and
//! [`TaskNetworking::detach`] before it stops or removes the container, and when an attached
//! task's container ended on its own. Containers run with Docker's `none` network, so
//! [`NoNetworking`] (nothing to do) is right for tasks without networks; `meshd` plugs in the
//! overlay's implementation ([`crate::net::NodeNetworking`]) through `DaemonConfig`.
//!
//! `attach` is also called for a running container the agent adopts after a meshd restart, so
//! an implementation must be idempotent (plumbing what is already there changes nothing), and
//! `detach` is called for tasks that may never have been attached.
//!
//! Around the tasks, the agent also tells the implementation who the node is in its swarm
//! ([`TaskNetworking::joined`], when the agent starts), what the leader says about networks,
//! nodes and services ([`TaskNetworking::cluster`], before the tasks of the same message reach
//! the runner),
//! when the runner has adopted every running container ([`TaskNetworking::settled`]: whatever
//! is plumbed and not attached since is stale), and when the node leaves the swarm
//! ([`TaskNetworking::left`]).

use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use futures::future::BoxFuture;
use mesh_cluster::Id;
use mesh_cluster::state::{Network, Task};

use mesh_api::{NodeNet, ServiceCounters, ServiceNet};

/// Who this node is in its swarm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub node_id: Id,
    pub cluster_id: Id,
    pub hostname: String,
    /// The advertised (underlay) address.
    pub addr: Ipv4Addr,
}

/// Plumbs and unplumbs tasks' network interfaces.
pub trait TaskNetworking: Send + Sync + 'static {
    /// The task's container `container` runs as `pid`: give it its interfaces on the task's
    /// networks (`task.networks`: network, address, MAC). An error fails the task (its message
    /// is the task's error).
    fn attach<'a>(
        &'a self,
        task: &'a Task,
        container: &'a str,
        pid: u32,
    ) -> BoxFuture<'a, Result<(), String>>;

    /// The task's container is about to stop or be removed, or has ended: take its interfaces
    /// away.
    fn detach<'a>(&'a self, task_id: &'a Id) -> BoxFuture<'a, Result<(), String>>;

    /// The task is about to stop: take it out of the routing mesh, DNS and gossip, and return
    /// once the other nodes have heard it, so that it gets no new flows while its own finish
    /// before it stops ([`TaskNetworking::detach`] then takes its interfaces away).
    fn withdraw<'a>(&'a self, _task_id: &'a Id) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Whether the attached (or about to be attached) task may take traffic. A task whose
    /// health check has not passed, or has failed, stays plumbed but out of the routing mesh's
    /// backends, DNS answers and gossip; `true` puts it back. Forgotten on `detach`.
    fn serving(&self, _task_id: &Id, _serving: bool) {}

    /// The agent starts for this node (after init, join, a restart or a role change).
    fn joined(&self, _membership: &Membership) {}

    /// The leader's networks, nodes and services, whichever changed (None: unchanged).
    fn cluster(
        &self,
        _networks: Option<Vec<Network>>,
        _nodes: Option<Vec<NodeNet>>,
        _services: Option<Vec<ServiceNet>>,
    ) {
    }

    /// The cluster's gossip keyring, whenever the leader sends a new one.
    fn gossip_keys(&self, _keys: Vec<mesh_cluster::gossip_keys::GossipKeyEntry>) {}

    /// The node's routing-mesh counters per service, for the leader (`mesh stats`).
    fn mesh_counters(&self) -> Vec<ServiceCounters> {
        Vec::new()
    }

    /// Fills the networking's part of `meshctl status` (mesh, DNS, gossip peers).
    fn status(&self, _out: &mut mesh_api::status::NodeStatus) {}

    /// The runner has the leader's full task list and has adopted (attached) every running
    /// container it keeps: interfaces and devices of anything else are stale.
    fn settled(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// The node left its swarm (its task containers are gone): undo everything.
    fn left(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Plumbs nothing: Docker's `none` is all a task gets. Right for tasks without networks (and
/// for tests of the control plane alone).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoNetworking;

impl TaskNetworking for NoNetworking {
    fn attach<'a>(
        &'a self,
        task: &'a Task,
        _container: &'a str,
        _pid: u32,
    ) -> BoxFuture<'a, Result<(), String>> {
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
