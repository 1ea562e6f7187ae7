//! Sealed gossip: every datagram is encrypted and authenticated with AES-256-GCM under a key the
//! managers hand out over mTLS (the cluster's gossip keyring, in raft). A datagram that does not
//! open under a key of the ring (a forged one, one from a removed node after a rotation, noise)
//! is dropped before chitchat parses a byte of it.
//!
//! Wire format: `b"MG"`, version `1`, the key id (u32, big endian), a random 96-bit nonce, then
//! the sealed chitchat envelope with its 16-byte tag. The header and the cluster id are the
//! associated data, so a datagram cannot be replayed into another cluster or under another key id.
//!
//! The keyring holds the current key (newest, used to seal) and the ones before it that peers may
//! still seal with during a rotation (every key in the ring opens).

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use async_trait::async_trait;
use chitchat::ChitchatEnvelope;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use tracing::debug;

const MAGIC: &[u8; 2] = b"MG";
const VERSION: u8 = 1;
const HEADER_LEN: usize = MAGIC.len() + 1 + 4 + NONCE_LEN;
const TAG_LEN: usize = 16;
/// The largest UDP payload; a sealed datagram above it cannot be sent.
pub const MAX_DATAGRAM: usize = 65_507;
/// What sealing adds to a chitchat envelope.
pub const SEAL_OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Keys a ring may hold (the current one and those a rotation retired recently).
pub const MAX_KEYS: usize = 4;

/// One gossip key: 32 random bytes and the id peers name it by.
#[derive(Clone, PartialEq, Eq)]
pub struct GossipKey {
    pub id: u32,
    pub key: [u8; 32],
}

impl fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GossipKey")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// The keys gossip seals and opens with; the last one seals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GossipKeyring {
    keys: Vec<GossipKey>,
}

/// Why a datagram was dropped.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("not a sealed gossip datagram (bad header)")]
    Header,
    #[error("sealed under key {0}, which this node does not hold")]
    UnknownKey(u32),
    #[error("authentication failed")]
    Forged,
    #[error("this node holds no gossip key yet")]
    NoKey,
}

impl GossipKeyring {
    /// A ring of at most [`MAX_KEYS`] keys with distinct ids, the sealing one last.
    pub fn new(keys: Vec<GossipKey>) -> Result<Self, String> {
        if keys.len() > MAX_KEYS {
            return Err(format!(
                "{} gossip keys: a ring holds at most {MAX_KEYS}",
                keys.len()
            ));
        }
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].iter().any(|o| o.id == k.id) {
                return Err(format!("gossip key id {} appears twice", k.id));
            }
        }
        Ok(Self { keys })
    }

    /// The id of the key that seals, if any.
    pub fn current_id(&self) -> Option<u32> {
        self.keys.last().map(|k| k.id)
    }

    /// Seals `plain` for the cluster `cluster_id` under the current key; `None` without a key.
    pub fn seal(&self, cluster_id: &str, plain: &[u8], rng: &dyn SecureRandom) -> Option<Vec<u8>> {
        let key = self.keys.last()?;
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(plain.len() + SEAL_OVERHEAD);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&key.id.to_be_bytes());
        out.extend_from_slice(&nonce);
        let aad = associated_data(&out, cluster_id);
        let mut body = plain.to_vec();
        aead_key(key)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut body,
            )
            .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    /// Opens a datagram sealed by [`GossipKeyring::seal`] under any key of the ring.
    pub fn open(&self, cluster_id: &str, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if self.keys.is_empty() {
            return Err(OpenError::NoKey);
        }
        if sealed.len() < HEADER_LEN + TAG_LEN || &sealed[..2] != MAGIC || sealed[2] != VERSION {
            return Err(OpenError::Header);
        }
        let (header, body) = sealed.split_at(HEADER_LEN);
        let id = u32::from_be_bytes([header[3], header[4], header[5], header[6]]);
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or(OpenError::UnknownKey(id))?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&header[7..]);
        let mut body = body.to_vec();
        let plain = aead_key(key)
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(header, cluster_id)),
                &mut body,
            )
            .map_err(|_| OpenError::Forged)?;
        Ok(plain.to_vec())
    }
}

fn associated_data(header: &[u8], cluster_id: &str) -> Vec<u8> {
    let mut aad = header.to_vec();
    aad.extend_from_slice(cluster_id.as_bytes());
    aad
}

