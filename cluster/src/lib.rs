//! `mesh-cluster`: the cluster's state as data, and every decision made on it as a pure function
//! (no I/O, no clock, no randomness that a test cannot control). `mesh-manager` replicates the
//! state with raft and runs these functions in its control loops.
#![forbid(unsafe_code)]

pub mod alloc;
pub mod certs;
pub mod gossip_keys;
pub mod ids;
pub mod naming;
pub mod net;
pub mod orchestrator;
pub mod plan;
pub mod scheduler;
pub mod spec;
pub mod state;
pub mod synthetic;
pub mod token;
pub mod unlock_key;

pub use ids::Id;
