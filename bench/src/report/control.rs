//! The control plane's figures (pure): API throughput with 1 and 3 managers, the time from 100
//! `service create` calls to every task serving, leader failover, the scheduler against
//! swarmkit's published figure, and the big lab (gossip after a node's death, meshd's memory
//! at 20 nodes); their tables.

use serde::Serialize;

use super::{Figure, Table, median};

pub mod chart;

/// swarmkit's published scheduler figure: 10,000 tasks on 1,000 nodes in 1.8 s.
pub const SWARMKIT_SCHEDULE_S: f64 = 1.8;

/// Everything the control scenario measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Control {
    /// `service create --replicas 0` through the API, per lab (1 and 3 managers).
    pub creates: Vec<Throughput>,
    /// Acknowledged raft writes (`secret create`), per lab.
    pub writes: Vec<Throughput>,
    pub create_to_serving: Option<CreateToServing>,
    pub failover: Option<Failover>,
    pub scheduler: Option<Scheduler>,
    pub big_lab: Option<BigLab>,
}

/// Calls made by many concurrent clients for a while; acknowledged ones per second.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Throughput {
    pub managers: usize,
    pub clients: usize,
    pub acknowledged: u64,
    pub failed: u64,
    pub seconds: f64,
    pub per_s: Figure,
    /// The first error, if any call failed.
    pub first_error: Option<String>,
}

impl Throughput {
    /// From counts and the wall time from the first call to the last answer; a run where no
    /// call was acknowledged is a failure with its first error.
    pub fn of(
        managers: usize,
        clients: usize,
        (acknowledged, failed): (u64, u64),
        seconds: f64,
        first_error: Option<String>,
    ) -> Self {
        let per_s = if acknowledged == 0 {
            Figure::Failed(format!(
                "no call acknowledged ({failed} failed): {}",
                first_error.as_deref().unwrap_or("no call made")
            ))
        } else if seconds > 0.0 {
            Figure::Value(count(acknowledged) / seconds)
        } else {
            Figure::Failed("no time elapsed".to_owned())
        };
        Self {
            managers,
            clients,
            acknowledged,
            failed,
            seconds,
            per_s,
            first_error,
        }
    }
}

/// From the first of N `service create` calls (one replica each, a published port each) to a
/// request answered through the mesh by every service.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CreateToServing {
    pub services: usize,
    /// When the last create was acknowledged.
    pub created_s: Figure,
    /// When the last service answered (the figure).
    pub all_serving_s: Figure,
    /// The median service's first answer.
    pub median_serving_s: Option<f64>,
    pub serving: usize,
}

impl CreateToServing {
    /// `firsts`: each service's first answer (seconds after the first create), None if never.
    pub fn of(services: usize, created_s: Figure, firsts: &[Option<f64>]) -> Self {
        let answered: Vec<f64> = firsts.iter().flatten().copied().collect();
        let all_serving_s = if answered.len() == services && services > 0 {
            Figure::Value(answered.iter().copied().fold(0.0, f64::max))
        } else {
            Figure::Failed(format!(
                "{} of {services} services answered in time",
                answered.len()
            ))
        };
        Self {
            services,
            created_s,
            all_serving_s,
            median_serving_s: median(&answered),
            serving: answered.len(),
        }
    }
}

/// Leader kills: from each kill to the next acknowledged write.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Failover {
    pub managers: usize,
    /// Each kill's time to the next acknowledged write, or why it has none.
    pub kills_s: Vec<Figure>,
    pub median_s: Figure,
    pub max_s: Figure,
    pub how: String,
}

impl Failover {
    /// Median and max over the kills that recovered; a kill that did not recover makes the
    /// max a failure (the worst case is unknown), not the median.
    pub fn of(managers: usize, kills_s: Vec<Figure>, how: String) -> Self {
        let ok: Vec<f64> = kills_s.iter().filter_map(Figure::value).collect();
        let failed = kills_s.len() - ok.len();
        let median_s = median(&ok).map_or_else(
            || Figure::Failed("no kill was followed by an acknowledged write".to_owned()),
            Figure::Value,
        );
        let max_s = if failed > 0 {
            Figure::Failed(format!(
                "{failed} of {} kills had no acknowledged write in time",
                kills_s.len()
            ))
        } else if ok.is_empty() {
            Figure::Failed("no kill".to_owned())
        } else {
            Figure::Value(ok.iter().copied().fold(0.0, f64::max))
        };
        Self {
            managers,
            kills_s,
            median_s,
            max_s,
            how,
        }
    }
}

