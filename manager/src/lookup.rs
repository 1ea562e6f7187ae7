//! One lookup for every object the API names: by full id, by name (a node's hostname), or by a
//! unique id prefix, as Docker finds them.

use mesh_api::ApiError;
use mesh_api::BlobKind;
use mesh_cluster::Id;
use mesh_cluster::state::{Blob, ClusterState, Network, Node, Service, Task};

/// How an object of one kind is named, and how its "not found" reads.
trait Named {
    fn id(&self) -> &Id;
    /// None: it has no name to be found by.
    fn name(&self) -> Option<&str>;
}

impl Named for Service {
    fn id(&self) -> &Id {
        &self.id
    }
    fn name(&self) -> Option<&str> {
        Some(&self.spec.name)
    }
}

impl Named for Network {
    fn id(&self) -> &Id {
        &self.id
    }
    fn name(&self) -> Option<&str> {
        Some(&self.spec.name)
    }
}

impl Named for Node {
    fn id(&self) -> &Id {
        &self.id
    }
    fn name(&self) -> Option<&str> {
        Some(&self.description.hostname)
    }
}

impl Named for Blob {
    fn id(&self) -> &Id {
        &self.id
    }
    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }
}

impl Named for Task {
    fn id(&self) -> &Id {
        &self.id
    }
    fn name(&self) -> Option<&str> {
        None
    }
}

/// What a lookup found.
enum Found<'a, T> {
    One(&'a T),
    None,
    Many(usize),
}

/// By full id, then by name (every match), then by unique id prefix.
fn lookup<'a, T: Named>(
    objects: &'a std::collections::BTreeMap<Id, T>,
    query: &str,
) -> Found<'a, T> {
    if let Some(o) = objects.get(&Id::from(query)) {
        return Found::One(o);
    }
    let by_name: Vec<&T> = objects
        .values()
        .filter(|o| o.name() == Some(query))
        .collect();
    let found: Vec<&T> = if by_name.is_empty() {
        objects
            .values()
            .filter(|o| o.id().matches_prefix(query))
            .collect()
    } else {
        by_name
    };
    match found.as_slice() {
        [o] => Found::One(o),
        [] => Found::None,
        many => Found::Many(many.len()),
    }
}

impl<'a, T> Found<'a, T> {
    /// The one object found, or an error as Docker words it.
    fn answer(
        self,
        what: &str,
        query: &str,
        missing: impl FnOnce() -> String,
    ) -> Result<&'a T, ApiError> {
        match self {
            Found::One(o) => Ok(o),
            Found::None => Err(ApiError::not_found(missing())),
            Found::Many(n) => Err(ApiError::invalid(format!(
                "{what} {query} is ambiguous ({n} matches found)"
            ))),
        }
    }
}

/// A service: its full id, its name, or a unique id prefix.
pub fn find_service<'a>(state: &'a ClusterState, query: &str) -> Result<&'a Service, ApiError> {
    lookup(&state.services, query).answer("service", query, || format!("no such service: {query}"))
}

/// A network: its full id, its name, or a unique id prefix.
pub fn find_network<'a>(state: &'a ClusterState, query: &str) -> Result<&'a Network, ApiError> {
    lookup(&state.networks, query).answer("network", query, || format!("network {query} not found"))
}

/// A node: its full id, its hostname, or a unique id prefix.
pub fn find_node<'a>(state: &'a ClusterState, query: &str) -> Result<&'a Node, ApiError> {
    lookup(&state.nodes, query).answer("node", query, || format!("node {query} not found"))
}

/// A secret or a config: its full id, its name, or a unique id prefix.
pub fn find_blob<'a>(
    state: &'a ClusterState,
    kind: BlobKind,
    query: &str,
) -> Result<&'a Blob, ApiError> {
    let what = kind.as_str();
    lookup(crate::handlers::blobs::blobs(state, kind), query)
        .answer(what, query, || format!("no such {what}: {query}"))
}

/// A task: its full id or a unique id prefix.
pub fn find_task<'a>(state: &'a ClusterState, query: &str) -> Option<&'a Task> {
    match lookup(&state.tasks, query) {
        Found::One(t) => Some(t),
        Found::None | Found::Many(_) => None,
    }
}
