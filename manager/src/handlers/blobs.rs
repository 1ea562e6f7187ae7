//! `secret` and `config` (create, ls, inspect, rm): pure checks and transactions of the state, as
//! swarmkit words its errors, and a thin [`BlobApi`] that seals the data with the cluster's data
//! key before anything reaches raft.

use mesh_api::{
    ApiError, BlobCreate, BlobData, BlobInfo, BlobKind, Code, Reply, Request, now_millis,
};
use mesh_cluster::Id;
use mesh_cluster::spec::limits::check_labels;
use mesh_cluster::state::{Blob, ClusterState, Kind, Meta, Millis, Object, Op, Tx};

use crate::lookup::find_blob;
use crate::manager::Manager;

/// swarmkit's limits: a secret up to 500 KiB, a config up to 1000 KiB.
pub const MAX_SECRET_SIZE: usize = 500 * 1024;
pub const MAX_CONFIG_SIZE: usize = 1000 * 1024;
/// Names: 1 to 64 of `[a-zA-Z0-9-_.]`, starting and ending with a letter or digit.
const MAX_NAME: usize = 64;

fn kind_of(kind: BlobKind) -> Kind {
    match kind {
        BlobKind::Secret => Kind::Secret,
        BlobKind::Config => Kind::Config,
    }
}

pub fn blobs(state: &ClusterState, kind: BlobKind) -> &std::collections::BTreeMap<Id, Blob> {
    match kind {
        BlobKind::Secret => &state.secrets,
        BlobKind::Config => &state.configs,
    }
}

/// swarmkit's name rule, with its message.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && edge(name.chars().next())
        && edge(name.chars().last());
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "invalid name {name:?}: only {MAX_NAME} [a-zA-Z0-9-_.] characters allowed, and the start and end character must be [a-zA-Z0-9]"
        )))
    }
}

/// Everything `create` checks before the data is sealed: name, labels, size, a name in use.
pub fn check_create(state: &ClusterState, c: &BlobCreate) -> Result<(), ApiError> {
    let what = c.kind.as_str();
    check_name(&c.name)?;
    check_labels(what, &c.labels).map_err(|e| ApiError::invalid(e.to_string()))?;
    let max = match c.kind {
        BlobKind::Secret => MAX_SECRET_SIZE,
        BlobKind::Config => MAX_CONFIG_SIZE,
    };
    if c.data.0.is_empty() || c.data.0.len() > max {
        return Err(ApiError::invalid(format!(
            "{what} data must be larger than 0 and less than {} KB ({} bytes given)",
            max / 1024,
            c.data.0.len()
        )));
    }
    if blobs(state, c.kind).values().any(|b| b.name == c.name) {
        return Err(ApiError::new(
            Code::Conflict,
            format!("{what} {} already exists", c.name),
        ));
    }
    Ok(())
}

/// `create`: the object with its data already sealed.
pub fn create_tx(
    state: &ClusterState,
    c: &BlobCreate,
    sealed: Vec<u8>,
    id: &Id,
    now: Millis,
) -> Result<Tx, ApiError> {
    check_create(state, c)?;
    let blob = Blob {
        id: id.clone(),
        meta: Meta::default(),
        name: c.name.clone(),
        labels: c.labels.clone(),
        data: sealed,
    };
    let object = match c.kind {
        BlobKind::Secret => Object::Secret(blob),
        BlobKind::Config => Object::Config(blob),
    };
    Ok(Tx {
        at: now,
        ops: vec![Op::Put(object)],
    })
}

/// The services whose tasks use blob `id`, by name.
pub fn users(state: &ClusterState, kind: BlobKind, id: &Id) -> Vec<String> {
    let mut names: Vec<String> = state
        .services
        .values()
        .filter(|s| {
            let c = &s.spec.task.container;
            let refs = match kind {
                BlobKind::Secret => &c.secrets,
                BlobKind::Config => &c.configs,
            };
            refs.iter().any(|r| r.id == *id)
        })
        .map(|s| s.spec.name.clone())
        .collect();
    names.sort();
    names
}

/// `rm`: refused while a service uses it, naming the services, as swarmkit says it.
pub fn remove_tx(
    state: &ClusterState,
    kind: BlobKind,
    query: &str,
    now: Millis,
) -> Result<Tx, ApiError> {
    let b = find_blob(state, kind, query)?;
    let users = users(state, kind, &b.id);
    if !users.is_empty() {
        let plural = if users.len() == 1 { "" } else { "s" };
        return Err(ApiError::invalid(format!(
            "{} '{}' is in use by the following service{plural}: {}",
            kind.as_str(),
            b.name,
            users.join(", ")
        )));
    }
    Ok(Tx {
        at: now,
        ops: vec![Op::Delete {
            kind: kind_of(kind),
            id: b.id.clone(),
            version: b.meta.version,
        }],
    })
}

/// The secret and config requests of the cluster API (writes arrive here on the leader).
pub struct BlobApi<'m> {
    pub(crate) m: &'m Manager,
}

