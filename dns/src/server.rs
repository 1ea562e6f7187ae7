//! The server: UDP and TCP listeners, one or more per network, over one swappable table.
//!
//! Each listener is a supervisor task owning its sockets' tasks: `udp_workers` receivers on one
//! shared UDP socket (each answers internal names inline, without spawning) and a TCP acceptor.
//! Forwarded queries run as tasks owned by the worker that received them; the worker sends their
//! replies, so nothing but the workers holds the UDP socket and removing a listener frees its
//! address as soon as `remove_listener` returns.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;

use crate::gate::RecursionGate;
use crate::table::NameTable;
use crate::upstream::{self, RESOLV_CONF};
use crate::wire::{Outcome, Responder, Transport, fit_udp};

/// Task addresses whose relay rate is remembered at once (the idlest are forgotten past it).
const MAX_RATED_CLIENTS: usize = 4096;

/// Our EDNS UDP size (DNS flag day 2020): answers over UDP never exceed it, so never fragment.
pub const DEFAULT_MAX_UDP_PAYLOAD: u16 = 1232;

/// How the server answers and forwards. `Default` has no upstreams (forwarded queries get
/// SERVFAIL); [`DnsConfig::from_system`] takes the host's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// Tried in order for every name that is not ours.
    pub upstreams: Vec<SocketAddr>,
    /// How long one upstream gets to answer.
    pub upstream_timeout: Duration,
    /// How long a forwarded query may take in all (then SERVFAIL). Below glibc's 5 s so that the
    /// client sees our SERVFAIL rather than its own timeout.
    pub forward_deadline: Duration,
    /// Our EDNS UDP size (at least 512).
    pub max_udp_payload: u16,
    /// A TCP connection that sends no complete query for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Receiving tasks per UDP socket.
    pub udp_workers: usize,
    /// Forwarded queries in flight, per server; past it, SERVFAIL at once.
    pub max_forwards: usize,
    /// Open TCP connections per listener; past it, new ones are closed at once.
    pub max_tcp_connections: usize,
    /// Queries a task may have relayed upstream per second, after a burst of `forward_burst`
    /// (past it, REFUSED); sources outside the cluster's overlays get no recursion at all.
    pub forward_rate: u32,
    pub forward_burst: u32,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            upstreams: Vec::new(),
            upstream_timeout: Duration::from_secs(2),
            forward_deadline: Duration::from_secs(4),
            max_udp_payload: DEFAULT_MAX_UDP_PAYLOAD,
            tcp_idle_timeout: Duration::from_secs(10),
            udp_workers: std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
            max_forwards: 1024,
            max_tcp_connections: 256,
            forward_rate: 100,
            forward_burst: 200,
        }
    }
}