/// The time from `killed_at` to the first acknowledged write sent after it, from
/// `(sent, acknowledged)` times (seconds on one clock). Writes sent before the kill are left
/// out: the old leader may have committed them.
pub fn next_write_after(killed_at: f64, writes: &[(f64, f64)]) -> Option<f64> {
    writes
        .iter()
        .filter(|(sent, _)| *sent >= killed_at)
        .map(|(_, acked)| acked - killed_at)
        .min_by(f64::total_cmp)
}

/// meshd's real scheduler on the swarmkit benchmark's size.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scheduler {
    pub tasks: usize,
    pub nodes: usize,
    /// Best of `runs`.
    pub seconds: f64,
    pub runs: usize,
    pub swarmkit_seconds: f64,
    /// `seconds / swarmkit_seconds`: below 1 is faster than swarmkit's figure.
    pub ratio: f64,
}

impl Scheduler {
    pub fn of(tasks: usize, nodes: usize, seconds: f64, runs: usize) -> Self {
        Self {
            tasks,
            nodes,
            seconds,
            runs,
            swarmkit_seconds: SWARMKIT_SCHEDULE_S,
            ratio: seconds / SWARMKIT_SCHEDULE_S,
        }
    }
}

/// A lab of many nodes: gossip after one node's death, and meshd's memory.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BigLab {
    pub nodes: usize,
    pub managers: usize,
    pub victim: String,
    /// Each other node: when its gossip first said the victim was not alive (seconds after
    /// the kill), or None if it never did in time.
    pub seen_dead_s: Vec<(String, Option<f64>)>,
    /// When the last node saw it (the figure).
    pub all_seen_dead_s: Figure,
    pub median_seen_dead_s: Option<f64>,
    /// meshd's `VmRSS` per node (KiB), every node up and gossip settled.
    pub rss_kib: Vec<(String, Option<u64>)>,
}

impl BigLab {
    pub fn of(
        (nodes, managers): (usize, usize),
        victim: String,
        seen_dead_s: Vec<(String, Option<f64>)>,
        rss_kib: Vec<(String, Option<u64>)>,
    ) -> Self {
        let seen: Vec<f64> = seen_dead_s.iter().filter_map(|(_, t)| *t).collect();
        let all_seen_dead_s = if seen.len() == seen_dead_s.len() && !seen.is_empty() {
            Figure::Value(seen.iter().copied().fold(0.0, f64::max))
        } else {
            Figure::Failed(format!(
                "{} of {} nodes saw {victim} dead in time",
                seen.len(),
                seen_dead_s.len()
            ))
        };
        Self {
            nodes,
            managers,
            victim,
            median_seen_dead_s: median(&seen),
            seen_dead_s,
            all_seen_dead_s,
            rss_kib,
        }
    }

    /// Minimum, median and maximum of the nodes' RSS (MiB).
    pub fn rss_mib_summary(&self) -> Option<(f64, f64, f64)> {
        let mut v: Vec<f64> = self
            .rss_kib
            .iter()
            .filter_map(|(_, k)| k.map(|k| count(k) / 1024.0))
            .collect();
        v.sort_by(f64::total_cmp);
        Some((*v.first()?, median(&v)?, *v.last()?))
    }
}

/// A count or a size as a float: all of them far below 2^52.
#[expect(
    clippy::cast_precision_loss,
    reason = "counts and sizes far below 2^52"
)]
fn count(n: u64) -> f64 {
    n as f64
}

/// `1 manager`, `3 managers`.
fn managers(n: usize) -> String {
    if n == 1 {
        "1 manager".to_owned()
    } else {
        format!("{n} managers")
    }
}

fn secs(f: &Figure) -> String {
    match f {
        Figure::Value(v) => format!("{v:.2} s"),
        Figure::NotApplicable(_) => "N/A".to_owned(),
        Figure::Failed(_) => "failed".to_owned(),
    }
}

fn rate(f: &Figure) -> String {
    f.value()
        .map_or_else(|| "failed".to_owned(), |v| format!("{v:.0}"))
}

impl Control {
    /// The tables, in the order they are printed.
    pub fn tables(&self) -> Vec<Table> {
        let mut tables = Vec::new();
        if !self.creates.is_empty() || !self.writes.is_empty() {
            tables.push(self.throughput_table());
        }
        tables.push(self.timings_table());
        tables.extend(self.big_lab.as_ref().map(BigLab::rss_table));
        tables
    }

