//! A secret value as raft keeps it: sealed with the cluster's data key (`mesh-manager`'s
//! `DataKey` seals and opens; this crate only carries the bytes), or still in the clear when an
//! older meshd wrote it, until the leader seals it.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// A value of type `T` kept in raft. Serialised untagged, so that a value an older meshd wrote
/// in the clear (a string, an object) still reads as [`Sealed::Clear`], and a sealed one is
/// `{"sealed": "<base64>"}`. `Debug` never prints the value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Sealed<T> {
    /// The base64 of what the data key made of the value's JSON (version, nonce, ciphertext,
    /// tag).
    Closed { sealed: String },
    /// Written before sealing existed; the leader seals it when it next leads.
    Clear(T),
}

impl<T> Sealed<T> {
    /// The sealed bytes as the data key made them.
    pub fn from_sealed_bytes(bytes: &[u8]) -> Self {
        Self::Closed {
            sealed: STANDARD.encode(bytes),
        }
    }

    /// The sealed bytes, or None for a clear value (or a sealed one that is not base64, which
    /// then fails to open as any broken seal does).
    pub fn sealed_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Self::Closed { sealed } => STANDARD.decode(sealed).ok(),
            Self::Clear(_) => None,
        }
    }

    /// Still in the clear (to be sealed)?
    pub fn is_clear(&self) -> bool {
        matches!(self, Self::Clear(_))
    }
}

impl<T: Default> Default for Sealed<T> {
    fn default() -> Self {
        Self::Clear(T::default())
    }
}

impl<T> fmt::Debug for Sealed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed { sealed } => write!(f, "<sealed, {} base64 characters>", sealed.len()),
            Self::Clear(_) => write!(f, "<clear, {}>", super::REDACTED),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::RegistryAuth;

    #[test]
    fn clear_values_of_older_meshds_still_read_and_sealed_ones_round_trip() {
        let old: Sealed<String> = serde_json::from_str("\"-----BEGIN PRIVATE KEY-----\"").unwrap();
        assert!(old.is_clear());
        let old: Sealed<Vec<String>> = serde_json::from_str("[\"a\",\"b\"]").unwrap();
        assert_eq!(old, Sealed::Clear(vec!["a".into(), "b".into()]));
        let login = r#"{"server":"r:5000","username":"u","password":"p"}"#;
        let old: Sealed<RegistryAuth> = serde_json::from_str(login).unwrap();
        assert!(old.is_clear());

        let s: Sealed<RegistryAuth> = Sealed::from_sealed_bytes(&[1, 2, 3, 250]);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"sealed":"AQID+g=="}"#);
        let back: Sealed<RegistryAuth> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.sealed_bytes().unwrap(), vec![1, 2, 3, 250]);
        assert!(!back.is_clear());
    }

    #[test]
    fn debug_never_shows_the_value() {
        let s = Sealed::Clear("hunter2".to_owned());
        let text = format!("{s:?} {:?}", Sealed::<String>::from_sealed_bytes(b"x"));
        assert!(
            !text.contains("hunter2") && text.contains("sealed"),
            "{text}"
        );
    }
}
