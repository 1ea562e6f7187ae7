//! gRPC (tonic) on both listeners, and the clients that call them.
//!
//! The server side does its own TLS accept (tokio-rustls) so that each connection carries who
//! the peer is ([`Peer`]: the local socket, an anonymous TLS client, a node or an admin certificate) into
//! every request; the node daemon authorises by it. A plain TCP client fails the
//! handshake and gets nothing. Clients use their own connectors too: TLS to a manager (its
//! certificate must carry [`crate::tls::MANAGER_NAME`] under our CA), TLS pinned by a join token's
//! digest, or the unix socket.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, ServerConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status, Streaming};

use crate::error::{ApiError, Code};
use crate::reply::{Reply, StreamItem};
use crate::request::Request;
use crate::session::{AgentMessage, ManagerMessage};
use crate::tls::{self as pki, AdminIdentity, CertIdentity, CertSubject};

/// The generated gRPC code of `proto/mesh.proto`.
pub mod proto {
    #![expect(clippy::pedantic, reason = "generated code")]
    tonic::include_proto!("meshd");
}

use proto::Frame;
use proto::mesh_client::MeshClient;
use proto::mesh_server::{Mesh, MeshServer};

/// Frames are JSON; snapshots and big transactions need room.
const MAX_MESSAGE: usize = 64 << 20;
/// The largest frame a TLS client without a certificate may send: a join (a CSR and the node's
/// description) fits many times over.
pub const MAX_ANONYMOUS_MESSAGE: usize = 64 << 10;
/// How many connections without a certificate 2377 holds at once; more are closed at once.
pub const MAX_ANONYMOUS_CONNECTIONS: usize = 64;
/// How many TLS handshakes 2377 runs at once (each has a 5 s deadline); more are closed at once.
pub const MAX_HANDSHAKES: usize = 256;
/// A connection without a certificate is closed after this long (a join takes seconds).
const ANONYMOUS_MAX_AGE: Duration = Duration::from_mins(1);

/// Who is on the other end of a connection.
#[derive(Clone, Debug)]
pub enum Peer {
    /// `meshd.sock` (whoever can open it is root on this node).
    Local,
    /// TLS without a client certificate.
    Anonymous,
    /// A node certificate of our cluster.
    Node(CertIdentity),
    /// An admin client certificate (`swarm ca --admin-cert`): the cluster API only.
    Admin(AdminIdentity),
}

/// What the service asks of the daemon.
pub trait Handler: Send + Sync + 'static {
    fn call(
        &self,
        peer: Peer,
        req: Request,
    ) -> impl Future<Output = Result<Reply, ApiError>> + Send;

    /// A node's session: messages from its agent come in on `inbound`, answers go to `outbound`.
    fn session(
        &self,
        peer: Peer,
        inbound: Pin<Box<dyn Stream<Item = Result<AgentMessage, ApiError>> + Send>>,
        outbound: mpsc::Sender<ManagerMessage>,
    ) -> impl Future<Output = ()> + Send;

    /// A streaming request (`service logs`): items go to `out` until the request is done, an
    /// `Err` is sent, or the client goes away (`out` closes).
    fn stream(
        &self,
        peer: Peer,
        req: Request,
        out: mpsc::Sender<Result<StreamItem, ApiError>>,
    ) -> impl Future<Output = ()> + Send {
        let _ = peer;
        async move {
            let _ = out
                .send(Err(ApiError::invalid(format!(
                    "{} is not served as a stream here",
                    req.name()
                ))))
                .await;
        }
    }
}

pub fn encode<T: Serialize>(v: &T) -> Frame {
    Frame {
        body: serde_json::to_vec(v).expect("API types serialize"),
    }
}

pub fn decode<T: DeserializeOwned>(f: &Frame) -> Result<T, ApiError> {
    serde_json::from_slice(&f.body)
        .map_err(|e| ApiError::invalid(format!("undecodable message: {e}")))
}

struct Service<H> {
    handler: Arc<H>,
}

/// Who sent `req`: the connection put it there when it was accepted.
fn peer_of<T>(req: &GrpcRequest<T>) -> Result<Peer, Status> {
    req.extensions()
        .get::<Peer>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no peer identity"))
}

#[tonic::async_trait]
impl<H: Handler> Mesh for Service<H> {
    async fn call(&self, req: GrpcRequest<Frame>) -> Result<GrpcResponse<Frame>, Status> {
        let peer = peer_of(&req)?;
        let request: Request =
            decode(req.get_ref()).map_err(|e| Status::invalid_argument(e.message))?;
        let result = self.handler.call(peer, request).await;
        Ok(GrpcResponse::new(encode(&result)))
    }

