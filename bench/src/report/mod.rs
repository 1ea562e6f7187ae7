//! The results (pure): scenarios, figures, targets with their verdicts, and the tables printed
//! and written (plain text for the terminal, markdown for `results/latest.md`).

use serde::Serialize;
use std::collections::BTreeMap;

use crate::bpfstats::ProgCost;

use crate::machine::Machine;

pub mod control;
mod eastwest;
mod tables;
mod targets;

pub use eastwest::{EastWest, EastWestResult, east_west_panels};
pub use tables::Table;
pub use targets::{TargetResult, Verdict, added_target, ratio_target};

/// A lab's data path: every scenario runs in one of the labs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Datapath {
    Tc,
    Xdp,
    /// The tc lab with `--default-routing native`: tasks' traffic between nodes routed on the
    /// underlay, not carried over VXLAN.
    TcNative,
}

impl Datapath {
    pub fn name(self) -> &'static str {
        match self {
            Self::Tc => "tc",
            Self::Xdp => "xdp",
            Self::TcNative => "tc-native",
        }
    }

    /// meshd's `--datapath` in this lab.
    pub fn meshd_datapath(self) -> &'static str {
        match self {
            Self::Tc | Self::TcNative => "tc",
            Self::Xdp => "xdp",
        }
    }

    /// Whether the lab's swarm routes overlay traffic natively (`lab up --default-routing native`).
    pub fn native(self) -> bool {
        self == Self::TcNative
    }
}

/// One way from the client to the same backend task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    Direct,
    MeshTc,
    MeshLocal,
    Userspace,
    DirectVxlan,
    Iptables,
    DirectXdp,
    MeshXdp,
    UserspaceXdp,
    IptablesXdp,
    DirectNative,
    MeshTcNative,
}

