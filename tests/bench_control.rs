//! `mesh-bench --control` at a tiny size: its labs come up one after the other on this test's
//! prefix and /24, every part of the control scenario runs, and the results file holds every
//! figure. No speed is asserted. Needs `target/debug/mesh-bench` (`cargo build --workspace
//! --bins`).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::support::{Lab, MESHCTL, stderr};

const OCTET: u8 = 239;

/// `mesh-bench` next to this build's meshctl.
fn mesh_bench() -> PathBuf {
    let bin = PathBuf::from(MESHCTL).with_file_name("mesh-bench");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first",
        bin.display()
    );
    bin
}

/// The bench's results folder, removed on drop.
struct ResultsDir(PathBuf);

impl ResultsDir {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ResultsDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn value(v: &Value, what: &str) -> f64 {
    v.get("value")
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{what} is not a value: {v}"))
}

#[test]
fn bench_control_measures_every_control_plane_figure() {
    // No `lab up` here: the bench makes its labs with this prefix; the guard removes whatever
    // is left of them, also when the test fails.
    let lab = Lab {
        prefix: Lab::prefix_for("bctl"),
        subnet_octet: OCTET,
        nodes: 5,
    };
    let results = ResultsDir(std::env::temp_dir().join(format!("{}-results", lab.prefix)));
    std::fs::create_dir_all(results.path()).expect("a results folder");
    let out = Command::new(mesh_bench())
        .args(["--meshctl", MESHCTL, "--control", "--prefix", &lab.prefix])
        .args(["--subnet", &lab.subnet()])
        .args(["--control-clients", "4", "--control-seconds", "1"])
        .args(["--control-services", "5", "--control-kills", "1"])
        .args(["--big-nodes", "5", "--big-managers", "1"])
        .arg("--results")
        .arg(results.path())
        .output()
        .expect("run mesh-bench");
    assert!(out.status.success(), "mesh-bench failed:\n{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for table in [
        "Control plane: calls through the API",
        "Control plane: timings",
        "meshd resident memory (VmRSS, MiB) at 5 nodes",
    ] {
        assert!(text.contains(table), "no {table:?} in\n{text}");
    }

    let json = std::fs::read_dir(results.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a results file");
    assert!(
        json.with_extension("svg").is_file(),
        "no chart beside {}",
        json.display()
    );
    let r: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let c = &r["control"];
    for kind in ["creates", "writes"] {
        let runs = c[kind].as_array().expect(kind);
        let managers: Vec<u64> = runs.iter().filter_map(|t| t["managers"].as_u64()).collect();
        assert_eq!(managers, [1, 3], "{kind}: {runs:?}");
        for t in runs {
            assert!(value(&t["per_s"], kind) > 0.0);
        }
    }
    let serving = &c["create_to_serving"];
    assert_eq!(serving["services"], 5);
    assert!(value(&serving["all_serving_s"], "create to serving") > 0.0);
    let kills = c["failover"]["kills_s"].as_array().expect("failover kills");
    assert_eq!(kills.len(), 1);
    value(&c["failover"]["max_s"], "failover max");
    let s = &c["scheduler"];
    assert_eq!(
        (s["tasks"].as_u64(), s["nodes"].as_u64()),
        (Some(10_000), Some(1_000))
    );
    assert!(s["ratio"].as_f64().expect("scheduler ratio") > 0.0);
    let big = &c["big_lab"];
    assert_eq!(big["nodes"], 5);
    value(&big["all_seen_dead_s"], "gossip convergence");
    assert_eq!(big["seen_dead_s"].as_array().map(Vec::len), Some(4));
    let rss = big["rss_kib"].as_array().expect("rss per node");
    assert_eq!(rss.len(), 5);
    assert!(rss.iter().all(|n| n[1].as_u64().is_some()), "{rss:?}");
    // Everything the bench made is gone (the guard's `lab down` then finds nothing).
    assert!(
        !String::from_utf8_lossy(
            &Command::new("ip")
                .args(["netns", "ls"])
                .output()
                .unwrap()
                .stdout
        )
        .contains(&lab.prefix),
        "the bench left namespaces of {}",
        lab.prefix
    );
}
