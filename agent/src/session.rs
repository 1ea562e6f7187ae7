//! Every node's agent: a session with the leader that carries a heartbeat every second and
//! brings back the managers to fall back on and the role the cluster gives the node; the node's
//! task assignments come down it, and task states and log lines go up.
//!
//! The session is a gRPC bidirectional stream ([`mesh_api::transport::Client::session`]):
//! [`AgentMessage`]s up, [`ManagerMessage`]s down. A manager that does not lead answers
//! `NotLeader` with the leader's address; the agent follows it, and falls back on every manager
//! it knows when the leader disappears. The task runner ([`crate::tasks`]) outlives sessions: containers
//! keep running while the agent looks for a leader, and the next session's first (full)
//! assignments let it catch up.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::StreamExt;
use mesh_cluster::Id;
use mesh_cluster::state::{NodeDescription, NodeRole, Resources};
use rustls::ClientConfig;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use mesh_api::transport::Client;
use mesh_api::{AgentMessage, ApiError, ManagerMessage, ServiceCounters};
use mesh_engine::EngineHandle;

use crate::logs;
use crate::networking::{Membership, Networking};
use crate::tasks::{RunnerConfig, TaskRunner};

/// What the agent tells the node it runs on (the node's daemon implements it). The agent never
/// changes the node's membership itself: it reports, and the daemon acts.
pub trait NodeEvents: Send + Sync + 'static {
    /// The leader named another set of managers: keep them for the next start.
    fn managers_changed(&self, managers: Vec<String>);

    /// The swarm gave this node another role (promote, demote): get a certificate for it from
    /// the manager at `via` and restart the node's parts as that role. The agent is replaced.
    fn role_changed(&self, role: NodeRole, via: String);

    /// The leader says which roots the swarm trusts (`ca_digest`, after each heartbeat): a node
    /// whose own differ renews its certificate (a CA rotation).
    fn roots_announced(&self, ca_digest: &str);
}

/// Between heartbeats.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// What the node reports about itself: hostname, OS, CPUs, memory, and dockerd's version when
/// dockerd answers (refreshed in the background).
#[derive(Clone)]
pub struct Describer {
    current: Arc<Mutex<NodeDescription>>,
}

impl Describer {
    pub fn new(hostname: &str, engine: EngineHandle) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let d = NodeDescription {
            hostname: hostname.to_owned(),
            os: std::env::consts::OS.to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
            resources: Resources {
                nano_cpus: i64::try_from(cpus).unwrap_or(1) * 1_000_000_000,
                memory_bytes: memory_bytes(),
            },
            engine_version: String::new(),
            ..NodeDescription::default()
        };
        let me = Self {
            current: Arc::new(Mutex::new(d)),
        };
        let bg = me.clone();
        tokio::spawn(async move {
            loop {
                let version = engine_version(&engine).await.unwrap_or_default();
                bg.current
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .engine_version = version;
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        });
        me
    }