fn aead_key(key: &GossipKey) -> LessSafeKey {
    // A 32-byte key is always a valid AES-256 key.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key.key).expect("32-byte AES-256 key"))
}

/// Datagrams gossip dropped because they did not open under the ring.
#[derive(Debug, Default)]
pub struct SealCounters {
    pub rejected: AtomicU64,
}

/// A keyring that can be replaced while gossip runs (a rotation), shared by the transport.
#[derive(Clone, Debug, Default)]
pub struct SharedKeyring(Arc<RwLock<GossipKeyring>>);

impl SharedKeyring {
    pub fn set(&self, ring: GossipKeyring) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = ring;
    }

    pub fn get(&self) -> GossipKeyring {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// chitchat's UDP transport with every datagram sealed.
pub(crate) struct SealedUdpTransport {
    pub keyring: SharedKeyring,
    pub cluster_id: String,
    pub counters: Arc<SealCounters>,
}

#[async_trait]
impl Transport for SealedUdpTransport {
    async fn open(&self, listen: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = tokio::net::UdpSocket::bind(listen)
            .await
            .with_context(|| format!("failed to bind to {listen}/UDP for gossip"))?;
        Ok(Box::new(SealedUdpSocket {
            socket,
            codec: EnvelopeCodec::open().await?,
            pending_from: None,
            keyring: self.keyring.clone(),
            cluster_id: self.cluster_id.clone(),
            counters: self.counters.clone(),
            rng: SystemRandom::new(),
            buf: vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
        }))
    }
}

/// chitchat's envelope encoding. chitchat keeps its encoder private and its transport deals in
/// envelopes, so the bytes are had from its own UDP socket through a relay socket, both on
/// loopback: an envelope sent to the relay arrives as its bytes; bytes sent from the relay
/// arrive as an envelope.
struct EnvelopeCodec {
    chitchat: chitchat::transport::UdpSocket,
    chitchat_addr: SocketAddr,
    relay: tokio::net::UdpSocket,
    relay_addr: SocketAddr,
    buf: Box<[u8]>,
}

impl EnvelopeCodec {
    async fn open() -> anyhow::Result<Self> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let chitchat = chitchat::transport::UdpSocket::open(loopback).await?;
        let relay = tokio::net::UdpSocket::bind(loopback)
            .await
            .context("binding gossip's loopback relay (is `lo` up?)")?;
        Ok(Self {
            chitchat_addr: chitchat.local_addr()?,
            relay_addr: relay.local_addr()?,
            chitchat,
            relay,
            buf: vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
        })
    }

    async fn encode(&mut self, envelope: ChitchatEnvelope) -> anyhow::Result<Vec<u8>> {
        // Whatever an interrupted encode left behind is not this envelope's.
        while self.relay.try_recv_from(&mut self.buf).is_ok() {}
        self.chitchat.send(self.relay_addr, envelope).await?;
        loop {
            let (n, from) = self.relay.recv_from(&mut self.buf).await?;
            if from == self.chitchat_addr {
                return Ok(self.buf[..n].to_vec());
            }
        }
    }
}

struct SealedUdpSocket {
    socket: tokio::net::UdpSocket,
    codec: EnvelopeCodec,
    /// The sender of the plaintext handed to the codec and not yet read back as an envelope
    /// (`recv` may be cancelled between the two; the next call finishes the decode).
    pending_from: Option<(SocketAddr, usize)>,
    keyring: SharedKeyring,
    cluster_id: String,
    counters: Arc<SealCounters>,
    rng: SystemRandom,
    buf: Box<[u8]>,
}

