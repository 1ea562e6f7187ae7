//! The dispatcher, on the leader: every node's session. It takes the node's heartbeats (the
//! node monitor's input), sends the node its [`Assignments`] whenever they change, writes the
//! task states agents report into the cluster state in batches, and routes `service logs`
//! streams to the agents that hold the containers.
//!
//! Assignments are diffed per session: the first message is the whole set, later ones carry only
//! the tasks whose agent-visible part changed (desired state, spec, networks, ...) and the ids of
//! tasks that left. A task's own status changes are not echoed back to its node.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt};
use mesh_cluster::Id;
use mesh_cluster::spec::limits::bound_description;
use mesh_cluster::state::{Tx, TxError};
use tokio::sync::mpsc;
use tokio::time::Instant;

use mesh_api::now_millis;
use mesh_api::{
    AgentLogLine, AgentMessage, ApiError, Code, ManagerMessage, Reply, ServiceCounters,
    TaskStatusUpdate,
};

use crate::handlers::swarm::{manager_addrs, trust_bundle};
use crate::lookup::find_service;
use crate::manager::{HEARTBEAT_TIMEOUT, Manager, ProposeError};
use mesh_api::tls::bundle_digest;

mod logs;
mod view;

use view::{AgentView, agent_view, diff_assignments, log_context, mesh_stats_rows, status_ops};

/// Changes to the state are gathered this long before a session's assignments are recomputed.
const ASSIGNMENT_DEBOUNCE: Duration = Duration::from_millis(30);
/// How long a session waits to try again when the data key (which opens what raft keeps sealed)
/// is not at hand.
const DATA_KEY_RETRY: Duration = Duration::from_secs(2);
/// Task states reported within this long are written in one transaction.
const STATUS_BATCH: Duration = Duration::from_millis(50);
/// Task state reports (one per agent message) waiting for the writer, at most.
const STATUS_QUEUE: usize = 1024;

/// What a log stream receives from the sessions.
enum LogEvent {
    Lines(Vec<AgentLogLine>),
    End(Id, Option<String>),
}

/// Task states as nodes report them: `(node, updates)`.
type Reports = (Id, Vec<TaskStatusUpdate>);

struct SessionEntry {
    generation: u64,
    tx: mpsc::Sender<ManagerMessage>,
}

struct LogStreamEntry {
    tx: mpsc::Sender<LogEvent>,
    /// Nodes that have not ended their part yet.
    waiting: HashSet<Id>,
}

/// The leader's dispatcher state, one per manager (only the leader's is used).
pub(crate) struct Dispatch {
    sessions: Mutex<HashMap<Id, SessionEntry>>,
    streams: Mutex<HashMap<u64, LogStreamEntry>>,
    next: AtomicU64,
    status_tx: mpsc::Sender<Reports>,
    status_rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Reports>>>,
    /// Each node's routing-mesh counters as it last reported them (in memory: they live in the
    /// nodes' maps; a new leader hears them again within a heartbeat).
    mesh_stats: Mutex<HashMap<Id, (Instant, Vec<ServiceCounters>)>>,
}

impl Dispatch {
    pub(crate) fn new() -> Self {
        let (status_tx, status_rx) = mpsc::channel(STATUS_QUEUE);
        Self {
            sessions: Mutex::new(HashMap::new()),
            streams: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            status_tx,
            status_rx: Arc::new(tokio::sync::Mutex::new(status_rx)),
            mesh_stats: Mutex::new(HashMap::new()),
        }
    }

