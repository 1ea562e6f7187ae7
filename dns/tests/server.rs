//! The server over real sockets on loopback: real DNS queries in, replies parsed by hickory-proto.
//! Upstreams are fakes on loopback that record what reaches them, so "never forwarded" is seen,
//! not assumed.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use mesh_dns::{DnsConfig, DnsServer, NameTable, ServiceRecords, TaskRecord};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// How long a test waits for any reply before failing (a bound, not a measurement).
const WAIT: Duration = Duration::from_secs(5);
/// What the fake upstream answers for every name.
const UPSTREAM_ANSWER: [u8; 4] = [198, 18, 0, 99];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Network `front` (10.10.0.0/24): `web` (vip, 2 tasks), `db` (dnsrr, 2 tasks), `many` (dnsrr,
/// 100 tasks). Network `back` (10.20.0.0/24): `api` (vip). Network `local` (127.0.0.0/8, no
/// names): the test's clients, on loopback, count as the cluster's tasks (recursion is theirs).
fn sample_table() -> NameTable {
    let mut b = sample_table_without_clients();
    b.network("local-id", "local", &["127.0.0.0/8".parse().unwrap()])
        .unwrap();
    b.build()
}

fn sample_table_without_clients() -> mesh_dns::NameTableBuilder {
    let mut b = NameTable::builder();
    b.network("front-id", "front", &["10.10.0.0/16".parse().unwrap()])
        .unwrap();
    b.network("back-id", "back", &["10.20.0.0/24".parse().unwrap()])
        .unwrap();
    b.service(
        "front-id",
        &ServiceRecords::vip("web", ip("10.10.0.2"))
            .alias("www")
            .task(TaskRecord::replica("taskweb1", 1, ip("10.10.0.11")))
            .task(TaskRecord::replica("taskweb2", 2, ip("10.10.0.12"))),
    )
    .unwrap();
    b.service(
        "front-id",
        &ServiceRecords::dnsrr("db")
            .task(TaskRecord::replica("taskdb1", 1, ip("10.10.0.21")))
            .task(TaskRecord::replica("taskdb2", 2, ip("10.10.0.22"))),
    )
    .unwrap();
    let mut many = ServiceRecords::dnsrr("many");
    for i in 0..100u8 {
        many = many.task(TaskRecord::replica(
            format!("taskmany{i}"),
            u64::from(i) + 1,
            IpAddr::from([10, 10, 1, i + 1]),
        ));
    }
    b.service("front-id", &many).unwrap();
    b.service("back-id", &ServiceRecords::vip("api", ip("10.20.0.2")))
        .unwrap();
    b
}

fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

async fn ask_udp(server: SocketAddr, request: &Message) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&request.to_vec().unwrap(), server)
        .await
        .unwrap();
    let mut buf = vec![0u8; 65_535];
    let (len, from) = timeout(WAIT, socket.recv_from(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no UDP reply from {server} to {:?}", request.queries))
        .unwrap();
    assert_eq!(from, server);
    let reply = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(reply.metadata.id, request.metadata.id, "reply id");
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    reply
}

async fn ask_tcp(server: SocketAddr, request: &Message) -> Message {
    let mut stream = timeout(WAIT, TcpStream::connect(server))
        .await
        .unwrap()
        .unwrap();
    let bytes = request.to_vec().unwrap();
    stream
        .write_all(&(bytes.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&bytes).await.unwrap();
    let len = timeout(WAIT, stream.read_u16())
        .await
        .unwrap_or_else(|_| panic!("no TCP reply from {server} to {:?}", request.queries))
        .unwrap();
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.unwrap();
    let reply = Message::from_vec(&buf).unwrap();
    assert_eq!(reply.metadata.id, request.metadata.id, "reply id");
    reply
}

fn addrs(m: &Message) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = m
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            other => panic!("unexpected record {other:?} in {m:?}"),
        })
        .collect();
    v.sort();
    v
}

fn ptr_target(m: &Message) -> String {
    match m.answers.as_slice() {
        [record] => match &record.data {
            RData::PTR(p) => p.0.to_ascii(),
            other => panic!("expected PTR, got {other:?}"),
        },
        other => panic!("expected one answer, got {other:?}"),
    }
}