impl Scenario {
    /// In the order they run (and are printed): each lab's mesh runs before iptables loads
    /// netfilter's connection tracking into n1.
    pub const ALL: [Self; 12] = [
        Self::Direct,
        Self::MeshTc,
        Self::MeshLocal,
        Self::Userspace,
        Self::DirectVxlan,
        Self::Iptables,
        Self::DirectXdp,
        Self::MeshXdp,
        Self::UserspaceXdp,
        Self::IptablesXdp,
        Self::DirectNative,
        Self::MeshTcNative,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::MeshTc => "mesh-tc",
            Self::MeshLocal => "mesh-local",
            Self::Userspace => "userspace",
            Self::DirectVxlan => "direct-vxlan",
            Self::Iptables => "iptables",
            Self::DirectXdp => "direct (xdp lab)",
            Self::MeshXdp => "mesh-xdp",
            Self::UserspaceXdp => "userspace (xdp lab)",
            Self::IptablesXdp => "iptables (xdp lab)",
            Self::DirectNative => "direct (tc-native lab)",
            Self::MeshTcNative => "mesh-tc (native)",
        }
    }

    pub fn lab(self) -> Datapath {
        match self {
            Self::Direct
            | Self::MeshTc
            | Self::MeshLocal
            | Self::Userspace
            | Self::DirectVxlan
            | Self::Iptables => Datapath::Tc,
            Self::DirectXdp | Self::MeshXdp | Self::UserspaceXdp | Self::IptablesXdp => {
                Datapath::Xdp
            }
            Self::DirectNative | Self::MeshTcNative => Datapath::TcNative,
        }
    }

    /// The scenarios of one lab, in order.
    pub fn of_lab(lab: Datapath) -> impl Iterator<Item = Self> {
        Self::ALL.into_iter().filter(move |s| s.lab() == lab)
    }

    /// `direct` of the same lab: what ratios are taken against. The natively routed lab's is
    /// the tc lab's: its own `direct` cannot run (a native node delivers to a task only packets
    /// from addresses of the task's network, and the client is none), and the two labs differ
    /// only in how nodes reach each other.
    #[must_use]
    pub fn reference(self) -> Self {
        match self.lab() {
            Datapath::Tc | Datapath::TcNative => Self::Direct,
            Datapath::Xdp => Self::DirectXdp,
        }
    }

    /// Whether the task sees the client's own address and port (no proxy or SNAT between).
    #[must_use]
    pub fn task_sees_client(self) -> bool {
        !matches!(
            self,
            Self::Userspace | Self::Iptables | Self::UserspaceXdp | Self::IptablesXdp
        )
    }

    /// The client's source ports in this scenario (`ip_local_port_range`). Where the task sees
    /// the client's own ports (`direct` and the mesh alike), a share of Linux's default range
    /// (32768-60999) of its own among its lab's such scenarios: the task's kernel numbers each
    /// destination's connections apart (per-connection timestamp offsets, sequence numbers),
    /// so a port still in its `TIME_WAIT` from one scenario's run would make the next
    /// scenario's SYN on that port look like an old duplicate (the client retries a second
    /// later), measuring the order of the runs instead of the path. Elsewhere the whole range.
    #[must_use]
    pub fn client_ports(self) -> (u16, u16) {
        const LOW: u32 = 32768;
        const HIGH: u32 = 60999;
        let port = |p: u32| u16::try_from(p).unwrap_or(u16::MAX);
        if !self.task_sees_client() {
            return (port(LOW), port(HIGH));
        }
        let lab: Vec<Self> = Self::of_lab(self.lab())
            .filter(|s| s.task_sees_client())
            .collect();
        let i = lab.iter().position(|s| *s == self).unwrap_or(0) as u32;
        let share = (HIGH - LOW + 1) / lab.len() as u32;
        let low = LOW + i * share;
        (port(low), port(low + share - 1))
    }

    /// How the client's packets reach the task (printed in the JSON and the README).
    pub fn wiring(self) -> &'static str {
        match self {
            Self::Direct | Self::DirectXdp | Self::DirectNative => {
                "client -> task's ingress address, routed by n2 (the task's node): plain forwarding, no balancer"
            }
            Self::DirectVxlan => {
                "client -> task's ingress address, routed by n1, which forwards over its VXLAN to n2: kernel forwarding, no balancer (replies return over VXLAN by the mesh's return entry)"
            }
            Self::MeshTc => {
                "client -> n1:published port; tc on n1 balances, VXLAN to the task on n2"
            }
            Self::MeshLocal => {
                "client -> n2:published port; the mesh on n2 hands it to its local task"
            }
            Self::MeshTcNative => {
                "client -> n1:published port; tc on n1 balances, routed natively (no VXLAN) to the task on n2"
            }
            Self::MeshXdp => {
                "client -> n1:published port; XDP on n1 balances and encapsulates to n2"
            }
            Self::Userspace | Self::UserspaceXdp => {
                "client -> n1; HAProxy (mode tcp) in n1 connects to the task over n1's VXLAN route"
            }
            Self::Iptables | Self::IptablesXdp => {
                "client -> n1; iptables DNAT+MASQUERADE in n1 (kube-proxy's chains), VXLAN to n2"
            }
        }
    }
}

/// Why a figure of a scenario that never ran is missing.
pub const NOT_RUN: &str = "not run";

/// A figure measured for every scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Metric {
    #[serde(rename = "tcp_1_stream_gbit_s")]
    Tcp1,
    #[serde(rename = "tcp_4_streams_gbit_s")]
    Tcp4,
    #[serde(rename = "udp_received_mbit_s")]
    UdpRate,
    #[serde(rename = "udp_loss_percent")]
    UdpLoss,
    #[serde(rename = "udp_64b_received_kpps")]
    Pps64,
    #[serde(rename = "new_conn_per_s")]
    ConnPerSec,
    #[serde(rename = "latency_p50_us")]
    LatP50,
    #[serde(rename = "latency_p99_us")]
    LatP99,
}

impl Metric {
    pub const ALL: [Self; 8] = [
        Self::Tcp1,
        Self::Tcp4,
        Self::UdpRate,
        Self::UdpLoss,
        Self::Pps64,
        Self::ConnPerSec,
        Self::LatP50,
        Self::LatP99,
    ];