impl BlobApi<'_> {
    pub async fn serve(&self, req: Request) -> Result<Reply, ApiError> {
        match req {
            Request::BlobCreate(c) => {
                // Checked before the key is fetched or made: bad input changes nothing.
                check_create(&self.m.state(), &c)?;
                let sealed = self.m.data_key().await?.seal(&c.data.0);
                let id = Id::random();
                self.m
                    .with_retries(|s| create_tx(s, &c, sealed.clone(), &id, now_millis()).map(Some))
                    .await?;
                tracing::info!(kind = c.kind.as_str(), name = %c.name, %id, "created");
                Ok(Reply::BlobCreated { id })
            }
            Request::BlobList { kind } => {
                let view = self.m.read().await?;
                let mut list: Vec<BlobInfo> = blobs(&view.applied.state, kind)
                    .values()
                    .map(|b| info(b, None))
                    .collect();
                list.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(Reply::Blobs(list))
            }
            Request::BlobInspect { kind, name } => {
                let view = self.m.read().await?;
                let b = find_blob(&view.applied.state, kind, &name)?;
                // A config's data is shown, as Docker shows it; a secret's never leaves raft
                // except towards a task that uses it.
                let data = match kind {
                    BlobKind::Config => Some(BlobData(self.m.data_key().await?.open(&b.data)?)),
                    BlobKind::Secret => None,
                };
                Ok(Reply::Blob(Box::new(info(b, data))))
            }
            Request::BlobRemove { kind, name } => {
                self.m
                    .with_retries(|s| remove_tx(s, kind, &name, now_millis()).map(Some))
                    .await
            }
            other => Err(ApiError::internal(format!(
                "{} is not a secret or config request",
                other.name()
            ))),
        }
    }
}

fn info(b: &Blob, data: Option<BlobData>) -> BlobInfo {
    BlobInfo {
        id: b.id.clone(),
        meta: b.meta.clone(),
        name: b.name.clone(),
        labels: b.labels.clone(),
        data,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use mesh_cluster::state::FileReference;

    use super::*;

    fn create(kind: BlobKind, name: &str, data: &[u8]) -> BlobCreate {
        BlobCreate {
            kind,
            name: name.into(),
            labels: BTreeMap::new(),
            data: BlobData(data.to_vec()),
        }
    }

    fn stored(state: &mut ClusterState, c: &BlobCreate, id: &str) {
        let tx = create_tx(state, c, b"sealed".to_vec(), &Id::from(id), 1).unwrap();
        state.apply(&tx, 1).unwrap();
    }

    #[test]
    fn names_follow_swarmkit() {
        for ok in ["db", "db_password", "a.b-c_9", "x"] {
            check_name(ok).unwrap();
        }
        for bad in ["", "-db", "db-", "a b", "ä", &"a".repeat(65), "a/b"] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.contains("[a-zA-Z0-9-_.]"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn create_refuses_bad_input_by_name() {
        let mut s = ClusterState::default();
        stored(&mut s, &create(BlobKind::Secret, "db", b"pw"), "s1");
        let cases = [
            (
                create(BlobKind::Secret, "db", b"x"),
                "secret db already exists",
            ),
            (
                create(BlobKind::Secret, "empty", b""),
                "larger than 0 and less than 500 KB",
            ),
            (
                create(BlobKind::Secret, "big", &vec![0; MAX_SECRET_SIZE + 1]),
                "less than 500 KB",
            ),
            (
                create(BlobKind::Config, "big", &vec![0; MAX_CONFIG_SIZE + 1]),
                "less than 1000 KB",
            ),
            (create(BlobKind::Config, "-x", b"x"), "invalid name"),
        ];
        for (c, want) in cases {
            let e = create_tx(&s, &c, Vec::new(), &Id::from("n"), 1)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{}: {e}", c.name);
        }
        // A secret and a config may share a name.
        create_tx(
            &s,
            &create(BlobKind::Config, "db", b"x"),
            Vec::new(),
            &Id::from("c"),
            1,
        )
        .unwrap();
    }

    #[test]
    fn remove_is_refused_while_a_service_uses_it() {
        let mut s = ClusterState::default();
        stored(&mut s, &create(BlobKind::Secret, "db", b"pw"), "s1");
        let mut spec = mesh_cluster::state::ServiceSpec {
            name: "web".into(),
            ..Default::default()
        };
        spec.task.container.secrets.push(FileReference {
            id: Id::from("s1"),
            name: "db".into(),
            target: "db".into(),
            uid: "0".into(),
            gid: "0".into(),
            mode: 0o444,
        });
        let svc = mesh_cluster::orchestrator::new_service(spec, Id::from("svc1"));
        s.services.insert(svc.id.clone(), svc);
        let e = remove_tx(&s, BlobKind::Secret, "db", 2)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("secret 'db' is in use by the following service: web"),
            "{e}"
        );
        s.services.clear();
        let tx = remove_tx(&s, BlobKind::Secret, "db", 2).unwrap();
        s.apply(&tx, 2).unwrap();
        assert!(s.secrets.is_empty());
        let e = remove_tx(&s, BlobKind::Secret, "db", 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such secret: db"), "{e}");
    }
}
