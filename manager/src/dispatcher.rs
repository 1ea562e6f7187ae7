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
use mesh_cluster::alloc::service_networks;
use mesh_cluster::naming::ports_column;
use mesh_cluster::naming::task_name;
use mesh_cluster::state::{
    ClusterState, EndpointMode, Network, NetworkAttachmentConfig, Object, Op, ServiceMode, Task,
    TaskState, Tx, TxError,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use mesh_api::now_millis;
use mesh_api::{
    AgentLogLine, AgentMessage, ApiError, AssignedTask, Assignments, Code, LogRecord, LogsRequest,
    ManagerMessage, MeshStatsRow, NodeLogsRequest, NodeNet, Reply, Request, ServiceCounters,
    ServiceNet, ServiceTaskName, StreamItem, TaskStatusUpdate,
};

use crate::handlers::swarm::manager_addrs;
use crate::lookup::{find_service, find_task};
use crate::manager::{HEARTBEAT_TIMEOUT, Manager, ProposeError};

/// Changes to the state are gathered this long before a session's assignments are recomputed.
const ASSIGNMENT_DEBOUNCE: Duration = Duration::from_millis(30);
/// Task states reported within this long are written in one transaction.
const STATUS_BATCH: Duration = Duration::from_millis(50);
/// Log batches a slow `service logs` client may fall behind by before its stream is cut.
const LOG_BACKLOG: usize = 1024;

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
    status_tx: mpsc::UnboundedSender<Reports>,
    status_rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Reports>>>,
    /// Each node's routing-mesh counters as it last reported them (in memory: they live in the
    /// nodes' maps; a new leader hears them again within a heartbeat).
    mesh_stats: Mutex<HashMap<Id, (Instant, Vec<ServiceCounters>)>>,
}

