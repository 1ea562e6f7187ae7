//! The leader's gossip-key loop: a cluster without a key gets one, and the newest key is
//! replaced every [`GOSSIP_KEY_LIFETIME`] (the ring keeps the previous ones, so nodes that have
//! not heard of the new key yet are still understood). The dispatcher hands the ring to every
//! node over its mTLS session. The ring is sealed with the data key in raft.

use std::time::Duration;

use mesh_api::now_millis;
use mesh_cluster::gossip_keys::{GOSSIP_KEY_LIFETIME, rotated};
use mesh_cluster::state::{Object, Op, Tx};

use crate::Manager;

/// How often the leader looks at the ring's age.
const CHECK_EVERY: Duration = Duration::from_secs(30);

/// Leader loop (see [`Manager::spawn_while_leader`]).
pub(crate) async fn rotate_gossip_keys(m: Manager) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tick.tick().await;
        let result = async {
            // The ring is sealed in raft.
            let key = m.data_key().await?;
            m.with_retries(|s| {
                let Some(c) = s.cluster.as_ref() else {
                    return Ok(None);
                };
                let now = now_millis();
                let ring = key.open_value(&c.gossip_keys)?;
                Ok(rotated(&ring, now, rand::random(), false).map(|ring| {
                    let mut c = c.clone();
                    c.gossip_keys = key.seal_value(&ring);
                    Tx {
                        at: now,
                        ops: vec![Op::Put(Object::Cluster(c))],
                    }
                }))
            })
            .await
        }
        .await;
        if let Err(e) = result {
            tracing::debug!("rotating the gossip key (every {GOSSIP_KEY_LIFETIME} ms): {e}");
        }
    }
}
