//! The scale scenario's pure half: the services it programs (the mesh's desired state, fed to
//! the same planner and loader meshd uses, and kube-proxy's iptables layout for the same
//! services), its results and their tables. `run::scale` does the I/O.
//!
//! Every size has `n` services of [`BACKENDS`] backends each. Service `i` publishes
//! `MESH_PORT_BASE + i` on the mesh and `IPTABLES_PORT_BASE + i` as a kube-proxy `NodePort`; the
//! client always asks the last one, so in iptables its rules are the last of every chain it
//! crosses (`SERVICES` holds a `ClusterIP` rule per service before the jump to `NODEPORTS`).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use mesh_dataplane::{
    DesiredMesh, Protocol, PublishMode, PublishedPort, Service, Task, TaskAddress,
};
use serde::{Deserialize, Serialize};

use crate::bpfstats::ProgCost;
use crate::report::{Figure, Table};

/// Backends per service (addresses of the one backend namespace).
pub const BACKENDS: u8 = 3;
/// Service `i`'s published port on the mesh.
pub const MESH_PORT_BASE: u16 = 30000;
/// Service `i`'s `NodePort` in iptables.
pub const IPTABLES_PORT_BASE: u16 = 40000;
/// The backend's port for mesh flows, and for iptables flows (apart, so no reply tuple is
/// shared: the mesh and MASQUERADE both keep the client's source port).
pub const MESH_TARGET: u16 = 8080;
pub const IPTABLES_TARGET: u16 = 18080;
/// The ingress network's VNI (as meshd's).
pub const INGRESS_VNI: u32 = 4096;
/// The backend namespace's MAC on the ingress bridge (all its addresses share it).
pub const BACKEND_MAC: [u8; 6] = [0x02, 0x42, 0xaa, 0x01, 0x00, 0x01];

/// Backend `j`'s address: 10.255.0.10 + j.
pub fn backend_addr(j: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 255, 0, 10 + j)
}

/// Service `i`'s `ClusterIP` in the iptables layout: 10.96.0.0/16, from .1.
pub fn cluster_ip(i: usize) -> Ipv4Addr {
    let n = u32::try_from(i + 1).unwrap_or(u32::MAX) & 0xffff;
    Ipv4Addr::from(0x0a60_0000 | n)
}

fn port(base: u16, i: usize) -> u16 {
    base + u16::try_from(i).unwrap_or(u16::MAX - base)
}

/// The mesh's desired state for `n` services, each with every backend on this node.
pub fn desired_mesh(n: usize, node: Ipv4Addr) -> DesiredMesh {
    let tasks: Vec<Task> = (0..BACKENDS)
        .map(|j| Task {
            id: format!("backend-{j}"),
            node_addr: node,
            local: true,
            endpoints: vec![TaskAddress {
                vni: INGRESS_VNI,
                addr: backend_addr(j),
                mac: BACKEND_MAC,
            }],
            draining: false,
        })
        .collect();
    DesiredMesh {
        services: (0..n)
            .map(|i| Service {
                id: format!("scale-{i}"),
                ports: vec![PublishedPort {
                    protocol: Protocol::Tcp,
                    published: port(MESH_PORT_BASE, i),
                    target: MESH_TARGET,
                    mode: PublishMode::Ingress,
                }],
                vips: vec![],
                tasks: tasks.clone(),
            })
            .collect(),
    }
}

/// The port the client asks for `n` services: the last service's.
pub fn target_port(path: ScalePath, n: usize) -> u16 {
    let i = n.saturating_sub(1);
    match path {
        ScalePath::Mesh => port(MESH_PORT_BASE, i),
        ScalePath::Iptables => port(IPTABLES_PORT_BASE, i),
    }
}