    type SessionStream = Pin<Box<dyn Stream<Item = Result<Frame, Status>> + Send>>;

    async fn session(
        &self,
        req: GrpcRequest<Streaming<Frame>>,
    ) -> Result<GrpcResponse<Self::SessionStream>, Status> {
        let peer = peer_of(&req)?;
        if !matches!(peer, Peer::Node(_)) {
            return Err(Status::permission_denied(
                "a session needs a node certificate of this swarm",
            ));
        }
        let inbound = req.into_inner().map(|f| match f {
            Ok(f) => decode::<AgentMessage>(&f),
            Err(s) => Err(ApiError::unavailable(s.message().to_owned())),
        });
        let (tx, rx) = mpsc::channel::<ManagerMessage>(16);
        let handler = self.handler.clone();
        tokio::spawn(async move { handler.session(peer, Box::pin(inbound), tx).await });
        let out = ReceiverStream::new(rx).map(|m| Ok(encode(&m)));
        Ok(GrpcResponse::new(Box::pin(out)))
    }

    type StreamStream = Pin<Box<dyn Stream<Item = Result<Frame, Status>> + Send>>;

    async fn stream(
        &self,
        req: GrpcRequest<Frame>,
    ) -> Result<GrpcResponse<Self::StreamStream>, Status> {
        let peer = peer_of(&req)?;
        let request: Request =
            decode(req.get_ref()).map_err(|e| Status::invalid_argument(e.message))?;
        let (tx, rx) = mpsc::channel::<Result<StreamItem, ApiError>>(64);
        let handler = self.handler.clone();
        tokio::spawn(async move { handler.stream(peer, request, tx).await });
        let out = ReceiverStream::new(rx).map(|m| Ok(encode(&m)));
        Ok(GrpcResponse::new(Box::pin(out)))
    }
}

/// A connection and who is on its other end (and, for an anonymous one, its place among the
/// [`MAX_ANONYMOUS_CONNECTIONS`], given back when the connection is dropped).
pub struct Conn<S> {
    io: S,
    peer: Peer,
    _slot: Option<OwnedSemaphorePermit>,
    /// When the peer's certificate expires: the connection ends then, and the peer, which has
    /// renewed meanwhile, connects again with its new certificate.
    expires: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Did a handshake fail because the client's certificate had expired?
fn expired_certificate(e: &io::Error) -> bool {
    use rustls::CertificateError::{Expired, ExpiredContext};
    matches!(
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidCertificate(
            Expired | ExpiredContext { .. }
        ))
    )
}

/// When a connection with a certificate valid until `not_after` (unix seconds) must end.
fn expiry_timer(not_after: i64) -> Pin<Box<tokio::time::Sleep>> {
    let now = crate::now_millis() / 1000;
    let left = u64::try_from(not_after).unwrap_or(0).saturating_sub(now);
    Box::pin(tokio::time::sleep(Duration::from_secs(left)))
}

impl<S> Connected for Conn<S> {
    type ConnectInfo = Peer;
    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Conn<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(expires) = self.expires.as_mut()
            && expires.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the peer's certificate expired",
            )));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Conn<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

