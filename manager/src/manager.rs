//! [`Manager`]: a manager's handle on raft and the replicated [`ClusterState`].
//!
//! Control loops use three things: [`Manager::propose`] (a [`Tx`], applied on every manager, its
//! outcome returned), [`Manager::state`] / [`Manager::watch`] (the state as of the last applied
//! entry, and a channel that changes on every apply), and [`Manager::spawn_while_leader`] (a loop
//! that runs only while this manager leads). Proposals on a follower go to the leader; reads for
//! the API are linearizable (the leader's read index, then wait until applied here).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesh_cluster::Id;
use mesh_cluster::state::{ClusterState, NodeRole, NodeState, Object, Op, Tx, TxError};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, Config, Raft, ServerState, SnapshotPolicy};
use rustls::ClientConfig;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use mesh_api::{ApiError, Code, RaftPayload, ReadIndexReply, Reply, Request, now_millis};

use crate::raft_net::{Peers, RaftReply, RaftRequest, RaftTransport};
pub use crate::store::SNAPSHOT_EVERY;
use crate::store::{self, AppliedState, NodeId, TypeConfig};

/// A node that sent no heartbeat for this long is `Down`.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a proposal or a read waits for a leader.
const LEADER_WAIT: Duration = Duration::from_secs(10);

/// Entries kept in the log behind the last snapshot (a follower that lags more gets the
/// snapshot).
pub const LOGS_KEPT: u64 = 100;

/// Raft's timing: heartbeats every 250 ms, elections after 1.2 to 2.4 s of silence; a snapshot
/// every `snapshot_every` entries, `logs_kept` entries kept behind it.
pub fn raft_config(snapshot_every: u64, logs_kept: u64) -> Config {
    Config {
        cluster_name: "meshd".into(),
        heartbeat_interval: 250,
        election_timeout_min: 1200,
        election_timeout_max: 2400,
        install_snapshot_timeout: 5000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_every),
        max_in_snapshot_log_to_keep: logs_kept,
        purge_batch_size: 1,
        snapshot_max_chunk_size: 256 << 10,
        ..Config::default()
    }
}

/// Why a proposal was not applied.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ProposeError {
    /// The state machine refused it (the state is unchanged).
    #[error(transparent)]
    Tx(#[from] TxError),
    /// It could not be committed (no leader, the leader unreachable, ...). It may or may not
    /// have been applied: re-read and retry.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<ProposeError> for ApiError {
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::Tx(e) => e.into(),
            ProposeError::Api(e) => e,
        }
    }
}

/// The state as the API reads it: applied here, at least up to the leader's read index.
#[derive(Clone, Debug)]
pub struct ReadView {
    pub applied: AppliedState,
    pub leader: NodeId,
    pub reachable: BTreeMap<NodeId, bool>,
}

/// What a manager is.
#[derive(Clone, Debug)]
pub struct ManagerConfig {
    pub raft_dir: PathBuf,
    pub raft_id: NodeId,
    pub node_id: Id,
    /// Our `IP:PORT` for the other managers.
    pub addr: String,
    /// Our client TLS configuration (our manager certificate).
    pub tls: Arc<ClientConfig>,
    /// Compaction: [`SNAPSHOT_EVERY`] and [`LOGS_KEPT`] unless a test wants it sooner.
    pub snapshot_every: u64,
    pub logs_kept: u64,
    /// The data key `swarm unlock` opened (autolock); None: this manager reads its key file.
    pub unlocked_data_key: Option<crate::datakey::DataKey>,
}

/// Called with every [`Manager`] a node starts (on init, join, restart and promotion): where
/// `meshd` attaches control loops, typically with [`Manager::spawn_while_leader`].
#[derive(Clone)]
pub struct ManagerHook(pub Arc<dyn Fn(&Manager) + Send + Sync>);

impl std::fmt::Debug for ManagerHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ManagerHook")
    }
}

