//! Pulling a task's image in `preparing`, as Swarm's agent does: a missing image is pulled
//! (bounded in time by the engine's stall limit), a failed pull is tried again a few times
//! with a growing pause, and then the task is rejected with Docker's words.

use std::time::Duration;

use mesh_cluster::state::RegistryAuth;
use mesh_engine::{Engine, EngineError, RegistryLogin};

/// The pauses between pull attempts: after the first failure, after the second, ... After the
/// last one the task is rejected. A few seconds in all, so that a typo in an image name shows in
/// `service ps` quickly, while a registry that blinked gets another chance.
const PULL_RETRY_PAUSES: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(3),
    Duration::from_secs(9),
];

/// The pause before pull attempt `failed + 1`, once `failed` attempts have failed; `None`: give
/// up.
pub(super) fn pull_retry_pause(failed: usize) -> Option<Duration> {
    failed
        .checked_sub(1)
        .and_then(|i| PULL_RETRY_PAUSES.get(i).copied())
}

/// The task's error for an image it could not get, as `docker service ps` shows it: Docker's
/// (or the registry's) own words, or Docker's `No such image: NAME` when there are none.
pub(super) fn pull_error(image: &str, e: &EngineError) -> String {
    match e {
        EngineError::ImageUnavailable { reason, .. } if !reason.trim().is_empty() => {
            reason.trim().to_owned()
        }
        EngineError::ImageUnavailable { .. } => format!("No such image: {image}"),
        other => other.to_string(),
    }
}

/// The engine's form of a registry login the client sent (`--with-registry-auth`).
pub fn registry_login(a: &RegistryAuth) -> RegistryLogin {
    RegistryLogin {
        server: a.server.clone(),
        username: a.username.clone(),
        password: a.password.clone(),
    }
}

/// Makes sure `image` is on the node: nothing to do when it is there, else pulls it, trying
/// again after each of [`PULL_RETRY_PAUSES`]. `Err` is the task's error text.
pub(super) async fn ensure_image(
    engine: &Engine,
    image: &str,
    login: Option<&RegistryLogin>,
) -> Result<(), String> {
    let mut failed = 0;
    loop {
        let attempt = match engine.image_exists(image).await {
            Ok(true) => return Ok(()),
            Ok(false) => engine.pull_image(image, login).await,
            Err(e) => Err(e),
        };
        let Err(e) = attempt else {
            return Ok(());
        };
        // A reference Docker would never accept will not get better.
        if matches!(e, EngineError::Invalid(_)) {
            return Err(e.to_string());
        }
        failed += 1;
        let Some(pause) = pull_retry_pause(failed) else {
            return Err(pull_error(image, &e));
        };
        tracing::info!(
            image,
            attempt = failed,
            "pulling failed, trying again in {pause:?}: {e}"
        );
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulls_are_tried_four_times_with_growing_pauses() {
        let pauses: Vec<_> = (1..10).map_while(pull_retry_pause).collect();
        assert_eq!(
            pauses,
            [1, 3, 9].map(Duration::from_secs),
            "three pauses, then the task is rejected"
        );
        assert_eq!(
            pull_retry_pause(0),
            None,
            "no pause before the first attempt"
        );
        assert_eq!(pull_retry_pause(4), None);
    }

    #[test]
    fn pull_errors_keep_dockers_words() {
        let image = "127.0.0.1:5000/web:nope";
        let registry = EngineError::ImageUnavailable {
            image: image.into(),
            reason:
                "manifest for 127.0.0.1:5000/web:nope not found: manifest unknown: manifest unknown"
                    .into(),
        };
        assert_eq!(
            pull_error(image, &registry),
            "manifest for 127.0.0.1:5000/web:nope not found: manifest unknown: manifest unknown"
        );
        let silent = EngineError::ImageUnavailable {
            image: image.into(),
            reason: String::new(),
        };
        assert_eq!(
            pull_error(image, &silent),
            "No such image: 127.0.0.1:5000/web:nope"
        );
        let engine = EngineError::Docker {
            action: format!("inspecting image {image}"),
            status: Some(500),
            message: "boom".into(),
        };
        assert_eq!(
            pull_error(image, &engine),
            format!("inspecting image {image}: boom")
        );
    }
}
