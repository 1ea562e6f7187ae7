//! Transactions: the objects they carry, their changes, and why one is refused.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::Id;
use crate::state::{Blob, ClusterInfo, Meta, Millis, Network, Node, Service, Task};

/// Any stored object.
#[expect(
    clippy::large_enum_variant,
    reason = "objects are built once per write; boxing buys nothing"
)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Object {
    Cluster(ClusterInfo),
    Node(Node),
    Network(Network),
    Service(Service),
    Task(Task),
    Secret(Blob),
    Config(Blob),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Cluster,
    Node,
    Network,
    Service,
    Task,
    Secret,
    Config,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Cluster => "cluster",
            Kind::Node => "node",
            Kind::Network => "network",
            Kind::Service => "service",
            Kind::Task => "task",
            Kind::Secret => "secret",
            Kind::Config => "config",
        })
    }
}

/// One change in a transaction.
#[expect(clippy::large_enum_variant, reason = "as Object")]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// Create (when `meta.version` is 0) or replace (when it equals the stored version).
    Put(Object),
    /// Remove the object, whose stored version must equal `version`.
    Delete { kind: Kind, id: Id, version: u64 },
}

/// Changes applied together or not at all.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tx {
    /// When the proposer made it; becomes `created_at`/`updated_at`.
    pub at: Millis,
    pub ops: Vec<Op>,
}

/// Why a transaction was refused. The state is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum TxError {
    #[error("{kind} {id} changed since it was read (version {expected}, now {found})")]
    Conflict {
        kind: Kind,
        id: Id,
        expected: u64,
        found: u64,
    },
    #[error("{kind} {id} does not exist")]
    Missing { kind: Kind, id: Id },
    #[error("{kind} name {name:?} is already in use")]
    NameTaken { kind: Kind, name: String },
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Cluster(_) => Kind::Cluster,
            Object::Node(_) => Kind::Node,
            Object::Network(_) => Kind::Network,
            Object::Service(_) => Kind::Service,
            Object::Task(_) => Kind::Task,
            Object::Secret(_) => Kind::Secret,
            Object::Config(_) => Kind::Config,
        }
    }

    pub(super) fn id_meta(&mut self) -> (&Id, &mut Meta) {
        match self {
            Object::Cluster(o) => (&o.id, &mut o.meta),
            Object::Node(o) => (&o.id, &mut o.meta),
            Object::Network(o) => (&o.id, &mut o.meta),
            Object::Service(o) => (&o.id, &mut o.meta),
            Object::Task(o) => (&o.id, &mut o.meta),
            Object::Secret(o) | Object::Config(o) => (&o.id, &mut o.meta),
        }
    }

    /// The name that must be unique within its kind, if the kind has one.
    pub(super) fn unique_name(&self) -> Option<&str> {
        match self {
            Object::Network(n) => Some(&n.spec.name),
            Object::Service(s) => Some(&s.spec.name),
            Object::Secret(b) | Object::Config(b) => Some(&b.name),
            _ => None,
        }
    }
}