    pub fn header(self) -> &'static str {
        match self {
            Self::Tcp1 => "TCP 1 Gbit/s",
            Self::Tcp4 => "TCP 4 Gbit/s",
            Self::UdpRate => "UDP Mbit/s",
            Self::UdpLoss => "UDP loss %",
            Self::Pps64 => "64B kpps",
            Self::ConnPerSec => "conn/s",
            Self::LatP50 => "p50 us",
            Self::LatP99 => "p99 us",
        }
    }

    pub fn format(self, v: f64) -> String {
        match self {
            Self::Tcp1 | Self::Tcp4 | Self::UdpLoss => format!("{v:.2}"),
            Self::UdpRate | Self::ConnPerSec => format!("{v:.0}"),
            Self::Pps64 | Self::LatP50 | Self::LatP99 => format!("{v:.1}"),
        }
    }

    /// Latency is compared by the microseconds added, everything else by ratio.
    fn is_latency(self) -> bool {
        matches!(self, Self::LatP50 | Self::LatP99)
    }
}

/// One measured value, or why there is none.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Figure {
    Value(f64),
    /// Impossible by construction (UDP through `HAProxy` in TCP mode).
    NotApplicable(String),
    /// The tool or the path failed; the reason says how.
    Failed(String),
}

impl Figure {
    pub fn value(&self) -> Option<f64> {
        match self {
            Self::Value(v) => Some(*v),
            _ => None,
        }
    }

    fn cell(&self, metric: Metric) -> String {
        match self {
            Self::Value(v) => metric.format(*v),
            Self::NotApplicable(_) => "N/A".to_owned(),
            Self::Failed(_) => "failed".to_owned(),
        }
    }

    fn why(&self) -> Option<String> {
        match self {
            Self::Value(_) => None,
            Self::NotApplicable(r) => Some(format!("N/A: {r}")),
            Self::Failed(r) => Some(format!("failed: {r}")),
        }
    }
}

impl<E: std::fmt::Display> From<Result<f64, E>> for Figure {
    fn from(r: Result<f64, E>) -> Self {
        match r {
            Ok(v) if v.is_finite() => Self::Value(v),
            Ok(v) => Self::Failed(format!("not a number: {v}")),
            Err(e) => Self::Failed(format!("{e:#}")),
        }
    }
}

/// The median of runs of one figure (the mean of the middle two for an even count): short
/// runs on shared cores have outliers both ways, and the median ignores one of each.
#[must_use]
pub fn median(samples: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        f64::midpoint(v[mid - 1], v[mid])
    })
}

/// Every figure of one scenario.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScenarioResult {
    pub scenario: Scenario,
    pub name: &'static str,
    pub lab: Datapath,
    pub wiring: &'static str,
    pub figures: BTreeMap<Metric, Figure>,
    /// Every run of a repeated figure, in order (its figure is their median).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub samples: BTreeMap<Metric, Vec<f64>>,
    /// With `--profile`: what each eBPF program cost per run during a figure's runs.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub bpf: BTreeMap<Metric, Vec<ProgCost>>,
}

impl ScenarioResult {
    pub fn new(scenario: Scenario) -> Self {
        Self {
            scenario,
            name: scenario.name(),
            lab: scenario.lab(),
            wiring: scenario.wiring(),
            figures: BTreeMap::new(),
            samples: BTreeMap::new(),
            bpf: BTreeMap::new(),
        }
    }

    /// Every figure failed for the same reason (the path did not work).
    pub fn failed(scenario: Scenario, reason: &str) -> Self {
        let mut r = Self::new(scenario);
        for m in Metric::ALL {
            r.figures.insert(m, Figure::Failed(reason.to_owned()));
        }
        r
    }

    pub fn get(&self, metric: Metric) -> Figure {
        self.figures
            .get(&metric)
            .cloned()
            .unwrap_or_else(|| Figure::Failed("not measured".to_owned()))
    }
}

