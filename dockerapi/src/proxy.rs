//! The pass-through to the node's engine: a request goes as it came (versioned path, headers,
//! streamed body) over a fresh connection to the engine's socket, and its answer comes back
//! streamed. An HTTP upgrade (`docker exec`/`attach`'s hijacked stream) is answered with the
//! engine's `101` and then both connections are copied into each other until either closes.

use std::path::Path;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use crate::error::HttpError;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every answer's body: a whole buffer or a stream from the engine or from meshd.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body of `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn engine_unreachable(engine: &Path, e: &dyn std::fmt::Display) -> HttpError {
    HttpError::new(
        502,
        format!(
            "cannot reach this node's engine at {}: {e}",
            engine.display()
        ),
    )
}

/// Sends `req` to the engine and returns its answer (the connection lives as long as the
/// answer's body, or the upgraded stream, needs it).
pub async fn send(engine: &Path, req: Request<Body>) -> Result<Response<Incoming>, HttpError> {
    let stream = UnixStream::connect(engine)
        .await
        .map_err(|e| engine_unreachable(engine, &e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| engine_unreachable(engine, &e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("engine connection: {e}");
        }
    });
    sender
        .send_request(req)
        .await
        .map_err(|e| engine_unreachable(engine, &e))
}

/// The engine's answer to a GET of `path`, as JSON.
pub async fn get_json(engine: &Path, path: &str) -> Result<serde_json::Value, HttpError> {
    let req = Request::get(path)
        .header("Host", "docker")
        .body(full(Bytes::new()))
        .expect("a valid request");
    let resp = send(engine, req).await?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| engine_unreachable(engine, &e))?
        .to_bytes();
    if !status.is_success() {
        return Err(HttpError::new(
            status.as_u16(),
            String::from_utf8_lossy(&body).into_owned(),
        ));
    }
    serde_json::from_slice(&body).map_err(|e| engine_unreachable(engine, &e))
}

/// Passes `req` through to the engine, upgrades included.
pub async fn forward(
    engine: &Path,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, HttpError> {
    let wants_upgrade = req.headers().contains_key(hyper::header::UPGRADE);
    let client_upgrade = wants_upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let req = Request::from_parts(parts, body.map_err(BoxError::from).boxed_unsync());
    let mut resp = send(engine, req).await?;
    if resp.status() == hyper::StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let engine_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, engine_upgrade) {
                Ok((client, engine)) => {
                    let mut client = TokioIo::new(client);
                    let mut engine = TokioIo::new(engine);
                    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut engine).await {
                        tracing::debug!("hijacked stream: {e}");
                    }
                }
                Err(e) => tracing::debug!("upgrade failed: {e}"),
            }
        });
    }
    let (parts, body) = resp.into_parts();
    Ok(Response::from_parts(
        parts,
        body.map_err(BoxError::from).boxed_unsync(),
    ))
}
