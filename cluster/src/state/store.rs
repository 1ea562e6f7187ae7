//! [`ClusterState`], everything raft replicates, and how a transaction is applied to it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::Id;
use crate::state::{
    Blob, ClusterInfo, Kind, Meta, Network, Node, Object, Op, Service, Task, Tx, TxError,
};

/// Everything raft replicates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub cluster: Option<ClusterInfo>,
    pub nodes: BTreeMap<Id, Node>,
    pub networks: BTreeMap<Id, Network>,
    pub services: BTreeMap<Id, Service>,
    pub tasks: BTreeMap<Id, Task>,
    pub secrets: BTreeMap<Id, Blob>,
    pub configs: BTreeMap<Id, Blob>,
}

impl ClusterState {
    /// Applies `tx` as the raft entry at `index`: all of it, or none of it with the reason.
    pub fn apply(&mut self, tx: &Tx, index: u64) -> Result<(), TxError> {
        for op in &tx.ops {
            self.check(op)?;
        }
        // Names must also be unique among the objects this transaction creates or renames.
        let mut seen: Vec<(Kind, &str, &Id)> = Vec::new();
        for op in &tx.ops {
            if let Op::Put(o) = op
                && let Some(name) = o.unique_name()
            {
                let id = match o {
                    Object::Network(n) => &n.id,
                    Object::Service(s) => &s.id,
                    Object::Secret(b) | Object::Config(b) => &b.id,
                    _ => unreachable!(),
                };
                if seen
                    .iter()
                    .any(|(k, n, other)| *k == o.kind() && *n == name && *other != id)
                {
                    return Err(TxError::NameTaken {
                        kind: o.kind(),
                        name: name.to_owned(),
                    });
                }
                seen.push((o.kind(), name, id));
            }
        }
        for op in &tx.ops {
            match op {
                Op::Put(o) => {
                    let mut o = o.clone();
                    let kind = o.kind();
                    let (id, _) = o.id_meta();
                    let created_at = self
                        .meta_of(kind, &id.clone())
                        .map_or(tx.at, |m| m.created_at);
                    let (_, meta) = o.id_meta();
                    meta.created_at = created_at;
                    meta.updated_at = tx.at;
                    meta.version = index;
                    self.insert(o);
                }
                Op::Delete { kind, id, .. } => self.remove(*kind, id),
            }
        }
        Ok(())
    }

    fn check(&self, op: &Op) -> Result<(), TxError> {
        match op {
            Op::Put(o) => {
                let mut o = o.clone();
                let kind = o.kind();
                let name = o.unique_name().map(str::to_owned);
                let (id, meta) = o.id_meta();
                let found = self.version_of(kind, id);
                if found != meta.version {
                    return Err(TxError::Conflict {
                        kind,
                        id: id.clone(),
                        expected: meta.version,
                        found,
                    });
                }
                if let Some(name) = name
                    && self
                        .id_by_name(kind, &name)
                        .is_some_and(|other| other != *id)
                {
                    return Err(TxError::NameTaken { kind, name });
                }
                Ok(())
            }
            Op::Delete { kind, id, version } => match self.version_of(*kind, id) {
                0 => Err(TxError::Missing {
                    kind: *kind,
                    id: id.clone(),
                }),
                found if found != *version => Err(TxError::Conflict {
                    kind: *kind,
                    id: id.clone(),
                    expected: *version,
                    found,
                }),
                _ => Ok(()),
            },
        }
    }

    /// The stored version of an object; 0 when absent.
    pub fn version_of(&self, kind: Kind, id: &Id) -> u64 {
        self.meta_of(kind, id).map_or(0, |m| m.version)
    }

    fn meta_of(&self, kind: Kind, id: &Id) -> Option<&Meta> {
        match kind {
            Kind::Cluster => self
                .cluster
                .as_ref()
                .filter(|c| &c.id == id)
                .map(|c| &c.meta),
            Kind::Node => self.nodes.get(id).map(|o| &o.meta),
            Kind::Network => self.networks.get(id).map(|o| &o.meta),
            Kind::Service => self.services.get(id).map(|o| &o.meta),
            Kind::Task => self.tasks.get(id).map(|o| &o.meta),
            Kind::Secret => self.secrets.get(id).map(|o| &o.meta),
            Kind::Config => self.configs.get(id).map(|o| &o.meta),
        }
    }

