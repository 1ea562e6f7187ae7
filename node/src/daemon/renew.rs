//! Certificate renewal: every member renews its own certificate at a random point between 50%
//! and 80% of its lifetime (`mesh_cluster::certs::renewal_delay`, swarmkit's schedule), and at
//! once in the last 20%. Renewal makes a new key (as Swarm does), has it signed (a worker asks
//! a manager with `RenewCert`, the request a role change uses; a manager signs its own with the
//! CA in its state), swaps it under every TLS configuration the member runs with
//! ([`LiveCredentials`]) and writes it to `certs/`. Nothing restarts.
//!
//! A worker whose certificate has expired cannot renew: the managers refuse it in the
//! handshake. It says so in its log, keeps trying (a clock put right fixes it), and must
//! otherwise leave and join again, as in Swarm.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use mesh_api::tls::{self as pki, Credentials, LiveCredentials};
use mesh_api::{Reply, Request};
use mesh_cluster::certs::renewal_delay;
use mesh_manager::ca::NodeKey;
use mesh_manager::handlers::swarm::{ClusterSecrets, ca_renewed_tx, renew_cert};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::Daemon;
use super::membership::call_leader;

/// The first wait after a failed renewal; it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(2);
const MAX_RETRY: Duration = Duration::from_mins(1);
/// The longest the loop sleeps before it reads the clock again.
const LOOK_AGAIN: Duration = Duration::from_hours(1);

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Daemon {
    /// Starts the renewal loop of the member whose credentials are `creds`.
    pub(super) fn spawn_renewal(
        &self,
        creds: Arc<LiveCredentials>,
        renew_now: Arc<Notify>,
    ) -> JoinHandle<()> {
        tokio::spawn(renewal_loop(self.me.clone(), creds, renew_now))
    }

    /// The leader announced the digest of the roots the swarm trusts: when ours differ (a CA
    /// rotation started or ended), renew now, to get a certificate of the new root and its
    /// roots.
    pub(super) fn roots_announced(&self, ca_digest: &str) {
        let Some(member) = self.member() else { return };
        let ours = pki::bundle_digest(&member.creds.current().ca_pem).unwrap_or_default();
        if ours != ca_digest {
            member.renew_now.notify_one();
        }
    }

    /// Renews this member's certificate now: a new key, signed by a manager for the role the
    /// state gives the node, in use from the next handshake and saved.
    async fn renew_certificate(&self, creds: &Arc<LiveCredentials>) -> Result<()> {
        // No role change, join or leave meanwhile.
        let _t = self.transition.lock().await;
        let member = self.member().context("this node is in no swarm")?;
        if !Arc::ptr_eq(&member.creds, creds) {
            bail!("this node's membership changed meanwhile");
        }
        let identity = member.identity();
        let old = creds.current();
        let key = NodeKey::generate()?;
        let csr_pem = key.csr_pem()?;
        let state = member.manager.as_ref().map(mesh_manager::Manager::state);
        let manager = member
            .manager
            .as_ref()
            .zip(state)
            .filter(|(_, state)| state.cluster.is_some());
        let reply = match manager {
            // A manager holds the CA: it signs its own, so that managers that were all stopped
            // past their expiry can still renew (and then reach each other), as in Swarm.
            Some((m, state)) => {
                let c = state.cluster.as_ref().expect("filtered");
                let secrets = ClusterSecrets::open(c, &m.data_key().await?)?;
                let reply = renew_cert(&state, &secrets, &identity.node_id, &csr_pem)
                    .map_err(anyhow::Error::msg)?;
                if state
                    .cluster
                    .as_ref()
                    .is_some_and(|c| c.ca_rotation.is_some())
                {
                    // Counted in the rotation (best effort: the next renewal counts it too).
                    let me = identity.node_id.clone();
                    if let Err(e) = m.with_retries(|s| ca_renewed_tx(s, &me)).await {
                        tracing::warn!("noting this manager's renewal in the CA rotation: {e}");
                    }
                }
                reply
            }
            _ => {
                call_leader(
                    &identity.managers,
                    &creds.client_config()?,
                    &Request::RenewCert { csr_pem },
                )
                .await?
            }
        };
        let Reply::Cert {
            cert_pem, ca_pem, ..
        } = reply
        else {
            bail!("unexpected reply to a certificate renewal");
        };
        let renewed = Credentials {
            ca_pem: if ca_pem.is_empty() {
                old.ca_pem
            } else {
                ca_pem
            },
            cert_pem,
            key_pem: key.key_pem(),
        };
        let role = renewed.identity()?.role;
        if role != identity.role {
            // The role change in flight gets its own certificate; this one is not used.
            bail!("the swarm issued a {role:?} certificate: a role change is under way");
        }
        creds.replace(renewed.clone())?;
        renewed.save(&self.cfg.cert_dir())?;
        Ok(())
    }
}

/// Waits for each renewal point (or a wake-up: the swarm trusts other roots), renews, and
/// starts over with the new certificate.
async fn renewal_loop(daemon: Weak<Daemon>, creds: Arc<LiveCredentials>, renew_now: Arc<Notify>) {
    let mut retry = FIRST_RETRY;
    // One draw per certificate.
    let mut jitter: f64 = rand::random();
    loop {
        let validity = match pki::validity(&creds.current().cert_pem) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("reading this node's certificate: {e:#}; no renewal");
                return;
            }
        };
        let delay = renewal_delay(validity, now_secs(), jitter);
        if !delay.is_zero() {
            tracing::debug!(
                not_after = validity.not_after,
                "renewing this node's certificate in {}s",
                delay.as_secs()
            );
            // Look at the wall clock again at least hourly: it may have been set meanwhile.
            tokio::select! {
                () = tokio::time::sleep(delay.min(LOOK_AGAIN)) => continue,
                () = renew_now.notified() => tracing::info!("the swarm trusts other roots: renewing this node's certificate"),
            }
        }
        let Some(d) = daemon.upgrade() else { return };
        let expired = validity.expired(now_secs());
        match d.renew_certificate(&creds).await {
            Ok(()) => {
                retry = FIRST_RETRY;
                jitter = rand::random();
                let until = pki::validity(&creds.current().cert_pem).map(|v| v.not_after);
                tracing::info!(not_after = ?until, "renewed this node's certificate");
            }
            Err(e) => {
                if expired {
                    tracing::error!(
                        "this node's certificate expired at {} (unix time): the managers refuse it. Renewing failed: {e:#}. Leave the swarm and join it again",
                        validity.not_after
                    );
                } else {
                    tracing::warn!("renewing this node's certificate: {e:#}; again in {retry:?}");
                }
                drop(d);
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    }
}
