//! Raft's storage: the log, the vote and the committed pointer in one redb file
//! (`<data-dir>/raft/raft.redb`), and the state machine, which is the whole
//! [`ClusterState`] held in memory and persisted as snapshots in the same file.
//!
//! On start the state machine is the last snapshot; openraft re-applies the committed entries
//! after it (the committed pointer is saved for that). A snapshot is the JSON of the state, built
//! every [`SNAPSHOT_EVERY`] entries; older log entries are then purged by openraft.

#![expect(
    clippy::result_large_err,
    reason = "openraft's traits return its StorageError as it is"
)]

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex};

use mesh_cluster::state::{ClusterState, Tx, TxError};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, TokioRuntime, Vote,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// A raft node id: assigned by the leader when a manager joins, never reused.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// meshd's raft: entries carry [`Tx`]s, applying one answers with its outcome.
    pub TypeConfig:
        D = Tx,
        R = Result<(), TxError>,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = TokioRuntime,
);

/// Entries between two snapshots.
pub const SNAPSHOT_EVERY: u64 = 500;

type StorageResult<T> = Result<T, StorageError<NodeId>>;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";
const SNAPSHOT_META: &str = "snapshot_meta";
const SNAPSHOT_DATA: &str = "snapshot_data";

/// The state as of one applied raft entry; what [`StateMachine`] publishes after every apply.
#[derive(Clone, Debug, Default)]
pub struct AppliedState {
    /// The raft index of the last applied entry (0 before any).
    pub index: u64,
    pub state: Arc<ClusterState>,
}

/// Opens (or creates) the store in `dir`: the log store, the state machine restored from the last
/// snapshot, and a receiver that sees every applied state.
pub fn open(dir: &Path) -> anyhow::Result<(LogStore, StateMachine, watch::Receiver<AppliedState>)> {
    mesh_api::private::private_dir(dir)?;
    let path = dir.join("raft.redb");
    let db = Arc::new(Database::create(&path)?);
    mesh_api::private::private_file(&path)?;
    {
        // Create both tables, so that readers never meet a missing one.
        let w = db.begin_write()?;
        w.open_table(LOG)?;
        w.open_table(META)?;
        w.commit()?;
    }
    let log = LogStore { db: db.clone() };
    let (sm, rx) = StateMachine::restore(db)?;
    Ok((log, sm, rx))
}

fn io_err(e: impl std::error::Error + 'static) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read(&io_err(e)).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write(&io_err(e)).into()
}

fn get_meta<T: for<'de> Deserialize<'de>>(db: &Database, key: &str) -> StorageResult<Option<T>> {
    let r = db.begin_read().map_err(read_err)?;
    let t = r.open_table(META).map_err(read_err)?;
    let Some(v) = t.get(key).map_err(read_err)? else {
        return Ok(None);
    };
    serde_json::from_slice(v.value())
        .map(Some)
        .map_err(read_err)
}

fn put_meta<T: Serialize>(
    db: &Database,
    items: &[(&str, &T)],
    durability: redb::Durability,
) -> StorageResult<()> {
    let mut w = db.begin_write().map_err(write_err)?;
    w.set_durability(durability).map_err(write_err)?;
    {
        let mut t = w.open_table(META).map_err(write_err)?;
        for (key, value) in items {
            let bytes = serde_json::to_vec(value).map_err(write_err)?;
            t.insert(*key, bytes.as_slice()).map_err(write_err)?;
        }
    }
    w.commit().map_err(write_err)
}

// ---------------------------------------------------------------------------------------------
// The log

