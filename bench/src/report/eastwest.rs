//! The east-west rows (pure): a task on n1 talking to a service's task on n2 over an overlay
//! network, by each way the mesh (or its baseline) offers, and their table with ratios to the
//! task-to-task path without a balancer.

use serde::Serialize;
use std::collections::BTreeMap;

use super::{Datapath, Figure, Metric, Table};
use crate::panel::Panel;

/// One way from the client task to the server task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EastWest {
    /// To the server task's own overlay address: no balancer.
    EwDirect,
    /// To the service's VIP, meshd's default: the cgroup programs pick the backend at connect.
    EwSocketLb,
    /// To the VIP with `meshd --socket-lb=false`: the tc program translates every packet.
    EwPerPacket,
    /// To a cluster IP that kube-proxy's chains in n1 translate.
    EwIptables,
}

impl EastWest {
    /// In the order they are printed.
    pub const ALL: [Self; 4] = [
        Self::EwDirect,
        Self::EwSocketLb,
        Self::EwPerPacket,
        Self::EwIptables,
    ];

    /// The figures an east-west row has.
    pub const METRICS: [Metric; 3] = [Metric::ConnPerSec, Metric::Tcp1, Metric::Tcp4];

    pub fn name(self) -> &'static str {
        match self {
            Self::EwDirect => "ew-direct",
            Self::EwSocketLb => "ew-socket-lb",
            Self::EwPerPacket => "ew-per-packet",
            Self::EwIptables => "ew-iptables",
        }
    }

    pub fn wiring(self) -> &'static str {
        match self {
            Self::EwDirect => {
                "client task on n1 -> server task's overlay address on n2 (VXLAN, or routed in the tc-native lab), no balancer"
            }
            Self::EwSocketLb => {
                "client task -> the service's VIP; meshd's cgroup connect4 on n1 picks the task (default meshd)"
            }
            Self::EwPerPacket => {
                "client task -> the service's VIP; tc on n1's task veth translates every packet (meshd --socket-lb=false)"
            }
            Self::EwIptables => {
                "client task -> a ClusterIP routed to n1's bridge; kube-proxy's chains DNAT+MASQUERADE in n1 (forwarding on for it), then the overlay to n2"
            }
        }
    }
}

/// The figures of one east-west way.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EastWestResult {
    pub scenario: EastWest,
    /// The lab it ran in: tc, or tc-native (the same rows with native routing).
    pub lab: Datapath,
    pub name: &'static str,
    pub wiring: &'static str,
    pub figures: BTreeMap<Metric, Figure>,
    /// Every run of a repeated figure, in order (its figure is their median).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub samples: BTreeMap<Metric, Vec<f64>>,
}

impl EastWestResult {
    pub fn new(scenario: EastWest, lab: Datapath) -> Self {
        Self {
            scenario,
            lab,
            name: scenario.name(),
            wiring: scenario.wiring(),
            figures: BTreeMap::new(),
            samples: BTreeMap::new(),
        }
    }

    /// Every figure failed for the same reason.
    pub fn failed(scenario: EastWest, lab: Datapath, reason: &str) -> Self {
        let mut r = Self::new(scenario, lab);
        for m in EastWest::METRICS {
            r.figures.insert(m, Figure::Failed(reason.to_owned()));
        }
        r
    }

    /// The row's name, with its lab when that is not the tc lab.
    pub fn label(&self) -> String {
        if self.lab == Datapath::Tc {
            self.name.to_owned()
        } else {
            format!("{} ({} lab)", self.name, self.lab.name())
        }
    }

    fn get(&self, m: Metric) -> Figure {
        self.figures
            .get(&m)
            .cloned()
            .unwrap_or_else(|| Figure::Failed("not measured".to_owned()))
    }
}

/// The east-west table: each figure, then its ratio to `ew-direct` of the same run.
pub fn east_west_table(rows: &[EastWestResult]) -> Option<Table> {
    if rows.is_empty() {
        return None;
    }
    let direct = |lab| {
        rows.iter()
            .find(|r| r.scenario == EastWest::EwDirect && r.lab == lab)
    };
    let mut header = vec!["scenario".to_owned()];
    header.extend(EastWest::METRICS.iter().map(|m| m.header().to_owned()));
    header.extend(
        EastWest::METRICS
            .iter()
            .map(|m| format!("{} vs direct", m.header())),
    );
    let body = sorted(rows)
        .into_iter()
        .map(|r| {
            let mut row = vec![r.label()];
            row.extend(EastWest::METRICS.iter().map(|&m| r.get(m).cell(m)));
            row.extend(EastWest::METRICS.iter().map(|&m| {
                let base = direct(r.lab).and_then(|d| d.get(m).value());
                ratio(r.get(m).value(), base)
            }));
            row
        })
        .collect();
    Some(Table {
        title: "East-west: a task on n1 to a service's task on n2 over an overlay network (ratios: vs ew-direct of the same lab)".to_owned(),
        header,
        rows: body,
    })
}

