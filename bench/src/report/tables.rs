//! The tables printed and written: plain text for the terminal, markdown for
//! `results/latest.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::targets::short;
use super::{Figure, Metric, Results};

impl Results {
    /// The tables, in the order they are printed.
    pub fn tables(&self) -> Vec<Table> {
        // A run of the scale or control scenario alone has no scenario tables.
        let labs = !self.scenarios.is_empty();
        let mut tables = Vec::new();
        if labs {
            tables.extend([self.figures_table(), self.ratios_table()]);
        }
        tables.extend(super::eastwest::east_west_table(&self.east_west));
        tables.extend(self.dns_table());
        tables.extend(self.convergence_table());
        tables.extend(self.bpf_table());
        tables.extend(self.rss_table());
        tables.extend(self.scale.iter().flat_map(crate::scale::Scale::tables));
        tables.extend(
            self.control
                .iter()
                .flat_map(super::control::Control::tables),
        );
        if labs {
            tables.push(self.targets_table());
        }
        tables
    }

    fn dns_table(&self) -> Option<Table> {
        let d = self.dns.as_ref()?;
        let lost = |l: Option<f64>| l.map_or_else(|| "-".to_owned(), |l| format!("{l:.2}"));
        let qps = |f: &Figure| f.value().map_or_else(|| f.cell(Metric::ConnPerSec), short);
        Some(Table {
            title: format!("DNS: `{}` A, {}", d.name, d.how),
            header: vec!["server".into(), "QPS".into(), "lost %".into()],
            rows: vec![
                vec![
                    "meshd".into(),
                    qps(&d.meshd_qps),
                    lost(d.meshd_lost_percent),
                ],
                vec![
                    "unbound".into(),
                    qps(&d.unbound_qps),
                    lost(d.unbound_lost_percent),
                ],
            ],
        })
    }

    fn convergence_table(&self) -> Option<Table> {
        let c = self.convergence.as_ref()?;
        let secs = |f: &Figure| {
            f.value()
                .map_or_else(|| f.cell(Metric::LatP50), |v| format!("{v:.2} s"))
        };
        let per_node: Vec<String> = c
            .per_node_s
            .iter()
            .map(|(n, f)| format!("{n} {}", secs(f)))
            .collect();
        Some(Table {
            title: "Convergence (tc lab)".to_owned(),
            header: vec!["event".into(), "time".into(), "detail".into()],
            rows: vec![
                vec![
                    "service create --replicas 3 -p -> a request succeeds through every node"
                        .into(),
                    secs(&c.create_to_all_nodes_s),
                    per_node.join(", "),
                ],
                vec![
                    "a task's node killed -> 10 requests in a row succeed through n1".into(),
                    secs(&c.node_kill_recovery_s),
                    c.node_kill_detail.clone(),
                ],
            ],
        })
    }

    fn bpf_table(&self) -> Option<Table> {
        let bpf_rows: Vec<Vec<String>> = self
            .scenarios
            .iter()
            .flat_map(|r| {
                r.bpf.iter().flat_map(move |(m, progs)| {
                    progs.iter().map(move |p| {
                        vec![
                            r.name.to_owned(),
                            m.header().to_owned(),
                            p.program.clone(),
                            p.runs.to_string(),
                            format!("{:.0}", p.ns_per_run),
                        ]
                    })
                })
            })
            .collect();
        if bpf_rows.is_empty() {
            return None;
        }
        Some(Table {
            title: "eBPF programs during a figure's runs (`--profile`: kernel.bpf_stats_enabled; \
                    all nodes' instances summed; the statistics' own clock reads included)"
                .to_owned(),
            header: vec![
                "scenario".into(),
                "figure".into(),
                "program".into(),
                "runs".into(),
                "ns/run".into(),
            ],
            rows: bpf_rows,
        })
    }

    fn rss_table(&self) -> Option<Table> {
        if self.rss.is_empty() {
            return None;
        }
        let mib = |k: Option<u64>| {
            k.map_or_else(
                || "-".to_owned(),
                |k| format!("{}.{}", k / 1024, k % 1024 * 10 / 1024),
            )
        };
        Some(Table {
            title: "meshd resident memory (VmRSS, MiB); load = max during wrk and dnsperf"
                .to_owned(),
            header: vec![
                "lab".into(),
                "node".into(),
                "idle".into(),
                "under load".into(),
            ],
            rows: self
                .rss
                .iter()
                .map(|r| {
                    vec![
                        r.lab.name().to_owned(),
                        r.node.clone(),
                        mib(r.idle_kib),
                        mib(r.load_max_kib),
                    ]
                })
                .collect(),
        })
    }

    fn targets_table(&self) -> Table {
        Table {
            title: "Targets".to_owned(),
            header: vec!["target".into(), "measured".into(), "verdict".into()],
            rows: self
                .targets
                .iter()
                .map(|t| {
                    vec![
                        t.target.clone(),
                        t.shown.clone(),
                        t.verdict.name().to_owned(),
                    ]
                })
                .collect(),
        }
    }

