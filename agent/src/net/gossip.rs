//! The node's gossip: started once the node is in a swarm ([`TaskNetworking::joined`]), one run
//! per membership, seeded with the other nodes' addresses from the leader's node list,
//! publishing every plumbed interface as an endpoint, and feeding the view with what it sees.
//!
//! [`TaskNetworking::joined`]: crate::networking::TaskNetworking::joined

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Duration;

use mesh_gossip::{DEFAULT_PORT, Gossip, GossipConfig, NodeInfo};
use tokio::task::AbortHandle;

use super::{Inner, SelfNode, lock, published_endpoints, seeds};
use crate::networking::Membership;

/// How long gossip runs before its view is trusted to say who is gone (the failure detector
/// needs about a second; hearing from every live node takes a few rounds of 100 ms).
const GOSSIP_WARMUP: Duration = Duration::from_secs(2);

/// The gossip of one membership.
pub(super) struct MemberRun {
    membership: Membership,
    pub(super) driver: AbortHandle,
}

impl Inner {
    /// The node is in the swarm of `m`: its gossip runs (started again only when the membership
    /// changed or the last run ended).
    pub(super) fn joined(self: &Arc<Self>, m: &Membership) {
        let mut member = lock(&self.member);
        if member
            .as_ref()
            .is_some_and(|r| r.membership == *m && !r.driver.is_finished())
        {
            return;
        }
        if let Some(old) = member.take() {
            old.driver.abort();
        }
        self.view.send_if_modified(|v| {
            let node = Some(SelfNode {
                id: m.node_id.clone(),
                cluster_id: m.cluster_id.clone(),
                hostname: m.hostname.clone(),
                addr: m.addr,
            });
            if v.node == node {
                return false;
            }
            v.node = node;
            // A new gossip starts: what the old one saw is no longer news.
            v.gossip = mesh_gossip::GossipView::default();
            v.gossip_heard = mesh_gossip::GossipView::default();
            v.gossip_ready = false;
            true
        });
        let driver = tokio::spawn(drive_gossip(Arc::downgrade(self), m.clone())).abort_handle();
        *member = Some(MemberRun {
            membership: m.clone(),
            driver,
        });
    }
}

/// One membership's gossip: started (and retried while the port is taken), seeded from the
/// leader's node list, publishing the node's endpoints, and feeding the view with what it sees.
async fn drive_gossip(inner: Weak<Inner>, m: Membership) {
    let addr = IpAddr::V4(m.addr);
    let mut config = GossipConfig::new(
        m.node_id.as_str(),
        m.cluster_id.as_str(),
        SocketAddr::new(addr, DEFAULT_PORT),
        NodeInfo {
            addr,
            hostname: m.hostname.clone(),
        },
    );
    if let Some(i) = inner.upgrade() {
        config.keyring = i.gossip_keys.clone();
    }
    let mut warned = false;
    let gossip = loop {
        if let Some(i) = inner.upgrade() {
            config.seeds = seeds(&i.view.borrow());
        }
        match Gossip::start(config.clone()).await {
            Ok(g) => break g,
            Err(e) => {
                if !warned {
                    tracing::warn!("gossip: {e}; retrying every 2s");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let mut gossip_view = gossip.view();
    let Some(mut rx) = inner.upgrade().map(|i| i.view.subscribe()) else {
        return;
    };
    let warm = tokio::time::sleep(GOSSIP_WARMUP);
    tokio::pin!(warm);
    let mut ready = false;
    let mut seeded: Vec<SocketAddr> = config.seeds.clone();
    let mut published = None;
    loop {
        {
            let (want_seeds, want_eps) = {
                let v = rx.borrow_and_update();
                (seeds(&v), published_endpoints(&v))
            };
            if want_seeds != seeded {
                gossip.set_seeds(want_seeds.iter().copied());
                seeded = want_seeds;
            }
            if published.as_ref() != Some(&want_eps) {
                match gossip.set_endpoints(&want_eps).await {
                    Ok(()) => published = Some(want_eps),
                    Err(e) => tracing::warn!("gossip: publishing endpoints: {e}"),
                }
            }
        }
        tokio::select! {
            changed = gossip_view.changed() => {
                if changed.is_err() {
                    tracing::error!("gossip stopped: remote entries are no longer updated");
                    return;
                }
                let g = gossip_view.borrow_and_update().clone();
                let Some(i) = inner.upgrade() else { return };
                i.view.send_if_modified(|v| {
                    if v.gossip_heard == g {
                        return false;
                    }
                    v.gossip_heard = g;
                    v.refilter_gossip();
                    true
                });
            }
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = &mut warm, if !ready => {
                ready = true;
                let Some(i) = inner.upgrade() else { return };
                i.view.send_if_modified(|v| !std::mem::replace(&mut v.gossip_ready, true));
            }
        }
    }
}
