//! Issue 7's targets: ratios and added microseconds, each with its verdict.

use serde::Serialize;

use super::{Figure, Metric, NOT_RUN, Results, Scenario};

/// PASS, MISS, or not decidable (a figure is missing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Verdict {
    #[serde(rename = "PASS")]
    Pass,
    #[serde(rename = "MISS")]
    Miss,
    #[serde(rename = "UNKNOWN")]
    Unknown,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Miss => "MISS",
            Self::Unknown => "N/A",
        }
    }
}

/// A target of issue 7 with what was measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TargetResult {
    pub target: String,
    /// The ratio (ratio targets) or the added microseconds (latency targets).
    pub measured: Option<f64>,
    pub shown: String,
    pub verdict: Verdict,
}

/// `lhs / rhs >= min`.
pub fn ratio_target(target: &str, lhs: &Figure, rhs: &Figure, min: f64) -> TargetResult {
    match (lhs.value(), rhs.value()) {
        (Some(a), Some(b)) if b > 0.0 => {
            let r = a / b;
            TargetResult {
                target: target.to_owned(),
                measured: Some(r),
                shown: format!("{r:.2}x ({} / {})", short(a), short(b)),
                verdict: if r >= min {
                    Verdict::Pass
                } else {
                    Verdict::Miss
                },
            }
        }
        _ => unknown(target, lhs, rhs),
    }
}

/// `lhs - rhs < max` (microseconds added over the reference).
pub fn added_target(target: &str, lhs: &Figure, rhs: &Figure, max: f64) -> TargetResult {
    match (lhs.value(), rhs.value()) {
        (Some(a), Some(b)) => {
            let d = a - b;
            TargetResult {
                target: target.to_owned(),
                measured: Some(d),
                shown: format!("{d:+.1} us ({a:.1} vs {b:.1} us)"),
                verdict: if d < max {
                    Verdict::Pass
                } else {
                    Verdict::Miss
                },
            }
        }
        _ => unknown(target, lhs, rhs),
    }
}

fn unknown(target: &str, lhs: &Figure, rhs: &Figure) -> TargetResult {
    // The reasons are in the notes; here only which kind.
    let why = match (lhs, rhs) {
        (Figure::NotApplicable(r), _) | (_, Figure::NotApplicable(r)) => format!("N/A: {r}"),
        (Figure::Failed(r), _) | (_, Figure::Failed(r)) if r == NOT_RUN => NOT_RUN.to_owned(),
        (Figure::Failed(_), _) | (_, Figure::Failed(_)) => "a figure failed (see notes)".to_owned(),
        _ => "the reference is zero".to_owned(),
    };
    TargetResult {
        target: target.to_owned(),
        measured: None,
        shown: why,
        verdict: Verdict::Unknown,
    }
}

/// A number short enough for a ratio's explanation.
pub(super) fn short(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

impl Results {
    /// Issue 7's targets, evaluated on these results.
    pub fn evaluate_targets(&self) -> Vec<TargetResult> {
        use Metric::{ConnPerSec, LatP50, Pps64, Tcp1, Tcp4};
        use Scenario::{Direct, IptablesXdp, MeshLocal, MeshTc, MeshXdp, Userspace, UserspaceXdp};
        let f = |s, m| self.figure(s, m);
        let mut t = vec![
            ratio_target(
                "mesh-tc TCP 1 stream >= 0.9x direct",
                &f(MeshTc, Tcp1),
                &f(Direct, Tcp1),
                0.9,
            ),
            ratio_target(
                "mesh-tc TCP 4 streams >= 0.9x direct",
                &f(MeshTc, Tcp4),
                &f(Direct, Tcp4),
                0.9,
            ),
            ratio_target(
                "mesh-xdp 64B pps >= 1.5x iptables (xdp lab)",
                &f(MeshXdp, Pps64),
                &f(IptablesXdp, Pps64),
                1.5,
            ),
            ratio_target(
                "mesh-xdp conn/s >= 1.5x iptables (xdp lab)",
                &f(MeshXdp, ConnPerSec),
                &f(IptablesXdp, ConnPerSec),
                1.5,
            ),
        ];
        for (mesh, userspace) in [
            (MeshTc, Userspace),
            (MeshLocal, Userspace),
            (MeshXdp, UserspaceXdp),
        ] {
            t.push(ratio_target(
                &format!("{} conn/s >= 2x {}", mesh.name(), userspace.name()),
                &f(mesh, ConnPerSec),
                &f(userspace, ConnPerSec),
                2.0,
            ));
        }
        for mesh in [MeshTc, MeshLocal, MeshXdp] {
            let direct = mesh.reference();
            t.push(added_target(
                &format!("{} p50 latency < {} + 20 us", mesh.name(), direct.name()),
                &f(mesh, LatP50),
                &f(direct, LatP50),
                20.0,
            ));
        }
        let missing = || Figure::Failed(NOT_RUN.to_owned());
        let (meshd, unbound) = self.dns.as_ref().map_or_else(
            || (missing(), missing()),
            |d| (d.meshd_qps.clone(), d.unbound_qps.clone()),
        );
        t.push(ratio_target(
            "meshd DNS QPS >= 0.5x unbound",
            &meshd,
            &unbound,
            0.5,
        ));
        t
    }
}
