//! The cluster's data key: 32 random bytes that seal what raft must not hold in the clear
//! (AES-256-GCM): secrets' and configs' data, the CA key, the join token secrets, registry
//! logins and the unlock key, so that the raft log, its snapshots and their backups never hold
//! them in the clear. Each manager keeps the key in `<raft dir>/data.key` (0600), outside raft;
//! raft holds only a check value ([`DataKey::check`]), so a manager with a wrong key refuses to
//! use it. With autolock on, the file holds the key wrapped with the unlock key
//! ([`KeyFile::Wrapped`]): a restarted manager cannot read it until `swarm unlock` gives the
//! key ([`unlock`]).
//!
//! `swarm init` makes the key (and seals the CA key and token secrets of the first transaction
//! with it); a cluster made before then gets one from its leader (`sealing`). Any other manager
//! without the file (a new or promoted manager, or one that lost it) asks the other managers for
//! it over mTLS ([`Request::DataKey`], served to manager certificates only).

use std::path::{Path, PathBuf};
use std::time::Duration;

use mesh_api::{ApiError, BlobData, Reply, Request, now_millis};
use mesh_cluster::state::{Object, Op, Sealed, Tx};
use mesh_cluster::unlock_key::UnlockKey;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::manager::Manager;

const FILE: &str = "data.key";
const VERSION: u8 = 1;
const AAD: &[u8] = b"meshd sealed blob";
/// What a wrapped key's file starts with (a clear one is 64 hex digits).
const WRAPPED: &str = "wrapped-by-unlock-key ";
const WRAP_AAD: &[u8] = b"meshd data key wrapped by the unlock key";

/// The data key. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey([u8; 32]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKey(check {})", self.check())
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the system's random source");
    b
}

/// AES-256-GCM under `key`: `version, nonce, ciphertext and tag`.
fn seal_with(key: &[u8; 32], aad: &'static [u8], plain: &[u8]) -> Vec<u8> {
    let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte key"));
    let nonce = random_bytes::<NONCE_LEN>();
    let mut body = plain.to_vec();
    aead.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut body,
    )
    .expect("sealing fits in memory");
    let mut out = Vec::with_capacity(1 + NONCE_LEN + body.len());
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    out
}

/// The plain bytes of [`seal_with`]'s output, or None when `key` (or `aad`) is not the one it
/// was sealed with, or the bytes were changed.
fn open_with(key: &[u8; 32], aad: &'static [u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 1 + NONCE_LEN || sealed[0] != VERSION {
        return None;
    }
    let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte key"));
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[1..=NONCE_LEN]);
    let mut body = sealed[1 + NONCE_LEN..].to_vec();
    let plain = aead
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )
        .ok()?;
    Some(plain.to_vec())
}

impl DataKey {
    pub fn random() -> Self {
        Self(random_bytes())
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

    /// `version, nonce, ciphertext and tag`.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        seal_with(&self.0, AAD, plain)
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, ApiError> {
        open_with(&self.0, AAD, sealed).ok_or_else(|| {
            ApiError::internal("sealed data does not open under this manager's data key")
        })
    }

    /// `value` as raft keeps it: its JSON, sealed.
    pub fn seal_value<T: Serialize>(&self, value: &T) -> Sealed<T> {
        let json = serde_json::to_vec(value).expect("a value of the state serialises");
        Sealed::from_sealed_bytes(&self.seal(&json))
    }

    /// The value raft keeps sealed (or, written by an older meshd, still clear).
    pub fn open_value<T: DeserializeOwned + Clone>(
        &self,
        sealed: &Sealed<T>,
    ) -> Result<T, ApiError> {
        match sealed {
            Sealed::Clear(v) => Ok(v.clone()),
            Sealed::Closed { .. } => {
                let bytes = sealed.sealed_bytes().ok_or_else(|| {
                    ApiError::internal("a sealed value of the cluster state is not base64")
                })?;
                serde_json::from_slice(&self.open(&bytes)?).map_err(|e| {
                    ApiError::internal(format!("a sealed value opened to something else: {e}"))
                })
            }
        }
    }

    /// The key wrapped with an unlock key (autolock), as a locked manager keeps it on disk.
    pub fn wrap(&self, kek: &UnlockKey) -> Vec<u8> {
        seal_with(kek.bytes(), WRAP_AAD, &self.0)
    }

    /// [`DataKey::wrap`] undone, or None for another unlock key.
    pub fn unwrap_with(wrapped: &[u8], kek: &UnlockKey) -> Option<Self> {
        open_with(kek.bytes(), WRAP_AAD, wrapped).and_then(|b| Self::from_bytes(&b))
    }
}

/// What a manager's `data.key` holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyFile {
    Clear(DataKey),
    /// Autolock: the key wrapped with the unlock key ([`DataKey::wrap`]).
    Wrapped(Vec<u8>),
}

