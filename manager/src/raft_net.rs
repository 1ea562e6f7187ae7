//! Raft's network: append, vote and snapshot RPCs as [`Request::Raft`] calls to other managers
//! over mutual TLS, and the leader's record of which managers answered lately (`Reachable` /
//! `Unreachable` in `node ls`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use rustls::ClientConfig;

use mesh_api::transport::Client;
use mesh_api::{ApiError, RaftPayload, Reply, Request};
use serde::{Deserialize, Serialize};

use crate::store::{NodeId, TypeConfig};

/// A raft RPC between managers, carried in [`Request::Raft`] as a [`RaftPayload`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RaftRequest {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
}

/// The answer to a [`RaftRequest`], carried in `Reply::Raft`.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftReply {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
}

/// A manager that answered within this long is `Reachable`.
pub const REACHABLE_WITHIN: Duration = Duration::from_secs(3);

/// Clients to the other managers (one per address, reused) and when each last answered.
pub struct Peers {
    tls: RwLock<Arc<ClientConfig>>,
    clients: Mutex<HashMap<String, Client>>,
    answered: Mutex<HashMap<NodeId, Instant>>,
}

impl Peers {
    pub fn new(tls: Arc<ClientConfig>) -> Arc<Self> {
        Arc::new(Self {
            tls: RwLock::new(tls),
            clients: Mutex::new(HashMap::new()),
            answered: Mutex::new(HashMap::new()),
        })
    }

    /// A client to the manager at `addr`.
    pub fn client(&self, addr: &str) -> Client {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        clients
            .entry(addr.to_owned())
            .or_insert_with(|| {
                let tls = self
                    .tls
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                Client::tls(addr, tls)
            })
            .clone()
    }

    fn answered(&self, id: NodeId) {
        self.answered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, Instant::now());
    }

    /// Which of `ids` answered a raft RPC within [`REACHABLE_WITHIN`].
    pub fn reachable(&self, ids: impl IntoIterator<Item = NodeId>) -> BTreeMap<NodeId, bool> {
        let answered = self
            .answered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ids.into_iter()
            .map(|id| {
                let ok = answered
                    .get(&id)
                    .is_some_and(|t| t.elapsed() < REACHABLE_WITHIN);
                (id, ok)
            })
            .collect()
    }
}

/// openraft's network factory: one [`PeerNetwork`] per target.
#[derive(Clone)]
pub struct RaftTransport {
    pub peers: Arc<Peers>,
}

impl RaftNetworkFactory<TypeConfig> for RaftTransport {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerNetwork {
        PeerNetwork {
            target,
            client: self.peers.client(&node.addr),
            peers: self.peers.clone(),
        }
    }
}

pub struct PeerNetwork {
    target: NodeId,
    client: Client,
    peers: Arc<Peers>,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerNetwork {
    async fn send<E: std::error::Error>(
        &self,
        req: RaftRequest,
        option: &RPCOption,
    ) -> Result<RaftReply, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
        let payload =
            RaftPayload::encode(&req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let reply = self
            .client
            .call_with_timeout(&Request::Raft(payload), option.hard_ttl())
            .await;
        match reply {
            Ok(Reply::Raft(r)) => {
                self.peers.answered(self.target);
                r.decode()
                    .map_err(|e| RPCError::Network(NetworkError::new(&e)))
            }
            Ok(other) => Err(RPCError::Network(NetworkError::new(&ApiError::internal(
                format!("unexpected reply to a raft RPC: {other:?}"),
            )))),
            // Whatever the cause (down, not a manager yet, ...), back off before the next try.
            Err(e) => Err(RPCError::Unreachable(Unreachable::new(&e))),
        }
    }

    #[expect(
        clippy::result_large_err,
        reason = "openraft's RPCError, as its traits return it"
    )]
    fn remote<T, E: std::error::Error>(
        &self,
        r: Result<T, RaftError<NodeId, E>>,
    ) -> Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

fn mismatch<E: std::error::Error>() -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
    RPCError::Network(NetworkError::new(&ApiError::internal(
        "a raft RPC was answered with another RPC's reply",
    )))
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    fn backoff(&self) -> Backoff {
        // A restarted manager is back within a few hundred milliseconds: retry soon.
        Backoff::new(std::iter::repeat(Duration::from_millis(250)))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        match self.send(RaftRequest::Append(rpc), &option).await? {
            RaftReply::Append(r) => self.remote(r),
            _ => Err(mismatch()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self.send(RaftRequest::Snapshot(rpc), &option).await? {
            RaftReply::Snapshot(r) => self.remote(r),
            _ => Err(mismatch()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        match self.send(RaftRequest::Vote(rpc), &option).await? {
            RaftReply::Vote(r) => self.remote(r),
            _ => Err(mismatch()),
        }
    }
}
