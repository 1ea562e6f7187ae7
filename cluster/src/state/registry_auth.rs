//! A client's registry login, carried with a service (`--with-registry-auth`) to the nodes that
//! pull its image. Kept out of the service's spec: never printed by `inspect`, never logged.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::REDACTED;

/// A login to one registry, as `docker login` stores it. Its `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryAuth {
    /// The registry as the client's `~/.docker/config.json` names it (`127.0.0.1:5000`,
    /// `https://index.docker.io/v1/` for Docker Hub).
    pub server: String,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &REDACTED)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let a = RegistryAuth {
            server: "127.0.0.1:5000".into(),
            username: "alice".into(),
            password: "s3cret".into(),
        };
        let text = format!("{a:?} {a:#?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("alice") && text.contains(REDACTED), "{text}");
    }
}