/// A manager's handle. Cheap to clone.
#[derive(Clone)]
pub struct Manager {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) raft: Raft<TypeConfig>,
    pub(crate) cfg: ManagerConfig,
    pub(crate) applied: watch::Receiver<AppliedState>,
    pub(crate) peers: Arc<Peers>,
    leading: watch::Receiver<bool>,
    /// Serialises the API's read-modify-write on the leader (control loops retry on conflict).
    pub(crate) write_lock: tokio::sync::Mutex<()>,
    membership_lock: tokio::sync::Mutex<()>,
    /// The leader's record of heartbeats.
    pub(crate) last_seen: Mutex<HashMap<Id, Instant>>,
    /// Sessions, task reports and log streams (used while leading).
    pub(crate) dispatch: crate::dispatcher::Dispatch,
    /// The cluster's data key once loaded, fetched or made ([`Manager::data_key`]).
    pub(crate) data_key: tokio::sync::Mutex<Option<crate::datakey::DataKey>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Manager {
    /// Opens the raft store in `cfg.raft_dir` and starts raft (a fresh store waits to be
    /// bootstrapped or added by a leader; an existing one resumes).
    pub async fn start(cfg: ManagerConfig) -> anyhow::Result<Self> {
        let (log, sm, applied) = store::open(&cfg.raft_dir)?;
        let peers = Peers::new(cfg.tls.clone());
        let config = Arc::new(raft_config(cfg.snapshot_every, cfg.logs_kept).validate()?);
        let raft = Raft::new(
            cfg.raft_id,
            config,
            RaftTransport {
                peers: peers.clone(),
            },
            log,
            sm,
        )
        .await?;
        let unlocked = cfg.unlocked_data_key.clone();
        let (lead_tx, leading) = watch::channel(false);
        let mut metrics = raft.metrics();
        let me = cfg.raft_id;
        let watcher = tokio::spawn(async move {
            loop {
                let is = {
                    let m = metrics.borrow_and_update();
                    m.state == ServerState::Leader && m.current_leader == Some(me)
                };
                lead_tx.send_if_modified(|v| std::mem::replace(v, is) != is);
                if metrics.changed().await.is_err() {
                    lead_tx.send_replace(false);
                    return;
                }
            }
        });
        let m = Self {
            inner: Arc::new(Inner {
                raft,
                cfg,
                applied,
                peers,
                leading,
                write_lock: tokio::sync::Mutex::new(()),
                membership_lock: tokio::sync::Mutex::new(()),
                last_seen: Mutex::new(HashMap::new()),
                dispatch: crate::dispatcher::Dispatch::new(),
                data_key: tokio::sync::Mutex::new(unlocked),
                tasks: Mutex::new(vec![watcher]),
            }),
        };
        m.spawn_while_leader("node monitor", Self::monitor_nodes);
        m.spawn_while_leader("task status writer", |m| {
            crate::dispatcher::Dispatcher::new(m).write_task_statuses()
        });
        m.spawn_while_leader("manager membership", Self::reconcile_membership);
        m.spawn_while_leader(
            "gossip key rotation",
            crate::gossip_keys::rotate_gossip_keys,
        );
        m.spawn_while_leader("sealing clear values", crate::sealing::seal_clear_values);
        let key_file = tokio::spawn(crate::autolock::keep_key_file(m.clone()));
        m.inner
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(key_file);
        Ok(m)
    }

    /// Makes this (fresh) manager a one-voter cluster and waits until it leads.
    pub async fn bootstrap(&self) -> anyhow::Result<()> {
        let me = self.inner.cfg.raft_id;
        let members = BTreeMap::from([(me, BasicNode::new(&self.inner.cfg.addr))]);
        self.inner.raft.initialize(members).await?;
        self.inner
            .raft
            .wait(Some(Duration::from_secs(10)))
            .current_leader(me, "bootstrap")
            .await?;
        let mut leading = self.inner.leading.clone();
        tokio::time::timeout(Duration::from_secs(10), leading.wait_for(|l| *l)).await??;
        Ok(())
    }

    /// Stops raft and every loop of this manager.
    pub async fn shutdown(&self) {
        let tasks: Vec<_> = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
            .collect();
        for t in tasks {
            t.abort();
        }
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
    }

    /// This manager's client TLS configuration (its manager certificate).
    pub fn tls(&self) -> Arc<ClientConfig> {
        self.inner.cfg.tls.clone()
    }

    pub fn raft_id(&self) -> NodeId {
        self.inner.cfg.raft_id
    }

    pub fn node_id(&self) -> &Id {
        &self.inner.cfg.node_id
    }

    /// Our `IP:PORT`.
    pub fn addr(&self) -> &str {
        &self.inner.cfg.addr
    }

    /// The state as of the last entry applied here.
    pub fn state(&self) -> Arc<ClusterState> {
        self.inner.applied.borrow().state.clone()
    }

    /// The state and its raft index.
    pub fn applied(&self) -> AppliedState {
        self.inner.applied.borrow().clone()
    }

    /// A receiver that changes on every apply.
    pub fn watch(&self) -> watch::Receiver<AppliedState> {
        self.inner.applied.clone()
    }

    /// Does this manager lead now?
    pub fn is_leader(&self) -> bool {
        *self.inner.leading.borrow()
    }

    /// A receiver of "this manager leads", changing on every election.
    pub fn leadership(&self) -> watch::Receiver<bool> {
        self.inner.leading.clone()
    }

    /// The current leader's raft id and `IP:PORT`, as far as this manager knows.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?;
        Some((id, node.addr.clone()))
    }

    /// Every manager in raft's membership (voters and learners): raft id to `IP:PORT`.
    pub fn members(&self) -> BTreeMap<NodeId, String> {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        m.membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect()
    }

    /// The voters' raft ids.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        m.membership_config.membership().voter_ids().collect()
    }

    /// Runs `f(manager)` whenever this manager becomes the leader, and aborts it when it stops
    /// leading (or the manager shuts down). The way control loops plug in.
    pub fn spawn_while_leader<F, Fut>(&self, name: &'static str, f: F)
    where
        F: Fn(Manager) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let me = self.clone();
        let mut leading = self.inner.leading.clone();
        let task = tokio::spawn(async move {
            loop {
                if leading.wait_for(|l| *l).await.is_err() {
                    return;
                }
                tracing::info!("leading: starting {name}");
                let run = tokio::spawn(f(me.clone()));
                let _ = leading.wait_for(|l| !*l).await;
                run.abort();
                tracing::info!("no longer leading: stopped {name}");
            }
        });
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(task);
    }

    /// Commits `tx` (on the leader, wherever this runs) and returns its raft index once it is
    /// applied, or why it was not.
    pub async fn propose(&self, tx: Tx) -> Result<u64, ProposeError> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            match self.inner.raft.client_write(tx.clone()).await {
                Ok(resp) => {
                    return match resp.data {
                        Ok(()) => Ok(resp.log_id.index),
                        Err(e) => Err(ProposeError::Tx(e)),
                    };
                }
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    if let Some(node) = f.leader_node {
                        match self
                            .inner
                            .peers
                            .client(&node.addr)
                            .call_with_timeout(
                                &Request::Propose(tx.clone()),
                                Duration::from_secs(10),
                            )
                            .await
                        {
                            Ok(Reply::Proposed { index, result }) => {
                                return result.map(|()| index).map_err(ProposeError::Tx);
                            }
                            Ok(other) => {
                                return Err(ApiError::internal(format!(
                                    "unexpected reply to a proposal: {other:?}"
                                ))
                                .into());
                            }
                            Err(e) if e.not_delivered() => {
                                tracing::debug!("proposal to {}: {e}", node.addr);
                            }
                            Err(e) if e.is_retryable() => {
                                // Sent again, it could be applied twice.
                                return Err(ApiError::outcome_unknown(
                                    "the proposal",
                                    &node.addr,
                                    &e,
                                )
                                .into());
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                    return Err(ApiError::internal(e.to_string()).into());
                }
                Err(RaftError::Fatal(e)) => {
                    return Err(ApiError::unavailable(format!("raft stopped: {e}")).into());
                }
            }
            if Instant::now() > deadline {
                return Err(ApiError::no_leader().into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `Request::Propose` from a follower: commit here if we lead.
    pub async fn propose_here(&self, tx: Tx) -> Result<Reply, ApiError> {
        match self.inner.raft.client_write(tx).await {
            Ok(resp) => Ok(Reply::Proposed {
                index: resp.log_id.index,
                result: resp.data,
            }),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(ApiError::new(
                Code::NotLeader(f.leader_node.map(|n| n.addr)),
                "this manager is not the leader",
            )),
            Err(e) => Err(ApiError::unavailable(e.to_string())),
        }
    }

    /// Sends `req` to the leader (following redirects while an election settles).
    pub async fn forward(&self, req: &Request) -> Result<Reply, ApiError> {
        let deadline = Instant::now() + LEADER_WAIT;
        let mut hint: Option<String> = None;
        loop {
            let target = hint.take().or_else(|| self.leader().map(|(_, a)| a));
            let err = match target {
                Some(addr) if addr == self.inner.cfg.addr && !self.is_leader() => {
                    ApiError::no_leader()
                }
                Some(addr) => match self.inner.peers.client(&addr).call(req).await {
                    Err(ApiError {
                        code: Code::NotLeader(next),
                        ..
                    }) => {
                        hint = next;
                        ApiError::no_leader()
                    }
                    // A write sent again after its answer was lost could be applied twice.
                    Err(e) if e.is_retryable() && req.route().writes && !e.not_delivered() => {
                        return Err(ApiError::outcome_unknown(req.name(), &addr, &e));
                    }
                    Err(e) if e.is_retryable() => e,
                    other => return other,
                },
                None => ApiError::no_leader(),
            };
            if Instant::now() > deadline {
                return Err(err);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A linearizable view for the API: on the leader after confirming leadership, on a follower
    /// after applying up to the leader's read index.
    pub async fn read(&self) -> Result<ReadView, ApiError> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let err = if self.is_leader() {
                match self.read_index_here().await {
                    Ok(r) => {
                        return Ok(ReadView {
                            applied: self.wait_applied(r.index).await?,
                            leader: r.leader,
                            reachable: r.reachable,
                        });
                    }
                    Err(e) => e,
                }
            } else if let Some((_, addr)) = self.leader() {
                match self
                    .inner
                    .peers
                    .client(&addr)
                    .call_with_timeout(&Request::ReadIndex, Duration::from_secs(5))
                    .await
                {
                    Ok(Reply::ReadIndex(r)) => {
                        return Ok(ReadView {
                            applied: self.wait_applied(r.index).await?,
                            leader: r.leader,
                            reachable: r.reachable,
                        });
                    }
                    Ok(other) => {
                        return Err(ApiError::internal(format!(
                            "unexpected reply to a read index: {other:?}"
                        )));
                    }
                    Err(e) if e.is_retryable() => e,
                    Err(e) => return Err(e),
                }
            } else {
                ApiError::no_leader()
            };
            if Instant::now() > deadline {
                tracing::debug!("read failed: {err}");
                return Err(ApiError::no_leader());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_applied(&self, index: u64) -> Result<AppliedState, ApiError> {
        let mut rx = self.inner.applied.clone();
        match tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|a| a.index >= index)).await
        {
            Ok(Ok(a)) => Ok(a.clone()),
            _ => Err(ApiError::unavailable(format!(
                "this manager did not catch up with the leader (index {index}) within 5s"
            ))),
        }
    }

    /// `Request::ReadIndex`: confirm leadership with a quorum, answer the index to read at and
    /// which managers answered lately.
    pub async fn read_index_here(&self) -> Result<ReadIndexReply, ApiError> {
        match self.inner.raft.get_read_log_id().await {
            Ok((read, _)) => {
                let me = self.raft_id();
                let mut reachable = self.inner.peers.reachable(self.members().into_keys());
                reachable.insert(me, true);
                Ok(ReadIndexReply {
                    index: read.map_or(0, |l| l.index),
                    leader: me,
                    reachable,
                })
            }
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => Err(ApiError::new(
                Code::NotLeader(f.leader_node.map(|n| n.addr)),
                "this manager is not the leader",
            )),
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => {
                Err(ApiError::no_leader())
            }
            Err(e) => Err(ApiError::unavailable(e.to_string())),
        }
    }

    /// Runs `plan` on the current state and proposes its transaction, again if a concurrent
    /// write made it conflict.
    pub async fn with_retries(
        &self,
        plan: impl Fn(&ClusterState) -> Result<Option<Tx>, ApiError>,
    ) -> Result<Reply, ApiError> {
        let _g = self.inner.write_lock.lock().await;
        let mut attempts = 0;
        loop {
            let Some(tx) = plan(&self.state())? else {
                return Ok(Reply::Done);
            };
            match self.propose(tx).await {
                Ok(_) => return Ok(Reply::Done),
                Err(ProposeError::Tx(TxError::Conflict { .. })) if attempts < 5 => attempts += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A raft RPC from another manager.
    pub async fn raft_rpc(&self, payload: &RaftPayload) -> Result<RaftPayload, ApiError> {
        let raft = &self.inner.raft;
        let reply = match payload.decode()? {
            RaftRequest::Append(r) => RaftReply::Append(raft.append_entries(r).await),
            RaftRequest::Vote(r) => RaftReply::Vote(raft.vote(r).await),
            RaftRequest::Snapshot(r) => RaftReply::Snapshot(raft.install_snapshot(r).await),
        };
        RaftPayload::encode(&reply)
    }

    /// `Request::AddManager` on the leader: make `raft_id` a learner, let it catch up, then a
    /// voter.
    pub async fn add_manager(&self, raft_id: NodeId, addr: &str) -> Result<Reply, ApiError> {
        if !self.is_leader() {
            return Err(ApiError::new(
                Code::NotLeader(self.leader().map(|(_, a)| a)),
                "this manager is not the leader",
            ));
        }
        let _g = self.inner.membership_lock.lock().await;
        if self.voters().contains(&raft_id) {
            return Ok(Reply::Done);
        }
        let raft = &self.inner.raft;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let res = match raft.add_learner(raft_id, BasicNode::new(addr), true).await {
                Ok(_) => {
                    raft.change_membership(
                        ChangeMembers::AddVoterIds(BTreeSet::from([raft_id])),
                        false,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            match res {
                Ok(_) => {
                    tracing::info!(raft_id, addr, "manager added to raft");
                    return Ok(Reply::Done);
                }
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))
                    if Instant::now() < deadline =>
                {
                    tracing::debug!("adding manager {raft_id}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    return Err(ApiError::new(
                        Code::NotLeader(f.leader_node.map(|n| n.addr)),
                        "this manager is not the leader",
                    ));
                }
                Err(e) => return Err(ApiError::unavailable(format!("adding manager: {e}"))),
            }
        }
    }

    /// Leader loop: voters and learners whose node is gone or no longer a manager leave raft;
    /// demoted nodes lose their manager status once out.
    async fn reconcile_membership(self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let state = self.state();
            if state.cluster.is_none() {
                continue;
            }
            let wanted: BTreeSet<NodeId> = state
                .nodes
                .values()
                .filter(|n| n.spec.role == NodeRole::Manager)
                .filter_map(|n| n.manager_status.as_ref().map(|m| m.raft_id))
                .collect();
            let members: BTreeSet<NodeId> = self.members().into_keys().collect();
            let voters = self.voters();
            let gone: BTreeSet<NodeId> = members.difference(&wanted).copied().collect();
            if !gone.is_empty() {
                let _g = self.inner.membership_lock.lock().await;
                let raft = &self.inner.raft;
                let leaving_voters: BTreeSet<NodeId> =
                    gone.intersection(&voters).copied().collect();
                if !leaving_voters.is_empty() && leaving_voters.len() < voters.len() {
                    tracing::info!(?leaving_voters, "removing demoted managers from raft");
                    if let Err(e) = raft
                        .change_membership(ChangeMembers::RemoveVoters(leaving_voters), false)
                        .await
                    {
                        tracing::warn!("removing voters: {e}");
                        continue;
                    }
                }
                let learners: BTreeSet<NodeId> = {
                    let m = raft.metrics();
                    let m = m.borrow();
                    m.membership_config.membership().learner_ids().collect()
                };
                let gone_learners: BTreeSet<NodeId> =
                    gone.intersection(&learners).copied().collect();
                if !gone_learners.is_empty()
                    && let Err(e) = raft
                        .change_membership(ChangeMembers::RemoveNodes(gone_learners), false)
                        .await
                {
                    tracing::warn!("removing learners: {e}");
                }
            }
            // Demoted and out of raft: clear the manager status.
            let members: BTreeSet<NodeId> = self.members().into_keys().collect();
            let ops: Vec<Op> = state
                .nodes
                .values()
                .filter(|n| n.spec.role == NodeRole::Worker)
                .filter(|n| {
                    n.manager_status
                        .as_ref()
                        .is_some_and(|m| !members.contains(&m.raft_id))
                })
                .map(|n| {
                    let mut n = n.clone();
                    n.manager_status = None;
                    Op::Put(Object::Node(n))
                })
                .collect();
            if !ops.is_empty()
                && let Err(e) = self
                    .propose(Tx {
                        at: now_millis(),
                        ops,
                    })
                    .await
            {
                tracing::debug!("clearing manager status: {e}");
            }
        }
    }

    /// A heartbeat from `node` (on the leader): remember it, and write the node `Ready` (with
    /// what it reports) when that changes something.
    pub(crate) async fn heartbeat(
        &self,
        node_id: &Id,
        description: &mesh_cluster::state::NodeDescription,
        addr: std::net::Ipv4Addr,
    ) -> Result<(), ApiError> {
        self.inner
            .last_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(node_id.clone(), Instant::now());
        let state = self.state();
        let Some(node) = state.nodes.get(node_id) else {
            return Err(ApiError::not_found(format!("node {node_id} not found")));
        };
        if node.status.state == NodeState::Ready
            && node.description == *description
            && node.status.addr == Some(addr)
        {
            return Ok(());
        }
        let mut n = node.clone();
        n.status.state = NodeState::Ready;
        n.status.message = String::new();
        n.status.addr = Some(addr);
        n.description = description.clone();
        match self
            .propose(Tx {
                at: now_millis(),
                ops: vec![Op::Put(Object::Node(n))],
            })
            .await
        {
            // Someone else wrote the node meanwhile: the next heartbeat looks again.
            Ok(_) | Err(ProposeError::Tx(TxError::Conflict { .. })) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Leader loop: a `Ready` node without a heartbeat for [`HEARTBEAT_TIMEOUT`] goes `Down`.
    /// A new leader first gives every node a full timeout to find it.
    async fn monitor_nodes(self) {
        self.inner
            .last_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let state = self.state();
            let ops: Vec<Op> = {
                let mut seen = self
                    .inner
                    .last_seen
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                // A node this leader has not heard of yet (it just took over, or the node just
                // joined) gets a full timeout from now.
                let now = Instant::now();
                state
                    .nodes
                    .values()
                    .filter(|n| {
                        let last = *seen.entry(n.id.clone()).or_insert(now);
                        n.status.state != NodeState::Down && last.elapsed() > HEARTBEAT_TIMEOUT
                    })
                    .map(|n| {
                        let mut n = n.clone();
                        n.status.state = NodeState::Down;
                        n.status.message = "heartbeat failure".into();
                        Op::Put(Object::Node(n))
                    })
                    .collect()
            };
            for op in ops {
                if let Err(e) = self
                    .propose(Tx {
                        at: now_millis(),
                        ops: vec![op],
                    })
                    .await
                {
                    tracing::debug!("marking a node down: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::OnceLock;

    use futures::Stream;
    use mesh_cluster::state::{Blob, Meta};
    use tokio::sync::mpsc;

    use super::*;
    use mesh_api::tls::Credentials;
    use mesh_api::transport::{self, Handler, Peer};
    use mesh_api::{AgentMessage, ManagerMessage};

    use crate::ca::{self as pki, NodeKey};

    /// Routes the managers' own requests to one [`Manager`] (what the daemon does for them).
    #[derive(Default)]
    struct Routes(OnceLock<Manager>);

    impl Handler for Routes {
        async fn call(&self, peer: Peer, req: Request) -> Result<Reply, ApiError> {
            assert!(
                matches!(&peer, Peer::Node(id) if id.role == NodeRole::Manager),
                "{peer:?}"
            );
            let m = self.0.get().expect("manager started").clone();
            m.serve_manager_request(&peer, req).await
        }

        async fn session(
            &self,
            _: Peer,
            _: Pin<Box<dyn Stream<Item = Result<AgentMessage, ApiError>> + Send>>,
            _: mpsc::Sender<ManagerMessage>,
        ) {
        }
    }

    struct TestManager {
        manager: Manager,
        _dir: tempfile::TempDir,
    }

    /// A manager with raft id `id`, its own store and a 2377-like TLS server on loopback.
    async fn manager(ca: &(String, String), cluster: &Id, id: NodeId) -> TestManager {
        let key = NodeKey::generate().unwrap();
        let node_id = Id::from(format!("node{id}"));
        let cert = pki::issue(
            &pki::CaKeys {
                cert_pem: &ca.0,
                key_pem: &ca.1,
            },
            &key.csr_pem().unwrap(),
            cluster,
            &node_id,
            NodeRole::Manager,
            mesh_cluster::certs::DEFAULT_CERT_EXPIRY_MS,
        )
        .unwrap();
        let creds = Credentials {
            ca_pem: ca.0.clone(),
            cert_pem: cert,
            key_pem: key.key_pem(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let routes = Arc::new(Routes::default());
        tokio::spawn(transport::serve_tls(
            listener,
            creds.server_config().unwrap(),
            routes.clone(),
            futures::future::pending(),
        ));
        let dir = tempfile::tempdir().unwrap();
        let manager = Manager::start(ManagerConfig {
            raft_dir: dir.path().join("raft"),
            raft_id: id,
            node_id,
            addr,
            tls: creds.client_config().unwrap(),
            snapshot_every: 10,
            logs_kept: 2,
            unlocked_data_key: None,
        })
        .await
        .unwrap();
        let _ = routes.0.set(manager.clone());
        TestManager { manager, _dir: dir }
    }

    fn secret(i: u64) -> Tx {
        Tx {
            at: i,
            ops: vec![Op::Put(Object::Secret(Blob {
                id: Id::from(format!("s{i}")),
                meta: Meta::default(),
                name: format!("secret-{i}"),
                labels: BTreeMap::new(),
                data: vec![7; 100],
            }))],
        }
    }

    /// A cluster an older meshd wrote (its CA key, token secrets and gossip keyring in the
    /// clear) is sealed by its leader, with a data key made then, and the log that held the
    /// clear values is purged behind a snapshot.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leader_seals_what_an_older_meshd_left_in_the_clear() {
        let cluster = Id::from("c1");
        let ca = pki::generate_ca(&cluster).unwrap();
        let m1 = manager(&ca, &cluster, 1).await;
        let m = &m1.manager;
        m.bootstrap().await.unwrap();
        let clear = crate::handlers::swarm::bootstrap_tx(
            &cluster,
            &Id::from("node1"),
            &ca,
            mesh_cluster::state::NodeDescription::default(),
            std::net::Ipv4Addr::LOCALHOST,
            2377,
            mesh_cluster::certs::DEFAULT_CERT_EXPIRY_MS,
        );
        let written = m.propose(clear).await.unwrap();
        assert!(
            m.state()
                .cluster
                .as_ref()
                .unwrap()
                .root_ca_key_pem
                .is_clear()
        );

        crate::sealing::seal_clear_values(m.clone()).await;
        let state = m.state();
        let c = state.cluster.as_ref().unwrap();
        let key = m.data_key().await.unwrap();
        assert_eq!(c.data_key_check.as_deref(), Some(key.check().as_str()));
        assert_eq!(key.open_value(&c.root_ca_key_pem).unwrap(), ca.1);
        assert!(
            !serde_json::to_string(&*state)
                .unwrap()
                .contains("PRIVATE KEY")
        );
        assert!(m.inner.cfg.raft_dir.join("data.key").is_file());
        // openraft purges soon after it is asked, not at once.
        let mut metrics = m.inner.raft.metrics();
        let purged = metrics.wait_for(|x| x.purged.is_some_and(|p| p.index >= written));
        assert!(
            tokio::time::timeout(Duration::from_secs(10), purged)
                .await
                .is_ok_and(|r| r.is_ok()),
            "the entry with the clear values (index {written}) is not purged"
        );
        m1.manager.shutdown().await;
    }

    /// Three managers over mutual TLS on loopback: the log is compacted into snapshots, a
    /// manager added late catches up from a snapshot, proposals and reads on a follower go
    /// through the leader, and a refused transaction answers with its reason.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn managers_replicate_compact_and_install_snapshots_over_tls() {
        let cluster = Id::from("c1");
        let ca = pki::generate_ca(&cluster).unwrap();
        let m1 = manager(&ca, &cluster, 1).await;
        m1.manager.bootstrap().await.unwrap();
        for i in 0..40 {
            m1.manager.propose(secret(i)).await.unwrap();
        }
        // Compacted: a snapshot was taken and older entries purged.
        let metrics = m1.manager.inner.raft.metrics().borrow().clone();
        assert!(metrics.snapshot.is_some(), "no snapshot after 40 entries");
        assert!(metrics.purged.is_some(), "no purge after 40 entries");

        // A late manager can only catch up from the snapshot.
        let m2 = manager(&ca, &cluster, 2).await;
        let m3 = manager(&ca, &cluster, 3).await;
        for m in [&m2, &m3] {
            m1.manager
                .add_manager(m.manager.raft_id(), m.manager.addr())
                .await
                .unwrap();
        }
        assert_eq!(m1.manager.voters(), BTreeSet::from([1, 2, 3]));
        let view = m2.manager.read().await.unwrap();
        assert_eq!(view.applied.state.secrets.len(), 40);
        assert_eq!(view.leader, 1);
        assert_eq!(*view.applied.state, *m1.manager.state());
        let m2_metrics = m2.manager.inner.raft.metrics().borrow().clone();
        assert!(
            m2_metrics.snapshot.is_some(),
            "the late manager did not install a snapshot: {m2_metrics:?}"
        );

        // A follower's proposal goes to the leader; its outcome comes back.
        let index = m3.manager.propose(secret(100)).await.unwrap();
        assert!(index > 40);
        let dup = Tx {
            at: 1,
            ops: vec![Op::Put(Object::Secret(Blob {
                id: Id::from("other"),
                meta: Meta::default(),
                name: "secret-100".into(),
                labels: BTreeMap::new(),
                data: Vec::new(),
            }))],
        };
        assert!(matches!(
            m3.manager.propose(dup).await,
            Err(ProposeError::Tx(TxError::NameTaken { .. }))
        ));
        let view = m3.manager.read().await.unwrap();
        assert!(view.applied.state.secrets.contains_key(&Id::from("s100")));
        assert_eq!(view.reachable.values().filter(|r| **r).count(), 3);

        for m in [m1, m2, m3] {
            m.manager.shutdown().await;
        }
    }
}