    fn throughput_table(&self) -> Table {
        let row = |what: &str, t: &Throughput| {
            vec![
                what.to_owned(),
                t.managers.to_string(),
                t.clients.to_string(),
                rate(&t.per_s),
                t.acknowledged.to_string(),
                t.failed.to_string(),
                format!("{:.1}", t.seconds),
            ]
        };
        let mut rows: Vec<Vec<String>> = self
            .creates
            .iter()
            .map(|t| row("service create --replicas 0", t))
            .collect();
        rows.extend(
            self.writes
                .iter()
                .map(|t| row("secret create (raft write)", t)),
        );
        Table {
            title: "Control plane: calls through the API (many concurrent clients, spread over \
                    the managers' sockets)"
                .to_owned(),
            header: [
                "call",
                "managers",
                "clients",
                "per s",
                "acknowledged",
                "failed",
                "seconds",
            ]
            .map(str::to_owned)
            .to_vec(),
            rows,
        }
    }

    fn timings_table(&self) -> Table {
        let mut rows = Vec::new();
        if let Some(c) = &self.create_to_serving {
            rows.push(vec![
                format!(
                    "{} service create (1 replica, published) -> every service answers through n1",
                    c.services
                ),
                secs(&c.all_serving_s),
                format!(
                    "creates acknowledged after {}; median service {}; {} of {} answered",
                    secs(&c.created_s),
                    c.median_serving_s
                        .map_or_else(|| "-".to_owned(), |m| format!("{m:.2} s")),
                    c.serving,
                    c.services
                ),
            ]);
        }
        if let Some(f) = &self.failover {
            let each: Vec<String> = f.kills_s.iter().map(secs).collect();
            rows.push(vec![
                format!(
                    "leader killed -> next acknowledged write ({}), median",
                    managers(f.managers)
                ),
                secs(&f.median_s),
                format!("{} kills: {}", f.kills_s.len(), each.join(", ")),
            ]);
            rows.push(vec![
                "leader killed -> next acknowledged write, max".to_owned(),
                secs(&f.max_s),
                f.how.clone(),
            ]);
        }
        if let Some(s) = &self.scheduler {
            rows.push(vec![
                format!(
                    "scheduler: {} tasks on {} nodes (best of {})",
                    s.tasks, s.nodes, s.runs
                ),
                format!("{:.3} s", s.seconds),
                format!(
                    "{:.3}x swarmkit's published {:.1} s (below 1: faster; other hardware)",
                    s.ratio, s.swarmkit_seconds
                ),
            ]);
        }
        if let Some(b) = &self.big_lab {
            rows.push(vec![
                format!(
                    "{} nodes ({}): {} killed -> every other node's gossip says so",
                    b.nodes,
                    managers(b.managers),
                    b.victim
                ),
                secs(&b.all_seen_dead_s),
                format!(
                    "median node {}",
                    b.median_seen_dead_s
                        .map_or_else(|| "-".to_owned(), |m| format!("{m:.2} s"))
                ),
            ]);
        }
        Table {
            title: "Control plane: timings".to_owned(),
            header: ["event", "time", "detail"].map(str::to_owned).to_vec(),
            rows,
        }
    }
}