impl DnsConfig {
    /// The defaults, with the upstreams of the host's /etc/resolv.conf.
    pub fn from_system() -> io::Result<Self> {
        Ok(Self {
            upstreams: upstream::upstreams_from_file(std::path::Path::new(RESOLV_CONF))?,
            ..Self::default()
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot listen for DNS on {addr} (udp and tcp): {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("{addr} already serves DNS for network {network:?}; remove that listener first")]
    AddressTaken { addr: SocketAddr, network: String },
    #[error("the sockets given for network {network:?} are unusable: {source}")]
    Sockets { network: String, source: io::Error },
}

/// Counters since the server started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsStats {
    /// Replies written here (internal answers, NXDOMAIN, errors).
    pub answered: u64,
    /// Of which NXDOMAIN.
    pub nxdomain: u64,
    /// Of which truncated (TC set).
    pub truncated: u64,
    /// Queries relayed upstream.
    pub forwarded: u64,
    /// Relayed queries that got SERVFAIL because no upstream answered in time (or too many were
    /// in flight).
    pub forward_failed: u64,
    /// Queries not relayed: from outside the cluster's overlays, or over a task's rate.
    pub forward_refused: u64,
    /// Time from a query's arrival to its reply, answered here or relayed: how many took at most
    /// each of [`LATENCY_BOUNDS`] (not cumulative; the last slot counts the slower ones).
    pub latency_buckets: [u64; LATENCY_BOUNDS.len() + 1],
    /// The sum of those times, in nanoseconds.
    pub latency_sum_nanos: u64,
}

/// The upper bounds of the latency buckets, in seconds: internal answers take microseconds,
/// relayed ones the upstream's round trip, up to the forward deadline.
pub const LATENCY_BOUNDS: [f64; 8] = [0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 2.0];

#[derive(Default)]
struct Counters {
    answered: AtomicU64,
    nxdomain: AtomicU64,
    truncated: AtomicU64,
    forwarded: AtomicU64,
    forward_failed: AtomicU64,
    forward_refused: AtomicU64,
    latency: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    latency_sum_nanos: AtomicU64,
}

impl Counters {
    fn observe(&self, started: Instant) {
        let took = started.elapsed();
        let secs = took.as_secs_f64();
        let i = LATENCY_BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.latency[i].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_nanos.fetch_add(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// The live table: readers keep an `Arc` and only look at the lock when the generation moved.
struct TableCell {
    generation: AtomicU64,
    table: RwLock<Arc<NameTable>>,
}

struct TableReader {
    generation: u64,
    table: Arc<NameTable>,
}

impl TableCell {
    fn set(&self, table: Arc<NameTable>) {
        let mut slot = self.table.write().unwrap_or_else(PoisonError::into_inner);
        *slot = table;
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn get(&self) -> Arc<NameTable> {
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn reader(&self) -> TableReader {
        let slot = self.table.read().unwrap_or_else(PoisonError::into_inner);
        TableReader {
            generation: self.generation.load(Ordering::Acquire),
            table: slot.clone(),
        }
    }
}

impl TableReader {
    fn current(&mut self, cell: &TableCell) -> &NameTable {
        if cell.generation.load(Ordering::Acquire) != self.generation {
            *self = cell.reader();
        }
        &self.table
    }
}

struct Shared {
    config: DnsConfig,
    table: TableCell,
    upstreams: RwLock<Arc<[SocketAddr]>>,
    /// Our own listening addresses: never forwarded to, whatever resolv.conf says.
    own_addrs: RwLock<Arc<[SocketAddr]>>,
    forwards: Arc<Semaphore>,
    /// Who may have queries relayed, and how often.
    gate: Mutex<RecursionGate>,
    counters: Counters,
}

impl Shared {
    fn upstreams(&self) -> Arc<[SocketAddr]> {
        let ups = self
            .upstreams
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let own = self
            .own_addrs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if ups.iter().any(|u| own.contains(u)) {
            ups.iter().filter(|u| !own.contains(u)).copied().collect()
        } else {
            ups
        }
    }

    fn count_reply(&self, reply: &[u8]) {
        self.counters.answered.fetch_add(1, Ordering::Relaxed);
        if reply[3] & 0x0F == 3 {
            self.counters.nxdomain.fetch_add(1, Ordering::Relaxed);
        }
        if reply[2] & 0x02 != 0 {
            self.counters.truncated.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Relays `request` upstream; the reply to send, or SERVFAIL.
    async fn forward(&self, request: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let started = Instant::now();
        let reply = self.forward_once(request, transport).await;
        self.counters.observe(started);
        reply
    }

    async fn forward_once(&self, request: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let ups = self.upstreams();
        let reply = upstream::forward(
            &ups,
            request,
            transport,
            self.config.upstream_timeout,
            self.config.forward_deadline,
        )
        .await;
        reply.or_else(|| self.servfail(request))
    }

    /// May `client` have one more query relayed? Counts a refusal.
    fn may_forward(&self, client: IpAddr, table: &NameTable) -> bool {
        let admitted = self
            .gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(client, table.is_cluster_address(client), Instant::now());
        if let Err(why) = admitted {
            self.counters
                .forward_refused
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%client, ?why, "DNS query not relayed");
        }
        admitted.is_ok()
    }

    fn servfail(&self, request: &[u8]) -> Option<Vec<u8>> {
        self.counters.forward_failed.fetch_add(1, Ordering::Relaxed);
        Responder::new(self.config.max_udp_payload)
            .servfail(request)
            .map(<[u8]>::to_vec)
    }
}

struct Listener {
    network_id: Arc<str>,
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// The DNS server of one node. Create it inside a Tokio runtime; it spawns its tasks there.
pub struct DnsServer {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    listeners: Mutex<Vec<Listener>>,
}

impl DnsServer {
    /// A server without listeners. Panics outside a Tokio runtime.
    pub fn new(config: DnsConfig, table: NameTable) -> Self {
        let upstreams = config.upstreams.clone().into();
        let forwards = Arc::new(Semaphore::new(config.max_forwards));
        let gate = Mutex::new(RecursionGate::new(
            config.forward_rate,
            config.forward_burst,
            MAX_RATED_CLIENTS,
        ));
        Self {
            shared: Arc::new(Shared {
                config,
                table: TableCell {
                    generation: AtomicU64::new(0),
                    table: RwLock::new(Arc::new(table)),
                },
                upstreams: RwLock::new(upstreams),
                own_addrs: RwLock::new(Arc::new([])),
                forwards,
                gate,
                counters: Counters::default(),
            }),
            runtime: tokio::runtime::Handle::current(),
            listeners: Mutex::new(Vec::new()),
        }
    }

    /// Replaces the table at once for every listener; queries in progress finish on the old one.
    pub fn set_table(&self, table: impl Into<Arc<NameTable>>) {
        self.shared.table.set(table.into());
    }

    /// The table being served.
    pub fn table(&self) -> Arc<NameTable> {
        self.shared.table.get()
    }

    /// Replaces the upstream resolvers (e.g. after resolv.conf changed).
    pub fn set_upstreams(&self, upstreams: Vec<SocketAddr>) {
        *self
            .shared
            .upstreams
            .write()
            .unwrap_or_else(PoisonError::into_inner) = upstreams.into();
    }

    pub fn stats(&self) -> DnsStats {
        let c = &self.shared.counters;
        DnsStats {
            answered: c.answered.load(Ordering::Relaxed),
            nxdomain: c.nxdomain.load(Ordering::Relaxed),
            truncated: c.truncated.load(Ordering::Relaxed),
            forwarded: c.forwarded.load(Ordering::Relaxed),
            forward_failed: c.forward_failed.load(Ordering::Relaxed),
            forward_refused: c.forward_refused.load(Ordering::Relaxed),
            latency_buckets: std::array::from_fn(|i| c.latency[i].load(Ordering::Relaxed)),
            latency_sum_nanos: c.latency_sum_nanos.load(Ordering::Relaxed),
        }
    }

    /// Serves `network_id`'s view on `addr` over UDP and TCP; returns the bound address (port 0
    /// picks one free for both). Adding the same network and address again changes nothing.
    /// Callable from any thread, e.g. one that entered a node's network namespace.
    pub fn add_listener(&self, network_id: &str, addr: SocketAddr) -> Result<SocketAddr, DnsError> {
        if addr.port() != 0 {
            let listeners = self.lock_listeners();
            if let Some(existing) = listeners.iter().find(|l| l.addr == addr) {
                if &*existing.network_id == network_id {
                    return Ok(existing.addr);
                }
                return Err(DnsError::AddressTaken {
                    addr,
                    network: existing.network_id.to_string(),
                });
            }
        }
        let (udp, tcp) = bind_pair(addr).map_err(|source| DnsError::Bind { addr, source })?;
        self.add_listener_sockets(network_id, udp, tcp)
    }

    /// Like [`DnsServer::add_listener`] with sockets bound by the caller (for instance inside
    /// another network namespace). The listener's address is the UDP socket's.
    pub fn add_listener_sockets(
        &self,
        network_id: &str,
        udp: std::net::UdpSocket,
        tcp: std::net::TcpListener,
    ) -> Result<SocketAddr, DnsError> {
        let sockets_error = |source| DnsError::Sockets {
            network: network_id.to_owned(),
            source,
        };
        let addr = udp.local_addr().map_err(sockets_error)?;
        udp.set_nonblocking(true).map_err(sockets_error)?;
        tcp.set_nonblocking(true).map_err(sockets_error)?;
        let _runtime = self.runtime.enter();
        let udp = UdpSocket::from_std(udp).map_err(sockets_error)?;
        let tcp = TcpListener::from_std(tcp).map_err(sockets_error)?;

        let network_id: Arc<str> = network_id.into();
        let (stop, stopped) = oneshot::channel();
        let task = self.runtime.spawn(run_listener(
            self.shared.clone(),
            network_id.clone(),
            udp,
            tcp,
            stopped,
        ));
        let mut listeners = self.lock_listeners();
        listeners.push(Listener {
            network_id,
            addr,
            stop,
            task,
        });
        self.publish_own_addrs(&listeners);
        tracing::info!(%addr, "DNS listener up");
        Ok(addr)
    }

    /// Stops every listener of `network_id`; their addresses are free when this returns.
    /// Returns the addresses that were served.
    pub async fn remove_listener(&self, network_id: &str) -> Vec<SocketAddr> {
        let removed: Vec<Listener> = {
            let mut listeners = self.lock_listeners();
            let (removed, kept) = std::mem::take(&mut *listeners)
                .into_iter()
                .partition(|l| &*l.network_id == network_id);
            *listeners = kept;
            self.publish_own_addrs(&listeners);
            removed
        };
        let mut addrs = Vec::with_capacity(removed.len());
        for listener in removed {
            let _ = listener.stop.send(());
            let _ = listener.task.await;
            tracing::info!(addr = %listener.addr, "DNS listener down");
            addrs.push(listener.addr);
        }
        addrs
    }

    /// Every listener: (network id, address).
    pub fn listeners(&self) -> Vec<(String, SocketAddr)> {
        self.lock_listeners()
            .iter()
            .map(|l| (l.network_id.to_string(), l.addr))
            .collect()
    }

    /// Stops every listener and waits until their sockets are closed.
    pub async fn shutdown(&self) {
        let networks: Vec<String> = self.listeners().into_iter().map(|(n, _)| n).collect();
        for network in networks {
            self.remove_listener(&network).await;
        }
    }

    fn lock_listeners(&self) -> std::sync::MutexGuard<'_, Vec<Listener>> {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn publish_own_addrs(&self, listeners: &[Listener]) {
        let addrs: Arc<[SocketAddr]> = listeners.iter().map(|l| l.addr).collect();
        *self
            .shared
            .own_addrs
            .write()
            .unwrap_or_else(PoisonError::into_inner) = addrs;
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for listener in self.lock_listeners().drain(..) {
            listener.task.abort();
        }
    }
}

/// Binds UDP then TCP on the same address; with port 0, retries until one port is free for both.
fn bind_pair(addr: SocketAddr) -> io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    let mut attempts = if addr.port() == 0 { 16 } else { 1 };
    loop {
        let udp = std::net::UdpSocket::bind(addr)?;
        let bound = udp.local_addr()?;
        match std::net::TcpListener::bind(bound) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempts > 1 => attempts -= 1,
            Err(e) => return Err(e),
        }
    }
}

async fn run_listener(
    shared: Arc<Shared>,
    network: Arc<str>,
    udp: UdpSocket,
    tcp: TcpListener,
    mut stop: oneshot::Receiver<()>,
) {
    let udp = Arc::new(udp);
    let mut tasks = JoinSet::new();
    for _ in 0..shared.config.udp_workers.max(1) {
        tasks.spawn(udp_worker(shared.clone(), network.clone(), udp.clone()));
    }
    drop(udp);
    tasks.spawn(tcp_acceptor(shared, network.clone(), tcp));
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(ended) = tasks.join_next() => {
                tracing::warn!(network = %network, ?ended, "a DNS listener task ended");
            }
        }
    }
    tasks.shutdown().await;
}

type ForwardDone = (SocketAddr, Option<Vec<u8>>);

async fn udp_worker(shared: Arc<Shared>, network: Arc<str>, socket: Arc<UdpSocket>) {
    let mut responder = Responder::new(shared.config.max_udp_payload);
    let mut table = shared.table.reader();
    // Queries are small, but EDNS options may make them longer than 512 bytes.
    let mut buf = vec![0u8; 4096];
    let mut forwards: JoinSet<ForwardDone> = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            Some(done) = forwards.join_next(), if !forwards.is_empty() => {
                if let Ok((client, Some(reply))) = done {
                    send_udp(&socket, &reply, client).await;
                }
            }
            received = socket.recv_from(&mut buf) => {
                let (len, client) = match received {
                    Ok(received) => received,
                    Err(error) => {
                        // Errors queued by ICMP for earlier sends are harmless; keep serving.
                        tracing::debug!(%error, "DNS receive error");
                        continue;
                    }
                };
                let request = &buf[..len];
                let started = Instant::now();
                match responder.respond(table.current(&shared.table), &network, request, Transport::Udp) {
                    Outcome::Reply => {
                        shared.count_reply(responder.reply());
                        shared.counters.observe(started);
                        send_udp(&socket, responder.reply(), client).await;
                    }
                    Outcome::Forward => {
                        if !shared.may_forward(client.ip(), table.current(&shared.table)) {
                            if let Some(reply) = responder.refused(request) {
                                send_udp(&socket, reply, client).await;
                            }
                            continue;
                        }
                        shared.counters.forwarded.fetch_add(1, Ordering::Relaxed);
                        if let Ok(permit) = shared.forwards.clone().try_acquire_owned() {
                            let shared = shared.clone();
                            let request = request.to_vec();
                            forwards.spawn(async move {
                                let reply = shared.forward(&request, Transport::Udp).await;
                                drop(permit);
                                let max = shared.config.max_udp_payload;
                                (client, reply.map(|r| fit_udp(&request, r, max)))
                            });
                        } else if let Some(reply) = shared.servfail(request) {
                            send_udp(&socket, &reply, client).await;
                        }
                    }
                    Outcome::Drop => {}
                }
            }
        }
    }
}

async fn send_udp(socket: &UdpSocket, reply: &[u8], client: SocketAddr) {
    if let Err(error) = socket.send_to(reply, client).await {
        tracing::debug!(%client, %error, "DNS send error");
    }
}

async fn tcp_acceptor(shared: Arc<Shared>, network: Arc<str>, listener: TcpListener) {
    let connections = Arc::new(Semaphore::new(shared.config.max_tcp_connections));
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        let (stream, client) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(%error, "DNS accept error");
                // EMFILE and friends: give the system a moment instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::debug!(%client, "too many DNS TCP connections; closing");
            continue;
        };
        tasks.spawn(tcp_connection(
            shared.clone(),
            network.clone(),
            stream,
            permit,
        ));
    }
}

