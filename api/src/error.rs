//! Errors as the daemon reports them: a [`Code`] callers branch on, a message users read.

use std::fmt;

use mesh_cluster::state::TxError;
use serde::{Deserialize, Serialize};

/// What kind of failure; callers branch on it, users read the message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Code {
    InvalidArgument,
    NotFound,
    /// The request cannot be served in the current state (not in a swarm, already in one, ...).
    FailedPrecondition,
    PermissionDenied,
    /// No leader, a manager that does not answer, a timeout.
    Unavailable,
    /// The connection could not be made (refused, no route): the request was not delivered, so
    /// sending it again cannot apply it twice.
    Unreachable,
    /// This manager is not the leader (the leader's address when known).
    NotLeader(Option<String>),
    /// Optimistic concurrency: the state changed under the write.
    Conflict,
    /// The join token's secret is not one of this cluster.
    TokenInvalid,
    /// The join token was valid once and was rotated.
    TokenRotated,
    /// The manager's CA is not the one the token pins.
    CaMismatch,
    Internal,
}

/// An error as the daemon reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::new(Code::FailedPrecondition, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(Code::Unavailable, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(Code::PermissionDenied, message)
    }

    pub fn not_in_swarm() -> Self {
        Self::precondition(
            "This node is not part of a swarm. Use \"meshctl swarm init\" or \"meshctl swarm join\" to connect this node to swarm and try again.",
        )
    }
    pub fn already_in_swarm() -> Self {
        Self::precondition(
            "This node is already part of a swarm. Use \"meshctl swarm leave\" to leave this swarm and join another one.",
        )
    }
    pub fn not_manager() -> Self {
        Self::precondition(
            "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.",
        )
    }
    pub fn no_leader() -> Self {
        Self::unavailable(
            "The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online.",
        )
    }

    /// Retrying elsewhere or later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.code,
            Code::Unavailable | Code::Unreachable | Code::NotLeader(_)
        )
    }

    /// The request certainly did not take effect: it was not delivered, or the manager refused
    /// it as not the leader. A write that failed otherwise (the connection broke, no answer in
    /// time) may have been applied, and must not be sent again as if it had not.
    pub fn not_delivered(&self) -> bool {
        matches!(self.code, Code::Unreachable | Code::NotLeader(_))
    }

    /// A write whose answer was lost on its way back from `target`: it may have been applied.
    pub fn outcome_unknown(what: &str, target: &str, cause: &ApiError) -> Self {
        Self::unavailable(format!(
            "{what}: the leader at {target} went away before answering ({cause}); it may or may not have been applied: look before trying again"
        ))
    }
}

impl From<TxError> for ApiError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Conflict { .. } => Self::new(Code::Conflict, e.to_string()),
            TxError::Missing { .. } => Self::not_found(e.to_string()),
            TxError::NameTaken { .. } => Self::invalid(e.to_string()),
        }
    }
}
