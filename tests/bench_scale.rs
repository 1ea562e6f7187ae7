//! The bench's scale scenario runs and reports: `mesh-bench --labs none --scale` at tiny sizes
//! (1 and 10 services, 1-second runs) writes a results file with a row per size and balancer,
//! each with its figures, and leaves no namespace or pin behind. No figure is judged: speed is
//! the bench's business, not a test's.
//!
//! The scenario builds its own namespaces (no meshd, no Docker: see `bench/src/run/scale.rs`);
//! the guard here removes them and the pins should the bench be killed half-way.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Lab, MESHCTL, stderr, stdout};

/// 198.18.237.0/24: this test's underlay.
const OCTET: u8 = 237;

/// Removes the scale scenario's namespaces and pins of `prefix` on drop.
struct ScaleGuard {
    prefix: String,
    results: PathBuf,
}

impl ScaleGuard {
    fn namespaces(&self) -> Vec<String> {
        let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
        stdout(&out)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|ns| ns.starts_with(&format!("{}-sc-", self.prefix)))
            .map(str::to_owned)
            .collect()
    }

    fn pin_dir(&self) -> PathBuf {
        PathBuf::from(format!("/sys/fs/bpf/{}-scale", self.prefix))
    }
}

impl Drop for ScaleGuard {
    fn drop(&mut self) {
        for ns in self.namespaces() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
        let _ = mesh_dataplane::Mesh::remove_pins(&self.pin_dir());
        let _ = std::fs::remove_dir_all(&self.results);
    }
}

#[test]
fn bench_scale_scenario_reports_every_size_and_balancer() {
    let bench = Path::new(MESHCTL).with_file_name("mesh-bench");
    let server = Path::new(MESHCTL).with_file_name("mesh-bench-server");
    assert!(
        bench.is_file() && server.is_file(),
        "{} or {} missing: run `cargo build --workspace --bins` first",
        bench.display(),
        server.display()
    );
    let prefix = Lab::prefix_for("bscale");
    let guard = ScaleGuard {
        results: std::env::temp_dir().join(format!("{prefix}-results")),
        prefix,
    };
    std::fs::create_dir_all(&guard.results).unwrap();
    let out = Command::new(&bench)
        .args(["--meshctl", MESHCTL])
        .arg("--server")
        .arg(&server)
        .args(["--labs", "none", "--scale", "--scale-sizes", "1,10"])
        .args(["--wrk-seconds", "1", "--prefix", &guard.prefix])
        .args(["--subnet", &format!("198.18.{OCTET}.0/24")])
        .arg("--results")
        .arg(&guard.results)
        .arg("--chart")
        .arg(guard.results.join("chart.svg"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mesh-bench failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.contains("Scale: services through one node"), "{text}");

    let json = std::fs::read_dir(&guard.results)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a results file");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = v["scale"]["rows"].as_array().expect("scale rows");
    for path in ["mesh", "iptables"] {
        for n in [1, 10] {
            let row = rows
                .iter()
                .find(|r| r["path"] == path && r["services"] == n)
                .unwrap_or_else(|| panic!("no {path} row for {n} services in {v}"));
            for figure in ["program_ms", "conn_per_s", "p50_us"] {
                assert!(
                    row[figure]["value"].as_f64().is_some_and(|x| x > 0.0),
                    "{path} {n}: {figure} is {} ({text})",
                    row[figure]
                );
            }
        }
    }
    // The mesh rows carry what its programs cost per run, from the node's own programs.
    let mesh_1 = rows
        .iter()
        .find(|r| r["path"] == "mesh" && r["services"] == 1)
        .unwrap();
    assert!(
        mesh_1["bpf"]
            .as_array()
            .is_some_and(|b| b.iter().any(|p| p["program"] == "tc_underlay_in")),
        "{mesh_1}"
    );
    let svg = std::fs::read_to_string(guard.results.join("chart.svg")).unwrap();
    assert!(svg.contains("10 services"));
    assert!(guard.namespaces().is_empty(), "{:?}", guard.namespaces());
    assert!(!guard.pin_dir().exists());
}
