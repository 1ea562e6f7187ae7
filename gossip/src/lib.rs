//! `mesh-gossip`: node-to-node gossip on 7946 (chitchat): membership, failure detection, and
//! the endpoint table (which task address and MAC live behind which node).
//!
//! Every node runs one [`Gossip`]. It publishes, in its own chitchat key-value namespace, its
//! [`NodeInfo`] (key `info`) and one key per [`TaskEndpoint`] (`ep/<task>/<network>`), so that a
//! task coming or going sends one small delta. Scuttlebutt anti-entropy spreads the keys;
//! chitchat's phi-accrual failure detector decides who is live. [`Gossip::view`] gives a
//! [`GossipView`] (live nodes, their endpoints, dead nodes) rebuilt on every change: the data
//! plane programs FDB, neighbour and backend entries from it, so a node declared dead loses its
//! endpoints everywhere without waiting for the managers.
//!
//! Incarnations: a node's chitchat id is (node id, generation, gossip address), the generation
//! being the start time in milliseconds. A node restarted with the same node id is a new member
//! with a higher generation: its peers take the newest live incarnation (fresh endpoints only)
//! and let the old one die and be garbage collected.
//!
//! Timing (see [`GossipTiming`]): chitchat's phi is `time since the last heartbeat / mean
//! heartbeat interval`, and a node learns a peer's heartbeat from every digest that carries a
//! newer one (direct or relayed), several times per gossip round. Detection therefore takes about
//! `phi_threshold × mean interval`, plus up to one round for the liveness check (the view is
//! rebuilt as soon as the live set changes). With the defaults (100 ms rounds, threshold 20) a killed node was dropped after
//! 0.8 to 1.1 s in a 3-node lab (tests/gossip.rs prints it), and after 1.1 to 1.5 s with 10 to 25
//! nodes on loopback. Shorter rounds or a lower threshold detect faster and gossip more, and make
//! false deaths likelier on a loaded host.
//!
//! What is and is not protected:
//! - Cluster isolation: every SYN carries the cluster id; a node of another cluster is answered
//!   `BadCluster` and never enters this cluster's state, nor this cluster its state.
//! - Sealed: every datagram is encrypted and authenticated with the cluster's gossip keyring
//!   (`seal.rs`, AES-256-GCM, keys from the managers over mTLS, rotated by the leader). Anyone on
//!   the underlay without a key can neither read the state nor inject or forge any of it.
//! - Only UDP 7946 is used: chitchat has no TCP push/pull; a large state travels as successive
//!   partial deltas of at most one 64 KB datagram each (IP-fragmented on the wire).

mod keys;
mod model;
mod seal;
mod view;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chitchat::{
    Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, ProtocolVersion,
    Version, spawn_chitchat,
};
use tokio::sync::{Mutex, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{self, MissedTickBehavior};
use tracing::{debug, error, info, warn};

pub use model::{GossipView, NodeInfo, TaskEndpoint};
pub use seal::{GossipKey, GossipKeyring, MAX_KEYS, OpenError, SealCounters, SharedKeyring};

use keys::{ENDPOINT_PREFIX, INFO_KEY, KvChange, check_id, encode_info, endpoint_changes};
use view::{Liveness, Member, build_view};

/// The gossip port (UDP), as in Docker Swarm.
pub const DEFAULT_PORT: u16 = 7946;

#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("invalid gossip configuration: {0}")]
    InvalidConfig(String),
    #[error("invalid endpoint: {0}")]
    InvalidEndpoint(String),
    #[error("cannot start gossip on {listen}: {source:#}")]
    Start {
        listen: SocketAddr,
        source: anyhow::Error,
    },
    #[error("gossip stopped with an error: {0:#}")]
    Stopped(anyhow::Error),
}

/// Gossip rounds and failure detection.
#[derive(Clone, Debug, PartialEq)]
pub struct GossipTiming {
    /// One gossip round: each node sends its digest to up to three live peers. Also how often
    /// liveness is re-evaluated and the view refreshed.
    pub interval: Duration,
    /// A peer is dead once `time since its last heartbeat / its mean heartbeat interval` exceeds
    /// this (chitchat's phi).
    pub phi_threshold: f64,
    /// Heartbeat gaps longer than this are not sampled (they would make the mean, and so the
    /// detection, slow for a long time after a partition heals).
    pub max_heartbeat_interval: Duration,
    /// How long a dead node's state is kept (and the node listed in [`GossipView::dead`]) before
    /// it is garbage collected; a node restarted with the same id is a new incarnation, so this
    /// only bounds memory and what `dead` remembers.
    pub dead_node_grace: Duration,
    /// How long a deleted key's tombstone is kept; a peer that was away longer gets the node's
    /// full state again instead of the deletions.
    pub tombstone_grace: Duration,
    /// How often a seed that is not a live peer is contacted again.
    pub seed_interval: Duration,
}