    /// The id of the network, service, secret or config called `name`.
    pub fn id_by_name(&self, kind: Kind, name: &str) -> Option<Id> {
        match kind {
            Kind::Network => self
                .networks
                .values()
                .find(|n| n.spec.name == name)
                .map(|n| n.id.clone()),
            Kind::Service => self
                .services
                .values()
                .find(|s| s.spec.name == name)
                .map(|s| s.id.clone()),
            Kind::Secret => self
                .secrets
                .values()
                .find(|b| b.name == name)
                .map(|b| b.id.clone()),
            Kind::Config => self
                .configs
                .values()
                .find(|b| b.name == name)
                .map(|b| b.id.clone()),
            _ => None,
        }
    }

    /// Stores `o` as it is (no version checks), for scratch copies of the state.
    pub(crate) fn insert(&mut self, o: Object) {
        match o {
            Object::Cluster(c) => self.cluster = Some(c),
            Object::Node(n) => {
                self.nodes.insert(n.id.clone(), n);
            }
            Object::Network(n) => {
                self.networks.insert(n.id.clone(), n);
            }
            Object::Service(s) => {
                self.services.insert(s.id.clone(), s);
            }
            Object::Task(t) => {
                self.tasks.insert(t.id.clone(), t);
            }
            Object::Secret(b) => {
                self.secrets.insert(b.id.clone(), b);
            }
            Object::Config(b) => {
                self.configs.insert(b.id.clone(), b);
            }
        }
    }

    pub(crate) fn remove(&mut self, kind: Kind, id: &Id) {
        match kind {
            Kind::Cluster => self.cluster = None,
            Kind::Node => drop(self.nodes.remove(id)),
            Kind::Network => drop(self.networks.remove(id)),
            Kind::Service => drop(self.services.remove(id)),
            Kind::Task => drop(self.tasks.remove(id)),
            Kind::Secret => drop(self.secrets.remove(id)),
            Kind::Config => drop(self.configs.remove(id)),
        }
    }

    /// The tasks of one service.
    pub fn tasks_of(&self, service: &Id) -> impl Iterator<Item = &Task> {
        self.tasks
            .values()
            .filter(move |t| &t.service_id == service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::*;

    fn net(id: &str, name: &str, version: u64) -> Object {
        Object::Network(Network {
            id: Id::from(id),
            meta: Meta {
                version,
                ..Meta::default()
            },
            spec: NetworkSpec {
                name: name.into(),
                driver: "overlay".into(),
                ..NetworkSpec::default()
            },
            subnet: "10.0.1.0/24".parse().unwrap(),
            vni: 4097,
        })
    }

    #[test]
    fn puts_create_then_replace_with_versions() {
        let mut s = ClusterState::default();
        s.apply(
            &Tx {
                at: 5,
                ops: vec![Op::Put(net("a", "front", 0))],
            },
            3,
        )
        .unwrap();
        let n = &s.networks[&Id::from("a")];
        assert_eq!((n.meta.version, n.meta.created_at), (3, 5));
        // A writer that read version 0 again conflicts; one that read 3 wins.
        let stale = Tx {
            at: 6,
            ops: vec![Op::Put(net("a", "front", 0))],
        };
        assert!(matches!(s.apply(&stale, 4), Err(TxError::Conflict { .. })));
        s.apply(
            &Tx {
                at: 7,
                ops: vec![Op::Put(net("a", "front", 3))],
            },
            5,
        )
        .unwrap();
        assert_eq!(s.networks[&Id::from("a")].meta.version, 5);
        assert_eq!(s.networks[&Id::from("a")].meta.created_at, 5);
    }

    #[test]
    fn a_refused_transaction_changes_nothing() {
        let mut s = ClusterState::default();
        s.apply(
            &Tx {
                at: 1,
                ops: vec![Op::Put(net("a", "front", 0))],
            },
            1,
        )
        .unwrap();
        let before = s.clone();
        let tx = Tx {
            at: 2,
            ops: vec![
                Op::Put(net("b", "back", 0)),
                Op::Put(net("c", "front", 0)), // name taken by "a"
            ],
        };
        assert!(matches!(s.apply(&tx, 2), Err(TxError::NameTaken { .. })));
        assert_eq!(s, before);
        let dup = Tx {
            at: 2,
            ops: vec![Op::Put(net("b", "x", 0)), Op::Put(net("c", "x", 0))],
        };
        assert!(matches!(s.apply(&dup, 2), Err(TxError::NameTaken { .. })));
        let del = Tx {
            at: 2,
            ops: vec![Op::Delete {
                kind: Kind::Network,
                id: Id::from("zz"),
                version: 1,
            }],
        };
        assert!(matches!(s.apply(&del, 2), Err(TxError::Missing { .. })));
        assert_eq!(s, before);
    }
}