fn server<H: Handler>(handler: Arc<H>, max_in: usize) -> MeshServer<Service<H>> {
    MeshServer::new(Service { handler })
        .max_decoding_message_size(max_in)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// Serves the local API on `listener` until the task is dropped.
pub async fn serve_unix<H: Handler>(listener: UnixListener, handler: Arc<H>) {
    let incoming = futures::stream::unfold(listener, |l| async move {
        let conn = l.accept().await.map(|(io, _)| Conn {
            io,
            peer: Peer::Local,
            _slot: None,
            expires: None,
        });
        Some((conn, l))
    });
    if let Err(e) = tonic::transport::Server::builder()
        .add_service(server(handler, MAX_MESSAGE))
        .serve_with_incoming(incoming)
        .await
    {
        tracing::error!("local API server stopped: {e}");
    }
}

/// Serves TCP 2377 with TLS on `listener` until `stop` resolves; the listener is closed then
/// (connections still open drain on their own). Connections with a node certificate and
/// anonymous ones are served apart: anonymous peers may send frames of at most
/// [`MAX_ANONYMOUS_MESSAGE`] bytes and hold at most [`MAX_ANONYMOUS_CONNECTIONS`] connections.
pub async fn serve_tls<H: Handler>(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    handler: Arc<H>,
    stop: impl Future<Output = ()> + Send,
) {
    type TlsConn = Conn<tokio_rustls::server::TlsStream<TcpStream>>;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let (nodes_tx, nodes_rx) = mpsc::channel::<io::Result<TlsConn>>(64);
    let (anon_tx, anon_rx) = mpsc::channel::<io::Result<TlsConn>>(MAX_ANONYMOUS_CONNECTIONS);
    let (stopped_tx, mut stopped) = tokio::sync::watch::channel(false);
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let anonymous = Arc::new(Semaphore::new(MAX_ANONYMOUS_CONNECTIONS));
    let accept = tokio::spawn(async move {
        loop {
            let (tcp, from) = tokio::select! {
                _ = stopped.changed() => return,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("accepting on 2377: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
                tracing::debug!(%from, "too many TLS handshakes in progress; closing");
                continue;
            };
            let acceptor = acceptor.clone();
            let (nodes_tx, anon_tx, anonymous) =
                (nodes_tx.clone(), anon_tx.clone(), anonymous.clone());
            // Handshakes in parallel, each with a deadline: a silent client holds nothing up.
            tokio::spawn(async move {
                let _handshake = handshake;
                let _ = tcp.set_nodelay(true);
                let tls = match tokio::time::timeout(Duration::from_secs(5), acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) if expired_certificate(&e) => {
                        tracing::warn!(%from, "refused an expired certificate: {e}");
                        return;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%from, "TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%from, "TLS handshake timed out");
                        return;
                    }
                };
                let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
                let Some(cert) = cert else {
                    let Ok(slot) = anonymous.try_acquire_owned() else {
                        tracing::warn!(%from, "{MAX_ANONYMOUS_CONNECTIONS} connections without a certificate already open; closing");
                        return;
                    };
                    let conn = Conn {
                        io: tls,
                        peer: Peer::Anonymous,
                        _slot: Some(slot),
                        expires: None,
                    };
                    let _ = anon_tx.send(Ok(conn)).await;
                    return;
                };
                let peer = match pki::subject(cert) {
                    Ok(CertSubject::Node(id)) => Peer::Node(id),
                    Ok(CertSubject::Admin(admin)) => Peer::Admin(admin),
                    Err(e) => {
                        tracing::warn!(%from, "refusing a certificate: {e:#}");
                        return;
                    }
                };
                let not_after = match &peer {
                    Peer::Node(id) => Some(id.not_after),
                    Peer::Admin(a) => Some(a.not_after),
                    Peer::Local | Peer::Anonymous => None,
                };
                let conn = Conn {
                    io: tls,
                    peer,
                    _slot: None,
                    expires: not_after.map(expiry_timer),
                };
                let _ = nodes_tx.send(Ok(conn)).await;
            });
        }
    });
    let (anon_stop_tx, anon_stop_rx) = oneshot::channel::<()>();
    let stop = async move {
        stop.await;
        // Close the listener at once, so that the port is free for whoever binds it next.
        let _ = stopped_tx.send(true);
        let _ = anon_stop_tx.send(());
    };
    let anon = tokio::spawn(
        tonic::transport::Server::builder()
            .max_concurrent_streams(Some(4))
            .max_connection_age(ANONYMOUS_MAX_AGE)
            .add_service(server(handler.clone(), MAX_ANONYMOUS_MESSAGE))
            .serve_with_incoming_shutdown(ReceiverStream::new(anon_rx), async move {
                let _ = anon_stop_rx.await;
            }),
    );
    let result = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(2)))
        .http2_keepalive_timeout(Some(Duration::from_secs(4)))
        .add_service(server(handler, MAX_MESSAGE))
        .serve_with_incoming_shutdown(ReceiverStream::new(nodes_rx), stop)
        .await;
    accept.abort();
    anon.abort();
    if let Err(e) = result {
        tracing::error!("2377 server stopped: {e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

/// A client of one meshd: its local socket, or a manager over TLS. Connects lazily and
/// reconnects after failures; cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    inner: MeshClient<Channel>,
    target: String,
}

fn endpoint(uri: &str) -> Endpoint {
    Endpoint::from_shared(uri.to_owned())
        .expect("a valid URI")
        .connect_timeout(Duration::from_secs(2))
        .http2_keep_alive_interval(Duration::from_secs(2))
        .keep_alive_timeout(Duration::from_secs(4))
        .keep_alive_while_idle(true)
}

impl Client {
    fn new(channel: Channel, target: String) -> Self {
        Self {
            inner: MeshClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            target,
        }
    }

    /// The local API at `sock`.
    pub fn local(sock: &Path) -> Self {
        let path: PathBuf = sock.to_owned();
        let connector = tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        });
        Self::new(
            endpoint("http://meshd.sock").connect_with_connector_lazy(connector),
            format!("unix://{}", sock.display()),
        )
    }

    /// A manager at `addr` (`IP:PORT`) over TLS with `tls` (which holds our certificate, if any,
    /// and decides which servers to trust).
    pub fn tls(addr: &str, tls: Arc<ClientConfig>) -> Self {
        let target = addr.to_owned();
        let connector = tower::service_fn(move |_: Uri| {
            let addr = target.clone();
            let tls = tls.clone();
            async move {
                let tcp = TcpStream::connect(&addr).await?;
                tcp.set_nodelay(true)?;
                let stream = tokio_rustls::TlsConnector::from(tls)
                    .connect(pki::manager_server_name(), tcp)
                    .await?;
                Ok::<_, io::Error>(TokioIo::new(stream))
            }
        });
        Self::new(
            endpoint(&format!("http://{addr}")).connect_with_connector_lazy(connector),
            addr.to_owned(),
        )
    }

    /// What this client talks to (`unix://...` or `IP:PORT`).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Sends `req` and waits up to `timeout` for the answer.
    pub async fn call_with_timeout(
        &self,
        req: &Request,
        timeout: Duration,
    ) -> Result<Reply, ApiError> {
        let mut client = self.inner.clone();
        let fut = client.call(encode(req));
        let resp = match tokio::time::timeout(timeout, fut).await {
            Err(_) => {
                return Err(ApiError::unavailable(format!(
                    "{} did not answer {} within {timeout:?}",
                    self.target,
                    req.name()
                )));
            }
            Ok(Err(status)) => return Err(status_error(&self.target, &status)),
            Ok(Ok(resp)) => resp,
        };
        decode::<Result<Reply, ApiError>>(resp.get_ref())?
    }

    /// Sends `req` and waits up to 30 s.
    pub async fn call(&self, req: &Request) -> Result<Reply, ApiError> {
        self.call_with_timeout(req, Duration::from_secs(30)).await
    }

    /// Opens a session: `outbound` goes to the manager; the returned stream is its answers.
    pub async fn session(
        &self,
        outbound: mpsc::Receiver<AgentMessage>,
    ) -> Result<Pin<Box<dyn Stream<Item = Result<ManagerMessage, ApiError>> + Send>>, ApiError>
    {
        let mut client = self.inner.clone();
        let out = ReceiverStream::new(outbound).map(|m| encode(&m));
        let target = self.target.clone();
        let resp = tokio::time::timeout(Duration::from_secs(5), client.session(out))
            .await
            .map_err(|_| ApiError::unavailable(format!("{target} did not open a session")))?
            .map_err(|s| status_error(&target, &s))?;
        let inbound = resp.into_inner().map(move |f| match f {
            Ok(f) => decode::<ManagerMessage>(&f),
            Err(s) => Err(status_error(&target, &s)),
        });
        Ok(Box::pin(inbound))
    }
}