impl KeyFile {
    /// The file's text.
    fn text(&self) -> String {
        match self {
            Self::Clear(k) => hex::encode(k.0),
            Self::Wrapped(w) => format!("{WRAPPED}{}", hex::encode(w)),
        }
    }

    fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        match text.strip_prefix(WRAPPED) {
            Some(w) => hex::decode(w).ok().map(Self::Wrapped),
            None => hex::decode(text)
                .ok()
                .and_then(|b| DataKey::from_bytes(&b))
                .map(Self::Clear),
        }
    }

    /// The file for `key` as the cluster wants it: wrapped when autolock is on.
    pub fn for_key(key: &DataKey, unlock: Option<&UnlockKey>) -> Self {
        match unlock {
            Some(kek) => Self::Wrapped(key.wrap(kek)),
            None => Self::Clear(key.clone()),
        }
    }
}

/// Why `swarm unlock` failed.
#[derive(Debug, thiserror::Error)]
pub enum UnlockError {
    /// Swarm's words.
    #[error("swarm could not be unlocked: invalid key provided")]
    WrongKey,
    #[error("swarm is not locked")]
    NotLocked,
    #[error("{0}")]
    Io(String),
}

/// Is the data key on disk wrapped (so the manager starts locked)?
pub fn is_locked(raft_dir: &Path) -> bool {
    matches!(load(raft_dir), Ok(Some(KeyFile::Wrapped(_))))
}

/// The data key of a locked manager, unwrapped with the unlock key the user gave.
pub fn unlock(raft_dir: &Path, kek: &UnlockKey) -> Result<DataKey, UnlockError> {
    match load(raft_dir).map_err(|e| UnlockError::Io(e.message))? {
        Some(KeyFile::Wrapped(w)) => DataKey::unwrap_with(&w, kek).ok_or(UnlockError::WrongKey),
        _ => Err(UnlockError::NotLocked),
    }
}

fn path(raft_dir: &Path) -> PathBuf {
    raft_dir.join(FILE)
}