/// kube-proxy's iptables mode for `n` services (`ClusterIP` and `NodePort`, [`BACKENDS`]
/// endpoints each), as `iptables-restore` input that replaces the nat and filter tables:
/// `SERVICES` → (per-service `ClusterIP` rules, then `NODEPORTS` for local destinations) →
/// `EXT` (mark for masquerade) → `SVC` (random endpoint) → `SEP` (DNAT); `POSTROUTING`
/// masquerades marked packets; `FORWARD` accepts marked and established ones.
pub fn kube_proxy_restore(n: usize) -> String {
    let mut chains = String::new();
    let mut rules = String::new();
    for c in ["SERVICES", "NODEPORTS", "MARK-MASQ", "POSTROUTING"] {
        let _ = writeln!(chains, ":SCALE-{c} - [0:0]");
    }
    rules.push_str(
        "-A PREROUTING -j SCALE-SERVICES\n\
         -A OUTPUT -j SCALE-SERVICES\n\
         -A POSTROUTING -j SCALE-POSTROUTING\n\
         -A SCALE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n\
         -A SCALE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
         -A SCALE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n\
         -A SCALE-POSTROUTING -j MASQUERADE --random-fully\n",
    );
    for i in 0..n {
        let _ = writeln!(
            rules,
            "-A SCALE-SERVICES -d {}/32 -p tcp -m tcp --dport 80 -j SCALE-SVC-{i}",
            cluster_ip(i)
        );
    }
    rules.push_str("-A SCALE-SERVICES -m addrtype --dst-type LOCAL -j SCALE-NODEPORTS\n");
    for i in 0..n {
        let _ = writeln!(
            rules,
            "-A SCALE-NODEPORTS -p tcp -m tcp --dport {} -j SCALE-EXT-{i}",
            port(IPTABLES_PORT_BASE, i)
        );
    }
    for i in 0..n {
        for c in ["SVC", "EXT"] {
            let _ = writeln!(chains, ":SCALE-{c}-{i} - [0:0]");
        }
        let _ = writeln!(
            rules,
            "-A SCALE-EXT-{i} -j SCALE-MARK-MASQ\n-A SCALE-EXT-{i} -j SCALE-SVC-{i}"
        );
        for j in 0..BACKENDS {
            let _ = writeln!(chains, ":SCALE-SEP-{i}-{j} - [0:0]");
            // kube-proxy's random split: endpoint j of k takes 1/(k-j) of what is left.
            let left = BACKENDS - j;
            if left > 1 {
                let _ = writeln!(
                    rules,
                    "-A SCALE-SVC-{i} -m statistic --mode random --probability {:.11} -j SCALE-SEP-{i}-{j}",
                    1.0 / f64::from(left)
                );
            } else {
                let _ = writeln!(rules, "-A SCALE-SVC-{i} -j SCALE-SEP-{i}-{j}");
            }
            let b = backend_addr(j);
            let _ = writeln!(
                rules,
                "-A SCALE-SEP-{i}-{j} -s {b}/32 -j SCALE-MARK-MASQ\n\
                 -A SCALE-SEP-{i}-{j} -p tcp -m tcp -j DNAT --to-destination {b}:{IPTABLES_TARGET}"
            );
        }
    }
    format!(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :POSTROUTING ACCEPT [0:0]\n{chains}{rules}COMMIT\n\
         *filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :SCALE-FORWARD - [0:0]\n-A FORWARD -j SCALE-FORWARD\n\
         -A SCALE-FORWARD -m conntrack --ctstate INVALID -j DROP\n\
         -A SCALE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT\n\
         -A SCALE-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\nCOMMIT\n"
    )
}