/// The chart's panels: conn/s, and TCP with 1 and 4 streams, per east-west row.
pub fn east_west_panels(rows: &[EastWestResult]) -> Vec<Panel> {
    if rows.is_empty() {
        return Vec::new();
    }
    let sorted = sorted(rows);
    let groups: Vec<String> = sorted.iter().map(|r| r.label()).collect();
    let values = |m: Metric| sorted.iter().map(|r| r.get(m).value()).collect::<Vec<_>>();
    vec![
        Panel::new(
            "East-west: new connections per second, task on n1 to a task on n2",
            "conn/s (higher is better)",
            groups.clone(),
        )
        .series("conn/s", values(Metric::ConnPerSec)),
        Panel::new(
            "East-west: TCP throughput, task on n1 to a task on n2",
            "Gbit/s (higher is better)",
            groups,
        )
        .series("TCP 1 stream", values(Metric::Tcp1))
        .series("TCP 4 streams", values(Metric::Tcp4)),
    ]
}

/// By lab, then in the rows' order.
fn sorted(rows: &[EastWestResult]) -> Vec<&EastWestResult> {
    let mut v: Vec<&EastWestResult> = rows.iter().collect();
    v.sort_by_key(|r| (r.lab, r.scenario));
    v
}

fn ratio(v: Option<f64>, base: Option<f64>) -> String {
    match (v, base) {
        (Some(v), Some(b)) if b > 0.0 => format!("{:.2}x", v / b),
        _ => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(s: EastWest, conns: f64, gbit: f64) -> EastWestResult {
        let mut r = EastWestResult::new(s, Datapath::Tc);
        r.figures.insert(Metric::ConnPerSec, Figure::Value(conns));
        r.figures.insert(Metric::Tcp1, Figure::Value(gbit));
        r.figures
            .insert(Metric::Tcp4, Figure::Failed("iperf3 failed".to_owned()));
        r
    }

    #[test]
    fn rows_are_in_order_with_ratios_to_ew_direct() {
        let t = east_west_table(&[
            row(EastWest::EwSocketLb, 5000.0, 9.0),
            row(EastWest::EwDirect, 10000.0, 10.0),
        ])
        .unwrap();
        assert_eq!(t.rows[0][0], "ew-direct");
        assert_eq!(t.rows[1][0], "ew-socket-lb");
        assert_eq!(t.header.len(), 7);
        assert_eq!(t.rows[1][1], "5000");
        assert_eq!(t.rows[1][3], "failed");
        assert_eq!(t.rows[1][4], "0.50x");
        assert_eq!(t.rows[1][5], "0.90x");
        assert_eq!(t.rows[1][6], "-");
        assert_eq!(t.rows[0][4], "1.00x");
    }

    #[test]
    fn without_ew_direct_there_are_no_ratios_and_without_rows_no_table() {
        let t = east_west_table(&[row(EastWest::EwIptables, 1.0, 1.0)]).unwrap();
        assert_eq!(t.rows[0][4], "-");
        assert!(east_west_table(&[]).is_none());
        let f = EastWestResult::failed(EastWest::EwPerPacket, Datapath::Tc, "lab up failed");
        assert_eq!(f.figures.len(), EastWest::METRICS.len());
    }

    #[test]
    fn the_panels_have_a_bar_per_row_and_none_for_a_failed_figure() {
        let p = east_west_panels(&[
            row(EastWest::EwSocketLb, 5000.0, 9.0),
            row(EastWest::EwDirect, 10000.0, 10.0),
        ]);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].groups, ["ew-direct", "ew-socket-lb"]);
        assert_eq!(p[0].series[0].values, [Some(10000.0), Some(5000.0)]);
        assert_eq!(p[1].series[1].values, [None, None]);
        assert!(east_west_panels(&[]).is_empty());
    }

    #[test]
    fn a_native_row_is_named_by_its_lab_and_divided_by_its_own_direct() {
        let mut native = row(EastWest::EwDirect, 20000.0, 20.0);
        native.lab = Datapath::TcNative;
        let mut native_lb = row(EastWest::EwSocketLb, 10000.0, 10.0);
        native_lb.lab = Datapath::TcNative;
        let t =
            east_west_table(&[native_lb, row(EastWest::EwDirect, 10000.0, 10.0), native]).unwrap();
        assert_eq!(t.rows[0][0], "ew-direct");
        assert_eq!(t.rows[1][0], "ew-direct (tc-native lab)");
        assert_eq!(t.rows[2][0], "ew-socket-lb (tc-native lab)");
        assert_eq!(t.rows[2][4], "0.50x");
    }
}