impl Client {
    /// Sends a streaming request; the answer is its items, ending after the first `Err`.
    pub async fn stream(
        &self,
        req: &Request,
    ) -> Result<Pin<Box<dyn Stream<Item = Result<StreamItem, ApiError>> + Send>>, ApiError> {
        let mut client = self.inner.clone();
        let target = self.target.clone();
        let resp = tokio::time::timeout(Duration::from_secs(30), client.stream(encode(req)))
            .await
            .map_err(|_| ApiError::unavailable(format!("{target} did not answer {}", req.name())))?
            .map_err(|s| status_error(&target, &s))?;
        let items = resp.into_inner().map(move |f| match f {
            Ok(f) => decode::<Result<StreamItem, ApiError>>(&f).and_then(|r| r),
            Err(s) => Err(status_error(&target, &s)),
        });
        Ok(Box::pin(items))
    }
}

fn status_error(target: &str, status: &Status) -> ApiError {
    use std::error::Error as _;
    let mut code = match status.code() {
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => Code::PermissionDenied,
        tonic::Code::InvalidArgument => Code::InvalidArgument,
        _ => Code::Unavailable,
    };
    // Transport errors hide their cause in the source chain (refused, TLS alert, ...).
    let mut cause = String::new();
    let mut src = status.source();
    while let Some(s) = src {
        cause = s.to_string();
        if code == Code::Unavailable
            && s.downcast_ref::<io::Error>()
                .is_some_and(|e| not_connected(e.kind()))
        {
            code = Code::Unreachable;
        }
        src = s.source();
    }
    let msg = if cause.is_empty() || status.message().contains(&cause) {
        status.message().to_owned()
    } else {
        format!("{}: {cause}", status.message())
    };
    ApiError::new(code, format!("cannot reach {target}: {msg}"))
}

/// A connection that could not be made: nothing was sent on it.
fn not_connected(kind: io::ErrorKind) -> bool {
    use io::ErrorKind::{
        AddrNotAvailable, ConnectionRefused, HostUnreachable, NetworkUnreachable, NotFound,
    };
    matches!(
        kind,
        ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable | NotFound
    )
}

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod tests;
