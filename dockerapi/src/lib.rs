//! `mesh-dockerapi`: the Docker Engine API front of a meshd node, so the `docker` CLI and the
//! tools built on the Engine API (Portainer, Traefik's swarm provider, ...) see a Swarm node.
//! It answers the swarm endpoints (`/_ping`, `/version`, `/info`, `/swarm`, `/nodes`,
//! `/services`, `/tasks`, overlay `/networks`, `/secrets`, `/configs`) through the node's own
//! meshd, over the local socket meshctl uses, so validation is the manager's; refuses the other
//! swarm calls with a 501 naming them; and passes everything else (containers, images, exec and
//! attach with their hijacked streams) through to the node's engine. The translation between
//! the API's JSON and meshd's requests ([`convert`], [`route`]) is pure and unit-tested; the
//! HTTP side ([`front`], [`proxy`]) is thin. It listens on a unix socket, and optionally on TCP
//! with mutual TLS ([`tls`]) as `dockerd --tlsverify` does.

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
pub mod tls;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UnixListener};

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

/// The front of the node whose meshd listens at `meshd_socket` and whose engine at
/// `engine_socket`.
pub fn front(meshd_socket: &Path, engine_socket: PathBuf) -> Front {
    Front {
        meshd: mesh_api::transport::Client::local(meshd_socket),
        engine: engine_socket,
    }
}

/// Serves the Engine API on `listener` until the task is dropped.
pub async fn serve(listener: UnixListener, front: Front) {
    let front = Arc::new(front);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, front.clone()));
            }
            Err(e) => {
                tracing::warn!("docker API socket: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves the Engine API on TCP with mutual TLS (`tls` from [`tls::server_config`]) until the
/// task is dropped: a client without a certificate of the CA does not get past the handshake.
pub async fn serve_tls(listener: TcpListener, tls: Arc<rustls::ServerConfig>, front: Front) {
    let front = Arc::new(front);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let acceptor = acceptor.clone();
                let front = front.clone();
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(stream) => serve_connection(stream, front).await,
                        Err(e) => {
                            tracing::info!("docker API: TLS handshake with {peer} failed: {e}");
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!("docker API TCP: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection<S>(stream: S, front: Arc<Front>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
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
}
