//! Secrets and configs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::Id;
use crate::state::Meta;

/// A secret or a config: a named blob delivered only to nodes running a task that uses it.
/// `data` is sealed with the cluster's data key by the manager that stored it (raft never holds
/// the clear bytes); `Debug` prints only its length.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    pub id: Id,
    pub meta: Meta,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blob")
            .field("id", &self.id)
            .field("meta", &self.meta)
            .field("name", &self.name)
            .field("labels", &self.labels)
            .field("data", &format_args!("<{} sealed bytes>", self.data.len()))
            .finish()
    }
}