/// meshd's DNS beside unbound, for the same name.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Dns {
    pub name: String,
    pub meshd_qps: Figure,
    pub unbound_qps: Figure,
    pub meshd_lost_percent: Option<f64>,
    pub unbound_lost_percent: Option<f64>,
    pub how: String,
}

/// How fast the mesh follows the cluster.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Convergence {
    /// From `service create --replicas 3 -p ...` to a successful request through every node.
    pub create_to_all_nodes_s: Figure,
    /// Per node: the first successful request through it.
    pub per_node_s: Vec<(String, Figure)>,
    /// From killing a node that holds a task to 10 requests in a row succeeding through n1.
    pub node_kill_recovery_s: Figure,
    pub node_kill_detail: String,
}

/// What a request loop saw around a node's death.
#[derive(Clone, Debug, PartialEq)]
pub struct Recovery {
    /// Seconds from the kill to the first request of the final run of successes (0 when no
    /// request failed); None when the requests never succeeded `streak` times in a row after
    /// the last failure.
    pub recovered_s: Option<f64>,
    pub failed: usize,
    pub total: usize,
    pub first_failure_s: Option<f64>,
    pub last_failure_s: Option<f64>,
}

/// Reads a request loop's samples (seconds since the kill, success), those before the kill
/// ignored: recovery is the first request of the `streak` successes in a row that follow the
/// last failure.
pub fn recovery(samples: &[(f64, bool)], streak: usize) -> Recovery {
    let after: Vec<(f64, bool)> = samples.iter().copied().filter(|(t, _)| *t >= 0.0).collect();
    let failures: Vec<f64> = after
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(t, _)| *t)
        .collect();
    let last_failure = after.iter().rposition(|(_, ok)| !ok);
    let tail_from = last_failure.map_or(0, |i| i + 1);
    let tail = &after[tail_from..];
    let recovered_s = if tail.len() >= streak {
        Some(if last_failure.is_some() {
            tail[0].0
        } else {
            0.0
        })
    } else {
        None
    };
    Recovery {
        recovered_s,
        failed: failures.len(),
        total: after.len(),
        first_failure_s: failures.first().copied(),
        last_failure_s: failures.last().copied(),
    }
}

/// meshd's resident memory on one node of one lab (KiB).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rss {
    pub lab: Datapath,
    pub node: String,
    pub idle_kib: Option<u64>,
    pub load_max_kib: Option<u64>,
}

/// Everything one run found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Results {
    pub started_utc: String,
    pub wall_seconds: f64,
    pub machine: Machine,
    pub settings: BTreeMap<String, String>,
    pub scenarios: Vec<ScenarioResult>,
    pub dns: Option<Dns>,
    pub convergence: Option<Convergence>,
    pub rss: Vec<Rss>,
    pub targets: Vec<TargetResult>,
    /// Anything worth knowing about this run (errors outside the figures).
    pub notes: Vec<String>,
    /// The scale scenario (`--scale`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<crate::scale::Scale>,
    /// The control plane and the big lab (`--control`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<control::Control>,
    /// The east-west rows (with the tc lab).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub east_west: Vec<EastWestResult>,
}

