//! Secrets and configs on the wire: one set of requests for both ([`BlobKind`]), and the bytes
//! they carry ([`BlobData`]), which never print.

use std::collections::BTreeMap;
use std::fmt;

use mesh_cluster::Id;
use mesh_cluster::state::Meta;
use serde::{Deserialize, Serialize};

/// Which of the two a request is about: they differ in names, in where tasks see them, and in
/// that `inspect` shows a config's data and never a secret's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    Secret,
    Config,
}

impl BlobKind {
    /// `secret` or `config`, as the commands and Docker's messages say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::Config => "config",
        }
    }
}

/// A secret's or config's bytes. `Debug` prints only their length.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BlobData(pub Vec<u8>);

impl fmt::Debug for BlobData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

/// `secret create` / `config create`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlobCreate {
    pub kind: BlobKind,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub data: BlobData,
}

/// A secret or config as `ls` and `inspect` show it: a config's data, never a secret's.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlobInfo {
    pub id: Id,
    pub meta: Meta,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// A config's data; always `None` for a secret.
    pub data: Option<BlobData>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_data_never_prints() {
        let c = BlobCreate {
            kind: BlobKind::Secret,
            name: "db".into(),
            labels: BTreeMap::new(),
            data: BlobData(b"hunter2".to_vec()),
        };
        let text = format!("{c:?} {c:#?}");
        assert!(
            !text.contains("hunter2") && text.contains("<7 bytes>"),
            "{text}"
        );
    }
}
