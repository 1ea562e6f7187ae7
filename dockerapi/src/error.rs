//! Errors as moby answers them: a status code and `{"message": "..."}`.

use mesh_api::{ApiError, Code};

/// What a worker's Engine API answers to a manager-only call (moby's `errNoManager`).
pub const NOT_A_MANAGER: &str = "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.";
/// What a node outside any swarm answers to a swarm call (moby's `errNoManager`).
pub const NOT_IN_SWARM: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";

/// An error reply: the HTTP status and the message users read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub message: String,
}

impl HttpError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }
    pub fn not_a_manager() -> Self {
        Self::new(503, NOT_A_MANAGER)
    }
    pub fn not_in_swarm() -> Self {
        Self::new(503, NOT_IN_SWARM)
    }
    /// A swarm call outside what meshd serves.
    pub fn not_implemented(method: &str, path: &str) -> Self {
        Self::new(
            501,
            format!(
                "{method} {path} is a swarm endpoint meshd does not serve (see docs/dockerapi.md for the ones it does)"
            ),
        )
    }
    /// The body moby sends.
    pub fn body(&self) -> String {
        serde_json::json!({ "message": self.message }).to_string()
    }
}

/// moby's status for each of meshd's error codes (moby's `errdefs` from swarmkit's gRPC codes).
impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        // meshd's own words name meshctl; the Engine API's users run docker.
        let message = e.message.replace("\"meshctl ", "\"docker ");
        let status = match e.code {
            Code::InvalidArgument | Code::TokenInvalid | Code::TokenRotated | Code::CaMismatch => {
                // A name taken is swarmkit's AlreadyExists (a port taken is not).
                if message.contains("already exists")
                    || (message.contains(" name \"") && message.contains("is already in use"))
                {
                    409
                } else {
                    400
                }
            }
            Code::NotFound => 404,
            Code::Conflict => 409,
            Code::PermissionDenied => 403,
            Code::FailedPrecondition if e == ApiError::not_manager() => {
                return Self::not_a_manager();
            }
            Code::FailedPrecondition if e == ApiError::not_in_swarm() => {
                return Self::not_in_swarm();
            }
            Code::FailedPrecondition => 400,
            Code::Unavailable | Code::Unreachable | Code::NotLeader(_) => 503,
            Code::Internal => 500,
        };
        Self { status, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meshd_errors_get_mobys_status_codes() {
        assert_eq!(
            HttpError::from(ApiError::not_found("service web not found")).status,
            404
        );
        assert_eq!(
            HttpError::from(ApiError::invalid("bad replicas")).status,
            400
        );
        for taken in [
            "network name \"front\" is already in use",
            "name conflicts with an existing object: service web already exists",
            "secret db already exists",
        ] {
            assert_eq!(
                HttpError::from(ApiError::invalid(taken)).status,
                409,
                "{taken}"
            );
        }
        let port = ApiError::invalid("port 8080/tcp is already in use by service web");
        assert_eq!(HttpError::from(port).status, 400);
        assert_eq!(
            HttpError::from(ApiError::new(Code::Conflict, "update out of sequence")).status,
            409
        );
        assert_eq!(HttpError::from(ApiError::no_leader()).status, 503);
        assert_eq!(
            HttpError::from(ApiError::not_manager()),
            HttpError::not_a_manager()
        );
        assert_eq!(
            HttpError::from(ApiError::not_in_swarm()),
            HttpError::not_in_swarm()
        );
    }

    #[test]
    fn the_body_is_mobys_message_object() {
        let e = HttpError::not_a_manager();
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["message"], NOT_A_MANAGER);
        assert_eq!(e.status, 503);
    }
}
