//! `meshctl version` and `meshctl info`, laid out as docker's: a `Client:` block, then what the
//! node says (`Server:`), with docker's `Swarm:` section in `info`. Both take `--format`, run on
//! documents shaped as docker's (`{{.Client.Version}}`, `{{.Swarm.LocalNodeState}}`,
//! `{{.Swarm.Managers}}`).
//!
//! The node answers `info` on its local socket only; the node and manager counts come from the
//! managers (`node ls`), so a worker's `info` has none, as a Swarm worker's has none.

use std::fmt::Write as _;
use std::io::Write;

use anyhow::Result;
use mesh_api::{Info, Reply, Request};
use mesh_cluster::state::{Node, NodeRole};
use serde_json::{Value, json};

use super::{Target, call};
use crate::format::template::{Missing, Template};

/// The client's own facts.
fn client_json() -> Value {
    json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "Os": std::env::consts::OS,
        "Arch": go_arch(std::env::consts::ARCH),
    })
}

/// Go's name of a CPU architecture (`amd64`, `arm64`), as docker prints `OS/Arch`.
fn go_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// This node as the managers list it, when this node can ask them (a manager's socket).
fn this_node(target: &Target) -> Option<(Node, Vec<Node>)> {
    match call(target, &Request::NodeList).ok()? {
        Reply::Nodes(r) => {
            let me = r.nodes.iter().find(|n| n.id == r.self_id)?.clone();
            Some((me, r.nodes))
        }
        _ => None,
    }
}

/// The `Swarm` block of docker's `info` (`LocalNodeState`, `NodeID`, `ControlAvailable`,
/// `Managers`, `Nodes`, `RemoteManagers`, `Cluster.ID`).
pub fn swarm_json(info: &Info, nodes: Option<&[Node]>) -> Value {
    let Some(node_id) = &info.node_id else {
        return json!({"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
            "ControlAvailable": false, "Error": "", "RemoteManagers": null});
    };
    let managers: Vec<Value> = info
        .managers
        .iter()
        .map(|a| json!({"NodeID": "", "Addr": a}))
        .collect();
    let mut v = json!({
        "NodeID": node_id.as_str(),
        "NodeAddr": info.node_addr.map(|a| a.to_string()).unwrap_or_default(),
        // An autolocked manager that restarted: docker's `locked`.
        "LocalNodeState": if info.locked { "locked" } else { "active" },
        "ControlAvailable": info.role == Some(NodeRole::Manager) && !info.locked,
        "Error": "",
        "RemoteManagers": managers,
    });
    if let Some(nodes) = nodes {
        v["Nodes"] = json!(nodes.len());
        v["Managers"] = json!(nodes.iter().filter(|n| n.manager_status.is_some()).count());
        v["Cluster"] = json!({"ID": info.cluster_id.as_ref().map(|c| c.as_str().to_owned()).unwrap_or_default()});
    }
    v
}

/// `info` as docker prints it (the parts meshd has).
pub fn info_text(doc: &Value) -> String {
    let mut o = String::new();
    let c = &doc["Client"];
    let _ = writeln!(o, "Client:\n Version:    {}", str_of(&c["Version"]));
    let _ = writeln!(o, "\nServer:");
    let s = &doc["Swarm"];
    let _ = writeln!(o, " Swarm: {}", str_of(&s["LocalNodeState"]));
    if str_of(&s["LocalNodeState"]) != "active" {
        return o;
    }
    let _ = writeln!(o, "  NodeID: {}", str_of(&s["NodeID"]));
    let manager = s["ControlAvailable"].as_bool() == Some(true);
    let _ = writeln!(o, "  Is Manager: {manager}");
    if manager {
        let _ = writeln!(o, "  ClusterID: {}", str_of(&s["Cluster"]["ID"]));
        if let (Some(m), Some(n)) = (s["Managers"].as_u64(), s["Nodes"].as_u64()) {
            let _ = writeln!(o, "  Managers: {m}\n  Nodes: {n}");
        }
    }
    let _ = writeln!(o, "  Node Address: {}", str_of(&s["NodeAddr"]));
    let _ = writeln!(o, "  Manager Addresses:");
    for m in s["RemoteManagers"].as_array().into_iter().flatten() {
        let _ = writeln!(o, "   {}", str_of(&m["Addr"]));
    }
    o
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// `meshctl info`.
pub fn info(target: &Target, format: Option<&str>, out: &mut impl Write) -> Result<i32> {
    let info = match call(target, &Request::Info)? {
        Reply::Info(i) => i,
        other => return Err(super::unexpected(&other)),
    };
    let nodes = this_node(target).map(|(_, all)| all);
    let me = nodes.as_deref().and_then(|all| {
        all.iter()
            .find(|n| Some(&n.id) == info.node_id.as_ref())
            .cloned()
    });
    let doc = json!({
        "Client": client_json(),
        "Swarm": swarm_json(&info, nodes.as_deref()),
        "Name": me.as_ref().map(|n| n.description.hostname.clone()).unwrap_or_default(),
        "ServerVersion": me.as_ref().map(|n| n.description.engine_version.clone()).unwrap_or_default(),
    });
    match format {
        None => write!(out, "{}", info_text(&doc))?,
        Some(f) => writeln!(out, "{}", render(f, &doc)?)?,
    }
    Ok(0)
}

fn render(format: &str, doc: &Value) -> Result<String> {
    let text = if format == "json" {
        "{{json .}}"
    } else {
        format
    };
    Template::parse(text)?.render(doc, Missing::NoValue)
}

fn role_word(r: NodeRole) -> &'static str {
    match r {
        NodeRole::Manager => "manager",
        NodeRole::Worker => "worker",
    }
}

