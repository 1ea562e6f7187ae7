//! A `POST /nodes/{id}/update` body (the node's whole new `NodeSpec`) as the change meshd's
//! `node update` makes: availability, role, labels added and removed.

use std::collections::BTreeMap;

use mesh_api::NodeUpdate;
use mesh_cluster::state::{Availability, Node, NodeRole};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::unsupported::refuse_unsupported;
use crate::error::HttpError;

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiNodeSpec {
    name: String,
    labels: Option<BTreeMap<String, String>>,
    role: String,
    availability: String,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// The update that turns `current` into the spec in `body`.
pub fn node_update(current: &Node, body: &[u8]) -> Result<NodeUpdate, HttpError> {
    let spec: ApiNodeSpec = serde_json::from_slice(body)
        .map_err(|e| HttpError::bad_request(format!("invalid node spec: {e}")))?;
    refuse_unsupported("NodeSpec", &spec.rest)?;
    if !spec.name.is_empty() {
        return Err(HttpError::bad_request(
            "NodeSpec.Name is not supported by meshd: a node is named by its hostname",
        ));
    }
    let role = match spec.role.as_str() {
        "" => current.spec.role,
        "manager" => NodeRole::Manager,
        "worker" => NodeRole::Worker,
        other => {
            return Err(HttpError::bad_request(format!(
                "invalid role {other:?}: expected manager or worker"
            )));
        }
    };
    let availability = match spec.availability.as_str() {
        "" => current.spec.availability,
        "active" => Availability::Active,
        "pause" => Availability::Pause,
        "drain" => Availability::Drain,
        other => {
            return Err(HttpError::bad_request(format!(
                "invalid availability {other:?}: expected active, pause or drain"
            )));
        }
    };
    let labels = spec.labels.unwrap_or_default();
    Ok(NodeUpdate {
        node: current.id.to_string(),
        availability: (availability != current.spec.availability).then_some(availability),
        role: (role != current.spec.role).then_some(role),
        label_add: labels
            .iter()
            .filter(|(k, v)| current.spec.labels.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        label_rm: current
            .spec
            .labels
            .keys()
            .filter(|k| !labels.contains_key(*k))
            .cloned()
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_cluster::Id;
    use mesh_cluster::state::{Meta, NodeDescription, NodeSpec, NodeStatus};

    fn node() -> Node {
        Node {
            id: Id::from("n1"),
            meta: Meta::default(),
            spec: NodeSpec {
                role: NodeRole::Worker,
                availability: Availability::Active,
                labels: BTreeMap::from([("zone".into(), "a".into()), ("old".into(), "x".into())]),
            },
            description: NodeDescription::default(),
            status: NodeStatus::default(),
            manager_status: None,
            attachments: BTreeMap::new(),
        }
    }

    #[test]
    fn the_new_spec_becomes_the_change() {
        // What `docker node update --availability drain --label-add zone=b --label-rm old`
        // sends: the whole spec as read, changed (swagger `NodeSpec`).
        let body = br#"{"Labels":{"zone":"b"},"Role":"worker","Availability":"drain"}"#;
        let u = node_update(&node(), body).unwrap();
        assert_eq!(u.node, "n1");
        assert_eq!(u.availability, Some(Availability::Drain));
        assert_eq!(u.role, None);
        assert_eq!(u.label_add, [("zone".to_owned(), "b".to_owned())]);
        assert_eq!(u.label_rm, ["old"]);
    }

    #[test]
    fn bad_values_are_named() {
        let e = node_update(&node(), br#"{"Availability":"sleep"}"#).unwrap_err();
        assert!(
            e.message.contains("\"sleep\"") && e.message.contains("drain"),
            "{}",
            e.message
        );
        let e = node_update(&node(), br#"{"Role":"boss"}"#).unwrap_err();
        assert_eq!(e.status, 400);
    }
}
