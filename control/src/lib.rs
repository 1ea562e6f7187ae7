//! `mesh-control`: the control plane. Managers replicate the cluster state
//! ([`mesh_cluster::state::ClusterState`]) with raft (openraft over a redb store, [`store`]);
//! every node talks gRPC on TCP 2377 with mutual TLS from the cluster's own CA ([`pki`],
//! [`transport`]), and `meshctl` talks to the local node over `meshd.sock`. [`daemon`] is what
//! `meshd` runs; [`manager::Manager`] is the handle control loops use on a manager (propose a
//! `Tx`, read or watch the state, run while leading); [`agent`] is each node's session with the
//! leader. `docs/control.md` tells the whole story.

pub mod agent;
pub mod api;
pub mod daemon;
pub mod manager;
pub mod network;
pub mod ops;
pub mod pki;
pub mod store;
pub mod transport;