    fn mesh_stats(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Id, (Instant, Vec<ServiceCounters>)>> {
        self.mesh_stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<Id, SessionEntry>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<u64, LogStreamEntry>> {
        self.streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn register(&self, node: &Id, tx: mpsc::Sender<ManagerMessage>) -> u64 {
        let generation = self.next.fetch_add(1, Ordering::Relaxed);
        self.sessions()
            .insert(node.clone(), SessionEntry { generation, tx });
        generation
    }

    /// The session ended: forget it (unless a newer one replaced it) and end the log streams
    /// that waited for it.
    fn unregister(&self, node: &Id, generation: u64) {
        {
            let mut sessions = self.sessions();
            if sessions
                .get(node)
                .is_some_and(|s| s.generation == generation)
            {
                sessions.remove(node);
            } else {
                return;
            }
        }
        for s in self.streams().values() {
            if s.waiting.contains(node) {
                let _ = s.tx.try_send(LogEvent::End(
                    node.clone(),
                    Some("the node's session with the leader ended".into()),
                ));
            }
        }
    }

    fn session_of(&self, node: &Id) -> Option<mpsc::Sender<ManagerMessage>> {
        self.sessions().get(node).map(|s| s.tx.clone())
    }

    /// Log lines from a node for stream `stream`; a client that fell far behind loses its
    /// stream (the node is told to stop).
    fn log_lines(&self, stream: u64, lines: Vec<AgentLogLine>) -> bool {
        let streams = self.streams();
        let Some(s) = streams.get(&stream) else {
            return false;
        };
        s.tx.try_send(LogEvent::Lines(lines)).is_ok()
    }

    fn log_end(&self, node: &Id, stream: u64, error: Option<String>) {
        if let Some(s) = self.streams().get(&stream) {
            let _ = s.tx.try_send(LogEvent::End(node.clone(), error));
        }
    }
}

/// The leader's side of the nodes' sessions: it serves each node's session (assignments and log
/// requests down; heartbeats, task states, log lines and mesh counters up), writes the reported
/// task states in batches, and answers `mesh stats` and `service logs` from what the nodes send.
#[derive(Clone)]
pub struct Dispatcher {
    m: Manager,
}

impl Dispatcher {
    pub fn new(m: Manager) -> Self {
        Self { m }
    }

    /// Serves a node's session on the leader until it ends: heartbeats and reports in,
    /// assignments and log requests out.
    pub async fn serve_session(
        &self,
        node_id: Id,
        mut inbound: Pin<Box<dyn Stream<Item = Result<AgentMessage, ApiError>> + Send>>,
        outbound: mpsc::Sender<ManagerMessage>,
    ) {
        let dispatch = &self.m.inner.dispatch;
        let generation = dispatch.register(&node_id, outbound.clone());
        let _registered = Unregister {
            manager: &self.m,
            node: &node_id,
            generation,
        };
        let mut applied = self.m.watch();
        let mut sent: Option<AgentView> = None;
        // Send the whole set at once: the agent waits for it before removing anything.
        let mut dirty_since: Option<Instant> = Some(Instant::now() - ASSIGNMENT_DEBOUNCE);
        let mut last_heard = Instant::now();
        loop {
            let pending = dirty_since;
            let debounce = async move {
                match pending {
                    Some(at) => tokio::time::sleep_until(at + ASSIGNMENT_DEBOUNCE).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(last_heard + HEARTBEAT_TIMEOUT) => return,
                msg = inbound.next() => {
                    let Some(Ok(msg)) = msg else { return };
                    last_heard = Instant::now();
                    if !self.m.is_leader() {
                        let _ = outbound
                            .send(ManagerMessage::NotLeader {
                                leader: self.m.leader().map(|(_, a)| a),
                                managers: manager_addrs(&self.m.state()),
                            })
                            .await;
                        return;
                    }
                    if !self.on_agent_message(&node_id, msg, &outbound).await {
                        return;
                    }
                }
                changed = applied.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    dirty_since.get_or_insert_with(Instant::now);
                }
                () = debounce => {
                    dirty_since = None;
                    if !self.m.is_leader() {
                        continue;
                    }
                    // The gossip keyring and registry logins are sealed in raft.
                    let now = match self.m.data_key().await {
                        Ok(key) => agent_view(&self.m.state(), &node_id, &key),
                        Err(e) => Err(e),
                    };
                    let now = match now {
                        Ok(v) => v,
                        Err(e) => {
                            tracing::warn!(node = %node_id, "assignments wait for the data key: {e}");
                            dirty_since = Some(Instant::now() + DATA_KEY_RETRY);
                            continue;
                        }
                    };
                    if let Some(mut a) = diff_assignments(sent.as_ref(), &now) {
                        self.open_files(&mut a).await;
                        if outbound.send(ManagerMessage::Assignments(a)).await.is_err() {
                            return;
                        }
                        sent = Some(now);
                    }
                }
            }
        }
    }

    /// Opens the sealed data of the secrets and configs about to be sent. Without the data key
    /// (no manager could give it), the files are left out and the agent rejects their tasks
    /// with that reason rather than run them without their secrets.
    async fn open_files(&self, a: &mut mesh_api::Assignments) {
        if a.tasks.iter().all(|t| t.files.is_empty()) {
            return;
        }
        let key = match self.m.data_key().await {
            Ok(k) => k,
            Err(e) => {
                tracing::error!("cannot send secrets and configs to a node: {e}");
                for t in &mut a.tasks {
                    t.files.clear();
                }
                return;
            }
        };
        for t in &mut a.tasks {
            t.files.retain_mut(|f| match key.open(&f.data.0) {
                Ok(plain) => {
                    f.data.0 = plain;
                    true
                }
                Err(e) => {
                    tracing::error!(name = %f.reference.name, "{e}");
                    false
                }
            });
        }
    }

    /// One message from a node's agent; false when the session must end.
    async fn on_agent_message(
        &self,
        node_id: &Id,
        msg: AgentMessage,
        outbound: &mpsc::Sender<ManagerMessage>,
    ) -> bool {
        let dispatch = &self.m.inner.dispatch;
        match msg {
            AgentMessage::Heartbeat { description, addr } => {
                // What a node says of itself is kept cut to the bounds of `spec::limits`.
                let description = bound_description(&description);
                match self.m.heartbeat(node_id, &description, addr).await {
                    Err(e) if e.code == Code::NotFound => {
                        let _ = outbound.send(ManagerMessage::Removed).await;
                        return false;
                    }
                    Err(e) => tracing::debug!(node = %node_id, "heartbeat: {e}"),
                    Ok(()) => {}
                }
                let state = self.m.state();
                let Some(node) = state.nodes.get(node_id) else {
                    return true;
                };
                outbound
                    .send(ManagerMessage::Status {
                        managers: manager_addrs(&state),
                        role: node.spec.role,
                        ca_digest: state
                            .cluster
                            .as_ref()
                            .and_then(|c| bundle_digest(&trust_bundle(c)).ok())
                            .unwrap_or_default(),
                    })
                    .await
                    .is_ok()
            }
            AgentMessage::TaskStatus { updates } => {
                // Bounded: a node that reports faster than the leader writes waits here (its
                // session stalls), rather than growing the leader's memory.
                dispatch
                    .status_tx
                    .send((node_id.clone(), updates))
                    .await
                    .is_ok()
            }
            AgentMessage::Logs { stream, lines } => {
                if !dispatch.log_lines(stream, lines) {
                    let _ = outbound.try_send(ManagerMessage::LogsCancel { stream });
                }
                true
            }
            AgentMessage::LogsEnd { stream, error } => {
                dispatch.log_end(node_id, stream, error);
                true
            }
            AgentMessage::MeshStats { services } => {
                dispatch
                    .mesh_stats()
                    .insert(node_id.clone(), (Instant::now(), services));
                true
            }
        }
    }

    /// `mesh stats` (on the leader): the counters the nodes last reported.
    pub async fn mesh_stats(&self, queries: &[String]) -> Result<Reply, ApiError> {
        let view = self.m.read().await?;
        let state = &view.applied.state;
        let ids = queries
            .iter()
            .map(|q| find_service(state, q).map(|s| s.id.clone()))
            .collect::<Result<Vec<Id>, ApiError>>()?;
        let now = Instant::now();
        let reports: BTreeMap<Id, (u64, Vec<ServiceCounters>)> = self
            .m
            .inner
            .dispatch
            .mesh_stats()
            .iter()
            .filter(|(node, _)| state.nodes.contains_key(*node))
            .map(|(node, (at, c))| {
                let age = u64::try_from(now.duration_since(*at).as_millis()).unwrap_or(u64::MAX);
                (node.clone(), (age, c.clone()))
            })
            .collect();
        let filter = (!ids.is_empty()).then_some(ids.as_slice());
        Ok(Reply::MeshStats(mesh_stats_rows(state, filter, &reports)))
    }

    /// Leader loop: writes the task states agents report, in batches, forward transitions only.
    pub(crate) async fn write_task_statuses(self) {
        let rx = self.m.inner.dispatch.status_rx.clone();
        let mut rx = rx.lock().await;
        loop {
            let Some(first) = rx.recv().await else { return };
            let mut batch = vec![first];
            let until = Instant::now() + STATUS_BATCH;
            while batch.len() < 1000 {
                match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(b)) => batch.push(b),
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            for _ in 0..10 {
                let ops = status_ops(&self.m.state(), &batch);
                if ops.is_empty() {
                    break;
                }
                match self
                    .m
                    .propose(Tx {
                        at: now_millis(),
                        ops,
                    })
                    .await
                {
                    Ok(_) => break,
                    // A control loop wrote one of the tasks meanwhile: look again.
                    Err(ProposeError::Tx(TxError::Conflict { .. })) => {}
                    Err(e) => {
                        // Agents report again on their next session if this never lands.
                        tracing::warn!("writing task states: {e}");
                        break;
                    }
                }
            }
        }
    }
}

/// Removes a session from the registry when its task ends, however it ends.
struct Unregister<'a> {
    manager: &'a Manager,
    node: &'a Id,
    generation: u64,
}

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        self.manager
            .inner
            .dispatch
            .unregister(self.node, self.generation);
    }
}

#[cfg(test)]
pub(crate) use view::tests;