impl Dispatch {
    pub(crate) fn new() -> Self {
        let (status_tx, status_rx) = mpsc::unbounded_channel();
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

/// Does the agent need to hear about this change of the task? Its status (which the agent
/// itself reports) does not count.
fn same_for_agent(a: &AssignedTask, b: &AssignedTask) -> bool {
    let (x, y) = (&a.task, &b.task);
    x.desired_state == y.desired_state
        && x.spec == y.spec
        && x.spec_version == y.spec_version
        && x.networks == y.networks
        && x.endpoint == y.endpoint
        && x.slot == y.slot
        && x.service_id == y.service_id
        && x.node_id == y.node_id
        && a.service_name == b.service_name
}

/// The tasks a node must know about: every task assigned to it (status `assigned` or later),
/// history included, until the orchestrator deletes it.
pub(crate) fn node_assignments(state: &ClusterState, node: &Id) -> BTreeMap<Id, AssignedTask> {
    state
        .tasks
        .values()
        .filter(|t| t.node_id.as_ref() == Some(node) && t.status.state >= TaskState::Assigned)
        .map(|t| {
            let service_name = state
                .services
                .get(&t.service_id)
                .map(|s| s.spec.name.clone())
                .unwrap_or_default();
            (
                t.id.clone(),
                AssignedTask {
                    task: t.clone(),
                    service_name,
                },
            )
        })
        .collect()
}

/// Everything a node's agent holds from the leader: its tasks, the networks, the nodes and the
/// services (for its networking, routing mesh and DNS).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct AgentView {
    pub tasks: BTreeMap<Id, AssignedTask>,
    pub networks: Vec<Network>,
    pub nodes: Vec<NodeNet>,
    pub services: Vec<ServiceNet>,
}

/// What a node must hold now: [`node_assignments`], every allocated network, every node, every
/// service.
pub(crate) fn agent_view(state: &ClusterState, node: &Id) -> AgentView {
    AgentView {
        tasks: node_assignments(state, node),
        networks: state
            .networks
            .values()
            .filter(|n| n.is_allocated())
            .cloned()
            .collect(),
        nodes: state.nodes.values().map(NodeNet::of).collect(),
        services: service_nets(state),
    }
}

/// Every service as the nodes' routing mesh and DNS need it (the same for every node).
pub(crate) fn service_nets(state: &ClusterState) -> Vec<ServiceNet> {
    state
        .services
        .values()
        .map(|s| {
            let networks = service_networks(state, s)
                .into_iter()
                .map(|id| {
                    let aliases = s
                        .spec
                        .task
                        .networks
                        .iter()
                        .find(|a| a.target == id)
                        .map(|a| a.aliases.clone())
                        .unwrap_or_default();
                    NetworkAttachmentConfig {
                        target: id,
                        aliases,
                    }
                })
                .collect();
            let tasks = state
                .tasks_of(&s.id)
                .filter(|t| !t.status.state.is_terminal())
                .filter_map(|t| {
                    Some(ServiceTaskName {
                        id: t.id.clone(),
                        slot: t.slot,
                        node_id: t.node_id.clone()?,
                    })
                })
                .collect();
            ServiceNet {
                id: s.id.clone(),
                name: s.spec.name.clone(),
                endpoint_mode: s.spec.endpoint.mode,
                ports: s.endpoint.ports.clone(),
                vips: if s.spec.endpoint.mode == EndpointMode::Vip {
                    s.endpoint.virtual_ips.clone()
                } else {
                    Vec::new()
                },
                networks,
                tasks,
            }
        })
        .collect()
}

/// The rows of `mesh stats` for `services` (all when None): one per service and node that
/// reported, with zeros where a node has no counter for the service.
pub(crate) fn mesh_stats_rows(
    state: &ClusterState,
    services: Option<&[Id]>,
    reports: &BTreeMap<Id, (u64, Vec<ServiceCounters>)>,
) -> Vec<MeshStatsRow> {
    let mut rows = Vec::new();
    let mut wanted: Vec<&mesh_cluster::state::Service> = state
        .services
        .values()
        .filter(|s| services.is_none_or(|ids| ids.contains(&s.id)))
        .collect();
    wanted.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    let mut nodes: Vec<(&Id, &str)> = reports
        .keys()
        .map(|id| {
            let host = state
                .nodes
                .get(id)
                .map_or(id.as_str(), |n| n.description.hostname.as_str());
            (id, host)
        })
        .collect();
    nodes.sort_by(|a, b| a.1.cmp(b.1));
    for s in wanted {
        for (node, hostname) in &nodes {
            let (age_ms, counters) = &reports[*node];
            let c = counters.iter().find(|c| c.service_id == s.id);
            rows.push(MeshStatsRow {
                service_id: s.id.clone(),
                service_name: s.spec.name.clone(),
                ports: ports_column(s),
                node_id: (*node).clone(),
                hostname: (*hostname).to_owned(),
                packets: c.map_or(0, |c| c.packets),
                bytes: c.map_or(0, |c| c.bytes),
                connections: c.map_or(0, |c| c.connections),
                age_ms: *age_ms,
            });
        }
    }
    rows
}

/// What to send a node whose agent holds `sent` (None: nothing yet) so that it holds `now`;
/// None when there is nothing new.
pub(crate) fn diff_assignments(sent: Option<&AgentView>, now: &AgentView) -> Option<Assignments> {
    let Some(sent) = sent else {
        return Some(Assignments {
            full: true,
            tasks: now.tasks.values().cloned().collect(),
            removed: Vec::new(),
            networks: Some(now.networks.clone()),
            nodes: Some(now.nodes.clone()),
            services: Some(now.services.clone()),
        });
    };
    let tasks: Vec<AssignedTask> = now
        .tasks
        .iter()
        .filter(|(id, t)| {
            sent.tasks
                .get(*id)
                .is_none_or(|old| !same_for_agent(old, t))
        })
        .map(|(_, t)| t.clone())
        .collect();
    let removed: Vec<Id> = sent
        .tasks
        .keys()
        .filter(|id| !now.tasks.contains_key(*id))
        .cloned()
        .collect();
    let networks = (sent.networks != now.networks).then(|| now.networks.clone());
    let nodes = (sent.nodes != now.nodes).then(|| now.nodes.clone());
    let services = (sent.services != now.services).then(|| now.services.clone());
    (!tasks.is_empty()
        || !removed.is_empty()
        || networks.is_some()
        || nodes.is_some()
        || services.is_some())
    .then_some(Assignments {
        full: false,
        tasks,
        removed,
        networks,
        nodes,
        services,
    })
}

/// Is `new` a step forward from `cur`? Terminal states are final; a state never goes back; the
/// same state is written again only when it says something new (a container id, a pid, ...).
fn moves_forward(
    cur: &mesh_cluster::state::TaskStatus,
    new: &mesh_cluster::state::TaskStatus,
) -> bool {
    if cur.state.is_terminal() || new.state < cur.state {
        return false;
    }
    new.state > cur.state
        || new.message != cur.message
        || new.err != cur.err
        || new.container_id != cur.container_id
        || new.pid != cur.pid
        || new.exit_code != cur.exit_code
}

/// The writes for a batch of reports, each `(node, updates)` as it came: reports about tasks
/// that are gone, that are not the node's, or that would move a task backwards are ignored.
pub(crate) fn status_ops(state: &ClusterState, batch: &[(Id, Vec<TaskStatusUpdate>)]) -> Vec<Op> {
    let mut changed: BTreeMap<Id, Task> = BTreeMap::new();
    for (node, updates) in batch {
        for u in updates {
            let Some(cur) = changed
                .get(&u.task_id)
                .or_else(|| state.tasks.get(&u.task_id))
            else {
                continue;
            };
            if cur.node_id.as_ref() != Some(node) || !moves_forward(&cur.status, &u.status) {
                continue;
            }
            let mut t = cur.clone();
            t.status = u.status.clone();
            changed.insert(t.id.clone(), t);
        }
    }
    changed
        .into_values()
        .map(|t| Op::Put(Object::Task(t)))
        .collect()
}

/// Docker's context for a log line: `web.1.abc123def456@node1`, padded so that lines of replicas
/// with fewer digits line up with the service's highest slot.
pub(crate) fn log_context(state: &ClusterState, task: &Task, no_trunc: bool) -> Option<String> {
    let service = state.services.get(&task.service_id)?;
    let node = task
        .node_id
        .as_ref()
        .and_then(|n| state.nodes.get(n))
        .map(|n| n.description.hostname.clone())
        .unwrap_or_default();
    let id = if no_trunc {
        task.id.as_str()
    } else {
        task.id.short()
    };
    let mut s = format!("{}.{id}@{node}", task_name(&service.spec.name, task));
    if let ServiceMode::Replicated { replicas } = service.spec.mode {
        let digits = |n: u64| n.max(1).to_string().len();
        let pad = digits(replicas).saturating_sub(digits(task.slot));
        s.extend(std::iter::repeat_n(' ', pad));
    }
    Some(s)
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
                    let now = agent_view(&self.m.state(), &node_id);
                    if let Some(a) = diff_assignments(sent.as_ref(), &now) {
                        if outbound.send(ManagerMessage::Assignments(a)).await.is_err() {
                            return;
                        }
                        sent = Some(now);
                    }
                }
            }
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
                    })
                    .await
                    .is_ok()
            }
            AgentMessage::TaskStatus { updates } => {
                let _ = dispatch.status_tx.send((node_id.clone(), updates));
                true
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

    /// `service logs`: on the leader, asks every node that holds tasks of the target for their
    /// lines and relays them; elsewhere, relays the leader's stream.
    pub async fn service_logs(
        &self,
        req: LogsRequest,
        out: mpsc::Sender<Result<StreamItem, ApiError>>,
    ) {
        if !self.m.is_leader() {
            self.relay_stream(Request::ServiceLogs(req), out).await;
            return;
        }
        let state = match self.m.read().await {
            Ok(v) => v.applied.state,
            Err(e) => {
                let _ = out.send(Err(e)).await;
                return;
            }
        };
        let tasks: Vec<&Task> = match find_service(&state, &req.target) {
            Ok(s) => state.tasks_of(&s.id).collect(),
            Err(not_service) => {
                let Some(t) = find_task(&state, &req.target) else {
                    let _ = out.send(Err(not_service)).await;
                    return;
                };
                vec![t]
            }
        };
        let mut by_node: BTreeMap<Id, Vec<Id>> = BTreeMap::new();
        let mut contexts: HashMap<Id, String> = HashMap::new();
        for t in tasks {
            let Some(node) = &t.node_id else { continue };
            if t.status.state < TaskState::Assigned {
                continue;
            }
            by_node.entry(node.clone()).or_default().push(t.id.clone());
            if let Some(c) = log_context(&state, t, req.no_trunc) {
                contexts.insert(t.id.clone(), c);
            }
        }
        let dispatch = &self.m.inner.dispatch;
        let stream = dispatch.next.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::channel(LOG_BACKLOG);
        let mut waiting = HashSet::new();
        let mut asked = Vec::new();
        for (node, task_ids) in by_node {
            let hostname = state
                .nodes
                .get(&node)
                .map_or_else(|| node.to_string(), |n| n.description.hostname.clone());
            let Some(session) = dispatch.session_of(&node) else {
                let _ = out
                    .send(Ok(StreamItem::Warning(format!(
                        "node {hostname} is not connected: the logs of its tasks are missing"
                    ))))
                    .await;
                continue;
            };
            waiting.insert(node.clone());
            asked.push((node, session, task_ids, hostname));
        }
        dispatch.streams().insert(
            stream,
            LogStreamEntry {
                tx,
                waiting: waiting.clone(),
            },
        );
        let _cleanup = EndStream {
            manager: &self.m,
            stream,
        };
        let mut hostnames = HashMap::new();
        for (node, session, tasks, hostname) in asked {
            let msg = ManagerMessage::Logs(NodeLogsRequest {
                stream,
                tasks,
                tail: req.tail,
                follow: req.follow,
                timestamps: req.timestamps,
            });
            if session.send(msg).await.is_err() {
                waiting.remove(&node);
            }
            hostnames.insert(node, hostname);
        }
        while !waiting.is_empty() {
            let event = tokio::select! {
                () = out.closed() => return,
                e = rx.recv() => e,
            };
            match event {
                None => return,
                Some(LogEvent::Lines(lines)) => {
                    let records: Vec<LogRecord> = lines
                        .into_iter()
                        .map(|l| LogRecord {
                            context: contexts
                                .get(&l.task_id)
                                .cloned()
                                .unwrap_or_else(|| l.task_id.to_string()),
                            stderr: l.stderr,
                            timestamp: l.timestamp,
                            text: l.text,
                        })
                        .collect();
                    if out.send(Ok(StreamItem::Logs(records))).await.is_err() {
                        return;
                    }
                }
                Some(LogEvent::End(node, error)) => {
                    if waiting.remove(&node)
                        && let Some(e) = error
                    {
                        let host = hostnames.get(&node).cloned().unwrap_or_default();
                        let _ = out
                            .send(Ok(StreamItem::Warning(format!("node {host}: {e}"))))
                            .await;
                    }
                    if let Some(s) = dispatch.streams().get_mut(&stream) {
                        s.waiting.remove(&node);
                    }
                }
            }
        }
    }

    /// Forwards a streaming request to the leader and its items back.
    async fn relay_stream(&self, req: Request, out: mpsc::Sender<Result<StreamItem, ApiError>>) {
        let Some((_, addr)) = self.m.leader() else {
            let _ = out.send(Err(ApiError::no_leader())).await;
            return;
        };
        let mut items = match self.m.inner.peers.client(&addr).stream(&req).await {
            Ok(s) => s,
            Err(e) => {
                let _ = out.send(Err(e)).await;
                return;
            }
        };
        loop {
            let item = tokio::select! {
                () = out.closed() => return,
                i = items.next() => i,
            };
            let Some(item) = item else { return };
            let end = item.is_err();
            if out.send(item).await.is_err() || end {
                return;
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

/// Ends a log stream: forgets it and tells the nodes still sending to stop.
struct EndStream<'a> {
    manager: &'a Manager,
    stream: u64,
}

impl Drop for EndStream<'_> {
    fn drop(&mut self) {
        let dispatch = &self.manager.inner.dispatch;
        let entry = dispatch.streams().remove(&self.stream);
        if let Some(entry) = entry {
            for node in entry.waiting {
                if let Some(s) = dispatch.session_of(&node) {
                    let _ = s.try_send(ManagerMessage::LogsCancel {
                        stream: self.stream,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use mesh_cluster::state::{EndpointSpec, Meta, ServiceSpec, TaskSpec, TaskStatus};

    use super::*;

    pub(crate) fn task(id: &str, node: Option<&str>, state: TaskState, desired: TaskState) -> Task {
        Task {
            id: Id::from(id),
            meta: Meta {
                version: 1,
                ..Meta::default()
            },
            service_id: Id::from("svc"),
            slot: 1,
            node_id: node.map(Id::from),
            spec: TaskSpec::default(),
            spec_version: 1,
            desired_state: desired,
            status: TaskStatus {
                state,
                ..TaskStatus::default()
            },
            networks: Vec::new(),
            start_at: 0,
            restart_history: Vec::new(),
            endpoint: EndpointSpec::default(),
        }
    }

    fn state(tasks: Vec<Task>) -> ClusterState {
        let mut s = ClusterState::default();
        let svc = mesh_cluster::orchestrator::new_service(
            ServiceSpec {
                name: "web".into(),
                mode: ServiceMode::Replicated { replicas: 12 },
                ..ServiceSpec::default()
            },
            Id::from("svc"),
        );
        s.services.insert(svc.id.clone(), svc);
        for t in tasks {
            s.tasks.insert(t.id.clone(), t);
        }
        s
    }

    fn status(state: TaskState) -> TaskStatus {
        TaskStatus {
            state,
            timestamp: 5,
            ..TaskStatus::default()
        }
    }

    /// A node gets its scheduled tasks (history too), first all of them, then only what it must
    /// act on: a status change alone is not sent back; a desired-state change and a deletion are.
    /// Networks and nodes come whole in the first message, then only when they changed.
    #[test]
    fn assignments_are_the_nodes_tasks_then_their_changes() {
        use TaskState::{Pending, Running, Shutdown};
        let mut s = state(vec![
            task("a", Some("n1"), Running, Running),
            task("b", Some("n1"), Shutdown, Shutdown),
            task("c", Some("n2"), Running, Running),
            task("d", Some("n1"), Pending, Running), // a global task not scheduled yet
        ]);
        let node = crate::handlers::services::tests::node("n1", "node1");
        s.nodes.insert(node.id.clone(), node);
        let n1 = Id::from("n1");
        let first = agent_view(&s, &n1);
        assert_eq!(
            first.tasks.keys().map(Id::as_str).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(first.tasks[&Id::from("a")].service_name, "web");
        let full = diff_assignments(None, &first).unwrap();
        assert!(full.full && full.tasks.len() == 2 && full.removed.is_empty());
        assert_eq!(full.networks, Some(vec![]));
        assert_eq!(full.nodes.as_ref().map(Vec::len), Some(1));
        assert_eq!(diff_assignments(Some(&first), &first), None);

        s.tasks.get_mut(&Id::from("a")).unwrap().status.pid = 42;
        s.nodes.get_mut(&n1).unwrap().status.message = "a heartbeat".into();
        assert_eq!(
            diff_assignments(Some(&first), &agent_view(&s, &n1)),
            None,
            "the node's own report is not echoed, nor what networking does not use"
        );
        s.tasks.get_mut(&Id::from("a")).unwrap().desired_state = Shutdown;
        s.tasks.remove(&Id::from("b"));
        let d = diff_assignments(Some(&first), &agent_view(&s, &n1)).unwrap();
        assert!(!d.full);
        assert_eq!(d.tasks.len(), 1);
        assert_eq!(d.tasks[0].task.desired_state, Shutdown);
        assert_eq!(d.removed, [Id::from("b")]);
        assert_eq!((d.networks, d.nodes), (None, None));

        let now = agent_view(&s, &n1);
        s.nodes
            .get_mut(&n1)
            .unwrap()
            .attachments
            .insert(Id::from("net"), "10.0.0.2".parse().unwrap());
        let d = diff_assignments(Some(&now), &agent_view(&s, &n1)).unwrap();
        assert!(d.tasks.is_empty() && d.removed.is_empty() && d.networks.is_none());
        assert_eq!(d.nodes.unwrap()[0].attachments.len(), 1);
    }

    /// Reports move tasks forward only, for tasks that exist and belong to the reporting node.
    #[test]
    fn reports_are_written_forward_only() {
        use TaskState::{Assigned, Failed, Orphaned, Preparing, Running, Starting};
        let s = state(vec![
            task("a", Some("n1"), Assigned, Running),
            task("b", Some("n1"), Running, Running),
            task("c", Some("n2"), Assigned, Running),
            task("d", Some("n1"), Orphaned, TaskState::Shutdown),
        ]);
        let up = |id: &str, st: TaskState| TaskStatusUpdate {
            task_id: Id::from(id),
            status: status(st),
        };
        let mut running = status(Running);
        running.container_id = "c1".into();
        running.pid = 7;
        let batch = vec![
            (
                Id::from("n1"),
                vec![
                    up("a", Preparing),
                    up("a", Starting),
                    TaskStatusUpdate {
                        task_id: Id::from("a"),
                        status: running.clone(),
                    },
                    up("b", Starting),  // backwards
                    up("c", Running),   // not n1's
                    up("d", Running),   // orphaned is final
                    up("gone", Failed), // deleted
                ],
            ),
            (Id::from("n1"), vec![up("a", Starting)]), // stale, after Running
        ];
        let ops = status_ops(&s, &batch);
        assert_eq!(ops.len(), 1, "{ops:?}");
        let Op::Put(Object::Task(t)) = &ops[0] else {
            panic!("{ops:?}")
        };
        assert_eq!((t.id.as_str(), &t.status), ("a", &running));
        // The same report again changes nothing; a failure of a running task does.
        let mut after = s.clone();
        after.tasks.insert(t.id.clone(), t.clone());
        assert!(
            status_ops(
                &after,
                &[(
                    Id::from("n1"),
                    vec![TaskStatusUpdate {
                        task_id: Id::from("a"),
                        status: running
                    }]
                )]
            )
            .is_empty()
        );
        assert_eq!(
            status_ops(&after, &[(Id::from("n1"), vec![up("a", Failed)])]).len(),
            1
        );
    }

    #[test]
    fn log_contexts_as_docker_prints_them() {
        let mut s = state(vec![task(
            "ngbknb89dzyxdas81emw0jz63",
            Some("n1"),
            TaskState::Running,
            TaskState::Running,
        )]);
        let node = crate::handlers::services::tests::node("n1", "james-CW65");
        s.nodes.insert(node.id.clone(), node);
        let t = &s.tasks[&Id::from("ngbknb89dzyxdas81emw0jz63")];
        // 12 replicas: slot 1 is padded to two digits.
        assert_eq!(
            log_context(&s, t, false).unwrap(),
            "web.1.ngbknb89dzyx@james-CW65 "
        );
        assert_eq!(
            log_context(&s, t, true).unwrap(),
            "web.1.ngbknb89dzyxdas81emw0jz63@james-CW65 "
        );
    }
}