/// A resolver on loopback (UDP and TCP, same port) that answers every A query with
/// [`UPSTREAM_ANSWER`] and records every name it was asked.
struct FakeUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl FakeUpstream {
    async fn start() -> Self {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = TcpListener::bind(addr).await.unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let udp_seen = seen.clone();
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            loop {
                let (len, from) = udp.recv_from(&mut buf).await.unwrap();
                let reply = Self::reply(&buf[..len], &udp_seen);
                udp.send_to(&reply, from).await.unwrap();
            }
        });
        let tcp_seen = seen.clone();
        let tcp_task = tokio::spawn(async move {
            loop {
                let (mut stream, _) = tcp.accept().await.unwrap();
                let len = stream.read_u16().await.unwrap();
                let mut buf = vec![0u8; usize::from(len)];
                stream.read_exact(&mut buf).await.unwrap();
                let reply = Self::reply(&buf, &tcp_seen);
                stream
                    .write_all(&(reply.len() as u16).to_be_bytes())
                    .await
                    .unwrap();
                stream.write_all(&reply).await.unwrap();
            }
        });
        Self {
            addr,
            seen,
            tasks: vec![udp_task, tcp_task],
        }
    }

    fn reply(request: &[u8], seen: &Mutex<Vec<String>>) -> Vec<u8> {
        let request = Message::from_vec(request).unwrap();
        let q = request.queries[0].clone();
        seen.lock().unwrap().push(q.name().to_ascii());
        let mut reply = Message::response(request.metadata.id, OpCode::Query);
        reply.metadata.recursion_available = true;
        reply.add_query(q.clone());
        if q.query_type() == RecordType::A {
            reply.add_answer(Record::from_rdata(
                q.name().clone(),
                300,
                RData::A(A::from(std::net::Ipv4Addr::from(UPSTREAM_ANSWER))),
            ));
        }
        reply.to_vec().unwrap()
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn config(upstreams: Vec<SocketAddr>) -> DnsConfig {
    DnsConfig {
        upstreams,
        upstream_timeout: Duration::from_millis(300),
        forward_deadline: Duration::from_secs(1),
        ..DnsConfig::default()
    }
}

/// A server with the sample table and `front-id` served on 127.0.0.1:<free port>.
fn front_server(upstreams: Vec<SocketAddr>) -> (DnsServer, SocketAddr) {
    let server = DnsServer::new(config(upstreams), sample_table());
    let addr = server
        .add_listener("front-id", "127.0.0.1:0".parse().unwrap())
        .unwrap();
    (server, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_names_resolve_to_the_vip_or_every_task() {
    let upstream = FakeUpstream::start().await;
    let (server, addr) = front_server(vec![upstream.addr]);

    let web = ask_udp(addr, &query("web", RecordType::A, None)).await;
    assert_eq!(web.metadata.response_code, ResponseCode::NoError);
    assert!(web.metadata.authoritative);
    assert_eq!(addrs(&web), vec![ip("10.10.0.2")]);
    assert_eq!(web.answers[0].ttl, mesh_dns::DEFAULT_VIP_TTL);

    let db = ask_udp(addr, &query("db.", RecordType::A, None)).await;
    assert_eq!(addrs(&db), vec![ip("10.10.0.21"), ip("10.10.0.22")]);
    assert_eq!(db.answers[0].ttl, mesh_dns::DEFAULT_TASK_TTL);

    let alias = ask_udp(addr, &query("WWW", RecordType::A, None)).await;
    assert_eq!(addrs(&alias), vec![ip("10.10.0.2")]);

    assert_eq!(
        upstream.seen(),
        Vec::<String>::new(),
        "internal names went upstream"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_name_lists_every_task_in_both_modes() {
    let upstream = FakeUpstream::start().await;
    let (_server, addr) = front_server(vec![upstream.addr]);
    let web = ask_udp(addr, &query("tasks.web", RecordType::A, None)).await;
    assert_eq!(addrs(&web), vec![ip("10.10.0.11"), ip("10.10.0.12")]);
    let db = ask_tcp(addr, &query("Tasks.DB", RecordType::A, None)).await;
    assert_eq!(addrs(&db), vec![ip("10.10.0.21"), ip("10.10.0.22")]);
    assert!(
        upstream.seen().is_empty(),
        "internal names went upstream: {:?}",
        upstream.seen()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aaaa_of_an_internal_name_is_noerror_without_answers_and_stays_here() {
    let upstream = FakeUpstream::start().await;
    let (_server, addr) = front_server(vec![upstream.addr]);
    for name in ["web", "tasks.web", "db"] {
        let reply = ask_udp(addr, &query(name, RecordType::AAAA, Some(1232))).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{name}"
        );
        assert!(reply.answers.is_empty(), "{name}: {reply:?}");
        assert!(reply.edns.is_some(), "EDNS query, EDNS reply");
    }
    assert!(
        upstream.seen().is_empty(),
        "AAAA of internal names went upstream: {:?}",
        upstream.seen()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ptr_of_a_vip_and_of_a_task() {
    let upstream = FakeUpstream::start().await;
    let (_server, addr) = front_server(vec![upstream.addr]);
    let vip = ask_udp(
        addr,
        &query("2.0.10.10.in-addr.arpa.", RecordType::PTR, None),
    )
    .await;
    assert_eq!(ptr_target(&vip), "web.");
    let task = ask_udp(
        addr,
        &query("12.0.10.10.in-addr.arpa.", RecordType::PTR, None),
    )
    .await;
    assert_eq!(ptr_target(&task), "web.2.taskweb2.front.");
    // The PTR target resolves back to the task.
    let forward = ask_udp(addr, &query("web.2.taskweb2.front", RecordType::A, None)).await;
    assert_eq!(addrs(&forward), vec![ip("10.10.0.12")]);
    // An unused address of the overlay range: NXDOMAIN here, not upstream.
    let unused = ask_udp(
        addr,
        &query("200.0.10.10.in-addr.arpa.", RecordType::PTR, None),
    )
    .await;
    assert_eq!(unused.metadata.response_code, ResponseCode::NXDomain);
    assert!(
        upstream.seen().is_empty(),
        "internal PTR went upstream: {:?}",
        upstream.seen()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_internal_looking_names_are_nxdomain_and_never_forwarded() {
    let upstream = FakeUpstream::start().await;
    let (server, addr) = front_server(vec![upstream.addr]);
    for (name, qtype) in [
        ("nosuch", RecordType::A),
        ("tasks.nosuch", RecordType::A),
        ("nosuch", RecordType::AAAA),
    ] {
        let reply = ask_udp(addr, &query(name, qtype, None)).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NXDomain,
            "{name} {qtype}"
        );
    }
    // A service of another network is unknown here.
    let other = ask_udp(addr, &query("api", RecordType::A, None)).await;
    assert_eq!(other.metadata.response_code, ResponseCode::NXDomain);
    // Something that does go upstream, to show the fake upstream works and is reachable.
    let external = ask_udp(addr, &query("example.com", RecordType::A, None)).await;
    assert_eq!(external.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        upstream.seen(),
        vec!["example.com.".to_owned()],
        "only the external name may go upstream"
    );
    let stats = server.stats();
    assert_eq!((stats.nxdomain, stats.forwarded), (4, 1), "{stats:?}");
    // Every query is timed, answered here or relayed.
    let timed: u64 = stats.latency_buckets.iter().sum();
    assert_eq!(timed, stats.answered + stats.forwarded, "{stats:?}");
    assert!(stats.latency_sum_nanos > 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_names_are_relayed_to_the_upstream_over_udp_and_tcp() {
    let upstream = FakeUpstream::start().await;
    let (_server, addr) = front_server(vec![upstream.addr]);
    for (name, tcp) in [
        ("example.com.", false),
        ("web.example.com.", false),
        ("Example.ORG.", true),
    ] {
        let request = query(name, RecordType::A, None);
        let reply = if tcp {
            ask_tcp(addr, &request).await
        } else {
            ask_udp(addr, &request).await
        };
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{name}"
        );
        assert_eq!(addrs(&reply), vec![IpAddr::from(UPSTREAM_ANSWER)], "{name}");
        assert_eq!(
            reply.queries[0].name().to_ascii(),
            name,
            "question relayed as asked"
        );
        assert!(
            !reply.metadata.authoritative,
            "relayed answers are not ours"
        );
    }
    // PTR outside every overlay range goes upstream too.
    let _ = ask_udp(
        addr,
        &query("99.0.18.198.in-addr.arpa.", RecordType::PTR, None),
    )
    .await;
    assert_eq!(
        upstream.seen(),
        vec![
            "example.com.",
            "web.example.com.",
            "Example.ORG.",
            "99.0.18.198.in-addr.arpa."
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_gives_servfail_within_the_timeout() {
    // Bound but never read: queries to it vanish, so only our timeout ends the wait.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (server, addr) = front_server(vec![silent.local_addr().unwrap()]);
    let reply = ask_udp(addr, &query("example.com", RecordType::A, None)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    let reply = ask_tcp(addr, &query("example.net", RecordType::A, None)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(server.stats().forward_failed, 2);

    // A dead first upstream (port closed: refused at once) is skipped for a live second one.
    let closed = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let upstream = FakeUpstream::start().await;
    server.set_upstreams(vec![closed, upstream.addr]);
    let reply = ask_udp(addr, &query("example.com", RecordType::A, None)).await;
    assert_eq!(addrs(&reply), vec![IpAddr::from(UPSTREAM_ANSWER)]);

    // No upstream at all: SERVFAIL; internal names still answered.
    server.set_upstreams(vec![]);
    let reply = ask_udp(addr, &query("example.com", RecordType::A, None)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    let reply = ask_udp(addr, &query("web", RecordType::A, None)).await;
    assert_eq!(addrs(&reply), vec![ip("10.10.0.2")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_own_address_is_never_an_upstream() {
    let server = DnsServer::new(config(vec![]), sample_table());
    let addr = server
        .add_listener("front-id", "127.0.0.1:0".parse().unwrap())
        .unwrap();
    server.set_upstreams(vec![addr]);
    let reply = ask_udp(addr, &query("example.com", RecordType::A, None)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(server.stats().forwarded, 1, "the query looped back to us");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_truncate_over_udp_and_come_whole_over_tcp() {
    let (_server, addr) = front_server(vec![]);
    let request = query("tasks.many", RecordType::A, None);
    let udp = ask_udp(addr, &request).await;
    assert!(
        udp.metadata.truncation,
        "100 A records cannot fit in 512 bytes"
    );
    assert!(!udp.answers.is_empty() && udp.answers.len() < 100);
    // What a stub resolver does on TC: the same question over TCP.
    let tcp = ask_tcp(addr, &request).await;
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 100);
    // With EDNS the limit is the smaller of the client's size and ours (1232).
    let edns = ask_udp(addr, &query("many", RecordType::A, Some(4096))).await;
    assert!(edns.metadata.truncation);
    assert_eq!(edns.answers.len(), (1232 - 12 - 10 - 11) / 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_come_in_shuffled_orders() {
    let (_server, addr) = front_server(vec![]);
    let mut orders = std::collections::HashSet::new();
    for _ in 0..20 {
        let reply = ask_udp(addr, &query("tasks.many", RecordType::A, Some(1232))).await;
        let order: Vec<String> = reply.answers.iter().map(|r| r.data.to_string()).collect();
        orders.insert(order);
    }
    assert!(orders.len() > 1, "20 replies all in one order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listener_serves_its_own_network_and_comes_and_goes() {
    let upstream = FakeUpstream::start().await;
    let server = DnsServer::new(config(vec![upstream.addr]), sample_table());
    let front = server
        .add_listener("front-id", "127.0.0.1:0".parse().unwrap())
        .unwrap();
    let back = server
        .add_listener("back-id", "127.0.0.2:0".parse().unwrap())
        .unwrap();
    assert_eq!(
        server.add_listener("front-id", front).unwrap(),
        front,
        "adding again changes nothing"
    );
    assert!(
        server.add_listener("back-id", front).is_err(),
        "one address serves one network"
    );

    assert_eq!(
        addrs(&ask_udp(back, &query("api", RecordType::A, None)).await),
        vec![ip("10.20.0.2")]
    );
    let web_from_back = ask_udp(back, &query("web", RecordType::A, None)).await;
    assert_eq!(web_from_back.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        addrs(&ask_udp(front, &query("web", RecordType::A, None)).await),
        vec![ip("10.10.0.2")]
    );

    // A new table takes effect at once on every listener, without restarting anything.
    let mut b = NameTable::builder();
    b.network("front-id", "front", &["10.10.0.0/16".parse().unwrap()])
        .unwrap();
    b.network("back-id", "back", &["10.20.0.0/24".parse().unwrap()])
        .unwrap();
    b.service("back-id", &ServiceRecords::vip("web", ip("10.20.0.9")))
        .unwrap();
    server.set_table(b.build());
    assert_eq!(
        addrs(&ask_udp(back, &query("web", RecordType::A, None)).await),
        vec![ip("10.20.0.9")]
    );
    let gone = ask_udp(front, &query("web", RecordType::A, None)).await;
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);

    // Removing a network's listener frees its address (UDP and TCP) at once.
    assert_eq!(server.remove_listener("back-id").await, vec![back]);
    assert_eq!(server.listeners(), vec![("front-id".to_owned(), front)]);
    let udp =
        std::net::UdpSocket::bind(back).expect("UDP address still held after remove_listener");
    let tcp =
        std::net::TcpListener::bind(back).expect("TCP address still held after remove_listener");
    drop((udp, tcp));
    // ... and it can serve again.
    assert_eq!(server.add_listener("back-id", back).unwrap(), back);
    assert_eq!(
        addrs(&ask_tcp(back, &query("web", RecordType::A, None)).await),
        vec![ip("10.20.0.9")]
    );
    assert!(upstream.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_bound_by_the_caller_are_served() {
    let server = DnsServer::new(config(vec![]), sample_table());
    let udp = std::net::UdpSocket::bind("127.0.0.3:0").unwrap();
    let tcp = std::net::TcpListener::bind(udp.local_addr().unwrap()).unwrap();
    let addr = server.add_listener_sockets("back-id", udp, tcp).unwrap();
    assert_eq!(
        addrs(&ask_udp(addr, &query("api", RecordType::A, None)).await),
        vec![ip("10.20.0.2")]
    );
    assert_eq!(
        addrs(&ask_tcp(addr, &query("api", RecordType::A, None)).await),
        vec![ip("10.20.0.2")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_a_foreign_address_is_a_clear_error() {
    let server = DnsServer::new(config(vec![]), sample_table());
    // 198.18.0.0/15 is the lab underlay; this process has no such address here.
    let err = server
        .add_listener("front-id", "198.19.255.254:53".parse().unwrap())
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("198.19.255.254:53") && text.contains("cannot listen"),
        "{text}"
    );
    assert!(server.listeners().is_empty());
}

/// Recursion is for the cluster's tasks, at a bounded rate: a client outside every overlay gets
/// REFUSED for an external name (and still its answers for the cluster's); a task past its burst
/// gets REFUSED until its bucket fills again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tasks_have_names_relayed_and_at_a_bounded_rate() {
    let upstream = FakeUpstream::start().await;
    let outsider = DnsServer::new(
        config(vec![upstream.addr]),
        sample_table_without_clients().build(),
    );
    let addr = outsider
        .add_listener("front-id", "127.0.0.1:0".parse().unwrap())
        .unwrap();
    let reply = ask_udp(addr, &query("example.com.", RecordType::A, None)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    let reply = ask_tcp(addr, &query("example.com.", RecordType::A, None)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    let web = ask_udp(addr, &query("web", RecordType::A, None)).await;
    assert_eq!(addrs(&web), vec![ip("10.10.0.2")]);
    let stats = outsider.stats();
    assert_eq!(
        (stats.forwarded, stats.forward_refused),
        (0, 2),
        "{stats:?}"
    );

    let limited = DnsServer::new(
        DnsConfig {
            forward_rate: 1,
            forward_burst: 3,
            ..config(vec![upstream.addr])
        },
        sample_table(),
    );
    let addr = limited
        .add_listener("front-id", "127.0.0.1:0".parse().unwrap())
        .unwrap();
    let mut codes = Vec::new();
    for _ in 0..5 {
        let reply = ask_udp(addr, &query("example.com.", RecordType::A, None)).await;
        codes.push(reply.metadata.response_code);
    }
    assert_eq!(
        codes,
        [
            ResponseCode::NoError,
            ResponseCode::NoError,
            ResponseCode::NoError,
            ResponseCode::Refused,
            ResponseCode::Refused
        ]
    );
    assert_eq!(limited.stats().forward_refused, 2);
}
