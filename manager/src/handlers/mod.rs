//! The cluster API as a manager serves it ([`ClusterApi`]): one handler type per area (nodes,
//! services, networks, the swarm's tokens and certificates), each a thin shell over pure
//! functions of the state that check everything the user could have got wrong and return the
//! transaction, or the error and no transaction, so that bad input changes nothing.
//!
//! Reads are linearizable views of the local state ([`Manager::read`]); writes run on the leader
//! (a follower forwards the whole request), as read-modify-write under the leader's write lock,
//! retried when a control loop's write got in between ([`Manager::with_retries`]).

pub mod blobs;
pub mod networks;
pub mod nodes;
pub mod services;
pub mod swarm;

use mesh_api::transport::Peer;
use mesh_api::{ApiError, Reply, Request};

use self::blobs::BlobApi;
use self::networks::NetworkApi;
use self::nodes::{NodeApi, remove_node, update_node};
use self::services::ServiceApi;
use self::swarm::{
    ClusterSecrets, SwarmApi, ca_renewed_tx, ca_rotate_plan, renew_cert, swarm_info,
    swarm_update_tx,
};
use crate::autolock::AutolockApi;
use crate::dispatcher::Dispatcher;
use crate::manager::Manager;

/// Serves the cluster API's requests (`Access::Api`, `Anyone`, `Node`) on one manager.
pub struct ClusterApi<'m> {
    m: &'m Manager,
}

impl<'m> ClusterApi<'m> {
    pub fn new(m: &'m Manager) -> Self {
        Self { m }
    }

    /// Reads here, writes (and what only the leader holds) on the leader.
    pub async fn serve(&self, peer: &Peer, req: Request) -> Result<Reply, ApiError> {
        let m = self.m;
        if req.on_leader() && !m.is_leader() {
            let reply = m.forward(&req).await?;
            return Ok(match reply {
                // The join command names the manager the user asked.
                Reply::JoinToken(mut t) => {
                    m.addr().clone_into(&mut t.manager_addr);
                    Reply::JoinToken(t)
                }
                other => other,
            });
        }
        match req {
            Request::NodeList => NodeApi { m }.list().await,
            Request::NodeInspect { node } => NodeApi { m }.inspect(&node).await,
            Request::NodeUpdate(u) => m.with_retries(|s| update_node(s, &u)).await,
            Request::NodeRemove { node, force } => {
                m.with_retries(|s| remove_node(s, &node, force)).await
            }
            Request::JoinToken { role, rotate } => SwarmApi { m }.join_token(role, rotate).await,
            Request::JoinCluster(j) => SwarmApi { m }.join_cluster(j).await,
            Request::SwarmAutolock { enabled } => AutolockApi { m }.set(enabled).await,
            Request::UnlockKey { rotate } => AutolockApi { m }.unlock_key(rotate).await,
            Request::SwarmInspect => swarm_info(&m.read().await?.applied.state),
            Request::SwarmUpdate(u) => {
                let min = crate::ca::min_cert_expiry_ms();
                m.with_retries(|s| swarm_update_tx(s, &u, min)).await
            }
            Request::RenewCert { csr_pem } => {
                let Peer::Node(id) = peer else {
                    return Err(ApiError::denied("renewing a certificate needs one"));
                };
                let view = m.read().await?;
                let state = &view.applied.state;
                let secrets = ClusterSecrets::open(swarm::cluster(state)?, &m.data_key().await?)?;
                let reply = renew_cert(state, &secrets, &id.node_id, &csr_pem)?;
                // A rotation under way counts the nodes that hold the new root's certificates.
                if state
                    .cluster
                    .as_ref()
                    .is_some_and(|c| c.ca_rotation.is_some())
                {
                    let node = id.node_id.clone();
                    m.with_retries(|s| ca_renewed_tx(s, &node)).await?;
                }
                Ok(reply)
            }
            Request::CaRotate => {
                let key = m.data_key().await?;
                m.with_retries(|s| ca_rotate_plan(s, &key)).await
            }
            req @ (Request::ServiceCreate { .. }
            | Request::ServiceList
            | Request::ServiceInspect { .. }
            | Request::ServiceTasks { .. }
            | Request::ServiceUpdate { .. }
            | Request::ServiceRollback { .. }
            | Request::ServiceScale { .. }
            | Request::ServiceRemove { .. }) => ServiceApi { m }.serve(req).await,
            req @ (Request::NetworkCreate { .. }
            | Request::NetworkList
            | Request::NetworkInspect { .. }
            | Request::NetworkRemove { .. }) => NetworkApi { m }.serve(req).await,
            req @ (Request::BlobCreate(_)
            | Request::BlobList { .. }
            | Request::BlobInspect { .. }
            | Request::BlobRemove { .. }) => BlobApi { m }.serve(req).await,
            Request::MeshStats { services } => {
                Dispatcher::new(m.clone()).mesh_stats(&services).await
            }
            other => Err(ApiError::internal(format!(
                "{} is not a cluster API request",
                other.name()
            ))),
        }
    }
}
