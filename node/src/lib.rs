//! `mesh-node`: a node's daemon, what `meshd` runs ([`daemon::run`]). It serves the local socket
//! and, on managers, TCP 2377; it holds the node's membership (init, join, leave, role changes,
//! the identity and certificates on disk) and starts what a member runs: the manager
//! (`mesh-manager`) on managers, the agent (`mesh-agent`) everywhere. Every request is
//! authorised here, against the one route table of `mesh-api`, and handed to the manager's
//! cluster API, its raft, or the dispatcher. The manager and the agent never see each other.

pub mod daemon;

pub use daemon::{DaemonConfig, run};
