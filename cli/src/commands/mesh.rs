//! `meshctl mesh stats`: the routing mesh's counters, per service and node, as the nodes last
//! reported them to the leader (every second while they change). A node counts what its own
//! programs translate: the published-port flows that arrive on it (both directions) and the
//! VIP flows its tasks open, so the rows of one service add up to its whole traffic.

use std::io::Write;

use anyhow::Result;
use clap::Subcommand;
use mesh_api::{MeshStatsRow, Reply, Request};
use serde_json::json;

use super::{Target, call, unexpected};
use crate::format::{ListFormat, write_list};

#[derive(Subcommand, Debug)]
pub enum MeshCommand {
    /// The routing mesh's counters per service and node: packets and bytes translated (both
    /// directions), connections (flows) created.
    Stats {
        /// A Go template ('{{.Service}} {{.Packets}}'), or `json`: one JSON object per row.
        #[arg(long)]
        format: Option<String>,
        /// Only these services (names, ids or id prefixes); all by default.
        services: Vec<String>,
    },
}

/// The `mesh stats` table.
pub const STATS_LIST: ListFormat = ListFormat {
    table: "table {{.Service}}\t{{.Ports}}\t{{.Node}}\t{{.Packets}}\t{{.Bytes}}\t{{.Connections}}",
    headers: &[
        ("Service", "SERVICE"),
        ("ServiceID", "SERVICE ID"),
        ("Ports", "PORTS"),
        ("Node", "NODE"),
        ("NodeID", "NODE ID"),
        ("Packets", "PACKETS"),
        ("Bytes", "BYTES"),
        ("Connections", "CONNECTIONS"),
        ("ReportedMsAgo", "REPORTED MS AGO"),
    ],
};

/// One row: the fields `--format` knows.
pub fn row_json(r: &MeshStatsRow) -> serde_json::Value {
    json!({
        "Service": r.service_name,
        "ServiceID": r.service_id.as_str(),
        "Ports": r.ports,
        "Node": r.hostname,
        "NodeID": r.node_id.as_str(),
        "Packets": r.packets,
        "Bytes": r.bytes,
        "Connections": r.connections,
        "ReportedMsAgo": r.age_ms,
    })
}

/// Asks the leader for the counters of `services` (all when empty).
pub fn fetch(target: &Target, services: Vec<String>) -> Result<Vec<MeshStatsRow>> {
    match call(target, &Request::MeshStats { services })? {
        Reply::MeshStats(rows) => Ok(rows),
        other => Err(unexpected(&other)),
    }
}

pub fn run(target: &Target, cmd: MeshCommand, out: &mut impl Write) -> Result<i32> {
    match cmd {
        MeshCommand::Stats { format, services } => {
            let rows: Vec<serde_json::Value> =
                fetch(target, services)?.iter().map(row_json).collect();
            write_list(out, &STATS_LIST, format.as_deref(), false, &rows)?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use mesh_cluster::Id;

    use super::*;

    fn row(service: &str, node: &str, packets: u64) -> MeshStatsRow {
        MeshStatsRow {
            service_id: Id::from(format!("{service}-id").as_str()),
            service_name: service.into(),
            ports: "*:8080->80/tcp".into(),
            node_id: Id::from(format!("{node}-id").as_str()),
            hostname: node.into(),
            packets,
            bytes: packets * 100,
            connections: packets / 10,
            age_ms: 300,
        }
    }

    #[test]
    fn rows_print_per_service_and_node() {
        let rows = [row("web", "n1", 40), row("web", "n2", 0)];
        let json: Vec<serde_json::Value> = rows.iter().map(row_json).collect();
        assert_eq!(
            crate::format::render_list(&STATS_LIST, None, false, &json).unwrap(),
            "SERVICE   PORTS            NODE      PACKETS   BYTES     CONNECTIONS\n\
             web       *:8080->80/tcp   n1        40        4000      4\n\
             web       *:8080->80/tcp   n2        0         0         0\n"
        );
        let j = row_json(&rows[0]).to_string();
        assert!(
            j.starts_with(
                r#"{"Service":"web","ServiceID":"web-id","Ports":"*:8080->80/tcp","Node":"n1""#
            ),
            "{j}"
        );
    }
}
