//! Image references as `service create` pins them (`NAME:TAG@sha256:...`) and registry logins
//! as the engine hands them to Docker. Pure; the engine's I/O is in the crate root.

use std::fmt;

/// A reference without its `@DIGEST` part, if it has one.
pub fn strip_digest(image: &str) -> &str {
    image.split_once('@').map_or(image, |(named, _)| named)
}

/// Whether the reference names a digest: every node then runs the same bits.
pub fn is_pinned(image: &str) -> bool {
    image.contains('@')
}

/// `image` with `digest`, as the docker CLI records it: the tag kept for people to read, the
/// digest for the engines (`nginx:1.25@sha256:...`). A digest already there is replaced.
pub fn pin(image: &str, digest: &str) -> String {
    format!("{}@{digest}", strip_digest(image))
}

/// Whether `digest` looks like what a registry answers: `ALGORITHM:HEX`.
pub fn is_digest(digest: &str) -> bool {
    digest.split_once(':').is_some_and(|(alg, hex)| {
        !alg.is_empty()
            && alg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'_' | b'-'))
            && hex.len() >= 32
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// The docker CLI's warning when a tag could not be resolved to a digest (its own words, on
/// one line).
pub fn unpinned_warning(image: &str) -> String {
    format!(
        "image {image} could not be accessed on a registry to record its digest. Each node will \
         access {image} independently, possibly leading to different nodes running different \
         versions of the image."
    )
}

/// A registry login handed to Docker with a pull or a digest lookup. Its `Debug` never shows
/// the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryLogin {
    /// The registry as `docker login` names it (`127.0.0.1:5000`, `https://index.docker.io/v1/`).
    pub server: String,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryLogin")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl RegistryLogin {
    pub(crate) fn to_docker(&self) -> bollard::auth::DockerCredentials {
        bollard::auth::DockerCredentials {
            username: Some(self.username.clone()),
            password: Some(self.password.clone()),
            serveraddress: Some(self.server.clone()),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn pinning_keeps_the_tag_and_replaces_a_digest() {
        assert_eq!(pin("web:1.2", DIGEST), format!("web:1.2@{DIGEST}"));
        assert_eq!(
            pin("127.0.0.1:5000/meshd/busybox:latest", DIGEST),
            format!("127.0.0.1:5000/meshd/busybox:latest@{DIGEST}")
        );
        assert_eq!(pin("web:1@sha256:00", DIGEST), format!("web:1@{DIGEST}"));
        assert_eq!(strip_digest(&pin("web:1", DIGEST)), "web:1");
        assert!(is_pinned(&pin("web", DIGEST)));
        assert!(!is_pinned("127.0.0.1:5000/web:1"));
    }

    #[test]
    fn digests_are_checked_before_use() {
        assert!(is_digest(DIGEST));
        assert!(!is_digest("sha256:xyz"));
        assert!(!is_digest("sha256:"));
        assert!(!is_digest(""));
        assert!(!is_digest(":0123456789abcdef0123456789abcdef"));
    }

    #[test]
    fn the_warning_is_dockers() {
        assert_eq!(
            unpinned_warning("web:1"),
            "image web:1 could not be accessed on a registry to record its digest. Each node \
             will access web:1 independently, possibly leading to different nodes running \
             different versions of the image."
        );
    }

    #[test]
    fn logins_never_show_their_password() {
        let l = RegistryLogin {
            server: "127.0.0.1:5000".into(),
            username: "alice".into(),
            password: "s3cret".into(),
        };
        let shown = format!("{l:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("alice") && shown.contains("<redacted>"),
            "{shown}"
        );
    }
}
