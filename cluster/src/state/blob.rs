//! Secrets and configs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::Id;
use crate::state::Meta;

/// A secret or a config: a named blob delivered only to nodes running a task that uses it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    pub id: Id,
    pub meta: Meta,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub data: Vec<u8>,
}
