//! `mesh-metrics`: meshd's Prometheus metrics ([`encode`]) and the small HTTP server that serves
//! them with `/healthz` ([`serve`]).
//!
//! Every metric is made at scrape time from one [`NodeStatus`], the snapshot the node's daemon
//! answers `meshctl status` with: the parts keep their own counters (the BPF maps, the DNS
//! server, openraft), so there is nothing to keep in step here, and this crate depends on no part
//! of meshd but the API's types. Names follow Prometheus' conventions: `meshd_` prefix, base
//! units (seconds, bytes), `_total` on counters.

mod http;

use std::fmt::Write as _;

use mesh_api::status::{Histogram, MapFill, NodeRole, NodeStatus, PeerState, ServiceSample};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use http::{HealthSource, Response, StatusFuture, bind, respond, serve};

/// How long a scrape waits for the daemon's status.
const STATUS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves `/metrics` and `/healthz` on `addr`, from the status of the daemon listening on its
/// local socket `sock` (asked once per scrape, as `meshctl status` does).
pub async fn start(
    addr: std::net::SocketAddr,
    sock: std::path::PathBuf,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = bind(addr).await?;
    let client = mesh_api::transport::Client::local(&sock);
    let source: HealthSource = std::sync::Arc::new(move || {
        let client = client.clone();
        Box::pin(async move {
            match client
                .call_with_timeout(&mesh_api::Request::Status, STATUS_TIMEOUT)
                .await
            {
                Ok(mesh_api::Reply::Status(s)) => Ok(*s),
                Ok(_) => Err("the daemon answered something else than its status".to_owned()),
                Err(e) => Err(format!("the daemon does not answer: {e}")),
            }
        })
    });
    tracing::info!(%addr, "serving /metrics and /healthz");
    Ok(tokio::spawn(serve(listener, source)))
}

/// The content type of [`encode`]'s text (the `OpenMetrics` format, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A histogram kept by a part ([`Histogram`]) and shipped whole: encoded as it is.
#[derive(Debug)]
struct Snapshot(Histogram);

