//! The metrics endpoint: HTTP/1.1 `GET /metrics` and `GET /healthz`, one request per
//! connection. Small on purpose (Prometheus and probes send one short GET): the request head is
//! bounded in size and time, and so is the number of connections served at once.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use mesh_api::status::NodeStatus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::{CONTENT_TYPE, encode};

/// A request head larger than this is refused (a GET with headers is well under 1 KiB).
const MAX_HEAD: usize = 8 * 1024;
/// The whole exchange, from accept to the last byte written.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 16;

/// What a scrape gets the node's status from (the daemon's `Request::Status`); an error says
/// why there is none (the daemon does not answer).
pub type StatusFuture = Pin<Box<dyn Future<Output = Result<NodeStatus, String>> + Send>>;
pub type HealthSource = Arc<dyn Fn() -> StatusFuture + Send + Sync>;

/// A response: status code, content type, body.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub code: u16,
    pub content_type: &'static str,
    pub body: String,
}

fn text(code: u16, body: impl Into<String>) -> Response {
    Response {
        code,
        content_type: "text/plain; charset=utf-8",
        body: body.into(),
    }
}

/// The response to `method path` given the node's status (pure). `/healthz` answers 503 when
/// the daemon does not answer or one of the node's own parts is degraded (its view of other
/// nodes does not count: a peer down is not this node's fault).
pub fn respond(method: &str, path: &str, status: Option<Result<NodeStatus, String>>) -> Response {
    let path = path.split('?').next().unwrap_or(path);
    if method != "GET" {
        return text(405, "only GET\n");
    }
    match (path, status) {
        ("/metrics", Some(Ok(s))) => Response {
            code: 200,
            content_type: CONTENT_TYPE,
            body: encode(&s),
        },
        ("/metrics" | "/healthz", Some(Err(e))) => text(503, format!("{e}\n")),
        ("/healthz", Some(Ok(s))) => {
            let bad: Vec<String> = s
                .checks()
                .into_iter()
                .filter(|c| c.local && !c.ok)
                .map(|c| format!("{}: {}", c.item, c.detail))
                .collect();
            if bad.is_empty() {
                text(200, "ok\n")
            } else {
                text(503, format!("{}\n", bad.join("\n")))
            }
        }
        _ => text(404, "not found: try /metrics or /healthz\n"),
    }
}

/// Serves `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, source: HealthSource) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (conn, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("metrics: accept: {e}");
                continue;
            }
        };
        let source = source.clone();
        tokio::spawn(async move {
            if tokio::time::timeout(TIMEOUT, one(conn, &source))
                .await
                .is_err()
            {
                tracing::debug!(%peer, "metrics: request timed out");
            }
            drop(permit);
        });
    }
}

/// Reads the request head up to the blank line; `(method, path)`, or None when it is too long,
/// cut short or not HTTP.
async fn read_head(conn: &mut TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() + n > MAX_HEAD {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    parse_request_line(&buf)
}

/// `GET /metrics HTTP/1.1` → `("GET", "/metrics")` (pure).
fn parse_request_line(head: &[u8]) -> Option<(String, String)> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut parts = line.split(' ');
    let (method, path, version) = (parts.next()?, parts.next()?, parts.next()?);
    version
        .starts_with("HTTP/1.")
        .then(|| (method.to_owned(), path.to_owned()))
}

async fn one(mut conn: TcpStream, source: &HealthSource) {
    let response = match read_head(&mut conn).await {
        Some((method, path)) => {
            let wanted =
                method == "GET" && (path.starts_with("/metrics") || path.starts_with("/healthz"));
            let status = if wanted { Some(source().await) } else { None };
            respond(&method, &path, status)
        }
        None => text(400, "bad request\n"),
    };
    let reason = match response.code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.code,
        response.content_type,
        response.body.len()
    );
    let _ = conn.write_all(head.as_bytes()).await;
    let _ = conn.write_all(response.body.as_bytes()).await;
    let _ = conn.shutdown().await;
}

/// Where meshd listens, and the address bound (port 0 picks one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            parse_request_line(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(("GET".into(), "/metrics".into()))
        );
        assert_eq!(parse_request_line(b"hello\r\n\r\n"), None);
        assert_eq!(parse_request_line(b"GET / SPDY/3\r\n\r\n"), None);
    }

    #[test]
    fn routes() {
        let ok = || Some(Ok(NodeStatus::default()));
        assert_eq!(respond("GET", "/healthz", ok()).code, 200);
        assert_eq!(respond("GET", "/metrics", ok()).code, 200);
        assert_eq!(respond("GET", "/metrics", ok()).content_type, CONTENT_TYPE);
        assert_eq!(respond("POST", "/metrics", ok()).code, 405);
        assert_eq!(respond("GET", "/", None).code, 404);
        let down = respond("GET", "/healthz", Some(Err("daemon down".into())));
        assert_eq!((down.code, down.body.as_str()), (503, "daemon down\n"));
        let engine_down = NodeStatus {
            engine_error: Some("no socket".into()),
            ..NodeStatus::default()
        };
        let r = respond("GET", "/healthz", Some(Ok(engine_down)));
        assert_eq!(r.code, 503);
        assert!(r.body.contains("Engine"), "{}", r.body);
    }

    #[tokio::test]
    async fn serves_over_tcp() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let source: HealthSource = Arc::new(|| Box::pin(async { Ok(NodeStatus::default()) }));
        let server = tokio::spawn(serve(listener, source));
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.ends_with("\r\n\r\nok\n"), "{reply}");
        // A head without end, larger than allowed, is refused.
        let mut c = TcpStream::connect(addr).await.unwrap();
        let _ = c.write_all(&vec![b'a'; MAX_HEAD + 10]).await;
        let mut reply = String::new();
        let _ = c.read_to_string(&mut reply).await;
        assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
        server.abort();
    }
}
