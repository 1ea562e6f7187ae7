//! [`EngineHandle`]: the node's one way to its Docker engine, made once by `meshd` and handed to
//! whatever needs the engine (the task runner, log streams, task networking, the node's
//! description, the image check at the API's door), so that every part talks to the same engine
//! and none connects on its own.

use std::sync::Arc;

use crate::{DEFAULT_SOCKET, Engine, Result};

/// Where the engine listens, and the connection once made. Cheap to clone; clones share it.
/// The engine may be down when meshd starts: [`EngineHandle::get`] connects on first use, and
/// again after [`EngineHandle::reset`].
#[derive(Clone, Debug)]
pub struct EngineHandle {
    socket: Arc<str>,
    connected: Arc<tokio::sync::Mutex<Option<Engine>>>,
}

impl Default for EngineHandle {
    fn default() -> Self {
        Self::new(DEFAULT_SOCKET)
    }
}

impl EngineHandle {
    /// The engine on the unix socket `socket` (a path, or `unix://PATH` as docker's
    /// `DOCKER_HOST` says it).
    pub fn new(socket: &str) -> Self {
        let socket = socket.strip_prefix("unix://").unwrap_or(socket);
        Self {
            socket: Arc::from(socket),
            connected: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    /// The socket's path.
    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// The connected engine, connecting (and agreeing on an API version) if need be.
    pub async fn get(&self) -> Result<Engine> {
        let mut slot = self.connected.lock().await;
        if let Some(e) = slot.as_ref() {
            return Ok(e.clone());
        }
        let e = Engine::connect_at(&self.socket).await?;
        *slot = Some(e.clone());
        Ok(e)
    }

    /// Forgets the connection (after the engine failed): the next [`Self::get`] connects again.
    pub async fn reset(&self) {
        *self.connected.lock().await = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_a_path_or_a_unix_url() {
        assert_eq!(EngineHandle::new("/run/d.sock").socket(), "/run/d.sock");
        assert_eq!(
            EngineHandle::new("unix:///run/d.sock").socket(),
            "/run/d.sock"
        );
        assert_eq!(EngineHandle::default().socket(), DEFAULT_SOCKET);
    }
}