async fn tcp_connection(
    shared: Arc<Shared>,
    network: Arc<str>,
    mut stream: TcpStream,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok().map(|a| a.ip());
    let idle = shared.config.tcp_idle_timeout;
    let mut responder = Responder::new(shared.config.max_udp_payload);
    let mut table = shared.table.reader();
    let mut request = Vec::new();
    let mut framed = Vec::new();
    loop {
        let Ok(Ok(len)) = timeout(idle, stream.read_u16()).await else {
            return;
        };
        request.resize(usize::from(len), 0);
        if !matches!(
            timeout(idle, stream.read_exact(&mut request)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let forwarded;
        let started = Instant::now();
        let reply: &[u8] = match responder.respond(
            table.current(&shared.table),
            &network,
            &request,
            Transport::Tcp,
        ) {
            Outcome::Reply => {
                shared.count_reply(responder.reply());
                shared.counters.observe(started);
                responder.reply()
            }
            Outcome::Forward
                if !peer.is_some_and(|ip| shared.may_forward(ip, table.current(&shared.table))) =>
            {
                match responder.refused(&request) {
                    Some(reply) => reply,
                    None => continue,
                }
            }
            Outcome::Forward => {
                shared.counters.forwarded.fetch_add(1, Ordering::Relaxed);
                let permit = shared.forwards.clone().try_acquire_owned();
                forwarded = match permit {
                    Ok(_permit) => shared.forward(&request, Transport::Tcp).await,
                    Err(_) => shared.servfail(&request),
                };
                match &forwarded {
                    Some(reply) => reply,
                    None => continue,
                }
            }
            Outcome::Drop => continue,
        };
        framed.clear();
        framed.extend_from_slice(&(reply.len() as u16).to_be_bytes());
        framed.extend_from_slice(reply);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}