/// The raft log, vote and committed pointer. Cheap to clone (it is also its own reader).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    fn last_entry_id(&self) -> StorageResult<Option<LogId<NodeId>>> {
        let r = self.db.begin_read().map_err(read_err)?;
        let t = r.open_table(LOG).map_err(read_err)?;
        let Some((_, v)) = t.last().map_err(read_err)? else {
            return Ok(None);
        };
        let e: Entry<TypeConfig> = serde_json::from_slice(v.value()).map_err(read_err)?;
        Ok(Some(e.log_id))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let r = self.db.begin_read().map_err(read_err)?;
        let t = r.open_table(LOG).map_err(read_err)?;
        let start = match range.start_bound() {
            Bound::Included(i) => Bound::Included(*i),
            Bound::Excluded(i) => Bound::Excluded(*i),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Bound::Included(*i),
            Bound::Excluded(i) => Bound::Excluded(*i),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for item in t.range::<u64>((start, end)).map_err(read_err)? {
            let (_, v) = item.map_err(read_err)?;
            out.push(serde_json::from_slice(v.value()).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged: Option<LogId<NodeId>> = get_meta(&self.db, LAST_PURGED)?;
        let last = self.last_entry_id()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        put_meta(&self.db, &[(VOTE, vote)], redb::Durability::Immediate)
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        get_meta(&self.db, VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        // Losing it in a crash only means re-applying less on start: no fsync of its own.
        put_meta(&self.db, &[(COMMITTED, &committed)], redb::Durability::None)
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(get_meta::<Option<LogId<NodeId>>>(&self.db, COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let w = self.db.begin_write().map_err(write_err)?;
        {
            let mut t = w.open_table(LOG).map_err(write_err)?;
            for e in entries {
                let bytes = serde_json::to_vec(&e).map_err(write_err)?;
                t.insert(e.log_id.index, bytes.as_slice())
                    .map_err(write_err)?;
            }
        }
        let res = w.commit().map_err(io_err);
        callback.log_io_completed(res);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let w = self.db.begin_write().map_err(write_err)?;
        {
            let mut t = w.open_table(LOG).map_err(write_err)?;
            t.retain_in(log_id.index.., |_, _| false)
                .map_err(write_err)?;
        }
        w.commit().map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let w = self.db.begin_write().map_err(write_err)?;
        {
            let mut m = w.open_table(META).map_err(write_err)?;
            let bytes = serde_json::to_vec(&log_id).map_err(write_err)?;
            m.insert(LAST_PURGED, bytes.as_slice()).map_err(write_err)?;
            let mut t = w.open_table(LOG).map_err(write_err)?;
            t.retain_in(..=log_id.index, |_, _| false)
                .map_err(write_err)?;
        }
        w.commit().map_err(write_err)
    }
}

// ---------------------------------------------------------------------------------------------
// The state machine

struct Machine {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    state: Arc<ClusterState>,
    snapshots_built: u64,
}

/// The cluster state as raft's state machine. Cheap to clone (it is also its snapshot builder).
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Database>,
    machine: Arc<Mutex<Machine>>,
    published: watch::Sender<AppliedState>,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

impl StateMachine {
    fn restore(db: Arc<Database>) -> anyhow::Result<(Self, watch::Receiver<AppliedState>)> {
        let meta: Option<SnapshotMeta<NodeId, BasicNode>> = get_meta(&db, SNAPSHOT_META)?;
        let data: Option<Vec<u8>> = get_meta(&db, SNAPSHOT_DATA)?;
        let machine = match (meta, data) {
            (Some(meta), Some(data)) => Machine {
                last_applied: meta.last_log_id,
                membership: meta.last_membership,
                state: Arc::new(serde_json::from_slice(&data)?),
                snapshots_built: 0,
            },
            _ => Machine {
                last_applied: None,
                membership: StoredMembership::default(),
                state: Arc::new(ClusterState::default()),
                snapshots_built: 0,
            },
        };
        let (published, rx) = watch::channel(AppliedState {
            index: machine.last_applied.map_or(0, |l| l.index),
            state: machine.state.clone(),
        });
        Ok((
            Self {
                db,
                machine: Arc::new(Mutex::new(machine)),
                published,
            },
            rx,
        ))
    }

    /// The state as of now.
    pub fn current(&self) -> AppliedState {
        self.published.borrow().clone()
    }

    fn publish(&self, m: &Machine) {
        self.published.send_replace(AppliedState {
            index: m.last_applied.map_or(0, |l| l.index),
            state: m.state.clone(),
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Machine> {
        self.machine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn save_snapshot(&self, snap: &StoredSnapshot) -> StorageResult<()> {
        let w = self.db.begin_write().map_err(write_err)?;
        {
            let mut t = w.open_table(META).map_err(write_err)?;
            let meta = serde_json::to_vec(&snap.meta).map_err(write_err)?;
            let data = serde_json::to_vec(&snap.data).map_err(write_err)?;
            t.insert(SNAPSHOT_META, meta.as_slice())
                .map_err(write_err)?;
            t.insert(SNAPSHOT_DATA, data.as_slice())
                .map_err(write_err)?;
        }
        w.commit().map_err(write_err)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let (meta, state) = {
            let mut m = self.lock();
            m.snapshots_built += 1;
            let id = match m.last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, m.snapshots_built),
                None => format!("0-0-{}", m.snapshots_built),
            };
            (
                SnapshotMeta {
                    last_log_id: m.last_applied,
                    last_membership: m.membership.clone(),
                    snapshot_id: id,
                },
                m.state.clone(),
            )
        };
        let data = serde_json::to_vec(&*state).map_err(|e| {
            StorageError::from(StorageIOError::write_snapshot(Some(meta.signature()), &e))
        })?;
        let snap = StoredSnapshot { meta, data };
        self.save_snapshot(&snap)?;
        Ok(Snapshot {
            meta: snap.meta,
            snapshot: Box::new(Cursor::new(snap.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let m = self.lock();
        Ok((m.last_applied, m.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Result<(), TxError>>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut m = self.lock();
        let mut replies = Vec::new();
        // One copy of the state per batch, made only if a reader still holds the old one.
        let mut state = std::mem::take(&mut m.state);
        {
            let s = Arc::make_mut(&mut state);
            for e in entries {
                m.last_applied = Some(e.log_id);
                replies.push(match e.payload {
                    EntryPayload::Blank => Ok(()),
                    EntryPayload::Normal(tx) => s.apply(&tx, e.log_id.index),
                    EntryPayload::Membership(mem) => {
                        m.membership = StoredMembership::new(Some(e.log_id), mem);
                        Ok(())
                    }
                });
            }
        }
        m.state = state;
        self.publish(&m);
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let data = snapshot.into_inner();
        let state: ClusterState = serde_json::from_slice(&data).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(Some(meta.signature()), &e))
        })?;
        self.save_snapshot(&StoredSnapshot {
            meta: meta.clone(),
            data,
        })?;
        let mut m = self.lock();
        m.last_applied = meta.last_log_id;
        m.membership = meta.last_membership.clone();
        m.state = Arc::new(state);
        self.publish(&m);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let meta: Option<SnapshotMeta<NodeId, BasicNode>> = get_meta(&self.db, SNAPSHOT_META)?;
        let data: Option<Vec<u8>> = get_meta(&self.db, SNAPSHOT_DATA)?;
        Ok(match (meta, data) {
            (Some(meta), Some(data)) => Some(Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data)),
            }),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use mesh_cluster::Id;
    use mesh_cluster::state::{Kind, Meta, Network, NetworkSpec, Object, Op, Tx, TxError};
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{CommittedLeaderId, Membership};

    use super::*;

    struct TempStore;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for TempStore {
        async fn build(&self) -> StorageResult<(tempfile::TempDir, LogStore, StateMachine)> {
            let dir = tempfile::tempdir().expect("temp dir");
            let (log, sm, _) = open(dir.path()).expect("open store");
            Ok((dir, log, sm))
        }
    }

    /// openraft's own conformance suite for log stores and state machines.
    #[test]
    fn the_store_passes_openraft_suite() {
        Suite::test_all(TempStore).expect("openraft storage suite");
    }

    fn log_id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn network(id: &str, name: &str, version: u64) -> Op {
        Op::Put(Object::Network(Network {
            id: Id::from(id),
            meta: Meta {
                version,
                ..Meta::default()
            },
            spec: NetworkSpec {
                name: name.into(),
                driver: "overlay".into(),
                ..NetworkSpec::default()
            },
            subnet: "10.0.1.0/24".parse().unwrap(),
            vni: 4097,
        }))
    }

    fn entry(index: u64, tx: Tx) -> Entry<TypeConfig> {
        Entry {
            log_id: log_id(1, index),
            payload: EntryPayload::Normal(tx),
        }
    }

    fn membership_entry(index: u64) -> Entry<TypeConfig> {
        let nodes: BTreeMap<NodeId, BasicNode> = [(1, BasicNode::new("198.18.0.11:2377"))].into();
        Entry {
            log_id: log_id(1, index),
            payload: EntryPayload::Membership(Membership::new(vec![BTreeSet::from([1])], nodes)),
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Entries apply their transactions in order, each answering with its own outcome; a refused
    /// one changes nothing; watchers see every applied index.
    #[test]
    fn apply_answers_each_transaction_and_publishes_the_state() {
        rt().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let (_log, mut sm, rx) = open(dir.path()).unwrap();
            let replies = sm
                .apply([
                    membership_entry(1),
                    entry(
                        2,
                        Tx {
                            at: 10,
                            ops: vec![network("a", "front", 0)],
                        },
                    ),
                    // Same name, another id: refused whole.
                    entry(
                        3,
                        Tx {
                            at: 11,
                            ops: vec![network("b", "front", 0)],
                        },
                    ),
                    entry(
                        4,
                        Tx {
                            at: 12,
                            ops: vec![network("a", "front2", 2)],
                        },
                    ),
                ])
                .await
                .unwrap();
            assert_eq!(replies[0], Ok(()));
            assert_eq!(replies[1], Ok(()));
            assert!(matches!(
                replies[2],
                Err(TxError::NameTaken {
                    kind: Kind::Network,
                    ..
                })
            ));
            assert_eq!(replies[3], Ok(()));
            let seen = rx.borrow().clone();
            assert_eq!(seen.index, 4);
            assert_eq!(seen.state.networks.len(), 1);
            let a = &seen.state.networks[&Id::from("a")];
            assert_eq!((a.spec.name.as_str(), a.meta.version), ("front2", 4));
            let (applied, mem) = sm.applied_state().await.unwrap();
            assert_eq!(applied, Some(log_id(1, 4)));
            assert_eq!(mem.log_id(), &Some(log_id(1, 1)));
        });
    }

    /// A snapshot holds the whole state; a fresh state machine restored from it (on restart, or
    /// installed from a leader) has the same state, applied index and membership.
    #[test]
    fn snapshot_then_restore_gives_the_same_state() {
        rt().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let want = {
                let (_log, mut sm, _) = open(dir.path()).unwrap();
                sm.apply([
                    membership_entry(1),
                    entry(
                        2,
                        Tx {
                            at: 10,
                            ops: vec![network("a", "front", 0)],
                        },
                    ),
                    entry(
                        3,
                        Tx {
                            at: 11,
                            ops: vec![network("b", "back", 0)],
                        },
                    ),
                ])
                .await
                .unwrap();
                let snap = sm.build_snapshot().await.unwrap();
                assert_eq!(snap.meta.last_log_id, Some(log_id(1, 3)));
                // Applied after the snapshot: not in it.
                sm.apply([entry(
                    4,
                    Tx {
                        at: 12,
                        ops: vec![network("c", "more", 0)],
                    },
                )])
                .await
                .unwrap();

                // Installing the snapshot on another machine (a lagging follower).
                let other = tempfile::tempdir().unwrap();
                let (_l, mut follower, frx) = open(other.path()).unwrap();
                follower
                    .install_snapshot(&snap.meta, snap.snapshot)
                    .await
                    .unwrap();
                assert_eq!(frx.borrow().index, 3);
                assert_eq!(frx.borrow().state.networks.len(), 2);
                assert_eq!(
                    follower.applied_state().await.unwrap().0,
                    Some(log_id(1, 3))
                );
                let s = sm.current().state;
                let mut at3 = (*s).clone();
                at3.networks.remove(&Id::from("c"));
                at3
            };
            // Restart: the state machine comes back as of the snapshot (raft re-applies the rest).
            let (_log, mut sm, rx) = open(dir.path()).unwrap();
            assert_eq!(rx.borrow().index, 3);
            assert_eq!(*rx.borrow().state, want);
            let (applied, mem) = sm.applied_state().await.unwrap();
            assert_eq!(applied, Some(log_id(1, 3)));
            assert_eq!(mem.log_id(), &Some(log_id(1, 1)));
            assert!(sm.get_current_snapshot().await.unwrap().is_some());
        });
    }
}
