//! The managers' own requests (raft, proposals and read indexes forwarded to the leader, a new
//! manager asking to become a voter), served in one place: [`Manager::serve_manager_request`].
//! The node daemon hands them here once the route table has authorised them.

use mesh_api::transport::Peer;
use mesh_api::{ApiError, Reply, Request};
use mesh_cluster::state::NodeRole;

use crate::manager::Manager;

/// Is `req` one of the managers' own requests ([`Manager::serve_manager_request`])?
pub fn is_manager_request(req: &Request) -> bool {
    matches!(
        req,
        Request::Raft(_)
            | Request::Propose(_)
            | Request::ReadIndex
            | Request::AddManager { .. }
            | Request::DataKey
    )
}

impl Manager {
    /// Serves one of the managers' own requests from `peer`. `AddManager` needs the caller's
    /// certificate: the leader adds only the manager the state says that node is.
    pub async fn serve_manager_request(
        &self,
        peer: &Peer,
        req: Request,
    ) -> Result<Reply, ApiError> {
        match req {
            Request::Raft(r) => Ok(Reply::Raft(self.raft_rpc(&r).await?)),
            Request::Propose(tx) => self.propose_here(tx).await,
            Request::ReadIndex => Ok(Reply::ReadIndex(self.read_index_here().await?)),
            Request::DataKey => self.serve_data_key().await,
            Request::AddManager { raft_id, addr } => {
                let Peer::Node(id) = peer else {
                    return Err(ApiError::denied("adding a manager needs its certificate"));
                };
                let state = self.state();
                let allowed = state.nodes.get(&id.node_id).is_some_and(|n| {
                    n.spec.role == NodeRole::Manager
                        && n.manager_status
                            .as_ref()
                            .is_some_and(|s| s.raft_id == raft_id)
                });
                if !allowed && self.is_leader() {
                    return Err(ApiError::denied(format!(
                        "permission denied: node {} is not manager {raft_id} of this swarm",
                        id.node_id
                    )));
                }
                self.add_manager(raft_id, &addr).await
            }
            other => Err(ApiError::internal(format!(
                "{} is not a manager's own request",
                other.name()
            ))),
        }
    }
}
