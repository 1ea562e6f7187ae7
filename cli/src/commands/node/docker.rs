//! Nodes as docker shows them: the JSON of `node inspect` (swarm's `Node`: `Spec.Labels`,
//! `Description.Hostname`, `Status.State`, `ManagerStatus.Leader`, ...), the rows of `node ls`
//! and its filters.

use mesh_cluster::Id;
use mesh_cluster::state::{Availability, Node, NodeRole, NodeState, Reachability};
use serde_json::{Value, json};

use super::{availability_word, manager_status_word, state_word};
use crate::commands::service::inspect::{object, rfc3339};
use crate::format::{FilterArg, Filters, ListFormat};

/// Docker's `node ls` table.
pub const NODE_LIST: ListFormat = ListFormat {
    table: "table {{.ID}} {{if .Self}}*{{else}} {{ end }}\t{{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}\t{{.EngineVersion}}",
    headers: &[
        ("ID", "ID"),
        ("Self", ""),
        ("Hostname", "HOSTNAME"),
        ("Status", "STATUS"),
        ("Availability", "AVAILABILITY"),
        ("ManagerStatus", "MANAGER STATUS"),
        ("EngineVersion", "ENGINE VERSION"),
        ("TLSStatus", "TLS STATUS"),
    ],
};

/// One row of `node ls`, docker's fields. Every node's certificate comes from the current
/// root, so its TLS status is `Ready`.
pub fn node_row(n: &Node, self_id: &Id) -> Value {
    json!({
        "ID": n.id.as_str(),
        "Self": &n.id == self_id,
        "Hostname": n.description.hostname,
        "Status": state_word(n.status.state),
        "Availability": availability_word(n.spec.availability),
        "ManagerStatus": manager_status_word(n),
        "EngineVersion": n.description.engine_version,
        "TLSStatus": "Ready",
    })
}

/// The filters of `node ls`, checked before anything is asked.
pub fn node_filters(args: &[FilterArg]) -> anyhow::Result<Filters> {
    let f = Filters::new(
        args,
        &["id", "label", "membership", "name", "node.label", "role"],
    )?;
    f.check_values("role", &["manager", "worker"], |v| {
        format!("Invalid role filter: '{v}'")
    })?;
    f.check_values("membership", &["accepted", "pending"], |v| {
        format!("Invalid membership filter: '{v}'")
    })?;
    Ok(f)
}

/// Docker's node filters: `id` and `name` (the hostname) by prefix, `label` the engine's
/// labels, `node.label` the node's own. A node in the swarm has been accepted.
pub fn node_matches(f: &Filters, n: &Node) -> bool {
    let role = match n.spec.role {
        NodeRole::Manager => "manager",
        NodeRole::Worker => "worker",
    };
    let node_labels = Filters::new(
        &f.values("node.label")
            .iter()
            .map(|v| FilterArg {
                key: "label".into(),
                value: v.clone(),
            })
            .collect::<Vec<_>>(),
        &["label"],
    )
    .unwrap_or_default();
    f.any("id", |v| n.id.as_str().starts_with(v))
        && f.any("name", |v| n.description.hostname.starts_with(v))
        && f.any("role", |v| v.eq_ignore_ascii_case(role))
        && f.any("membership", |v| v.eq_ignore_ascii_case("accepted"))
        && f.labels_match(&n.description.engine_labels)
        && node_labels.labels_match(&n.spec.labels)
}

fn lower_state(s: NodeState) -> &'static str {
    match s {
        NodeState::Unknown => "unknown",
        NodeState::Down => "down",
        NodeState::Ready => "ready",
        NodeState::Disconnected => "disconnected",
    }
}

fn lower_availability(a: Availability) -> &'static str {
    match a {
        Availability::Active => "active",
        Availability::Pause => "pause",
        Availability::Drain => "drain",
    }
}

/// A node as `docker node inspect` prints it (`ca_pem`: the cluster's root, its TLS info).
pub fn node_json(n: &Node, ca_pem: &str) -> Value {
    let d = &n.description;
    let (subject, key) = mesh_api::tls::issuer_info(ca_pem).unwrap_or_default();
    let manager = n.manager_status.as_ref().map_or(Value::Null, |m| {
        json!({
            "Leader": m.leader,
            "Reachability": match m.reachability {
                Reachability::Reachable => "reachable",
                Reachability::Unreachable => "unreachable",
                Reachability::Unknown => "unknown",
            },
            "Addr": m.addr,
        })
    });
    object(vec![
        ("ID", json!(n.id.as_str())),
        ("Version", json!({"Index": n.meta.version})),
        ("CreatedAt", json!(rfc3339(n.meta.created_at))),
        ("UpdatedAt", json!(rfc3339(n.meta.updated_at))),
        (
            "Spec",
            json!({
                "Labels": n.spec.labels,
                "Role": match n.spec.role {
                    NodeRole::Manager => "manager",
                    NodeRole::Worker => "worker",
                },
                "Availability": lower_availability(n.spec.availability),
            }),
        ),
        (
            "Description",
            object(vec![
                ("Hostname", json!(d.hostname)),
                ("Platform", json!({"Architecture": d.arch, "OS": d.os})),
                (
                    "Resources",
                    json!({"NanoCPUs": d.resources.nano_cpus, "MemoryBytes": d.resources.memory_bytes}),
                ),
                (
                    "Engine",
                    object(vec![
                        ("EngineVersion", json!(d.engine_version)),
                        ("Labels", json!(d.engine_labels)),
                    ]),
                ),
                (
                    "TLSInfo",
                    object(vec![
                        ("TrustRoot", json!(ca_pem)),
                        ("CertIssuerSubject", json!(subject)),
                        ("CertIssuerPublicKey", json!(key)),
                    ]),
                ),
            ]),
        ),
        (
            "Status",
            object(vec![
                ("State", json!(lower_state(n.status.state))),
                ("Message", json!(n.status.message)),
                ("Addr", json!(n.status.addr.map(|a| a.to_string()))),
            ]),
        ),
        ("ManagerStatus", manager),
    ])
}
