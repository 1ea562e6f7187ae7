//! The cluster's gossip keys: made by the first manager, handed to every node by the leader over
//! the mTLS session, rotated by the leader every [`GOSSIP_KEY_LIFETIME`] as Swarm rotates its
//! gossip encryption keys (every 12 hours). A ring keeps the keys before the newest for a while, so
//! that a node that has not heard of a rotation yet is still understood.

use serde::{Deserialize, Serialize};

use crate::state::Millis;

/// How long a gossip key seals before the leader makes the next one (Swarm's 12 hours).
pub const GOSSIP_KEY_LIFETIME: Millis = 12 * 3600 * 1000;
/// Keys kept in the ring: the newest seals, the older ones still open.
pub const GOSSIP_KEYS_KEPT: usize = 3;

/// One gossip key as raft stores it. `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipKeyEntry {
    pub id: u32,
    /// 32 random bytes, hex.
    pub key_hex: String,
    pub created_at: Millis,
}

impl std::fmt::Debug for GossipKeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipKeyEntry")
            .field("id", &self.id)
            .field("key_hex", &crate::state::REDACTED)
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl GossipKeyEntry {
    /// A new key with `id`, from 32 random bytes.
    pub fn new(id: u32, bytes: [u8; 32], created_at: Millis) -> Self {
        Self {
            id,
            key_hex: hex::encode(bytes),
            created_at,
        }
    }

    /// The key's bytes; `None` if what raft holds is not 32 bytes of hex.
    pub fn bytes(&self) -> Option<[u8; 32]> {
        hex::decode(&self.key_hex).ok()?.try_into().ok()
    }
}

/// The ring after a rotation due at `now`, or `None` when the newest key is young enough. A
/// cluster without keys (made before gossip was sealed) gets its first one.
pub fn rotated(
    keys: &[GossipKeyEntry],
    now: Millis,
    fresh: [u8; 32],
    force: bool,
) -> Option<Vec<GossipKeyEntry>> {
    let newest = keys.last();
    let due =
        force || newest.is_none_or(|k| now.saturating_sub(k.created_at) >= GOSSIP_KEY_LIFETIME);
    if !due {
        return None;
    }
    let id = newest.map_or(1, |k| k.id.wrapping_add(1).max(1));
    let mut ring = keys.to_vec();
    ring.push(GossipKeyEntry::new(id, fresh, now));
    let excess = ring.len().saturating_sub(GOSSIP_KEYS_KEPT);
    ring.drain(..excess);
    Some(ring)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_starts_rotates_when_due_and_stays_bounded() {
        let first = rotated(&[], 1_000, [1; 32], false).expect("a first key");
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].id, first[0].bytes()), (1, Some([1; 32])));
        assert_eq!(
            rotated(&first, 1_000 + GOSSIP_KEY_LIFETIME - 1, [2; 32], false),
            None
        );
        let second = rotated(&first, 1_000 + GOSSIP_KEY_LIFETIME, [2; 32], false).unwrap();
        assert_eq!(second.iter().map(|k| k.id).collect::<Vec<_>>(), [1, 2]);
        let mut ring = second;
        for i in 3..=6u8 {
            ring = rotated(&ring, 0, [i; 32], true).unwrap();
        }
        assert_eq!(ring.iter().map(|k| k.id).collect::<Vec<_>>(), [4, 5, 6]);
        assert_eq!(ring.last().unwrap().bytes(), Some([6; 32]));
    }

    #[test]
    fn debug_hides_the_key_and_bad_hex_is_no_key() {
        let k = GossipKeyEntry::new(7, [0xab; 32], 5);
        assert!(!format!("{k:?}").contains("abab"));
        let bad = GossipKeyEntry {
            key_hex: "zz".into(),
            ..k
        };
        assert_eq!(bad.bytes(), None);
    }
}
