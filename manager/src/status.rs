//! What a manager says of itself for `meshctl status` and the metrics: its raft (openraft's
//! metrics) and the cluster's tasks by state (from the state it has applied).

use std::collections::BTreeMap;

use mesh_api::status::RaftStatus;
use openraft::ServerState;

use crate::Manager;

impl Manager {
    /// This manager's raft now.
    pub fn raft_status(&self) -> RaftStatus {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        RaftStatus {
            role: match m.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            }
            .to_owned(),
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            members: m.membership_config.membership().nodes().count() as u64,
        }
    }

    /// The cluster's tasks by current state, as of the last entry applied here.
    pub fn tasks_by_state(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for t in self.state().tasks.values() {
            *out.entry(t.status.state.as_str().to_owned()).or_insert(0) += 1;
        }
        out
    }
}
