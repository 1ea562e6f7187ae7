//! The cluster's data key: 32 random bytes that seal secrets' and configs' data in raft
//! (AES-256-GCM), so that the raft log, its snapshots and their backups never hold them in the
//! clear. Each manager keeps the key in `<raft dir>/data.key` (0600), outside raft; raft holds
//! only a check value ([`DataKey::check`]), so a manager with a wrong key refuses to use it.
//!
//! The first manager that needs the key and finds none in the cluster makes it (the leader, on
//! the first `secret create` or `config create`); any other manager without the file (a new or
//! promoted manager, or one that lost it) asks the other managers for it over mTLS
//! ([`Request::DataKey`], served to manager certificates only).

use std::path::{Path, PathBuf};
use std::time::Duration;

use mesh_api::{ApiError, BlobData, Reply, Request, now_millis};
use mesh_cluster::state::{Object, Op, Tx};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

use crate::manager::Manager;

const FILE: &str = "data.key";
const VERSION: u8 = 1;
const AAD: &[u8] = b"meshd sealed blob";

/// The data key. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey([u8; 32]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKey(check {})", self.check())
    }
}

impl DataKey {
    pub fn random() -> Self {
        let mut k = [0u8; 32];
        SystemRandom::new()
            .fill(&mut k)
            .expect("the system's random source");
        Self(k)
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// What raft records about the key: a hash that names it without revealing it.
    pub fn check(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"meshd data key check\0");
        h.update(self.0);
        hex::encode(&h.finalize()[..16])
    }

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("a 32-byte key"))
    }

    /// `version, nonce, ciphertext and tag`.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system's random source");
        let mut body = plain.to_vec();
        self.aead()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut body,
            )
            .expect("sealing fits in memory");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + body.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, ApiError> {
        let broken =
            || ApiError::internal("sealed data does not open under this manager's data key");
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != VERSION {
            return Err(broken());
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[1..=NONCE_LEN]);
        let mut body = sealed[1 + NONCE_LEN..].to_vec();
        let plain = self
            .aead()
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut body,
            )
            .map_err(|_| broken())?;
        Ok(plain.to_vec())
    }
}

fn path(raft_dir: &Path) -> PathBuf {
    raft_dir.join(FILE)
}