impl Default for GossipTiming {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(100),
            phi_threshold: 20.0,
            max_heartbeat_interval: Duration::from_secs(2),
            dead_node_grace: Duration::from_hours(1),
            tombstone_grace: Duration::from_hours(1),
            seed_interval: Duration::from_secs(1),
        }
    }
}

/// How to start one node's gossip.
#[derive(Clone, Debug)]
pub struct GossipConfig {
    /// This node's id (the cluster's node id): 1 to 64 characters out of `[A-Za-z0-9_.-]`.
    pub node_id: String,
    /// Nodes gossip only with nodes of the same cluster id.
    pub cluster_id: String,
    /// Where to bind (UDP): the advertised address by [`GossipConfig::new`].
    pub listen: SocketAddr,
    /// Where peers reach this node (its underlay address and the gossip port).
    pub advertise: SocketAddr,
    /// Peers to contact until they are live (more can be given later with
    /// [`Gossip::set_seeds`]).
    pub seeds: Vec<SocketAddr>,
    /// What this node publishes about itself from its first message on.
    pub info: NodeInfo,
    pub timing: GossipTiming,
    /// The keys every datagram is sealed and opened with; replaced in place on a rotation.
    /// Empty: nothing is sent and everything received is dropped, until keys arrive.
    pub keyring: SharedKeyring,
}

impl GossipConfig {
    /// A configuration with the defaults: listen on the advertised address only (gossip is not
    /// for other networks of the host), no seeds, default timing, no keys yet.
    pub fn new(
        node_id: impl Into<String>,
        cluster_id: impl Into<String>,
        advertise: SocketAddr,
        info: NodeInfo,
    ) -> Self {
        Self {
            node_id: node_id.into(),
            cluster_id: cluster_id.into(),
            listen: advertise,
            advertise,
            seeds: Vec::new(),
            info,
            timing: GossipTiming::default(),
            keyring: SharedKeyring::default(),
        }
    }

    /// Checks everything before anything is bound.
    pub fn validate(&self) -> Result<(), GossipError> {
        let bad = |m: String| Err(GossipError::InvalidConfig(m));
        check_id("node id", &self.node_id)
            .map_err(|e| GossipError::InvalidConfig(e.to_string()))?;
        if self.cluster_id.is_empty() {
            return bad("the cluster id is empty".into());
        }
        if self.listen.port() == 0 {
            return bad(format!(
                "listen address {}: give a port (peers reach the advertised one)",
                self.listen
            ));
        }
        if self.advertise.ip().is_unspecified() || self.advertise.port() == 0 {
            return bad(format!(
                "advertise address {}: expected the node's underlay IP and a port, e.g. \
                 198.18.0.11:{DEFAULT_PORT}",
                self.advertise
            ));
        }
        if let Some(seed) = self
            .seeds
            .iter()
            .find(|s| s.ip().is_unspecified() || s.port() == 0)
        {
            return bad(format!("seed {seed}: expected a peer's IP and gossip port"));
        }
        encode_info(&self.info)?;
        let t = &self.timing;
        if t.interval < Duration::from_millis(10) {
            return bad(format!("gossip interval {:?}: at least 10ms", t.interval));
        }
        if !(t.phi_threshold.is_finite() && t.phi_threshold >= 1.0) {
            return bad(format!(
                "phi threshold {}: expected a number of mean heartbeat intervals, at least 1",
                t.phi_threshold
            ));
        }
        for (name, d) in [
            ("max heartbeat interval", t.max_heartbeat_interval),
            ("dead node grace", t.dead_node_grace),
            ("tombstone grace", t.tombstone_grace),
            ("seed interval", t.seed_interval),
        ] {
            if d < t.interval {
                return bad(format!(
                    "{name} {d:?}: at least the gossip interval ({:?})",
                    t.interval
                ));
            }
        }
        Ok(())
    }
}

