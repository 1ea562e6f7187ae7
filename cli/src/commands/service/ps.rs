//! `service ps`: the tasks of one or more services, as Docker prints them.

use std::io::Write;

use anyhow::{Result, bail};
use mesh_api::ServiceTasksReply;
use mesh_cluster::state::{ClusterState, Task};

use super::client::{Conn, now_ms};
use crate::commands::Target;

/// `service ps`, with `--no-trunc` and `--quiet`.
pub(super) fn run(
    target: &Target,
    services: Vec<String>,
    filter: &[String],
    (no_trunc, quiet): (bool, bool),
    out: &mut impl Write,
) -> Result<()> {
    let conn = Conn::new(target)?;
    let r = conn.tasks(services)?;
    let tasks = task_filter(&r, filter)?;
    let rows = ps_table(&r, tasks, no_trunc, quiet);
    if quiet {
        for row in rows {
            writeln!(out, "{}", row[0])?;
        }
    } else {
        crate::table::write(out, &rows)?;
    }
    Ok(())
}

/// A mini state holding what `service ps` needs, for `mesh_cluster::naming::ps_rows`.
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

/// `service ps --filter`: `desired-state`, `node`, `id`, `name`.
fn task_filter(r: &ServiceTasksReply, filters: &[String]) -> Result<Vec<Task>> {
    let mut parsed = Vec::new();
    for f in filters {
        let Some((k, v)) = f.split_once('=') else {
            bail!("invalid filter {f:?}: expected KEY=VALUE (desired-state, node, id, name)");
        };
        match k {
            "desired-state" => {
                let ok = ["running", "shutdown", "accepted", "ready", "remove"];
                if !ok.contains(&v) {
                    bail!(
                        "invalid filter 'desired-state={v}': expected running, shutdown, accepted, ready or remove"
                    );
                }
            }
            "node" | "id" | "name" => {}
            other => bail!("invalid filter {other:?}: expected desired-state, node, id or name"),
        }
        parsed.push((k, v));
    }
    let name_of = |t: &Task| {
        r.services
            .iter()
            .find(|s| s.id == t.service_id)
            .map(|s| mesh_cluster::naming::task_name(&s.spec.name, t))
            .unwrap_or_default()
    };
    Ok(r.tasks
        .iter()
        .filter(|t| {
            parsed.iter().all(|(k, v)| match *k {
                "desired-state" => t.desired_state.as_str() == *v,
                "node" => t.node_id.as_ref().is_some_and(|n| {
                    n.as_str() == *v
                        || r.nodes
                            .iter()
                            .any(|x| &x.id == n && x.description.hostname == *v)
                }),
                "id" => t.id.as_str().starts_with(v),
                "name" => name_of(t).starts_with(v),
                _ => true,
            })
        })
        .cloned()
        .collect())
}

/// `service ps` as Docker prints it.
fn ps_table(
    r: &ServiceTasksReply,
    tasks: Vec<Task>,
    no_trunc: bool,
    quiet: bool,
) -> Vec<Vec<String>> {
    let state = state_of(r, tasks);
    let ids: Vec<&mesh_cluster::Id> = r.services.iter().map(|s| &s.id).collect();
    let rows = mesh_cluster::naming::ps_rows(&state, &ids, now_ms(), no_trunc);
    if quiet {
        return rows
            .into_iter()
            .map(|r| {
                vec![if no_trunc {
                    r.task_id.to_string()
                } else {
                    r.id
                }]
            })
            .collect();
    }
    let mut out = vec![
        [
            "ID",
            "NAME",
            "IMAGE",
            "NODE",
            "DESIRED STATE",
            "CURRENT STATE",
            "ERROR",
            "PORTS",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for row in rows {
        out.push(vec![
            if no_trunc {
                row.task_id.to_string()
            } else {
                row.id
            },
            row.name,
            row.image,
            row.node,
            row.desired,
            row.current,
            row.error,
            row.ports,
        ]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_filters_select_tasks() {
        let e = task_filter(
            &ServiceTasksReply {
                services: vec![],
                tasks: vec![],
                nodes: vec![],
            },
            &["desired-state=sideways".into()],
        )
        .unwrap_err();
        assert!(e.to_string().contains("expected running, shutdown"), "{e}");
    }
}
