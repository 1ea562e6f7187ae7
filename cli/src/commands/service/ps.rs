//! `service ps` and `node ps`: tasks as docker prints them, filtered and formatted as docker's.

use std::io::Write;

use anyhow::Result;
use mesh_api::{Reply, Request, ServiceTasksReply};
use mesh_cluster::Id;
use mesh_cluster::state::{ClusterState, Task};
use serde_json::{Value, json};

use super::client::{Conn, now_ms};
use crate::commands::{Target, unexpected};
use crate::format::{FilterArg, Filters, ListFormat, write_list};

/// Docker's task table (`service ps`, `node ps`, `stack ps`).
pub const TASK_LIST: ListFormat = ListFormat {
    table: "table {{.ID}}\t{{.Name}}\t{{.Image}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}\t{{.Ports}}",
    headers: &[
        ("ID", "ID"),
        ("Name", "NAME"),
        ("Image", "IMAGE"),
        ("Node", "NODE"),
        ("DesiredState", "DESIRED STATE"),
        ("CurrentState", "CURRENT STATE"),
        ("Error", "ERROR"),
        ("Ports", "PORTS"),
    ],
};

/// Swarm's task states, the values `desired-state` takes.
const TASK_STATES: [&str; 14] = [
    "new",
    "pending",
    "assigned",
    "accepted",
    "preparing",
    "ready",
    "starting",
    "running",
    "complete",
    "shutdown",
    "failed",
    "rejected",
    "remove",
    "orphaned",
];

/// How a `ps` prints: `--no-trunc`, `--quiet`, `--format`.
#[derive(Clone, Copy, Debug, Default)]
pub struct PsOutput<'a> {
    pub no_trunc: bool,
    pub quiet: bool,
    pub format: Option<&'a str>,
}

/// The filters of a task list, checked before anything is asked.
pub fn task_filters(args: &[FilterArg]) -> Result<Filters> {
    let f = Filters::new(args, &["desired-state", "id", "label", "name", "node"])?;
    f.check_values("desired-state", &TASK_STATES, |v| {
        format!("Invalid desired-state filter: '{v}'")
    })?;
    Ok(f)
}

/// `service ps SERVICE...`.
pub(super) fn run(
    target: &Target,
    services: Vec<String>,
    filter: &[FilterArg],
    how: PsOutput<'_>,
    out: &mut impl Write,
) -> Result<()> {
    let f = task_filters(filter)?;
    let conn = Conn::new(target)?;
    let self_id = self_id_if_asked(&conn, &f)?;
    let r = conn.tasks(services)?;
    let tasks = select(&r, &f, self_id.as_ref(), None);
    write_list(
        out,
        &TASK_LIST,
        how.format,
        how.quiet,
        &task_rows(&r, tasks, how.no_trunc),
    )
}

/// `node ps [NODE...]`: the tasks on the nodes (this node by default, `self` too).
pub fn node_ps(
    target: &Target,
    nodes: &[String],
    filter: &[FilterArg],
    how: PsOutput<'_>,
    out: &mut impl Write,
) -> Result<()> {
    let f = task_filters(filter)?;
    let conn = Conn::new(target)?;
    let Reply::Nodes(list) = conn.call(&Request::NodeList)? else {
        return Err(anyhow::anyhow!("unexpected answer from meshd to node ls"));
    };
    let asked = if nodes.is_empty() {
        vec!["self".to_owned()]
    } else {
        nodes.to_vec()
    };
    let mut ids = Vec::new();
    for q in &asked {
        let id = if q == "self" {
            list.self_id.clone()
        } else {
            match conn.call(&Request::NodeInspect { node: q.clone() })? {
                Reply::Node(n) => n.node.id,
                other => return Err(unexpected(&other)),
            }
        };
        ids.push(id);
    }
    let services = match conn.call(&Request::ServiceList)? {
        Reply::Services(s) => s.into_iter().map(|s| s.service.id.to_string()).collect(),
        other => return Err(unexpected(&other)),
    };
    let r = conn.tasks(services)?;
    let tasks = select(&r, &f, Some(&list.self_id), Some(&ids));
    write_list(
        out,
        &TASK_LIST,
        how.format,
        how.quiet,
        &task_rows(&r, tasks, how.no_trunc),
    )
}

