//! `meshctl status`, as `cilium status` is to Cilium: one line per part of the local node
//! (engine, swarm, data path and the programs attached per interface, map fill, gossip peers,
//! DNS listeners, raft), each OK or degraded, and a non-zero exit when anything is degraded. A
//! peer that gossip sees down counts: the node cannot reach that node's tasks.

use std::io::Write;

use anyhow::Result;
use mesh_api::status::{Check, NodeStatus};
use mesh_api::{Reply, Request};

use super::{Target, call, unexpected};
use crate::format::template::{Missing, Template};

/// The exit code when something is degraded.
pub const DEGRADED: i32 = 1;

/// The lines of the table (pure).
pub fn lines(s: &NodeStatus) -> Vec<String> {
    let checks = s.checks();
    let width = checks.iter().map(|c| c.item.len()).max().unwrap_or(0) + 1;
    let mut out = vec![format!("{:width$} {}", "Node:", s.hostname)];
    out.extend(checks.iter().map(|c: &Check| {
        format!(
            "{:width$} {:8} {}",
            format!("{}:", c.item),
            if c.ok { "OK" } else { "DEGRADED" },
            c.detail
        )
    }));
    if let Some(m) = &s.mesh {
        let services: Vec<String> = m
            .services
            .iter()
            .map(|c| {
                format!(
                    "{} {} pkts {} conns",
                    c.service_name, c.packets, c.connections
                )
            })
            .collect();
        if !services.is_empty() {
            out.push(format!("{:width$} {}", "Services:", services.join(", ")));
        }
    }
    out
}

pub fn run(target: &Target, format: Option<&str>, out: &mut impl Write) -> Result<i32> {
    // A bad template is refused before the node is asked.
    let template = match format {
        None | Some("json") => None,
        Some(t) => Some(Template::parse(t)?),
    };
    let status = match call(target, &Request::Status)? {
        Reply::Status(s) => *s,
        other => return Err(unexpected(&other)),
    };
    if let Some(t) = template {
        let doc = serde_json::to_value(&status)?;
        writeln!(out, "{}", t.render(&doc, Missing::NoValue)?)?;
    } else if format == Some("json") {
        writeln!(out, "{}", serde_json::to_string_pretty(&status)?)?;
    } else {
        for l in lines(&status) {
            writeln!(out, "{l}")?;
        }
    }
    Ok(if status.degraded() { DEGRADED } else { 0 })
}

#[cfg(test)]
mod tests {
    use mesh_api::status::{GossipPeer, Id, MeshStatus, PeerState};

    use super::*;

    #[test]
    fn a_dead_peer_prints_degraded() {
        let s = NodeStatus {
            hostname: "n1".into(),
            node_id: Some(Id::from("a")),
            mesh: Some(MeshStatus {
                datapath: "tc".into(),
                loaded: true,
                ..MeshStatus::default()
            }),
            gossip: vec![GossipPeer {
                node_id: Id::from("c"),
                hostname: "n3".into(),
                state: PeerState::Dead,
            }],
            ..NodeStatus::default()
        };
        let l = lines(&s);
        assert!(l[0].ends_with(" n1"), "{l:?}");
        let gossip = l.iter().find(|l| l.starts_with("Gossip:")).unwrap();
        assert!(gossip.contains("DEGRADED"), "{gossip}");
        assert!(gossip.contains("n3 dead"), "{gossip}");
        let engine = l.iter().find(|l| l.starts_with("Engine:")).unwrap();
        assert!(engine.contains(" OK "), "{engine}");
    }
}