fn load(raft_dir: &Path) -> Result<Option<KeyFile>, ApiError> {
    match std::fs::read_to_string(path(raft_dir)) {
        Ok(text) => KeyFile::parse(&text).map(Some).ok_or_else(|| {
            ApiError::internal(format!(
                "{} is not a data key (64 hex digits, or `{WRAPPED}` and hex digits)",
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

fn save(raft_dir: &Path, file: &KeyFile) -> Result<(), ApiError> {
    mesh_api::private::write_private(&path(raft_dir), file.text().as_bytes())
        .map_err(|e| ApiError::internal(format!("writing {}: {e}", path(raft_dir).display())))
}

/// What a locked manager answers (Swarm's words). Not retryable: only `swarm unlock` helps.
pub fn locked_error() -> ApiError {
    ApiError::precondition(
        "Swarm is encrypted and needs to be unlocked before it can be used. Please use \"meshctl swarm unlock\" to unlock it.",
    )
}

/// The unlock key the cluster state holds (sealed with `key`), if autolock is on.
pub(crate) fn unlock_key_of(
    state: &mesh_cluster::state::ClusterState,
    key: &DataKey,
) -> Result<Option<UnlockKey>, ApiError> {
    let Some(sealed) = state.cluster.as_ref().and_then(|c| c.unlock_key.as_ref()) else {
        return Ok(None);
    };
    let text = key.open_value(sealed)?;
    text.parse()
        .map(Some)
        .map_err(|e| ApiError::internal(format!("the cluster's unlock key: {e}")))
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
        let found = match load(&dir)? {
            Some(KeyFile::Clear(k)) => Some(k),
            Some(KeyFile::Wrapped(_)) => return Err(locked_error()),
            None => None,
        };
        // A key file that matches the state this manager applied needs no one else: a manager
        // whose certificate expired opens the CA key with it to renew, before it can reach the
        // other managers (a linearizable read could not complete until then).
        let local = self.state();
        let check_of = |s: &mesh_cluster::state::ClusterState| {
            s.cluster.as_ref().and_then(|c| c.data_key_check.clone())
        };
        let (key, state) = match found {
            Some(k) if check_of(&local) == Some(k.check()) => (k, local),
            found => {
                let state = self.read().await?.applied.state;
                let key = match (found, check_of(&state)) {
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
                (key, state)
            }
        };
        let unlock = unlock_key_of(&state, &key)?;
        save(&dir, &KeyFile::for_key(&key, unlock.as_ref()))?;
        *held = Some(key.clone());
        Ok(key)
    }

    /// The data key for a new cluster (`swarm init`): held and saved (wrapped with `unlock`
    /// when the swarm starts autolocked) before the first transaction seals with it.
    /// Under the same lock as [`Manager::data_key`]: a control loop of the new leader (the
    /// dispatcher) may ask for the key before the first transaction is written, and both must
    /// end with one key (the one made first) and one file write at a time.
    pub async fn new_data_key(&self, unlock: Option<&UnlockKey>) -> Result<DataKey, ApiError> {
        let mut held = self.inner.data_key.lock().await;
        let key = held.clone().unwrap_or_else(DataKey::random);
        save(&self.inner.cfg.raft_dir, &KeyFile::for_key(&key, unlock))?;
        *held = Some(key.clone());
        Ok(key)
    }

    /// A value raft keeps sealed, opened with the data key.
    pub async fn open_sealed<T: DeserializeOwned + Clone>(
        &self,
        sealed: &Sealed<T>,
    ) -> Result<T, ApiError> {
        match sealed {
            Sealed::Clear(v) => Ok(v.clone()),
            Sealed::Closed { .. } => self.data_key().await?.open_value(sealed),
        }
    }

    /// Rewrites this manager's key file as the state wants it (wrapped with the unlock key
    /// when autolock is on, clear otherwise), if this manager holds the key.
    pub(crate) async fn rewrite_key_file(&self) -> Result<(), ApiError> {
        // Held while the file is written: one writer at a time.
        let held = self.inner.data_key.lock().await;
        let Some(key) = held.clone() else {
            return Ok(());
        };
        let unlock = unlock_key_of(&self.state(), &key)?;
        save(
            &self.inner.cfg.raft_dir,
            &KeyFile::for_key(&key, unlock.as_ref()),
        )
    }

    /// The cluster has no key yet: record the check value of `found` (a file left by an earlier
    /// attempt) or of a new key. Only the leader writes it, once.
    async fn make_data_key(&self, found: Option<DataKey>) -> Result<DataKey, ApiError> {
        if !self.is_leader() {
            return Err(ApiError::unavailable(
                "the cluster's data key is not made yet; the leader makes it",
            ));
        }
        let key = found.unwrap_or_else(DataKey::random);
        save(&self.inner.cfg.raft_dir, &KeyFile::Clear(key.clone()))?;
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
    #[expect(
        clippy::unused_async,
        reason = "a request handler, awaited as the others"
    )]
    pub(crate) async fn serve_data_key(&self) -> Result<Reply, ApiError> {
        // Not waiting for the lock: this manager may be fetching the key itself (from the very
        // manager asking); then its file answers.
        if let Ok(held) = self.inner.data_key.try_lock()
            && let Some(k) = held.as_ref()
        {
            return Ok(Reply::DataKey(BlobData(k.0.to_vec())));
        }
        match load(&self.inner.cfg.raft_dir)? {
            Some(KeyFile::Clear(k)) => Ok(Reply::DataKey(BlobData(k.0.to_vec()))),
            Some(KeyFile::Wrapped(_)) => Err(locked_error()),
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
        save(dir.path(), &KeyFile::Clear(k.clone())).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(KeyFile::Clear(k.clone())));
        assert!(!is_locked(dir.path()));
        assert!(matches!(
            unlock(dir.path(), &UnlockKey::from_bytes([1; 32])),
            Err(UnlockError::NotLocked)
        ));
        let mode = std::fs::metadata(path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(path(dir.path()), "nothex").unwrap();
        assert!(load(dir.path()).is_err());
    }

    #[test]
    fn a_wrapped_key_file_opens_with_its_unlock_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let k = DataKey::random();
        let kek = UnlockKey::from_bytes([9; 32]);
        save(dir.path(), &KeyFile::for_key(&k, Some(&kek))).unwrap();
        let text = std::fs::read_to_string(path(dir.path())).unwrap();
        assert!(
            text.starts_with(WRAPPED) && !text.contains(&hex::encode(k.bytes())),
            "{text}"
        );
        assert!(is_locked(dir.path()));
        assert!(matches!(
            unlock(dir.path(), &UnlockKey::from_bytes([8; 32])),
            Err(UnlockError::WrongKey)
        ));
        assert_eq!(unlock(dir.path(), &kek).unwrap(), k);
        assert_eq!(
            UnlockError::WrongKey.to_string(),
            "swarm could not be unlocked: invalid key provided"
        );
    }

    #[test]
    fn wrapping_round_trips_and_fails_under_another_key_or_a_changed_byte() {
        let k = DataKey::random();
        let kek = UnlockKey::from_bytes([3; 32]);
        let w = k.wrap(&kek);
        assert_eq!(DataKey::unwrap_with(&w, &kek), Some(k.clone()));
        assert_eq!(
            DataKey::unwrap_with(&w, &UnlockKey::from_bytes([4; 32])),
            None
        );
        let mut bad = w.clone();
        bad[5] ^= 1;
        assert_eq!(DataKey::unwrap_with(&bad, &kek), None);
        // A wrapped key is no sealed blob, and the reverse: the purposes do not mix.
        assert!(DataKey::from_bytes(kek.bytes()).unwrap().open(&w).is_err());
    }

    #[test]
    fn sealed_values_round_trip_and_refuse_another_key() {
        use mesh_cluster::state::RegistryAuth;
        let k = DataKey::random();
        let login = RegistryAuth {
            server: "r:5000".into(),
            username: "alice".into(),
            password: "pa55".into(),
        };
        let sealed = k.seal_value(&login);
        let json = serde_json::to_string(&sealed).unwrap();
        assert!(!json.contains("pa55") && !json.contains("alice"), "{json}");
        assert_eq!(k.open_value(&sealed).unwrap(), login);
        assert!(DataKey::random().open_value(&sealed).is_err());
        assert_eq!(k.open_value(&Sealed::Clear(login.clone())).unwrap(), login);
        let pem = k.seal_value(&"-----BEGIN PRIVATE KEY-----".to_owned());
        assert!(!serde_json::to_string(&pem).unwrap().contains("PRIVATE"));
    }
}
