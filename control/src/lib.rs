//! `mesh-control`: the control plane. Managers replicate the cluster state
//! ([`mesh_cluster::state::ClusterState`]) with raft (openraft over a redb store, [`store`]);
//! every node talks gRPC on TCP 2377 with mutual TLS from the cluster's own CA ([`pki`],
//! [`transport`]), and `meshctl` talks to the local node over `meshd.sock`. [`daemon`] is what
//! `meshd` runs; [`manager::Manager`] is the handle control loops use on a manager (propose a
//! `Tx`, read or watch the state, run while leading); [`planner`] is the leader's control loop
//! (orchestrator, allocator, scheduler), [`dispatcher`] serves the nodes' sessions (assignments
//! down, task states and logs up), [`services`] and [`networks`] the service and network APIs, and [`agent`] is each node's
//! session with the leader and its task runner. `docs/control.md` and `docs/services.md` tell
//! the whole story.

pub mod agent;
pub mod api;
pub mod daemon;
pub mod dispatcher;
pub mod manager;
pub mod network;
pub mod networks;
pub mod ops;
pub mod pki;
pub mod planner;
pub mod services;
pub mod store;
pub mod transport;