/// This node's id, when a filter says `node=self`.
fn self_id_if_asked(conn: &Conn, f: &Filters) -> Result<Option<Id>> {
    if !f.values("node").iter().any(|v| v == "self") {
        return Ok(None);
    }
    match conn.call(&Request::NodeList)? {
        Reply::Nodes(n) => Ok(Some(n.self_id)),
        other => Err(unexpected(&other)),
    }
}

/// A mini state holding what a task list needs, for `mesh_cluster::naming::ps_rows`.
fn state_of(r: &ServiceTasksReply, tasks: Vec<Task>) -> ClusterState {
    ClusterState {
        nodes: r.nodes.iter().map(|n| (n.id.clone(), n.clone())).collect(),
        services: r
            .services
            .iter()
            .map(|s| (s.id.clone(), s.clone()))
            .collect(),
        tasks: tasks.into_iter().map(|t| (t.id.clone(), t)).collect(),
        ..ClusterState::default()
    }
}

/// The tasks that pass the filters (and are on one of `on_nodes`, when given). A node is
/// named by id, id prefix, hostname, or `self`.
fn select(
    r: &ServiceTasksReply,
    f: &Filters,
    self_id: Option<&Id>,
    on_nodes: Option<&[Id]>,
) -> Vec<Task> {
    let name_of = |t: &Task| {
        r.services
            .iter()
            .find(|s| s.id == t.service_id)
            .map(|s| mesh_cluster::naming::task_name(&s.spec.name, t))
            .unwrap_or_default()
    };
    let node_is = |n: &Id, v: &str| {
        (v == "self" && self_id == Some(n))
            || n.as_str().starts_with(v)
            || r.nodes
                .iter()
                .any(|x| &x.id == n && x.description.hostname == v)
    };
    r.tasks
        .iter()
        .filter(|t| {
            on_nodes.is_none_or(|ids| t.node_id.as_ref().is_some_and(|n| ids.contains(n)))
                && f.any("desired-state", |v| {
                    t.desired_state.as_str().eq_ignore_ascii_case(v)
                })
                && f.any("node", |v| {
                    t.node_id.as_ref().is_some_and(|n| node_is(n, v))
                })
                && f.any("id", |v| t.id.as_str().starts_with(v))
                && f.any("name", |v| name_of(t).starts_with(v))
                && f.labels_match(&t.spec.container.labels)
        })
        .cloned()
        .collect()
}

/// The rows of a task list, docker's fields.
fn task_rows(r: &ServiceTasksReply, tasks: Vec<Task>, no_trunc: bool) -> Vec<Value> {
    let state = state_of(r, tasks);
    let ids: Vec<&Id> = r.services.iter().map(|s| &s.id).collect();
    mesh_cluster::naming::ps_rows(&state, &ids, now_ms(), no_trunc)
        .into_iter()
        .map(|row| {
            json!({
                "ID": if no_trunc { row.task_id.to_string() } else { row.id },
                "Name": row.name,
                "Image": row.image,
                "Node": row.node,
                "DesiredState": row.desired,
                "CurrentState": row.current,
                "Error": row.error,
                "Ports": row.ports,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::parse_filter_arg;

    #[test]
    fn task_filters_are_checked_as_dockers() {
        let bad = |s: &str| {
            task_filters(&[parse_filter_arg(s).unwrap()])
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            bad("desired-state=sideways"),
            "Error response from daemon: Invalid desired-state filter: 'sideways'"
        );
        assert_eq!(
            bad("mode=global"),
            "Error response from daemon: Invalid filter 'mode'"
        );
        assert!(task_filters(&[parse_filter_arg("desired-state=Running").unwrap()]).is_ok());
    }
}
