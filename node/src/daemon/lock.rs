//! The locked state of an autolocked manager (`mesh_manager::autolock`): after a restart its
//! data key on disk is wrapped with the unlock key, so the daemon starts neither raft, nor 2377,
//! nor the agent; it answers `info`, `status`, `swarm unlock` and `swarm leave --force` on its
//! socket and everything else with Swarm's "Swarm is encrypted and needs to be unlocked".
//! `swarm unlock` with the right key resumes the membership with the key in memory (the file
//! stays wrapped); a wrong key leaves it locked.

use mesh_api::{ApiError, Reply, Request, UnlockRequest};
use mesh_cluster::state::NodeRole;
use mesh_cluster::unlock_key::UnlockKey;
use mesh_manager::datakey::{self, UnlockError};

use super::{Daemon, Identity};

impl Daemon {
    /// Is this membership a manager whose data key waits for `swarm unlock`?
    pub(super) fn starts_locked(&self, identity: &Identity) -> bool {
        identity.role == NodeRole::Manager
            && self.unlocked_key().is_none()
            && datakey::is_locked(&self.cfg.raft_dir())
    }

    /// The identity of this locked manager, if it is locked.
    pub(super) fn locked(&self) -> Option<Identity> {
        self.locked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(super) fn set_locked(&self, identity: Option<Identity>) {
        *self
            .locked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = identity;
    }

    /// The data key `swarm unlock` opened, for the manager about to start.
    fn unlocked_key(&self) -> Option<datakey::DataKey> {
        self.unlocked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Takes the opened data key (once: the manager holds it from then on).
    pub(super) fn take_unlocked_key(&self) -> Option<datakey::DataKey> {
        self.unlocked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Refuses what a locked node cannot serve.
    pub(super) fn check_unlocked(&self, req: &Request) -> Result<(), ApiError> {
        if self.locked().is_none() {
            return Ok(());
        }
        match req {
            Request::Unlock(_) | Request::Info | Request::Status | Request::Leave { .. } => Ok(()),
            _ => Err(datakey::locked_error()),
        }
    }

    /// `swarm unlock`.
    pub(super) async fn unlock(&self, r: UnlockRequest) -> Result<Reply, ApiError> {
        let _t = self.transition.lock().await;
        if self.locked().is_none() {
            return Err(if self.member().is_some() {
                ApiError::precondition("swarm is not locked")
            } else {
                ApiError::not_in_swarm()
            });
        }
        let kek: UnlockKey = r
            .key
            .parse()
            .map_err(|e| ApiError::invalid(format!("{e}")))?;
        let key = datakey::unlock(&self.cfg.raft_dir(), &kek).map_err(|e| match e {
            UnlockError::WrongKey => ApiError::denied(e.to_string()),
            UnlockError::NotLocked => ApiError::precondition(e.to_string()),
            UnlockError::Io(m) => ApiError::internal(m),
        })?;
        *self
            .unlocked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(key);
        self.set_locked(None);
        if let Err(e) = self.resume().await {
            self.take_unlocked_key();
            self.set_locked(self.read_identity().ok().flatten());
            return Err(ApiError::internal(format!(
                "unlocked, but the manager did not start: {e:#}"
            )));
        }
        tracing::info!("swarm unlocked");
        Ok(Reply::Done)
    }

    /// `swarm leave` on a locked manager: only with `--force` (Swarm's rule), which forgets the
    /// swarm without reaching it.
    pub(super) async fn leave_locked(&self, force: bool) -> Result<Reply, ApiError> {
        let _t = self.transition.lock().await;
        if !force {
            return Err(ApiError::precondition(
                "Swarm is encrypted and locked. Use `--force` to leave it without unlocking, which removes this node's swarm state.",
            ));
        }
        self.set_locked(None);
        self.wipe();
        tracing::info!("left the swarm while locked");
        Ok(Reply::Left)
    }
}
