//! The node's upstream resolvers: where they come from, and relaying a query to them.
//!
//! A forwarded query is relayed as the client sent it (EDNS, DO bit and cookies untouched) with a
//! fresh random id from a fresh socket (random source port), and the reply is accepted only if it
//! carries that id and our question. The client's id is put back before the reply is relayed.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout};

use crate::wire::Transport;

/// Where the host's resolvers are listed.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

const RCODE_SERVFAIL: u8 = 2;
const RCODE_REFUSED: u8 = 5;

/// The `nameserver` lines of a resolv.conf, port 53. Unparsable lines are skipped; an IPv6
/// address with a zone (`fe80::1%eth0`) keeps its zone if the interface exists.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            let word = words.next()?;
            let (addr, zone) = word
                .split_once('%')
                .map_or((word, None), |(a, z)| (a, Some(z)));
            match addr.parse::<IpAddr>().ok()? {
                IpAddr::V4(v4) => Some(SocketAddr::new(v4.into(), 53)),
                IpAddr::V6(v6) => {
                    let scope = zone.map_or(Some(0), interface_index)?;
                    Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                        v6, 53, 0, scope,
                    )))
                }
            }
        })
        .collect()
}

/// The upstreams listed in `path`; none if the file does not exist.
pub fn upstreams_from_file(path: &Path) -> io::Result<Vec<SocketAddr>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse_resolv_conf(&text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn interface_index(name: &str) -> Option<u32> {
    if let Ok(index) = name.parse() {
        return Some(index);
    }
    let index = std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex")).ok()?;
    index.trim().parse().ok()
}

/// Relays `request` to each upstream in turn until one answers, within `attempt` per upstream and
/// `deadline` in all. SERVFAIL and REFUSED make us try the next one but are relayed if nothing
/// better comes. `None`: nobody answered (the caller sends SERVFAIL).
pub(crate) async fn forward(
    upstreams: &[SocketAddr],
    request: &[u8],
    transport: Transport,
    attempt: Duration,
    deadline: Duration,
) -> Option<Vec<u8>> {
    let question_end = question_end(request)?;
    let end = Instant::now() + deadline;
    let mut fallback = None;
    for &upstream in upstreams {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let id: u16 = rand::random();
        let mut query = request.to_vec();
        query[..2].copy_from_slice(&id.to_be_bytes());
        let exchange = async {
            match transport {
                Transport::Udp => exchange_udp(upstream, &query, question_end).await,
                Transport::Tcp => exchange_tcp(upstream, &query, question_end).await,
            }
        };
        let reply = match timeout(attempt.min(left), exchange).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => {
                tracing::debug!(%upstream, %error, "upstream resolver failed");
                continue;
            }
            Err(_) => {
                tracing::debug!(%upstream, "upstream resolver timed out");
                continue;
            }
        };
        let mut reply = reply;
        reply[..2].copy_from_slice(&request[..2]);
        if matches!(reply[3] & 0x0F, RCODE_SERVFAIL | RCODE_REFUSED) {
            fallback.get_or_insert(reply);
            continue;
        }
        return Some(reply);
    }
    fallback
}

async fn exchange_udp(
    upstream: SocketAddr,
    query: &[u8],
    question_end: usize,
) -> io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65_535];
    loop {
        // A connected socket only gets datagrams from the upstream; still check id and question
        // against off-path spoofing.
        let len = socket.recv(&mut buf).await?;
        if matches_query(&buf[..len], query, question_end) {
            buf.truncate(len);
            return Ok(buf);
        }
    }
}

async fn exchange_tcp(
    upstream: SocketAddr,
    query: &[u8],
    question_end: usize,
) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&(query.len() as u16).to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    loop {
        let len = usize::from(stream.read_u16().await?);
        let mut reply = vec![0u8; len];
        stream.read_exact(&mut reply).await?;
        if matches_query(&reply, query, question_end) {
            return Ok(reply);
        }
    }
}

/// A reply to `query`: same id, QR set, same question (names compared case-insensitively).
fn matches_query(reply: &[u8], query: &[u8], question_end: usize) -> bool {
    reply.len() >= question_end
        && reply[..2] == query[..2]
        && reply[2] & 0x80 != 0
        && reply[4..6] == query[4..6]
        && reply[12..question_end].eq_ignore_ascii_case(&query[12..question_end])
}

/// Where the single question of a request ends (uncompressed name, type, class).
pub(crate) fn question_end(message: &[u8]) -> Option<usize> {
    if message.len() < 12 || message[4..6] != [0, 1] {
        return None;
    }
    let mut at = 12;
    loop {
        let len = usize::from(*message.get(at)?);
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        at += 1 + len;
    }
    let end = at + 1 + 4;
    (end <= message.len()).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_gives_nameservers_on_port_53() {
        let text = "# comment\nsearch example.com\nnameserver 10.255.255.53\nnameserver  ::1\n\
                    nameserver bogus\noptions ndots:2\nnameserver fe80::1%1\n";
        let ups = parse_resolv_conf(text);
        assert_eq!(ups.len(), 3, "{ups:?}");
        assert_eq!(ups[0], "10.255.255.53:53".parse().unwrap());
        assert_eq!(ups[1], "[::1]:53".parse().unwrap());
        let SocketAddr::V6(v6) = ups[2] else { panic!() };
        assert_eq!(v6.scope_id(), 1);
    }

    #[test]
    fn missing_resolv_conf_means_no_upstreams() {
        assert_eq!(
            upstreams_from_file(Path::new("/nonexistent/resolv.conf")).unwrap(),
            vec![]
        );
    }

    #[test]
    fn question_end_walks_one_uncompressed_question() {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x03web\x00\x00\x01\x00\x01");
        assert_eq!(question_end(&q), Some(q.len()));
        assert_eq!(question_end(&q[..q.len() - 1]), None);
        let mut compressed = q[..12].to_vec();
        compressed.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1]);
        assert_eq!(question_end(&compressed), None);
    }

    #[test]
    fn replies_must_match_id_and_question() {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x03WeB\x00\x00\x01\x00\x01");
        let end = question_end(&q).unwrap();
        let mut r = q.clone();
        r[2] |= 0x80;
        r[12..end].make_ascii_lowercase();
        assert!(matches_query(&r, &q, end));
        let mut wrong_id = r.clone();
        wrong_id[1] ^= 1;
        assert!(!matches_query(&wrong_id, &q, end));
        let mut wrong_name = r.clone();
        wrong_name[13] = b'x';
        assert!(!matches_query(&wrong_name, &q, end));
        assert!(!matches_query(&q, &q, end), "a query is not a reply");
    }
}
