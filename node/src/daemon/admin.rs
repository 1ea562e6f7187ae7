//! `swarm ca --admin-cert`: a manager mints an admin client certificate for a remote meshctl
//! (OU `meshd-admin`, its own key, the cluster's expiry unless another is asked), so that no
//! one copies a node's key to drive the cluster from elsewhere. Only root on a manager (its
//! local socket) may ask; the certificate opens the cluster API, never raft or a session.

use mesh_api::{AdminCertReply, ApiError, Reply};
use mesh_cluster::Id;
use mesh_cluster::certs::check_cert_expiry;
use mesh_manager::ca;
use mesh_manager::handlers::swarm::{ClusterSecrets, ca_keys, issued_chain, trust_bundle};

use super::{Daemon, internal};

impl Daemon {
    pub(super) async fn admin_cert(&self, expiry_ms: Option<u64>) -> Result<Reply, ApiError> {
        if let Some(ms) = expiry_ms {
            check_cert_expiry(ms, ca::min_cert_expiry_ms()).map_err(ApiError::invalid)?;
        }
        let manager = self.manager()?;
        let state = manager.read().await?.applied.state;
        let c = state
            .cluster
            .as_ref()
            .ok_or_else(|| ApiError::unavailable("the swarm is still being initialised"))?;
        let secrets = ClusterSecrets::open(c, &manager.data_key().await?)?;
        let name = format!("admin-{}", Id::random());
        let (leaf_pem, key_pem) = ca::issue_admin(
            &ca_keys(c, &secrets),
            &c.id,
            &name,
            expiry_ms.unwrap_or(c.cert_expiry_ms),
        )
        .map_err(internal)?;
        tracing::info!(%name, "issued an admin client certificate");
        Ok(Reply::AdminCert(AdminCertReply {
            ca_pem: trust_bundle(c),
            cert_pem: issued_chain(c, leaf_pem),
            key_pem,
        }))
    }
}