/// One node's gossip: a chitchat server on UDP plus a task that refreshes the view and contacts
/// seeds. Dropping it stops both at once (as a crash would: chitchat has no leave message);
/// [`Gossip::shutdown`] waits for them.
pub struct Gossip {
    node_id: String,
    keyring: SharedKeyring,
    counters: Arc<SealCounters>,
    chitchat: Arc<Mutex<Chitchat>>,
    seeds: watch::Sender<BTreeSet<SocketAddr>>,
    view: watch::Receiver<GossipView>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Gossip {
    /// Binds the UDP socket (in the calling thread's network namespace), publishes the node's
    /// info and starts gossiping. Must run inside a tokio runtime, which then carries the gossip.
    pub async fn start(config: GossipConfig) -> Result<Self, GossipError> {
        config.validate()?;
        let info_value = encode_info(&config.info)?;
        let t = &config.timing;
        let generation = next_generation();
        let chitchat_config = ChitchatConfig {
            chitchat_id: ChitchatId::new(config.node_id.clone(), generation, config.advertise),
            cluster_id: config.cluster_id.clone(),
            gossip_interval: t.interval,
            listen_addr: config.listen,
            // Seeds are contacted by our own task, so that they can change (`set_seeds`).
            seed_nodes: Vec::new(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: t.phi_threshold,
                sampling_window_size: 1_000,
                max_interval: t.max_heartbeat_interval,
                // The prior of the mean heartbeat interval, until samples outweigh it. Peers see
                // a node's heartbeat rise two to three times a round (directly and relayed):
                // half a round keeps a young incarnation's detection time near the steady one.
                initial_interval: t.interval / 2,
                dead_node_grace_period: t.dead_node_grace,
            },
            marked_for_deletion_grace_period: t.tombstone_grace,
            catchup_callback: None,
            extra_liveness_predicate: None,
            // Every node of a meshd cluster runs this chitchat: the compressed digest is fine.
            protocol_version: ProtocolVersion::V1,
        };
        let counters = Arc::new(SealCounters::default());
        let transport = seal::SealedUdpTransport {
            keyring: config.keyring.clone(),
            cluster_id: config.cluster_id.clone(),
            counters: counters.clone(),
        };
        let handle = spawn_chitchat(
            chitchat_config,
            vec![(INFO_KEY.to_owned(), info_value)],
            &transport,
        )
        .await
        .map_err(|source| GossipError::Start {
            listen: config.listen,
            source,
        })?;
        info!(
            node_id = %config.node_id,
            generation,
            listen = %config.listen,
            advertise = %config.advertise,
            "gossip started"
        );
        let chitchat = handle.chitchat();
        let (seeds_tx, seeds_rx) = watch::channel(config.seeds.iter().copied().collect());
        let (view_tx, view_rx) = watch::channel(GossipView::default());
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(maintain(
            handle,
            config.timing.clone(),
            seeds_rx,
            view_tx,
            stop_rx,
        ));
        Ok(Self {
            node_id: config.node_id,
            keyring: config.keyring,
            counters,
            chitchat,
            seeds: seeds_tx,
            view: view_rx,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Replaces the keys (a rotation): the newest seals from now on, every one of them opens.
    pub fn set_keys(&self, ring: GossipKeyring) {
        self.keyring.set(ring);
    }

    /// Datagrams dropped because they did not open under the ring (forged, stale key, noise).
    pub fn rejected_datagrams(&self) -> u64 {
        self.counters.rejected.load(Ordering::Relaxed)
    }

    /// The cluster as this node sees it, updated on every membership or key change.
    pub fn view(&self) -> watch::Receiver<GossipView> {
        self.view.clone()
    }

    /// Replaces this node's published endpoints: new ones are set, changed ones updated, gone
    /// ones deleted (tombstoned), unchanged ones not touched. An invalid or duplicated endpoint
    /// refuses the whole set and changes nothing.
    pub async fn set_endpoints(&self, endpoints: &[TaskEndpoint]) -> Result<(), GossipError> {
        let mut chitchat = self.chitchat.lock().await;
        let own = chitchat.self_node_state();
        let current: BTreeMap<String, String> = own
            .key_values()
            .filter(|(k, _)| k.starts_with(ENDPOINT_PREFIX))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let changes = endpoint_changes(&current, endpoints)?;
        debug!(changes = changes.len(), "publishing endpoints");
        for change in changes {
            match change {
                KvChange::Set { key, value } => own.set(key, value),
                KvChange::Delete { key } => own.delete(&key),
            }
        }
        Ok(())
    }

    /// Replaces the seeds: addresses contacted now and every [`GossipTiming::seed_interval`]
    /// while they are not live peers (managers hand every node the addresses they know).
    pub fn set_seeds(&self, seeds: impl IntoIterator<Item = SocketAddr>) {
        let seeds: BTreeSet<SocketAddr> = seeds
            .into_iter()
            .filter(|s| !s.ip().is_unspecified() && s.port() != 0)
            .collect();
        self.seeds.send_if_modified(|current| {
            let changed = *current != seeds;
            *current = seeds;
            changed
        });
    }

    /// The current failure-detection timeout of each live peer (phi threshold × its mean
    /// heartbeat interval): how long after its last heartbeat it would be declared dead.
    pub async fn detection_timeouts(&self) -> BTreeMap<String, Duration> {
        let chitchat = self.chitchat.lock().await;
        chitchat
            .live_nodes()
            .filter_map(|id| {
                Some((
                    id.node_id.to_string(),
                    chitchat.failure_detection_timeout(id)?,
                ))
            })
            .collect()
    }

    /// Stops gossiping and waits for the server to end.
    pub async fn shutdown(mut self) -> Result<(), GossipError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => match task.await {
                Ok(result) => result.map_err(GossipError::Stopped),
                Err(e) => Err(GossipError::Stopped(e.into())),
            },
            None => Ok(()),
        }
    }
}

impl Drop for Gossip {
    fn drop(&mut self) {
        // Aborting the task drops the chitchat handle, which ends the server.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A generation above every earlier one of this process and, through the clock, of earlier
/// processes with the same node id.
fn next_generation() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let prev = LAST
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |prev| {
            Some(now.max(prev + 1))
        })
        .unwrap_or_else(|prev| prev);
    now.max(prev + 1)
}

/// Refreshes the view every round (when something changed) and contacts seeds that are not live,
/// until stopped or until the server dies.
async fn maintain(
    handle: ChitchatHandle,
    timing: GossipTiming,
    mut seeds: watch::Receiver<BTreeSet<SocketAddr>>,
    view_tx: watch::Sender<GossipView>,
    mut stop: oneshot::Receiver<()>,
) -> anyhow::Result<()> {
    let chitchat = handle.chitchat();
    let mut refresh = time::interval(timing.interval);
    refresh.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut seeding = time::interval(timing.seed_interval);
    seeding.set_missed_tick_behavior(MissedTickBehavior::Skip);
    // Fires right after a gossip round changed who is live: refresh then, not a round later.
    let mut membership = chitchat.lock().await.live_nodes_watcher();
    let terminated = handle.termination_watcher();
    tokio::pin!(terminated);
    let mut state = Refresh::default();
    loop {
        tokio::select! {
            Ok(()) = membership.changed() => refresh_view(&chitchat, &mut state, &view_tx).await,
            _ = &mut stop => return handle.shutdown().await,
            result = &mut terminated => {
                error!(?result, "gossip server ended: the view is no longer updated");
                return result.and(Err(anyhow::anyhow!("gossip server ended")));
            }
            _ = refresh.tick() => refresh_view(&chitchat, &mut state, &view_tx).await,
            _ = seeding.tick() => {
                let seeds = seeds.borrow().clone();
                contact_seeds(&handle, &chitchat, &seeds).await;
            }
            changed = seeds.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let seeds = seeds.borrow_and_update().clone();
                contact_seeds(&handle, &chitchat, &seeds).await;
            }
        }
    }
}

/// What the view depends on: live members with their max version, dead members. Cheap to
/// compare, so that an unchanged cluster costs no rebuild.
#[derive(PartialEq, Eq)]
struct Fingerprint {
    live: Vec<(ChitchatId, Version)>,
    dead: Vec<ChitchatId>,
}

fn fingerprint(chitchat: &Chitchat) -> Fingerprint {
    let mut live: Vec<(ChitchatId, Version)> = chitchat
        .live_nodes()
        .map(|id| {
            let version = chitchat
                .node_state(id)
                .map_or(0, chitchat::NodeState::max_version);
            (id.clone(), version)
        })
        .collect();
    live.sort();
    let mut dead: Vec<ChitchatId> = chitchat.dead_nodes().cloned().collect();
    dead.sort();
    Fingerprint { live, dead }
}

/// The members the view is built from. `seen_live` remembers the incarnations this node has
/// seen live: chitchat's failure detector also calls dead a member heard of only once (not yet
/// sampled), such as a node that is joining or an old incarnation learnt from a peer; those are
/// left out rather than reported dead.
fn members(chitchat: &Chitchat, seen_live: &mut HashSet<ChitchatId>) -> Vec<Member> {
    let live: HashSet<&ChitchatId> = chitchat.live_nodes().collect();
    let dead: HashSet<&ChitchatId> = chitchat.dead_nodes().collect();
    seen_live.retain(|id| chitchat.node_state(id).is_some());
    seen_live.extend(live.iter().map(|id| (*id).clone()));
    chitchat
        .node_states()
        .iter()
        .filter_map(|(id, state)| {
            let liveness = if live.contains(id) {
                Liveness::Live
            } else if dead.contains(id) && seen_live.contains(id) {
                Liveness::Dead
            } else {
                return None;
            };
            let key_values = if liveness == Liveness::Live {
                state
                    .key_values()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            } else {
                Vec::new()
            };
            Some(Member {
                node_id: id.node_id.to_string(),
                generation: id.generation_id,
                liveness,
                key_values,
            })
        })
        .collect()
}

/// What the view refresh keeps between rounds.
#[derive(Default)]
struct Refresh {
    last: Option<Fingerprint>,
    seen_live: HashSet<ChitchatId>,
}

async fn refresh_view(
    chitchat: &Mutex<Chitchat>,
    refresh: &mut Refresh,
    view_tx: &watch::Sender<GossipView>,
) {
    let members = {
        let guard = chitchat.lock().await;
        let now = fingerprint(&guard);
        if refresh.last.as_ref() == Some(&now) {
            return;
        }
        refresh.last = Some(now);
        members(&guard, &mut refresh.seen_live)
    };
    let view = build_view(&members);
    view_tx.send_if_modified(|current| {
        if *current == view {
            return false;
        }
        let joined: Vec<&String> = view
            .live
            .keys()
            .filter(|n| !current.live.contains_key(*n))
            .collect();
        let died: Vec<&String> = view
            .dead
            .iter()
            .filter(|n| !current.dead.contains(*n))
            .collect();
        if !joined.is_empty() || !died.is_empty() {
            info!(
                ?joined,
                ?died,
                live = view.live.len(),
                "gossip membership changed"
            );
        }
        *current = view;
        true
    });
}

async fn contact_seeds(
    handle: &ChitchatHandle,
    chitchat: &Mutex<Chitchat>,
    seeds: &BTreeSet<SocketAddr>,
) {
    if seeds.is_empty() {
        return;
    }
    let live: HashSet<SocketAddr> = chitchat
        .lock()
        .await
        .live_nodes()
        .map(|id| id.gossip_advertise_addr)
        .collect();
    for seed in seeds.iter().filter(|s| !live.contains(s)) {
        if let Err(e) = handle.gossip(*seed) {
            warn!(%seed, error = %e, "cannot contact gossip seed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GossipConfig {
        GossipConfig::new(
            "n1",
            "c1",
            "198.18.0.11:7946".parse().unwrap(),
            NodeInfo {
                addr: "198.18.0.11".parse().unwrap(),
                hostname: "n1".into(),
            },
        )
    }

    #[test]
    fn defaults_validate_and_listen_on_the_advertised_address() {
        let c = config();
        c.validate().unwrap();
        assert_eq!(c.listen, "198.18.0.11:7946".parse().unwrap());
    }

    #[test]
    fn bad_configurations_are_refused_by_name() {
        type Breakage = fn(&mut GossipConfig);
        let cases: Vec<(Breakage, &str)> = vec![
            (|c| c.node_id = "a b".into(), "node id"),
            (|c| c.cluster_id.clear(), "cluster id"),
            (|c| c.listen.set_port(0), "listen address"),
            (
                |c| c.advertise = "0.0.0.0:7946".parse().unwrap(),
                "advertise",
            ),
            (|c| c.seeds = vec!["0.0.0.0:7946".parse().unwrap()], "seed"),
            (|c| c.info.hostname.clear(), "hostname"),
            (|c| c.timing.interval = Duration::ZERO, "gossip interval"),
            (|c| c.timing.phi_threshold = f64::NAN, "phi threshold"),
            (|c| c.timing.seed_interval = Duration::ZERO, "seed interval"),
        ];
        for (break_it, word) in cases {
            let mut c = config();
            break_it(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(word), "{word}: {err}");
        }
    }

    #[test]
    fn generations_always_increase() {
        let a = next_generation();
        let b = next_generation();
        assert!(b > a);
        assert!(a > 1_600_000_000_000, "generation is a time in ms: {a}");
    }
}
