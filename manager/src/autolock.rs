//! Autolock, as Swarm's: with it on, the cluster state holds an unlock key (sealed with the
//! data key) and every manager keeps its copy of the data key on disk wrapped with it
//! ([`crate::datakey::KeyFile::Wrapped`]), so that a manager that restarts is locked (it starts
//! neither raft nor its API) until `swarm unlock` gives the key. `swarm update --autolock`
//! turns it on or off, `swarm unlock-key [--rotate]` shows or replaces the key; each manager
//! rewrites its key file when the state's key changes ([`keep_key_file`]). A manager that
//! joins fetches the data key over mTLS and wraps it the same way.

use mesh_api::{ApiError, Reply, UnlockKeyReply, now_millis};
use mesh_cluster::state::{ClusterState, Object, Op, Sealed, Tx};
use mesh_cluster::unlock_key::UnlockKey;

use crate::datakey::{DataKey, unlock_key_of};
use crate::handlers::swarm::cluster;
use crate::manager::Manager;

/// A new unlock key.
pub fn new_unlock_key() -> UnlockKey {
    UnlockKey::from_bytes(rand::random())
}

/// The cluster with its unlock key set to `unlock` (sealed with `key`), or None when it already
/// is as asked (`Some(_)` asked of a cluster that has a key keeps that key).
pub(crate) fn autolock_tx(
    s: &ClusterState,
    key: &DataKey,
    unlock: Option<&UnlockKey>,
    now: u64,
) -> Result<Option<Tx>, ApiError> {
    let c = cluster(s)?;
    if c.unlock_key.is_some() == unlock.is_some() {
        return Ok(None);
    }
    let mut c = c.clone();
    c.unlock_key = unlock.map(|u| key.seal_value(&u.to_string()));
    Ok(Some(Tx {
        at: now,
        ops: vec![Op::Put(Object::Cluster(c))],
    }))
}

/// The cluster with a new unlock key `new` in place of the current one (autolock must be on).
pub(crate) fn rotate_unlock_key_tx(
    s: &ClusterState,
    key: &DataKey,
    new: &UnlockKey,
    now: u64,
) -> Result<Tx, ApiError> {
    let c = cluster(s)?;
    if c.unlock_key.is_none() {
        return Err(ApiError::invalid(
            "cannot rotate because autolock is not turned on",
        ));
    }
    let mut c = c.clone();
    c.unlock_key = Some(key.seal_value(&new.to_string()));
    Ok(Tx {
        at: now,
        ops: vec![Op::Put(Object::Cluster(c))],
    })
}

/// `swarm update --autolock` and `swarm unlock-key`.
pub struct AutolockApi<'m> {
    pub(crate) m: &'m Manager,
}

impl AutolockApi<'_> {
    /// `swarm update --autolock=true|false` (on the leader): the new key when this turned
    /// autolock on, else none.
    pub async fn set(&self, enabled: bool) -> Result<Reply, ApiError> {
        let key = self.m.data_key().await?;
        let new = enabled.then(new_unlock_key);
        let wrote = self
            .m
            .with_retries(|s| autolock_tx(s, &key, new.as_ref(), now_millis()))
            .await;
        wrote?;
        let now_on = unlock_key_of(&self.m.state(), &key)?;
        // Only a key this request made is shown (Swarm prints it when autolock turns on).
        let shown = match (&new, now_on) {
            (Some(made), Some(on)) if *made == on => Some(on.to_string()),
            _ => None,
        };
        tracing::info!(enabled, "autolock set");
        Ok(Reply::UnlockKey(UnlockKeyReply { key: shown }))
    }

    /// `swarm unlock-key [--rotate]`.
    pub async fn unlock_key(&self, rotate: bool) -> Result<Reply, ApiError> {
        let key = self.m.data_key().await?;
        if rotate {
            let new = new_unlock_key();
            self.m
                .with_retries(|s| rotate_unlock_key_tx(s, &key, &new, now_millis()).map(Some))
                .await?;
            tracing::info!("unlock key rotated");
            return Ok(Reply::UnlockKey(UnlockKeyReply {
                key: Some(new.to_string()),
            }));
        }
        let state = self.m.read().await?.applied.state;
        match unlock_key_of(&state, &key)? {
            Some(k) => Ok(Reply::UnlockKey(UnlockKeyReply {
                key: Some(k.to_string()),
            })),
            None => Err(ApiError::invalid("no unlock key is set")),
        }
    }
}

/// On every manager: hold the data key and keep `data.key` as the state wants it. A manager
/// without the key gets it from another as soon as it starts (any manager may lead next and
/// need it; with autolock, it too must start locked after a restart); whenever the state's
/// unlock key changes, the file is wrapped again (or written clear when autolock goes off).
pub(crate) async fn keep_key_file(m: Manager) {
    let mut watch = m.watch();
    // The state's unlock key the file was last written for (None: not yet written).
    let mut written: Option<Option<Sealed<String>>> = None;
    loop {
        let wanted = watch
            .borrow_and_update()
            .state
            .cluster
            .as_ref()
            .map(|c| c.unlock_key.clone());
        let pending = wanted.filter(|w| written.as_ref() != Some(w));
        if let Some(w) = &pending {
            let done = async {
                m.data_key().await?;
                m.rewrite_key_file().await
            }
            .await;
            match done {
                Ok(()) => written = Some(w.clone()),
                Err(e) => tracing::debug!("keeping the data key file as autolock wants: {e}"),
            }
        }
        let failed = pending.is_some() && written != pending;
        tokio::select! {
            changed = watch.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(std::time::Duration::from_secs(5)), if failed => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster_state(key: &DataKey) -> ClusterState {
        crate::handlers::swarm::tests::bootstrapped(key, None)
    }

    #[test]
    fn autolock_turns_on_once_rotates_and_turns_off() {
        let key = DataKey::random();
        let mut s = cluster_state(&key);
        let first = new_unlock_key();
        assert!(
            rotate_unlock_key_tx(&s, &key, &first, 1)
                .unwrap_err()
                .message
                .contains("autolock is not turned on")
        );
        assert!(autolock_tx(&s, &key, None, 1).unwrap().is_none());
        let on = autolock_tx(&s, &key, Some(&first), 1).unwrap().unwrap();
        s.apply(&on, 2).unwrap();
        assert_eq!(unlock_key_of(&s, &key).unwrap(), Some(first.clone()));
        assert!(
            !serde_json::to_string(&s)
                .unwrap()
                .contains(&first.to_string())
        );
        // Asked again: the key stays.
        assert!(
            autolock_tx(&s, &key, Some(&new_unlock_key()), 3)
                .unwrap()
                .is_none()
        );
        let second = new_unlock_key();
        s.apply(&rotate_unlock_key_tx(&s, &key, &second, 3).unwrap(), 3)
            .unwrap();
        assert_eq!(unlock_key_of(&s, &key).unwrap(), Some(second));
        let off = autolock_tx(&s, &key, None, 4).unwrap().unwrap();
        s.apply(&off, 4).unwrap();
        assert_eq!(unlock_key_of(&s, &key).unwrap(), None);
    }
}