impl Results {
    pub fn figure(&self, s: Scenario, m: Metric) -> Figure {
        self.scenarios
            .iter()
            .find(|r| r.scenario == s)
            .map_or_else(|| Figure::Failed(NOT_RUN.to_owned()), |r| r.get(m))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_scenario_of_a_lab_has_client_ports_of_its_own() {
        for lab in [Datapath::Tc, Datapath::Xdp, Datapath::TcNative] {
            let ranges: Vec<(u16, u16)> = Scenario::of_lab(lab)
                .filter(|s| s.task_sees_client())
                .map(Scenario::client_ports)
                .collect();
            for (i, (low, high)) in ranges.iter().enumerate() {
                assert!(
                    32768 <= *low && low + 1000 < *high && *high <= 60999,
                    "{ranges:?}"
                );
                assert!(
                    ranges[i + 1..].iter().all(|(l, h)| h < low || l > high),
                    "{ranges:?}"
                );
            }
        }
        assert!(
            Scenario::MeshTcNative.task_sees_client(),
            "a native ingress keeps the client's address"
        );
        for s in [Scenario::Userspace, Scenario::Iptables] {
            assert_eq!(s.client_ports(), (32768, 60999), "{s:?}: the whole range");
        }
    }

    use super::*;

    fn machine() -> Machine {
        Machine {
            cpu_model: "Test CPU".to_owned(),
            cores: 2,
            kernel: "6.1.0".to_owned(),
            mem_total_mib: 4096,
        }
    }

    fn scenario(s: Scenario, values: [f64; 8]) -> ScenarioResult {
        let mut r = ScenarioResult::new(s);
        for (m, v) in Metric::ALL.into_iter().zip(values) {
            r.figures.insert(m, Figure::Value(v));
        }
        r
    }

    fn sample() -> Results {
        use Scenario::*;
        let mut userspace = scenario(Userspace, [5.0, 6.0, 0.0, 0.0, 0.0, 3000.0, 90.0, 200.0]);
        for m in [Metric::UdpRate, Metric::UdpLoss, Metric::Pps64] {
            userspace.figures.insert(
                m,
                Figure::NotApplicable("HAProxy in TCP mode proxies TCP only".to_owned()),
            );
        }
        let mut r = Results {
            scale: None,
            east_west: Vec::new(),
            started_utc: "2026-11-23T12:00:00Z".to_owned(),
            wall_seconds: 300.0,
            machine: machine(),
            settings: BTreeMap::new(),
            scenarios: vec![
                scenario(
                    Direct,
                    [10.0, 12.0, 300.0, 0.0, 200.0, 10000.0, 50.0, 100.0],
                ),
                scenario(MeshTc, [9.5, 11.0, 300.0, 0.1, 180.0, 9000.0, 60.0, 120.0]),
                scenario(
                    MeshLocal,
                    [8.0, 10.0, 300.0, 0.0, 190.0, 9500.0, 75.0, 110.0],
                ),
                userspace,
                scenario(
                    Iptables,
                    [9.0, 10.0, 300.0, 0.0, 150.0, 7000.0, 65.0, 130.0],
                ),
                scenario(
                    DirectXdp,
                    [5.0, 6.0, 300.0, 0.0, 210.0, 9000.0, 50.0, 100.0],
                ),
                scenario(MeshXdp, [4.0, 5.0, 300.0, 0.0, 240.0, 8000.0, 55.0, 100.0]),
                ScenarioResult::failed(UserspaceXdp, "path check: connection refused"),
                scenario(
                    IptablesXdp,
                    [4.5, 5.5, 300.0, 0.0, 150.0, 6000.0, 60.0, 100.0],
                ),
            ],
            dns: Some(Dns {
                name: "web".to_owned(),
                meshd_qps: Figure::Value(60000.0),
                unbound_qps: Figure::Value(80000.0),
                meshd_lost_percent: Some(0.0),
                unbound_lost_percent: Some(0.0),
                how: "dnsperf in the task".to_owned(),
            }),
            convergence: None,
            rss: vec![],
            targets: vec![],
            notes: vec![],
            control: None,
        };
        r.targets = r.evaluate_targets();
        r
    }

    #[test]
    fn profiled_programs_get_their_own_table_only_when_measured() {
        let mut r = sample();
        let count = r.tables().len();
        let mesh = r
            .scenarios
            .iter_mut()
            .find(|s| s.scenario == Scenario::MeshTc)
            .unwrap();
        mesh.bpf.insert(
            Metric::ConnPerSec,
            vec![ProgCost {
                program: "tc_underlay_in".into(),
                runs: 400,
                ns_per_run: 212.4,
            }],
        );
        let tables = r.tables();
        assert_eq!(tables.len(), count + 1);
        let bpf = tables.iter().find(|t| t.title.starts_with("eBPF")).unwrap();
        assert_eq!(
            bpf.rows,
            [["mesh-tc", "conn/s", "tc_underlay_in", "400", "212"]]
        );
    }

    #[test]
    fn median_takes_the_middle_run_and_skips_what_is_not_a_number() {
        for (runs, want) in [
            (vec![], None),
            (vec![7.0], Some(7.0)),
            (vec![9.0, 1.0, 5.0], Some(5.0)),
            (vec![4.0, 1.0, 3.0, 2.0], Some(2.5)),
            (vec![f64::NAN, 2.0, 8.0, f64::INFINITY, 6.0], Some(6.0)),
        ] {
            assert_eq!(median(&runs), want, "{runs:?}");
        }
    }

    #[test]
    fn recovery_is_the_streak_after_the_last_failure() {
        let samples = [
            (-0.5, true),
            (0.0, true),
            (0.1, false),
            (0.4, true),
            (0.5, false),
            (1.2, true),
            (1.3, true),
            (1.4, true),
        ];
        let r = recovery(&samples, 3);
        assert_eq!(r.recovered_s, Some(1.2));
        assert_eq!((r.failed, r.total), (2, 7));
        assert_eq!(
            (r.first_failure_s, r.last_failure_s),
            (Some(0.1), Some(0.5))
        );
        // Not enough successes after the last failure.
        assert_eq!(recovery(&samples, 4).recovered_s, None);
        // Nothing failed: no outage.
        let fine = [(0.0, true), (0.1, true), (0.2, true)];
        assert_eq!(recovery(&fine, 3).recovered_s, Some(0.0));
        assert_eq!(recovery(&[], 1).recovered_s, None);
    }

    #[test]
    fn ratio_targets_pass_miss_and_unknown() {
        let t = ratio_target("x", &Figure::Value(9.0), &Figure::Value(10.0), 0.9);
        assert_eq!(t.verdict, Verdict::Pass);
        assert!((t.measured.unwrap() - 0.9).abs() < 1e-12);
        assert_eq!(t.shown, "0.90x (9.00 / 10.00)");
        let t = ratio_target("x", &Figure::Value(8.9), &Figure::Value(10.0), 0.9);
        assert_eq!(t.verdict, Verdict::Miss);
        let t = ratio_target(
            "x",
            &Figure::NotApplicable("no UDP".to_owned()),
            &Figure::Value(1.0),
            2.0,
        );
        assert_eq!(t.verdict, Verdict::Unknown);
        assert_eq!(t.shown, "N/A: no UDP");
        let t = ratio_target("x", &Figure::Value(1.0), &Figure::Value(0.0), 2.0);
        assert_eq!(t.verdict, Verdict::Unknown);
    }

    #[test]
    fn latency_targets_compare_the_microseconds_added() {
        let t = added_target("x", &Figure::Value(61.0), &Figure::Value(50.0), 20.0);
        assert_eq!(t.verdict, Verdict::Pass);
        assert_eq!(t.shown, "+11.0 us (61.0 vs 50.0 us)");
        let t = added_target("x", &Figure::Value(70.0), &Figure::Value(50.0), 20.0);
        assert_eq!(t.verdict, Verdict::Miss);
        let t = added_target("x", &Figure::Value(40.0), &Figure::Value(50.0), 20.0);
        assert_eq!(t.verdict, Verdict::Pass);
    }

    #[test]
    fn every_target_is_evaluated_against_the_right_figures() {
        let r = sample();
        let by: BTreeMap<&str, &TargetResult> =
            r.targets.iter().map(|t| (t.target.as_str(), t)).collect();
        assert_eq!(r.targets.len(), 11);
        // 9.5 / 10.0
        let t = by["mesh-tc TCP 1 stream >= 0.9x direct"];
        assert_eq!(t.verdict, Verdict::Pass);
        // 11 / 12 = 0.917
        assert_eq!(
            by["mesh-tc TCP 4 streams >= 0.9x direct"].verdict,
            Verdict::Pass
        );
        // 240 / 150 = 1.6
        assert_eq!(
            by["mesh-xdp 64B pps >= 1.5x iptables (xdp lab)"].verdict,
            Verdict::Pass
        );
        // 8000 / 6000 = 1.33
        assert_eq!(
            by["mesh-xdp conn/s >= 1.5x iptables (xdp lab)"].verdict,
            Verdict::Miss
        );
        assert_eq!(by["mesh-tc conn/s >= 2x userspace"].verdict, Verdict::Pass);
        assert_eq!(
            by["mesh-xdp conn/s >= 2x userspace (xdp lab)"].verdict,
            Verdict::Unknown
        );
        // 75 - 50 = 25
        assert_eq!(
            by["mesh-local p50 latency < direct + 20 us"].verdict,
            Verdict::Miss
        );
        assert_eq!(
            by["mesh-xdp p50 latency < direct (xdp lab) + 20 us"].verdict,
            Verdict::Pass
        );
        // 60000 / 80000 = 0.75
        assert_eq!(by["meshd DNS QPS >= 0.5x unbound"].verdict, Verdict::Pass);
    }

    #[test]
    fn tables_show_values_ratios_and_why_figures_are_missing() {
        let r = sample();
        let text = r.render_text();
        assert!(
            text.contains("machine: Test CPU, 2 cores, kernel 6.1.0, 4096 MiB"),
            "{text}"
        );
        let figures = r.tables()[0].text();
        let direct = figures.lines().find(|l| l.starts_with("direct ")).unwrap();
        assert!(
            direct.contains("10.00") && direct.contains("10000"),
            "{direct}"
        );
        let userspace = figures
            .lines()
            .find(|l| l.starts_with("userspace "))
            .unwrap();
        assert!(userspace.contains("N/A"), "{userspace}");
        let ratios = r.tables()[1].text();
        let mesh = ratios.lines().find(|l| l.starts_with("mesh-tc ")).unwrap();
        // TCP 1: 0.95; p50: +10.0 us.
        assert!(mesh.contains("0.95") && mesh.contains("+10.0"), "{mesh}");
        // The xdp lab's scenarios are compared with the xdp lab's direct.
        let xdp = ratios.lines().find(|l| l.starts_with("mesh-xdp ")).unwrap();
        assert!(xdp.contains("0.80"), "{xdp}");
        assert!(
            text.contains("userspace: UDP Mbit/s, UDP loss %, 64B kpps: N/A: HAProxy in TCP mode proxies TCP only"),
            "{text}"
        );
        assert!(
            text.contains("userspace (xdp lab): TCP 1 Gbit/s, TCP 4 Gbit/s"),
            "{text}"
        );
        assert!(text.contains("MISS") && text.contains("PASS"));
    }

    #[test]
    fn markdown_tables_are_well_formed() {
        let md = sample().render_markdown();
        let table: Vec<&str> = md
            .lines()
            .skip_while(|l| !l.starts_with("| scenario |"))
            .take_while(|l| l.starts_with('|'))
            .collect();
        assert_eq!(table.len(), 2 + 9, "{md}");
        let cols = table[0].matches('|').count();
        assert!(table.iter().all(|l| l.matches('|').count() == cols), "{md}");
        assert!(table[1].starts_with("| --- | ---: |"));
    }

    #[test]
    fn text_tables_align_columns() {
        let t = Table {
            title: "T".to_owned(),
            header: vec!["name".into(), "value".into()],
            rows: vec![
                vec!["a".into(), "1.5".into()],
                vec!["longer".into(), "12.25".into()],
            ],
        };
        assert_eq!(t.text(), "T\nname    value\na         1.5\nlonger  12.25\n");
    }

    #[test]
    fn results_serialise_with_metric_keys() {
        let r = sample();
        let v = serde_json::to_value(&r).unwrap();
        let direct = &v["scenarios"][0];
        assert_eq!(direct["scenario"], "direct");
        assert_eq!(direct["figures"]["tcp_1_stream_gbit_s"]["value"], 10.0);
        assert_eq!(
            v["scenarios"][3]["figures"]["udp_loss_percent"]["not_applicable"],
            "HAProxy in TCP mode proxies TCP only"
        );
        assert_eq!(v["targets"][0]["verdict"], "PASS");
    }
}