    pub fn get(&self) -> NodeDescription {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

fn memory_bytes() -> i64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map_or(0, |kb| kb * 1024)
}

async fn engine_version(engine: &EngineHandle) -> Option<String> {
    let version = async { engine.get().await?.version().await };
    tokio::time::timeout(Duration::from_secs(2), version)
        .await
        .ok()?
        .ok()
}

/// What the agent needs to know about its node.
pub struct AgentConfig {
    pub tls: Arc<ClientConfig>,
    pub cluster_id: Id,
    pub node_id: Id,
    pub hostname: String,
    pub role: NodeRole,
    pub addr: Ipv4Addr,
    pub managers: Vec<String>,
    pub describer: Describer,
    pub networking: Networking,
    pub engine: EngineHandle,
    /// Where tasks' secrets and configs are written (a tmpfs; mounted there if it is not one).
    pub task_files: std::path::PathBuf,
}

/// Runs the agent until the task is aborted. Role changes and new manager lists go to `node`.
pub async fn run(node: Weak<dyn NodeEvents>, cfg: AgentConfig) {
    cfg.networking.0.joined(&Membership {
        node_id: cfg.node_id.clone(),
        cluster_id: cfg.cluster_id.clone(),
        hostname: cfg.hostname.clone(),
        addr: cfg.addr,
    });
    let (runner, mut reports) = TaskRunner::spawn(RunnerConfig {
        node_id: cfg.node_id.clone(),
        hostname: cfg.hostname.clone(),
        networking: cfg.networking.clone(),
        engine: cfg.engine.clone(),
        files: crate::tasks::files::TaskFiles::new(cfg.task_files.clone()),
    });
    let mut managers = Managers {
        known: cfg.managers.clone(),
        hint: None,
        next: usize::MAX,
    };
    loop {
        let Some(target) = managers.pick() else {
            tracing::warn!("agent: no manager known");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let client = Client::tls(&target, cfg.tls.clone());
        let (tx, rx) = mpsc::channel(64);
        let _ = tx.try_send(heartbeat(&cfg));
        let mut stream = match client.session(rx).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("agent: session with {target}: {e}");
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
        };
        // What the runner reported while there was no session: the next full assignments make
        // it report again whatever the leader missed.
        while reports.try_recv().is_ok() {}
        let mut session = Session {
            cfg: &cfg,
            node: &node,
            runner: &runner,
            managers: &mut managers,
            target: &target,
            tx: &tx,
            log_streams: LogStreams::default(),
            sent_counters: None,
        };
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        tick.tick().await;
        loop {
            let goes_on = tokio::select! {
                _ = tick.tick() => session.beat().await,
                Some(updates) = reports.recv() => {
                    session.tx.send(AgentMessage::TaskStatus { updates }).await.is_ok()
                }
                msg = stream.next() => session.on_message(msg).await,
            };
            if !goes_on {
                break;
            }
        }
        drop(session);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The managers the agent knows, and which one it opens its next session with.
struct Managers {
    known: Vec<String>,
    /// The leader a manager named.
    hint: Option<String>,
    /// The last of `known` tried (in turn).
    next: usize,
}

impl Managers {
    /// The leader a manager named, else the next known manager in turn; none when no manager is
    /// known.
    fn pick(&mut self) -> Option<String> {
        match self.hint.take() {
            Some(h) => Some(h),
            None if self.known.is_empty() => None,
            None => {
                self.next = self.next.wrapping_add(1);
                Some(self.known[self.next % self.known.len()].clone())
            }
        }
    }
}

fn heartbeat(cfg: &AgentConfig) -> AgentMessage {
    AgentMessage::Heartbeat {
        description: cfg.describer.get(),
        addr: cfg.addr,
    }
}

/// One session with a manager, at `target`.
struct Session<'a> {
    cfg: &'a AgentConfig,
    node: &'a Weak<dyn NodeEvents>,
    runner: &'a TaskRunner,
    managers: &'a mut Managers,
    target: &'a str,
    tx: &'a mpsc::Sender<AgentMessage>,
    log_streams: LogStreams,
    /// The counters this session's leader has (a new session sends them again).
    sent_counters: Option<Vec<ServiceCounters>>,
}

impl Session<'_> {
    /// A heartbeat, and the mesh counters when they changed; false when the session is gone.
    async fn beat(&mut self) -> bool {
        if self.tx.send(heartbeat(self.cfg)).await.is_err() {
            return false;
        }
        let counters = self.cfg.networking.0.mesh_counters();
        if self.sent_counters.as_ref() != Some(&counters) {
            let msg = AgentMessage::MeshStats {
                services: counters.clone(),
            };
            if self.tx.send(msg).await.is_err() {
                return false;
            }
            self.sent_counters = Some(counters);
        }
        true
    }

    /// What the manager sent (`None`: the stream ended); false when the session is over.
    async fn on_message(&mut self, msg: Option<Result<ManagerMessage, ApiError>>) -> bool {
        let cfg = self.cfg;
        let target = self.target;
        match msg {
            Some(Ok(ManagerMessage::Assignments(mut a))) => {
                // The networking learns of new networks before the tasks that use them.
                if a.networks.is_some() || a.nodes.is_some() || a.services.is_some() {
                    cfg.networking
                        .0
                        .cluster(a.networks.take(), a.nodes.take(), a.services.take());
                }
                if let Some(keys) = a.gossip_keys.take() {
                    cfg.networking.0.gossip_keys(keys);
                }
                self.runner.assign(a);
            }
            Some(Ok(ManagerMessage::Logs(req))) => {
                let stream = req.stream;
                let task = tokio::spawn(logs::send_logs(
                    cfg.engine.clone(),
                    req,
                    cfg.node_id.clone(),
                    self.tx.clone(),
                ));
                self.log_streams.add(stream, task.abort_handle());
            }
            Some(Ok(ManagerMessage::LogsCancel { stream })) => self.log_streams.cancel(stream),
            Some(Ok(ManagerMessage::Status {
                managers: m,
                role,
                ca_digest,
            })) => {
                if !ca_digest.is_empty()
                    && let Some(n) = self.node.upgrade()
                {
                    n.roots_announced(&ca_digest);
                }
                self.on_status(m, role).await;
            }
            Some(Ok(ManagerMessage::NotLeader {
                leader,
                managers: m,
            })) => {
                if !m.is_empty() {
                    self.managers.known = m;
                }
                if leader.as_deref() != Some(target) {
                    self.managers.hint = leader;
                }
                return false;
            }
            Some(Ok(ManagerMessage::Removed)) => {
                tracing::error!(
                    "this node was removed from the swarm (node rm); run `meshctl swarm leave` and join again"
                );
                tokio::time::sleep(Duration::from_secs(5)).await;
                return false;
            }
            Some(Err(e)) => {
                tracing::debug!("agent: session with {target} ended: {e}");
                return false;
            }
            None => return false,
        }
        true
    }

    /// The managers to fall back on, and the role the swarm gives the node.
    async fn on_status(&mut self, m: Vec<String>, role: NodeRole) {
        if !m.is_empty() && m != self.managers.known {
            self.managers.known.clone_from(&m);
            if let Some(n) = self.node.upgrade() {
                n.managers_changed(m);
            }
        }
        if role != self.cfg.role {
            tracing::info!(?role, "the swarm changed this node's role");
            if let Some(n) = self.node.upgrade() {
                n.role_changed(role, self.target.to_owned());
            }
            // The daemon replaces this agent once the new certificate is in.
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    }
}

/// The log streams of one session, stopped when the leader cancels them or the session ends.
#[derive(Default)]
struct LogStreams(HashMap<u64, AbortHandle>);

impl LogStreams {
    fn add(&mut self, stream: u64, task: AbortHandle) {
        self.0.retain(|_, t| !t.is_finished());
        self.0.insert(stream, task);
    }

    fn cancel(&mut self, stream: u64) {
        if let Some(t) = self.0.remove(&stream) {
            t.abort();
        }
    }
}

impl Drop for LogStreams {
    fn drop(&mut self) {
        for t in self.0.values() {
            t.abort();
        }
    }
}
