//! The engine's one error type. Docker's own message is kept verbatim; the variant and the
//! sentence around it say what meshd was doing.

use std::error::Error as StdError;

/// What went wrong talking to dockerd.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// dockerd does not answer on its socket.
    #[error("cannot reach dockerd at {socket}: {reason}")]
    Unreachable { socket: String, reason: String },
    /// The image is not on this node and the registry did not provide it.
    #[error("image {image} is not present on this node and could not be pulled: {reason}")]
    ImageUnavailable { image: String, reason: String },
    /// Input refused before anything was sent to Docker; the message says what is accepted.
    #[error("{0}")]
    Invalid(String),
    /// Docker refused or failed a request; `message` is Docker's, `status` its HTTP status.
    #[error("{action}: {message}")]
    Docker {
        action: String,
        status: Option<u16>,
        message: String,
    },
    /// A host file Docker manages for the container could not be written.
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
}

impl EngineError {
    /// Docker answered 404: no such container (or image).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::Docker {
                status: Some(404),
                ..
            }
        )
    }
}

/// Docker's HTTP status, when the error is Docker's answer.
pub(crate) fn status(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Docker's own words when it answered, else bollard's account with its causes.
pub(crate) fn message(e: &bollard::errors::Error) -> String {
    use bollard::errors::Error as B;
    match e {
        B::DockerResponseServerError { message, .. } => message.clone(),
        B::DockerStreamError { error } => error.clone(),
        other => chain(other),
    }
}

/// `action: message`, where a failed connection names the socket.
pub(crate) fn docker_error(
    socket: &str,
    action: impl Into<String>,
    e: &bollard::errors::Error,
) -> EngineError {
    use bollard::errors::Error as B;
    let message = match e {
        B::DockerResponseServerError { .. } | B::DockerStreamError { .. } => message(e),
        B::HyperLegacyError { .. }
        | B::HyperResponseError { .. }
        | B::IOError { .. }
        | B::SocketNotFoundError(_)
        | B::RequestTimeoutError => format!("cannot reach dockerd at {socket}: {}", chain(e)),
        other => chain(other),
    };
    EngineError::Docker {
        action: action.into(),
        status: status(e),
        message,
    }
}

/// An error and its causes, `a: b: c`, skipping causes that repeat the text before them
/// (transparent wrappers print their source's text).
pub(crate) fn chain(e: &dyn StdError) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_answers_keep_their_words() {
        let e = bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message: "No such container: abc".into(),
        };
        let err = docker_error("/var/run/docker.sock", "stopping container abc", &e);
        assert_eq!(
            err.to_string(),
            "stopping container abc: No such container: abc"
        );
        assert!(err.is_not_found());
    }

    #[test]
    fn lost_connections_name_the_socket() {
        let e = bollard::errors::Error::IOError {
            err: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"),
        };
        let err = docker_error("/run/d.sock", "listing containers", &e);
        assert_eq!(
            err.to_string(),
            "listing containers: cannot reach dockerd at /run/d.sock: connection refused"
        );
        assert!(!err.is_not_found());
    }
}