    fn figures_table(&self) -> Table {
        let mut header = vec!["scenario".to_owned()];
        header.extend(Metric::ALL.iter().map(|m| m.header().to_owned()));
        let rows = self
            .scenarios
            .iter()
            .map(|r| {
                let mut row = vec![r.name.to_owned()];
                row.extend(Metric::ALL.iter().map(|m| r.get(*m).cell(*m)));
                row
            })
            .collect();
        Table {
            title:
                "Figures (same client, same backend task; higher is better except loss and latency)"
                    .to_owned(),
            header,
            rows,
        }
    }

    fn ratios_table(&self) -> Table {
        let metrics: Vec<Metric> = Metric::ALL
            .into_iter()
            .filter(|m| *m != Metric::UdpLoss)
            .collect();
        let mut header = vec!["scenario".to_owned()];
        header.extend(metrics.iter().map(|m| {
            if m.is_latency() {
                format!("{} added", m.header())
            } else {
                format!("{} x", m.header())
            }
        }));
        let rows = self
            .scenarios
            .iter()
            .map(|r| {
                let reference = r.scenario.reference();
                let mut row = vec![r.name.to_owned()];
                for m in &metrics {
                    let cell = match (r.get(*m).value(), self.figure(reference, *m).value()) {
                        (Some(a), Some(b)) if m.is_latency() => format!("{:+.1}", a - b),
                        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                        _ => "-".to_owned(),
                    };
                    row.push(cell);
                }
                row
            })
            .collect();
        Table {
            title: "Relative to direct in the same lab (the tc lab's for the native lab; x: ratio; added: microseconds over direct)"
                .to_owned(),
            header,
            rows,
        }
    }

    /// Why figures are missing, one line per scenario and reason.
    pub fn missing_figures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.scenarios {
            let mut by_reason: BTreeMap<String, Vec<&str>> = BTreeMap::new();
            for m in Metric::ALL {
                if let Some(why) = r.get(m).why() {
                    by_reason.entry(why).or_default().push(m.header());
                }
            }
            for (why, metrics) in by_reason {
                out.push(format!("{}: {}: {why}", r.name, metrics.join(", ")));
            }
        }
        out
    }

    /// The missing figures with their reasons, then the run's notes.
    fn all_notes(&self) -> Vec<String> {
        self.missing_figures()
            .into_iter()
            .chain(self.scale.iter().flat_map(crate::scale::Scale::notes))
            .chain(self.notes.iter().cloned())
            .collect()
    }

    /// The terminal's report.
    pub fn render_text(&self) -> String {
        let mut s = format!(
            "meshd bench, {} (wall time {:.0} s)\nmachine: {}\n",
            self.started_utc,
            self.wall_seconds,
            self.machine.summary()
        );
        for t in self.tables() {
            s.push('\n');
            s.push_str(&t.text());
        }
        let notes = self.all_notes();
        if !notes.is_empty() {
            s.push_str("\nNotes\n");
            for n in notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }

    /// `results/latest.md`.
    pub fn render_markdown(&self) -> String {
        let mut s = format!(
            "Measured {} by `bench/run.sh` (wall time {:.0} s) on {}.\n",
            self.started_utc,
            self.wall_seconds,
            self.machine.summary()
        );
        for t in self.tables() {
            s.push('\n');
            s.push_str(&t.markdown());
        }
        let notes = self.all_notes();
        if !notes.is_empty() {
            s.push('\n');
            for n in notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }
}

/// A titled table of text cells.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Columns padded to their widest cell; numbers right-aligned.
    pub fn text(&self) -> String {
        let cols = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, c) in row.iter().enumerate().take(cols) {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let right: Vec<bool> = (0..cols).map(|i| self.right_aligned(i)).collect();
        let line = |cells: &[String]| {
            let mut l = String::new();
            for (i, c) in cells.iter().enumerate().take(cols) {
                let pad = widths[i] - c.chars().count();
                if i > 0 {
                    l.push_str("  ");
                }
                if right[i] {
                    l.push_str(&" ".repeat(pad));
                    l.push_str(c);
                } else {
                    l.push_str(c);
                    l.push_str(&" ".repeat(pad));
                }
            }
            l.trim_end().to_owned() + "\n"
        };
        let mut s = format!("{}\n", self.title);
        s.push_str(&line(&self.header));
        for row in &self.rows {
            s.push_str(&line(row));
        }
        s
    }

    pub fn markdown(&self) -> String {
        let esc = |c: &str| c.replace('|', "\\|");
        let mut s = format!("**{}**\n\n", self.title);
        let _ = writeln!(
            s,
            "| {} |",
            self.header
                .iter()
                .map(|h| esc(h))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let align: Vec<&str> = (0..self.header.len())
            .map(|i| if self.right_aligned(i) { "---:" } else { "---" })
            .collect();
        let _ = writeln!(s, "| {} |", align.join(" | "));
        for row in &self.rows {
            let _ = writeln!(
                s,
                "| {} |",
                row.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
            );
        }
        s
    }
}

impl Table {
    /// Columns of numbers (or their stand-ins) are right-aligned, text columns left.
    fn right_aligned(&self, col: usize) -> bool {
        col > 0
            && self.rows.iter().all(|r| {
                r.get(col).is_none_or(|c| {
                    looks_numeric(c) || ["N/A", "failed", "-"].contains(&c.as_str())
                })
            })
    }
}

fn looks_numeric(c: &str) -> bool {
    let t = c.trim_end_matches(['x', 's', '%']).trim();
    !t.is_empty() && t.parse::<f64>().is_ok()
}
