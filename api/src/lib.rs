//! `mesh-api`: what crosses `meshd.sock` and TCP 2377, and how. The typed requests and replies
//! ([`request`], [`reply`]), the session between a node's agent and the leader ([`session`]),
//! errors ([`error`]), the gRPC transport that carries them as JSON frames ([`transport`]) and the
//! TLS configurations built from a node's certificates ([`tls`]). `meshctl` links this crate and
//! nothing of the manager or the agent; both sides of every call share these types.

pub mod blob;
pub mod error;
pub mod private;
pub mod raft;
pub mod reply;
pub mod request;
pub mod session;
pub mod status;
pub mod tls;
pub mod transport;

pub use blob::{BlobCreate, BlobData, BlobInfo, BlobKind};
pub use error::{ApiError, Code};
pub use raft::{RaftId, RaftPayload};
pub use reply::*;
pub use request::*;
pub use session::*;

/// Milliseconds since the Unix epoch: when a transaction (`Tx::at`) or a task status was made,
/// as managers and agents stamp them.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