#[async_trait]
impl Socket for SealedUdpSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.socket
            .local_addr()
            .context("failed to get UDP socket address")
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let plain = self.codec.encode(envelope).await?;
        let Some(sealed) = self.keyring.get().seal(&self.cluster_id, &plain, &self.rng) else {
            // No key yet: nothing may leave unsealed. The round is lost, not the transport.
            return Ok(SendOutcome { num_bytes_sent: 0 });
        };
        if sealed.len() > MAX_DATAGRAM {
            tracing::warn!(len = sealed.len(), %to, "sealed gossip datagram too large; dropped");
            return Ok(SendOutcome { num_bytes_sent: 0 });
        }
        match self.socket.send_to(&sealed, to).await {
            Ok(n) => Ok(SendOutcome { num_bytes_sent: n }),
            // A peer that is gone or unreachable is the failure detector's business.
            Err(e) if transient(&e) => Ok(SendOutcome { num_bytes_sent: 0 }),
            Err(e) => Err(e).context("failed to send gossip to a peer"),
        }
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            if let Some((from, n)) = self.pending_from {
                let decoded = self.codec.chitchat.recv().await?;
                self.pending_from = None;
                if decoded.from_addr == self.codec.relay_addr {
                    return Ok(RecvOutcome {
                        from_addr: from,
                        envelope: decoded.envelope,
                        num_bytes_received: n,
                    });
                }
                continue;
            }
            let (n, from) = match self.socket.recv_from(&mut self.buf).await {
                Ok(r) => r,
                Err(e) if transient(&e) => continue,
                Err(e) => return Err(e).context("fatal UDP recv error"),
            };
            let plain = match self.keyring.get().open(&self.cluster_id, &self.buf[..n]) {
                Ok(p) => p,
                Err(e) => {
                    self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    debug!(%from, error = %e, "gossip datagram dropped");
                    continue;
                }
            };
            self.codec
                .relay
                .send_to(&plain, self.codec.chitchat_addr)
                .await
                .context("handing a gossip datagram to the decoder")?;
            self.pending_from = Some((from, n));
        }
    }
}

fn transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::OutOfMemory
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32, b: u8) -> GossipKey {
        GossipKey { id, key: [b; 32] }
    }

    #[test]
    fn a_sealed_datagram_opens_under_the_same_ring_only() {
        let rng = SystemRandom::new();
        let ring = GossipKeyring::new(vec![key(1, 7)]).unwrap();
        let sealed = ring.seal("c1", b"hello", &rng).unwrap();
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(ring.open("c1", &sealed).unwrap(), b"hello");
        // Another cluster id, another key with the same id, another id: all refused.
        assert_eq!(ring.open("c2", &sealed), Err(OpenError::Forged));
        let other = GossipKeyring::new(vec![key(1, 8)]).unwrap();
        assert_eq!(other.open("c1", &sealed), Err(OpenError::Forged));
        let unknown = GossipKeyring::new(vec![key(2, 7)]).unwrap();
        assert_eq!(unknown.open("c1", &sealed), Err(OpenError::UnknownKey(1)));
        assert_eq!(
            GossipKeyring::default().open("c1", &sealed),
            Err(OpenError::NoKey)
        );
    }

    #[test]
    fn tampering_and_plain_chitchat_are_refused() {
        let rng = SystemRandom::new();
        let ring = GossipKeyring::new(vec![key(3, 1)]).unwrap();
        let mut sealed = ring.seal("c", b"payload", &rng).unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(ring.open("c", &sealed), Err(OpenError::Forged));
        sealed[last] ^= 1;
        sealed[HEADER_LEN] ^= 1;
        assert_eq!(ring.open("c", &sealed), Err(OpenError::Forged));
        // An unsealed chitchat datagram, or a short one, has no valid header.
        assert_eq!(
            ring.open("c", b"\x00\x01plain chitchat syn......................"),
            Err(OpenError::Header)
        );
        assert_eq!(ring.open("c", b"MG"), Err(OpenError::Header));
    }

    #[test]
    fn during_a_rotation_both_keys_open_and_the_newest_seals() {
        let rng = SystemRandom::new();
        let old = GossipKeyring::new(vec![key(1, 1)]).unwrap();
        let rotated = GossipKeyring::new(vec![key(1, 1), key(2, 2)]).unwrap();
        assert_eq!(rotated.current_id(), Some(2));
        let from_old = old.seal("c", b"a", &rng).unwrap();
        assert_eq!(rotated.open("c", &from_old).unwrap(), b"a");
        let from_new = rotated.seal("c", b"b", &rng).unwrap();
        assert_eq!(old.open("c", &from_new), Err(OpenError::UnknownKey(2)));
        // Nonces are random: the same message seals differently.
        assert_ne!(rotated.seal("c", b"b", &rng).unwrap(), from_new);
    }

    #[test]
    fn rings_are_bounded_and_ids_unique() {
        assert!(GossipKeyring::new(vec![key(1, 1), key(1, 2)]).is_err());
        assert!(GossipKeyring::new((0..5).map(|i| key(i, 0)).collect()).is_err());
        assert_eq!(
            GossipKeyring::default().seal("c", b"x", &SystemRandom::new()),
            None
        );
        assert!(!format!("{:?}", key(1, 0xab)).contains("171"));
    }
}