/// The programs of links `bpftool -j link show pinned PIN` describes (one JSON document per
/// pin, concatenated). Debian 12's bpftool does not list tcx attachments in `net show`, so the
/// scale node's programs are found through the links its mesh pinned.
pub fn attached_prog_ids(json: &str) -> anyhow::Result<Vec<u32>> {
    let docs = serde_json::Deserializer::from_str(json).into_iter::<serde_json::Value>();
    let v = docs
        .collect::<Result<Vec<_>, _>>()
        .map(serde_json::Value::Array)
        .map_err(|e| anyhow::anyhow!("bpftool -j link show: not JSON: {e}"))?;
    let mut ids = Vec::new();
    collect_ids(&v, &mut ids);
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

fn collect_ids(v: &serde_json::Value, out: &mut Vec<u32>) {
    match v {
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_ids(x, out)),
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                if k == "prog_id"
                    && let Some(id) = x.as_u64().and_then(|i| u32::try_from(i).ok())
                {
                    out.push(id);
                } else {
                    collect_ids(x, out);
                }
            }
        }
        _ => {}
    }
}

/// Which balancer a scale row measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScalePath {
    /// meshd's tc programs and maps, programmed by its planner.
    Mesh,
    /// kube-proxy's iptables layout.
    Iptables,
}

impl ScalePath {
    pub const ALL: [Self; 2] = [Self::Mesh, Self::Iptables];

    pub fn name(self) -> &'static str {
        match self {
            Self::Mesh => "mesh",
            Self::Iptables => "iptables",
        }
    }
}

/// One size through one balancer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScaleRow {
    pub path: ScalePath,
    pub services: usize,
    /// Milliseconds from an empty table to `services` programmed (`Mesh::apply`, or
    /// `iptables-restore` of the whole layout).
    pub program_ms: Figure,
    pub conn_per_s: Figure,
    pub p50_us: Figure,
    /// The mesh's programs during a separate conn/s run with the kernel's run-time statistics
    /// on (nanoseconds per run, per program).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bpf: Vec<ProgCost>,
}

impl ScaleRow {
    /// Every figure failed for one reason.
    pub fn failed(path: ScalePath, services: usize, reason: &str) -> Self {
        let f = || Figure::Failed(reason.to_owned());
        Self {
            path,
            services,
            program_ms: f(),
            conn_per_s: f(),
            p50_us: f(),
            bpf: Vec::new(),
        }
    }
}

/// The scale scenario's results.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Scale {
    /// How the services were set up and reached.
    pub wiring: String,
    pub rows: Vec<ScaleRow>,
}

fn cell(f: &Figure, decimals: usize) -> String {
    match f {
        Figure::Value(v) => format!("{v:.decimals$}"),
        Figure::NotApplicable(_) => "N/A".to_owned(),
        Figure::Failed(_) => "failed".to_owned(),
    }
}

impl Scale {
    fn row(&self, path: ScalePath, services: usize) -> Option<&ScaleRow> {
        self.rows
            .iter()
            .find(|r| r.path == path && r.services == services)
    }

    /// The sizes measured, ascending.
    pub fn sizes(&self) -> Vec<usize> {
        let mut s: Vec<usize> = self.rows.iter().map(|r| r.services).collect();
        s.sort_unstable();
        s.dedup();
        s
    }

    /// `figure` of the largest size that has one, over the smallest size's: (largest size, ratio).
    pub fn growth(
        &self,
        path: ScalePath,
        figure: impl Fn(&ScaleRow) -> &Figure,
    ) -> Option<(usize, f64)> {
        let sizes = self.sizes();
        let first = self
            .row(path, *sizes.first()?)
            .and_then(|r| figure(r).value())?;
        sizes
            .iter()
            .rev()
            .filter(|n| **n != sizes[0])
            .find_map(|n| {
                let v = figure(self.row(path, *n)?).value()?;
                (first > 0.0).then(|| (*n, v / first))
            })
    }