impl EncodeMetric for Snapshot {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = self
            .0
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.0.counts.iter().copied())
            .collect();
        encoder.encode_histogram::<NoLabelSet>(self.0.sum, self.0.count(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// A family of gauges, registered under `name`.
fn gauges(reg: &mut Registry, name: &str, help: &str, rows: Vec<(Labels, u64)>) {
    let family = Family::<Labels, Gauge>::default();
    for (l, v) in rows {
        family.get_or_create(&l).set(gauge_value(v));
    }
    reg.register(name, help, family);
}

/// A family of counters, registered under `name` (the encoder adds `_total`).
fn counters(reg: &mut Registry, name: &str, help: &str, rows: Vec<(Labels, u64)>) {
    let family = Family::<Labels, Counter>::default();
    for (l, v) in rows {
        family.get_or_create(&l).inc_by(v);
    }
    reg.register(name, help, family);
}

fn gauge(reg: &mut Registry, name: &str, help: &str, v: u64) {
    gauges(reg, name, help, vec![(Vec::new(), v)]);
}

/// The metrics of one snapshot, as `OpenMetrics` text (pure).
pub fn encode(s: &NodeStatus) -> String {
    let mut reg = Registry::default();
    node_metrics(&mut reg, s);
    mesh_metrics(&mut reg, s);
    control_metrics(&mut reg, s);
    dns_metrics(&mut reg, s);
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &reg).is_err() {
        // Writing to a String does not fail; say so in the body rather than panic if it did.
        let _ = writeln!(out, "# encoding failed");
    }
    out
}

fn node_metrics(reg: &mut Registry, s: &NodeStatus) {
    let role = match s.role {
        Some(NodeRole::Manager) => "manager",
        Some(NodeRole::Worker) => "worker",
        None => "none",
    };
    let node_id = s.node_id.as_ref().map_or("", |i| i.as_str());
    let datapath = s.mesh.as_ref().map_or("none", |m| m.datapath.as_str());
    gauges(
        reg,
        "meshd_node_info",
        "The node: hostname, node id, role, data path (always 1)",
        vec![(
            labels(&[
                ("node", &s.hostname),
                ("node_id", node_id),
                ("role", role),
                ("datapath", datapath),
            ]),
            1,
        )],
    );
    gauge(
        reg,
        "meshd_engine_reachable",
        "1 when the node's Docker engine answers",
        u64::from(s.engine_error.is_none()),
    );
    gauge(
        reg,
        "meshd_degraded",
        "1 when meshctl status reports anything degraded",
        u64::from(s.degraded()),
    );
}

fn mesh_metrics(reg: &mut Registry, s: &NodeStatus) {
    let Some(m) = &s.mesh else {
        gauge(
            reg,
            "meshd_mesh_loaded",
            "1 when the routing mesh's programs are loaded",
            0,
        );
        return;
    };
    gauge(
        reg,
        "meshd_mesh_loaded",
        "1 when the routing mesh's programs are loaded",
        u64::from(m.loaded),
    );
    let per_service = |f: fn(&ServiceSample) -> u64| {
        m.services
            .iter()
            .map(|c| {
                (
                    labels(&[("service", &c.service_name), ("node", &s.hostname)]),
                    f(c),
                )
            })
            .collect::<Vec<_>>()
    };
    counters(
        reg,
        "meshd_mesh_packets",
        "Packets the node's programs translated for the service, both directions",
        per_service(|c| c.packets),
    );
    counters(
        reg,
        "meshd_mesh_bytes",
        "Bytes the node's programs translated for the service, both directions",
        per_service(|c| c.bytes),
    );
    counters(
        reg,
        "meshd_mesh_connections",
        "Flows the node's programs created for the service",
        per_service(|c| c.connections),
    );
    counters(
        reg,
        "meshd_mesh_socket_connects",
        "connect() calls the node's socket programs translated for the service (no per-packet NAT)",
        per_service(|c| c.socket_connects),
    );
    counters(
        reg,
        "meshd_mesh_socket_datagrams",
        "Unconnected UDP datagrams the node's socket programs translated for the service",
        per_service(|c| c.socket_datagrams),
    );
    gauges(
        reg,
        "meshd_mesh_attached_programs",
        "Programs of the routing mesh attached to each interface",
        m.interfaces
            .iter()
            .map(|(i, p)| (labels(&[("interface", i)]), p.len() as u64))
            .collect(),
    );
    let fill = |f: fn(&MapFill) -> u64| {
        m.maps
            .iter()
            .map(|x| (labels(&[("map", &x.name)]), f(x)))
            .collect::<Vec<_>>()
    };
    gauges(
        reg,
        "meshd_map_entries",
        "Entries in each BPF map",
        fill(|x| x.entries),
    );
    gauges(
        reg,
        "meshd_map_capacity",
        "Size of each BPF map",
        fill(|x| x.capacity),
    );
    let ct = m.maps.iter().find(|x| x.name == "mesh_ct");
    gauge(
        reg,
        "meshd_conntrack_entries",
        "Conntrack entries (one per direction of a flow)",
        ct.map_or(0, |x| x.entries),
    );
    reg.register(
        "meshd_map_programming_duration_seconds",
        "Time to write a new desired state into the maps",
        Snapshot(m.programming.clone()),
    );
}

fn control_metrics(reg: &mut Registry, s: &NodeStatus) {
    let mut members = [0u64; 3];
    for p in &s.gossip {
        members[match p.state {
            PeerState::Alive => 0,
            PeerState::Dead => 1,
            PeerState::Unknown => 2,
        }] += 1;
    }
    gauges(
        reg,
        "meshd_gossip_members",
        "Other nodes of the cluster by what this node's gossip says of them",
        [PeerState::Alive, PeerState::Dead, PeerState::Unknown]
            .iter()
            .zip(members)
            .map(|(st, n)| (labels(&[("state", st.as_str())]), n))
            .collect(),
    );
    if let Some(r) = &s.raft {
        gauge(reg, "meshd_raft_term", "The manager's raft term", r.term);
        gauge(
            reg,
            "meshd_raft_leader",
            "1 when this manager leads",
            u64::from(r.role == "leader"),
        );
        gauge(
            reg,
            "meshd_raft_has_leader",
            "1 when this manager knows a leader",
            u64::from(r.leader.is_some()),
        );
        gauge(
            reg,
            "meshd_raft_last_log_index",
            "Index of the last entry in the manager's raft log",
            r.last_log_index,
        );
        gauge(
            reg,
            "meshd_raft_applied_index",
            "Index of the last entry applied to the manager's state",
            r.applied_index,
        );
        gauge(
            reg,
            "meshd_raft_members",
            "Managers in raft's membership",
            r.members,
        );
        gauges(
            reg,
            "meshd_tasks",
            "The cluster's tasks by current state (on managers)",
            s.tasks
                .iter()
                .map(|(st, n)| (labels(&[("state", st)]), *n))
                .collect(),
        );
    }
}

fn dns_metrics(reg: &mut Registry, s: &NodeStatus) {
    let d = &s.dns;
    counters(
        reg,
        "meshd_dns_queries",
        "DNS queries by outcome: answered by the node, or forwarded upstream",
        vec![
            (labels(&[("result", "answered")]), d.answered),
            (labels(&[("result", "forwarded")]), d.forwarded),
        ],
    );
    counters(
        reg,
        "meshd_dns_nxdomain",
        "DNS replies NXDOMAIN",
        vec![(Vec::new(), d.nxdomain)],
    );
    counters(
        reg,
        "meshd_dns_truncated",
        "DNS replies truncated (TC set)",
        vec![(Vec::new(), d.truncated)],
    );
    counters(
        reg,
        "meshd_dns_forward_failures",
        "Forwarded DNS queries answered SERVFAIL (no upstream in time)",
        vec![(Vec::new(), d.forward_failed)],
    );
    counters(
        reg,
        "meshd_dns_forward_refused",
        "DNS queries not relayed upstream: from outside the cluster's overlays, or over a task's rate",
        vec![(Vec::new(), d.forward_refused)],
    );
    reg.register(
        "meshd_dns_query_duration_seconds",
        "Time from a DNS query's arrival to its reply (answered here or relayed)",
        Snapshot(d.latency.clone()),
    );
    gauge(
        reg,
        "meshd_dns_listeners",
        "Addresses the node's DNS server answers on",
        d.listeners.len() as u64,
    );
}

#[cfg(test)]
mod tests;
