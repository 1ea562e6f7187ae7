//! `mesh-dockerapi`: the Docker Engine API front of a meshd node, so the `docker` CLI and the
//! tools built on the Engine API (Portainer, Traefik's swarm provider, ...) see a Swarm node.
//! It answers the swarm endpoints (`/_ping`, `/version`, `/info`, `/swarm`, `/nodes`,
//! `/services`, `/tasks`, overlay `/networks`, `/secrets`, `/configs`) through the node's own
//! meshd, over the local socket meshctl uses, so validation is the manager's; refuses the other
//! swarm calls with a 501 naming them; and passes everything else (containers, images, exec and
//! attach with their hijacked streams) through to the node's engine. The translation between
//! the API's JSON and meshd's requests ([`convert`], [`route`]) is pure and unit-tested; the
//! HTTP side ([`front`], [`proxy`]) is thin.

pub mod cluster_calls;
pub mod convert;
pub mod error;
pub mod events;
pub mod front;
pub mod logs;
pub mod network_calls;
pub mod proxy;
pub mod route;
pub mod time;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

pub use front::Front;

/// Binds the Engine API socket at `socket` (a stale one is replaced; mode 0660, root's, as
/// dockerd's): it answers through meshd at `meshd_socket` and passes the rest to the engine at
/// `engine_socket`.
pub fn bind(socket: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("removing the stale {}", socket.display()));
        }
    }
    let listener =
        UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("setting the mode of {}", socket.display()))?;
    Ok(listener)
}

/// Serves the Engine API on `listener` until the task is dropped.
pub async fn serve(listener: UnixListener, meshd_socket: &Path, engine_socket: PathBuf) {
    let front = Arc::new(Front {
        meshd: mesh_api::transport::Client::local(meshd_socket),
        engine: engine_socket,
    });
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("docker API socket: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let front = front.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let front = front.clone();
                async move { Ok::<_, std::convert::Infallible>(front.answer(req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await
            {
                tracing::debug!("docker API connection: {e}");
            }
        });
    }
}