/// The `Server` block of `version`: the node's Docker engine (as the managers list it) and
/// meshd's view of the node (from the node itself, a worker too).
fn server_json(target: &Target) -> Option<Value> {
    if let Some((me, _)) = this_node(target) {
        return Some(json!({
            "Components": [
                {"Name": "Engine", "Version": me.description.engine_version,
                 "Details": {"Os": me.description.os, "Arch": go_arch(&me.description.arch)}},
                {"Name": "meshd", "Version": "",
                 "Details": {"Node": me.description.hostname, "NodeID": me.id.as_str(),
                    "Role": role_word(me.spec.role)}},
            ],
        }));
    }
    let Ok(Reply::Status(st)) = call(target, &Request::Status) else {
        return None;
    };
    Some(json!({
        "Components": [
            {"Name": "meshd", "Version": "",
             "Details": {"Node": st.hostname,
                "NodeID": st.node_id.map(|i| i.to_string()).unwrap_or_default(),
                "Role": st.role.map_or("none", role_word)}},
        ],
    }))
}

/// `version` as docker prints it.
pub fn version_text(doc: &Value) -> String {
    let mut o = String::new();
    let c = &doc["Client"];
    let _ = writeln!(o, "Client:");
    let _ = writeln!(o, " Version:           {}", str_of(&c["Version"]));
    let _ = writeln!(
        o,
        " OS/Arch:           {}/{}",
        str_of(&c["Os"]),
        str_of(&c["Arch"])
    );
    let Some(components) = doc["Server"]["Components"].as_array() else {
        return o;
    };
    let _ = writeln!(o, "\nServer:");
    for comp in components {
        let _ = writeln!(o, " {}:", str_of(&comp["Name"]));
        let version = str_of(&comp["Version"]);
        if !version.is_empty() {
            let _ = writeln!(o, "  Version:          {version}");
        }
        for (k, v) in comp["Details"].as_object().into_iter().flatten() {
            let _ = writeln!(o, "  {:<17} {}", format!("{k}:"), str_of(v));
        }
    }
    o
}

/// `meshctl version`: the client's block always; the server's when the node answers (exit 1
/// otherwise, as docker's).
pub fn version(target: &Target, format: Option<&str>, out: &mut impl Write) -> Result<i32> {
    let server = server_json(target);
    let doc = json!({"Client": client_json(), "Server": server});
    match format {
        None => write!(out, "{}", version_text(&doc))?,
        Some(f) => writeln!(out, "{}", render(f, &doc)?)?,
    }
    if server.is_none() {
        // Docker prints the client's block, then why there is no server's.
        call(target, &Request::Status)?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use mesh_cluster::Id;

    use super::*;

    fn info() -> Info {
        Info {
            node_id: Some(Id::from("n1id")),
            cluster_id: Some(Id::from("cid")),
            role: Some(NodeRole::Manager),
            node_addr: Some("198.18.0.11".parse().unwrap()),
            managers: vec!["198.18.0.11:2377".into()],
            ..Info::default()
        }
    }

    #[test]
    fn info_has_dockers_swarm_section() {
        let doc = json!({"Client": client_json(), "Swarm": swarm_json(&info(), Some(&[]))});
        let text = info_text(&doc);
        assert!(
            text.contains(
                "\nServer:\n Swarm: active\n  NodeID: n1id\n  Is Manager: true\n  ClusterID: cid\n  Managers: 0\n  Nodes: 0\n  Node Address: 198.18.0.11\n  Manager Addresses:\n   198.18.0.11:2377\n"
            ),
            "{text}"
        );
        assert_eq!(
            render(
                "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
                &doc
            )
            .unwrap(),
            "active true"
        );
        let out = swarm_json(&Info::default(), None);
        assert_eq!(out["LocalNodeState"], "inactive");
        let text = info_text(&json!({"Client": client_json(), "Swarm": out}));
        assert!(text.ends_with("Server:\n Swarm: inactive\n"), "{text}");
        let locked = Info {
            locked: true,
            ..info()
        };
        let out = swarm_json(&locked, None);
        assert_eq!(
            (&out["LocalNodeState"], &out["ControlAvailable"]),
            (&json!("locked"), &json!(false))
        );
        let text = info_text(&json!({"Client": client_json(), "Swarm": out}));
        assert!(text.ends_with("Server:\n Swarm: locked\n"), "{text}");
    }

    #[test]
    fn version_has_client_and_server_blocks() {
        let doc = json!({"Client": {"Version": "0.1.0", "Os": "linux", "Arch": "amd64"},
            "Server": {"Components": [{"Name": "Engine", "Version": "20.10.24",
                "Details": {"Arch": "amd64", "Os": "linux"}}]}});
        assert_eq!(
            version_text(&doc),
            "Client:\n Version:           0.1.0\n OS/Arch:           linux/amd64\n\nServer:\n Engine:\n  Version:          20.10.24\n  Arch:             amd64\n  Os:               linux\n"
        );
        assert_eq!(render("{{.Client.Version}}", &doc).unwrap(), "0.1.0");
        assert_eq!(go_arch("x86_64"), "amd64");
    }
}
