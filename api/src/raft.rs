//! Raft between managers, as the API carries it: opaque to everyone but the managers.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// The raft identity of a manager (0 for a worker).
pub type RaftId = u64;

/// A raft message between managers, opaque here: the manager crate encodes openraft's types
/// into it and decodes them out, so that clients of the API need not link raft. It is carried
/// as the JSON it holds, so the frame on the wire is what it would be with the types inline.
/// Its `Debug` prints only its size: log entries and snapshots carry the cluster's secrets.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RaftPayload(pub Box<serde_json::value::RawValue>);

impl std::fmt::Debug for RaftPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RaftPayload(<{} bytes redacted>)", self.0.get().len())
    }
}

impl RaftPayload {
    pub fn encode<T: Serialize>(v: &T) -> Result<Self, ApiError> {
        serde_json::value::to_raw_value(v)
            .map(Self)
            .map_err(|e| ApiError::internal(format!("encoding a raft message: {e}")))
    }

    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_str(self.0.get())
            .map_err(|e| ApiError::internal(format!("decoding a raft message: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_no_content() {
        let p = RaftPayload::encode(&serde_json::json!({"root_ca_key_pem": "SECRETKEY"})).unwrap();
        let text = format!("{p:?}");
        assert!(!text.contains("SECRETKEY"), "{text}");
        assert!(text.contains("redacted"), "{text}");
        let back: serde_json::Value = p.decode().unwrap();
        assert_eq!(back["root_ca_key_pem"], "SECRETKEY");
    }
}