fn load(raft_dir: &Path) -> Result<Option<DataKey>, ApiError> {
    match std::fs::read_to_string(path(raft_dir)) {
        Ok(text) => hex::decode(text.trim())
            .ok()
            .and_then(|b| DataKey::from_bytes(&b))
            .map(Some)
            .ok_or_else(|| {
                ApiError::internal(format!(
                    "{} is not a data key (64 hex digits)",
                    path(raft_dir).display()
                ))
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ApiError::internal(format!(
            "reading {}: {e}",
            path(raft_dir).display()
        ))),
    }
}

fn save(raft_dir: &Path, key: &DataKey) -> Result<(), ApiError> {
    mesh_api::private::write_private(&path(raft_dir), hex::encode(key.0).as_bytes())
        .map_err(|e| ApiError::internal(format!("writing {}: {e}", path(raft_dir).display())))
}

impl Manager {
    /// The cluster's data key: from memory, this manager's file, another manager, or (on the
    /// leader of a cluster that has none yet) new.
    pub async fn data_key(&self) -> Result<DataKey, ApiError> {
        let mut held = self.inner.data_key.lock().await;
        if let Some(k) = held.as_ref() {
            return Ok(k.clone());
        }
        let dir = self.inner.cfg.raft_dir.clone();
        let want = self
            .read()
            .await?
            .applied
            .state
            .cluster
            .as_ref()
            .and_then(|c| c.data_key_check.clone());
        let key = match (load(&dir)?, want) {
            (Some(k), Some(want)) if k.check() == want => k,
            (Some(_), Some(_)) => {
                return Err(ApiError::internal(format!(
                    "{} holds another cluster's data key; remove it and this manager fetches the right one",
                    path(&dir).display()
                )));
            }
            (found, None) => self.make_data_key(found).await?,
            (None, Some(want)) => self.fetch_data_key(&want).await?,
        };
        save(&dir, &key)?;
        *held = Some(key.clone());
        Ok(key)
    }

    /// The cluster has no key yet: record the check value of `found` (a file left by an earlier
    /// attempt) or of a new key. Only the leader writes it, once.
    async fn make_data_key(&self, found: Option<DataKey>) -> Result<DataKey, ApiError> {
        if !self.is_leader() {
            return Err(ApiError::unavailable(
                "the cluster's data key is not made yet; the leader makes it on the first secret or config",
            ));
        }
        let key = found.unwrap_or_else(DataKey::random);
        save(&self.inner.cfg.raft_dir, &key)?;
        let check = key.check();
        self.with_retries(|s| {
            let Some(c) = s.cluster.as_ref() else {
                return Err(ApiError::unavailable("the swarm is not initialised"));
            };
            match &c.data_key_check {
                Some(other) if *other == check => Ok(None),
                Some(_) => Err(ApiError::unavailable(
                    "another data key was recorded meanwhile; try again",
                )),
                None => {
                    let mut c = c.clone();
                    c.data_key_check = Some(check.clone());
                    Ok(Some(Tx {
                        at: now_millis(),
                        ops: vec![Op::Put(Object::Cluster(c))],
                    }))
                }
            }
        })
        .await?;
        tracing::info!(check = %key.check(), "made the cluster's data key");
        Ok(key)
    }

    /// Asks the other managers for the key whose check value is `want`.
    async fn fetch_data_key(&self, want: &str) -> Result<DataKey, ApiError> {
        let state = self.state();
        let own = &self.inner.cfg.addr;
        let mut last = String::from("no other manager is known");
        for addr in crate::handlers::swarm::manager_addrs(&state) {
            if addr == *own {
                continue;
            }
            let reply = self
                .inner
                .peers
                .client(&addr)
                .call_with_timeout(&Request::DataKey, Duration::from_secs(5))
                .await;
            match reply {
                Ok(Reply::DataKey(BlobData(bytes))) => match DataKey::from_bytes(&bytes) {
                    Some(k) if k.check() == want => {
                        tracing::info!(from = %addr, "fetched the cluster's data key");
                        return Ok(k);
                    }
                    _ => last = format!("{addr} sent a key that is not the cluster's"),
                },
                Ok(other) => last = format!("{addr} answered {other:?}"),
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
        Err(ApiError::unavailable(format!(
            "this manager has no copy of the cluster's data key and could not fetch one ({last})"
        )))
    }

    /// [`Request::DataKey`] from another manager: the key if this manager holds it (never a
    /// new one: only a leader that needs it makes it).
    pub(crate) async fn serve_data_key(&self) -> Result<Reply, ApiError> {
        if let Some(k) = self.inner.data_key.lock().await.as_ref() {
            return Ok(Reply::DataKey(BlobData(k.0.to_vec())));
        }
        match load(&self.inner.cfg.raft_dir)? {
            Some(k) => Ok(Reply::DataKey(BlobData(k.0.to_vec()))),
            None => Err(ApiError::unavailable("this manager holds no data key")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_under_the_same_key_only() {
        let k = DataKey::random();
        let sealed = k.seal(b"s3cret");
        assert!(!sealed.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(k.open(&sealed).unwrap(), b"s3cret");
        assert!(DataKey::random().open(&sealed).is_err());
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(k.open(&bad).is_err());
        assert!(k.open(&[1, 2]).is_err());
        assert_ne!(k.seal(b"s3cret"), sealed, "a fresh nonce every time");
    }

    #[test]
    fn the_check_names_the_key_without_showing_it() {
        let k = DataKey::from_bytes(&[7; 32]).unwrap();
        assert_eq!(k.check(), DataKey::from_bytes(&[7; 32]).unwrap().check());
        assert_ne!(k.check(), DataKey::random().check());
        assert!(!format!("{k:?}").contains("0707"));
    }

    #[test]
    fn the_key_file_is_private_and_round_trips() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let k = DataKey::random();
        save(dir.path(), &k).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(k));
        let mode = std::fs::metadata(path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(path(dir.path()), "nothex").unwrap();
        assert!(load(dir.path()).is_err());
    }
}