    /// The figures table, the growth table and (when measured) the programs' cost per run.
    pub fn tables(&self) -> Vec<Table> {
        let mut figures = Table {
            title: format!("Scale: services through one node ({})", self.wiring),
            header: [
                "path",
                "services",
                "program ms",
                "conn/s",
                "p50 us",
                "ns/packet",
            ]
            .map(str::to_owned)
            .to_vec(),
            rows: Vec::new(),
        };
        for path in ScalePath::ALL {
            for n in self.sizes() {
                let Some(r) = self.row(path, n) else { continue };
                let ns = r
                    .bpf
                    .iter()
                    .map(|c| format!("{} {:.0}", c.program, c.ns_per_run))
                    .collect::<Vec<_>>()
                    .join(", ");
                figures.rows.push(vec![
                    path.name().to_owned(),
                    n.to_string(),
                    cell(&r.program_ms, 1),
                    cell(&r.conn_per_s, 0),
                    cell(&r.p50_us, 1),
                    if ns.is_empty() { "-".to_owned() } else { ns },
                ]);
            }
        }
        let mut growth = Table {
            title: "Scale: largest size measured over the smallest (x)".to_owned(),
            header: ["path", "sizes", "program time x", "conn/s x", "p50 x"]
                .map(str::to_owned)
                .to_vec(),
            rows: Vec::new(),
        };
        let first = self.sizes().first().copied().unwrap_or(0);
        for path in ScalePath::ALL {
            let g = [
                self.growth(path, |r| &r.program_ms),
                self.growth(path, |r| &r.conn_per_s),
                self.growth(path, |r| &r.p50_us),
            ];
            let largest = g.iter().flatten().map(|(n, _)| *n).max();
            let Some(largest) = largest else { continue };
            let mut row = vec![path.name().to_owned(), format!("{largest} vs {first}")];
            row.extend(g.iter().map(|x| {
                x.map_or_else(
                    || "-".to_owned(),
                    |(n, r)| {
                        if n == largest {
                            format!("{r:.2}")
                        } else {
                            format!("{r:.2} ({n})")
                        }
                    },
                )
            }));
            growth.rows.push(row);
        }
        vec![figures, growth]
    }