impl BigLab {
    fn rss_table(&self) -> Table {
        let mut rows: Vec<Vec<String>> = self
            .rss_kib
            .iter()
            .map(|(n, k)| {
                vec![
                    n.clone(),
                    k.map_or_else(|| "-".to_owned(), |k| format!("{:.1}", count(k) / 1024.0)),
                ]
            })
            .collect();
        if let Some((lo, mid, hi)) = self.rss_mib_summary() {
            rows.push(vec![
                "min / median / max".to_owned(),
                format!("{lo:.1} / {mid:.1} / {hi:.1}"),
            ]);
        }
        Table {
            title: format!(
                "meshd resident memory (VmRSS, MiB) at {} nodes, gossip settled",
                self.nodes
            ),
            header: vec!["node".into(), "MiB".into()],
            rows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_is_acknowledged_calls_over_the_wall_time() {
        let t = Throughput::of(3, 16, (500, 2), 2.0, Some("boom".into()));
        assert_eq!(t.per_s, Figure::Value(250.0));
        let none = Throughput::of(1, 16, (0, 4), 2.0, Some("no leader".into()));
        assert!(matches!(none.per_s, Figure::Failed(ref r) if r.contains("no leader")));
    }

    #[test]
    fn the_next_write_is_the_first_acknowledged_one_sent_after_the_kill() {
        // (sent, acknowledged): one sent before the kill and answered late does not count.
        let writes = [(9.5, 10.2), (10.1, 12.0), (10.4, 11.5), (11.0, 11.6)];
        let t = next_write_after(10.0, &writes).unwrap();
        assert!((t - 1.5).abs() < 1e-9);
        assert_eq!(next_write_after(20.0, &writes), None);
    }

    #[test]
    fn failover_reports_median_and_max_and_says_when_a_kill_never_recovered() {
        let f = Failover::of(
            3,
            vec![Figure::Value(1.0), Figure::Value(3.0), Figure::Value(2.0)],
            String::new(),
        );
        assert_eq!(
            (f.median_s, f.max_s),
            (Figure::Value(2.0), Figure::Value(3.0))
        );
        let g = Failover::of(
            3,
            vec![Figure::Value(1.0), Figure::Failed("timeout".into())],
            String::new(),
        );
        assert_eq!(g.median_s, Figure::Value(1.0));
        assert!(matches!(g.max_s, Figure::Failed(ref r) if r.contains("1 of 2")));
    }

    #[test]
    fn serving_is_the_last_service_to_answer() {
        let c = CreateToServing::of(3, Figure::Value(0.5), &[Some(2.0), Some(4.0), Some(3.0)]);
        assert_eq!(c.all_serving_s, Figure::Value(4.0));
        assert_eq!(c.median_serving_s, Some(3.0));
        let d = CreateToServing::of(3, Figure::Value(0.5), &[Some(2.0), None, Some(3.0)]);
        assert!(matches!(d.all_serving_s, Figure::Failed(ref r) if r.starts_with("2 of 3")));
    }

    #[test]
    fn the_scheduler_is_compared_with_swarmkit_as_a_ratio() {
        let s = Scheduler::of(10_000, 1_000, 0.09, 3);
        assert!((s.ratio - 0.05).abs() < 1e-9);
    }

    #[test]
    fn the_big_lab_needs_every_node_to_see_the_death() {
        let seen = vec![
            ("n1".to_owned(), Some(1.0)),
            ("n2".to_owned(), Some(2.5)),
            ("n3".to_owned(), Some(2.0)),
        ];
        let rss = vec![("n1".to_owned(), Some(30 * 1024)), ("n2".to_owned(), None)];
        let b = BigLab::of((4, 1), "n4".into(), seen.clone(), rss);
        assert_eq!(b.all_seen_dead_s, Figure::Value(2.5));
        assert_eq!(b.median_seen_dead_s, Some(2.0));
        assert_eq!(b.rss_mib_summary(), Some((30.0, 30.0, 30.0)));
        let mut partial = seen;
        partial[1].1 = None;
        let c = BigLab::of((4, 1), "n4".into(), partial, Vec::new());
        assert!(matches!(c.all_seen_dead_s, Figure::Failed(ref r) if r.starts_with("2 of 3")));
        assert_eq!(c.rss_mib_summary(), None);
    }

    #[test]
    fn the_tables_show_every_figure() {
        let c = Control {
            creates: vec![Throughput::of(1, 16, (100, 0), 1.0, None)],
            writes: vec![Throughput::of(3, 16, (50, 0), 1.0, None)],
            create_to_serving: Some(CreateToServing::of(
                2,
                Figure::Value(0.3),
                &[Some(1.0), Some(2.0)],
            )),
            failover: Some(Failover::of(3, vec![Figure::Value(1.5)], "how".into())),
            scheduler: Some(Scheduler::of(10_000, 1_000, 0.9, 3)),
            big_lab: Some(BigLab::of(
                (20, 1),
                "p-n20".into(),
                vec![("p-n1".into(), Some(3.0))],
                vec![("p-n1".into(), Some(2048))],
            )),
        };
        let text: String = c.tables().iter().map(Table::text).collect();
        for want in [
            "service create --replicas 0",
            "secret create",
            "2 service create",
            "2.00 s",
            "1.50 s",
            "0.500x swarmkit",
            "p-n20 killed",
            "3.00 s",
            "2.0 / 2.0 / 2.0",
        ] {
            assert!(text.contains(want), "{want:?} missing from\n{text}");
        }
    }
}
