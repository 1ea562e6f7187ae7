//! `mesh-manager`: what a manager runs. The cluster state ([`mesh_cluster::state::ClusterState`])
//! replicated by raft (openraft over a redb store, [`store`], talking to the other managers over
//! the API's transport, [`raft_net`]); [`manager::Manager`], the handle control loops use (propose
//! a `Tx`, read or watch the state, run while leading); [`planner`], the leader's control loop
//! (orchestrator, allocator, scheduler from `mesh-cluster`); [`dispatcher`], the leader's side of
//! every node's session; [`handlers`], the cluster API; [`peer_api`], the managers' own requests
//! (raft, forwarded proposals and reads, joining managers); [`ca`], the cluster's certificate
//! authority; [`datakey`] and `sealing`, what raft keeps sealed, and [`autolock`], the unlock
//! key. It talks to no Docker engine and knows nothing of the agent.

pub mod autolock;
pub mod ca;
pub mod datakey;
pub mod dispatcher;
mod gossip_keys;
pub mod handlers;
pub mod lookup;
pub mod manager;
pub mod peer_api;
pub mod planner;
pub mod raft_net;
mod sealing;
mod status;
pub mod store;

pub use handlers::ClusterApi;
pub use manager::{Manager, ManagerConfig, ManagerHook};