    /// Why figures are missing, one line each.
    pub fn notes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.rows {
            // One line per reason, naming the figures it took.
            let mut by_reason: Vec<(&str, Vec<&str>)> = Vec::new();
            for (what, f) in [
                ("program time", &r.program_ms),
                ("conn/s", &r.conn_per_s),
                ("p50", &r.p50_us),
            ] {
                if let Figure::Failed(why) | Figure::NotApplicable(why) = f {
                    match by_reason.iter_mut().find(|(w, _)| *w == why.as_str()) {
                        Some((_, whats)) => whats.push(what),
                        None => by_reason.push((why, vec![what])),
                    }
                }
            }
            for (why, whats) in by_reason {
                out.push(format!(
                    "scale {} {}: {}: {why}",
                    r.path.name(),
                    r.services,
                    whats.join(", ")
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_gets_its_port_and_every_backend() {
        let node = Ipv4Addr::new(198, 18, 237, 11);
        let d = desired_mesh(100, node);
        assert_eq!(d.services.len(), 100);
        let last = d.services.last().unwrap();
        assert_eq!(last.ports[0].published, target_port(ScalePath::Mesh, 100));
        assert_eq!(last.ports[0].published, 30099);
        assert_eq!(last.tasks.len(), usize::from(BACKENDS));
        assert!(last.tasks.iter().all(|t| t.local && t.node_addr == node));
        assert_eq!(target_port(ScalePath::Iptables, 1), 40000);
    }

    #[test]
    fn kube_proxy_layout_grows_linearly_with_the_target_last() {
        let text = kube_proxy_restore(1000);
        let lines: Vec<&str> = text.lines().collect();
        let services: Vec<&&str> = lines
            .iter()
            .filter(|l| l.starts_with("-A SCALE-SERVICES "))
            .collect();
        // A ClusterIP rule per service, then the jump to NODEPORTS.
        assert_eq!(services.len(), 1001);
        assert!(services[999].contains("-j SCALE-SVC-999"));
        assert!(services[1000].contains("-j SCALE-NODEPORTS"));
        let nodeports: Vec<&&str> = lines
            .iter()
            .filter(|l| l.starts_with("-A SCALE-NODEPORTS "))
            .collect();
        assert_eq!(nodeports.len(), 1000);
        assert!(nodeports[999].contains("--dport 40999 -j SCALE-EXT-999"));
        assert!(text.contains(
            "-A SCALE-SEP-999-2 -p tcp -m tcp -j DNAT --to-destination 10.255.0.12:18080"
        ));
        assert!(text.contains("--probability 0.33333333333 -j SCALE-SEP-0-0"));
        assert!(text.contains("--probability 0.50000000000 -j SCALE-SEP-0-1"));
        assert!(text.contains("-A SCALE-SVC-0 -j SCALE-SEP-0-2"));
        // Every chain used is declared, and each table is committed.
        for l in &lines {
            if let Some(t) = l.split(" -j ").nth(1).and_then(|t| t.split(' ').next())
                && t.starts_with("SCALE-")
            {
                assert!(text.contains(&format!(":{t} - [0:0]")), "{t} not declared");
            }
        }
        assert_eq!(text.matches("COMMIT").count(), 2);
        assert_eq!(cluster_ip(999), Ipv4Addr::new(10, 96, 3, 232));
    }

    #[test]
    fn prog_ids_come_from_the_pinned_links() {
        let json = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/bpftool-link-show.json"
        ))
        .unwrap();
        // Link ids are not program ids.
        assert_eq!(attached_prog_ids(&json).unwrap(), vec![4011, 4013]);
        assert!(attached_prog_ids("not json").is_err());
    }

    fn row(path: ScalePath, n: usize, ms: f64, conns: f64, p50: f64) -> ScaleRow {
        ScaleRow {
            path,
            services: n,
            program_ms: Figure::Value(ms),
            conn_per_s: Figure::Value(conns),
            p50_us: Figure::Value(p50),
            bpf: vec![ProgCost {
                program: "tc_underlay_in".to_owned(),
                runs: 10,
                ns_per_run: 700.0,
            }],
        }
    }

    #[test]
    fn growth_compares_the_largest_measured_size_with_the_smallest() {
        let mut s = Scale {
            wiring: "x".to_owned(),
            rows: vec![
                row(ScalePath::Mesh, 1, 1.0, 10000.0, 50.0),
                row(ScalePath::Mesh, 100, 20.0, 9000.0, 55.0),
                ScaleRow::failed(ScalePath::Mesh, 1000, "too many rings"),
                row(ScalePath::Iptables, 1, 5.0, 6000.0, 80.0),
                row(ScalePath::Iptables, 1000, 50.0, 3000.0, 160.0),
            ],
        };
        let (n, x) = s.growth(ScalePath::Mesh, |r| &r.conn_per_s).unwrap();
        assert_eq!(n, 100);
        assert!((x - 0.9).abs() < 1e-9);
        let (n, x) = s.growth(ScalePath::Iptables, |r| &r.p50_us).unwrap();
        assert_eq!((n, x), (1000, 2.0));
        let tables = s.tables();
        assert_eq!(tables[0].rows.len(), 5);
        assert_eq!(tables[0].rows[2][3], "failed");
        assert_eq!(tables[0].rows[0][5], "tc_underlay_in 700");
        // The mesh's largest measured size is 100 (1,000 failed).
        assert_eq!(tables[1].rows[0][1], "100 vs 1");
        assert_eq!(tables[1].rows[0][3], "0.90");
        assert_eq!(tables[1].rows[1][1], "1000 vs 1");
        assert_eq!(tables[1].rows[1][3], "0.50");
        assert_eq!(
            s.notes(),
            vec!["scale mesh 1000: program time, conn/s, p50: too many rings"]
        );
        s.rows.clear();
        assert!(s.tables()[1].rows.is_empty());
    }

    #[test]
    fn rows_serialise_with_their_figures() {
        let v = serde_json::to_value(row(ScalePath::Iptables, 100, 1.5, 2.0, 3.0)).unwrap();
        assert_eq!(v["path"], "iptables");
        assert_eq!(v["services"], 100);
        assert_eq!(v["conn_per_s"]["value"], 2.0);
    }
}
