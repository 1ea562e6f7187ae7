//! `--profile`: what each eBPF program costs per run, from the kernel's own accounting
//! (`kernel.bpf_stats_enabled`, read with `bpftool -j prog show`). This VM exposes no hardware
//! cycle counters, so `bpftool prog profile` cannot run here; the run-time statistics need none.

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// One loaded program's counters.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ProgStats {
    pub id: u32,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub run_cnt: u64,
    #[serde(default)]
    pub run_time_ns: u64,
}

/// What one program (all its instances, one per node) cost during one figure's runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProgCost {
    pub program: String,
    pub runs: u64,
    pub ns_per_run: f64,
}

/// The programs of `bpftool -j prog show` whose name starts with one of `prefixes`.
pub fn parse_prog_show(json: &str, prefixes: &[&str]) -> Result<Vec<ProgStats>> {
    let all: Vec<ProgStats> =
        serde_json::from_str(json).context("bpftool -j prog show: not a list of programs")?;
    Ok(all
        .into_iter()
        .filter(|p| prefixes.iter().any(|pre| p.name.starts_with(pre)))
        .collect())
}

/// The cost between two snapshots, summed by program name (programs loaded in between count
/// from zero; programs that did not run are left out).
#[must_use]
pub fn cost(before: &[ProgStats], after: &[ProgStats]) -> Vec<ProgCost> {
    let earlier: BTreeMap<u32, &ProgStats> = before.iter().map(|p| (p.id, p)).collect();
    let mut by_name: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for p in after {
        let (cnt0, ns0) = earlier
            .get(&p.id)
            .map_or((0, 0), |b| (b.run_cnt, b.run_time_ns));
        let e = by_name.entry(&p.name).or_default();
        e.0 += p.run_cnt.saturating_sub(cnt0);
        e.1 += p.run_time_ns.saturating_sub(ns0);
    }
    by_name
        .into_iter()
        .filter(|(_, (runs, _))| *runs > 0)
        .map(|(name, (runs, ns))| ProgCost {
            program: name.to_owned(),
            runs,
            #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
            ns_per_run: ns as f64 / runs as f64,
        })
        .collect()
}

/// The mesh's programs (tc and XDP) and the lab switch's XDP probe, now.
pub fn snapshot() -> Result<Vec<ProgStats>> {
    let out = Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
        .context("running bpftool")?;
    if !out.status.success() {
        bail!(
            "bpftool -j prog show: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_prog_show(&String::from_utf8_lossy(&out.stdout), &["tc_", "xdp_"])
}

const STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// `kernel.bpf_stats_enabled` on while this lives; its old value back on drop. The statistics
/// add two clock reads to every program run, which is why they are only on with `--profile`.
pub struct RunTimeStats {
    previous: String,
}

impl RunTimeStats {
    pub fn enable() -> Result<Self> {
        let previous = std::fs::read_to_string(STATS_SYSCTL)
            .with_context(|| format!("reading {STATS_SYSCTL}"))?;
        std::fs::write(STATS_SYSCTL, "1").with_context(|| format!("writing {STATS_SYSCTL}"))?;
        Ok(Self {
            previous: previous.trim().to_owned(),
        })
    }
}

impl Drop for RunTimeStats {
    fn drop(&mut self) {
        let _ = std::fs::write(STATS_SYSCTL, &self.previous);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = r#"[
        {"id":7,"type":"cgroup_skb","name":"sd_fw_egress","run_time_ns":5,"run_cnt":1},
        {"id":10,"type":"sched_cls","name":"tc_underlay_in","run_time_ns":1000,"run_cnt":10},
        {"id":11,"type":"sched_cls","name":"tc_bridge_in","run_time_ns":600,"run_cnt":3},
        {"id":12,"type":"sched_cls","name":"tc_underlay_in","run_time_ns":200,"run_cnt":2},
        {"id":13,"type":"xdp","name":"xdp_mesh"},
        {"id":14,"type":"tracing"}
    ]"#;

    #[test]
    fn keeps_the_mesh_programs_and_defaults_missing_counters() {
        let p = parse_prog_show(SHOW, &["tc_", "xdp_"]).unwrap();
        let ids: Vec<u32> = p.iter().map(|p| p.id).collect();
        assert_eq!(ids, [10, 11, 12, 13]);
        assert_eq!((p[3].run_cnt, p[3].run_time_ns), (0, 0));
        assert!(parse_prog_show("{}", &["tc_"]).is_err());
    }

    #[test]
    fn cost_sums_instances_by_name_and_counts_new_programs_from_zero() {
        let before = parse_prog_show(SHOW, &["tc_", "xdp_"]).unwrap();
        let mut after = before.clone();
        after[0].run_cnt += 100; // tc_underlay_in, node 1
        after[0].run_time_ns += 30_000;
        after[2].run_cnt += 100; // tc_underlay_in, node 2
        after[2].run_time_ns += 10_000;
        after.push(ProgStats {
            id: 20,
            name: "tc_task_in".into(),
            run_cnt: 4,
            run_time_ns: 1000,
        });
        let c = cost(&before, &after);
        assert_eq!(
            c,
            [
                ProgCost {
                    program: "tc_task_in".into(),
                    runs: 4,
                    ns_per_run: 250.0
                },
                ProgCost {
                    program: "tc_underlay_in".into(),
                    runs: 200,
                    ns_per_run: 200.0
                },
            ]
        );
    }
}
