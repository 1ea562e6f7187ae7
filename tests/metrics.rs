//! Metrics and status on a lab cluster: every node serves Prometheus text at
//! `<node address>:9323/metrics` and `/healthz`; the routing mesh's packet and connection
//! counters rise with a request loop; `meshctl status` is OK on a healthy cluster and, once a
//! node is killed, exits non-zero and names that node's gossip as down.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::{Lab, eventually, meshctl, ok, stdout, words};

const HTTPD: &str =
    "mkdir -p /www && hostname | tr -d '\\n' > /www/index.html && exec httpd -f -p 80 -h /www";

/// `curl ARGS` in the client's namespace; stdout, or the error.
fn curl(lab: &Lab, args: &[&str]) -> Result<String, String> {
    let mut cmd = vec!["curl", "-sS", "--max-time", "5"];
    cmd.extend_from_slice(args);
    let out = lab.exec("client", &cmd);
    if out.status.success() {
        Ok(stdout(&out))
    } else {
        Err(format!(
            "curl {args:?}: {}{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Parses Prometheus text: every line that is not a comment is `name{labels} value`; returns
/// `name{labels}` → value, or what is wrong.
fn parse(text: &str) -> Result<BTreeMap<String, f64>, String> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("no value: {line:?}"))?;
        let name = series.split('{').next().unwrap_or_default();
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        let labels_ok = !series.contains('{') || series.ends_with('}');
        if !name_ok || !labels_ok {
            return Err(format!("bad series: {line:?}"));
        }
        let v = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| format!("bad value: {line:?}"))?,
        };
        out.insert(series.to_owned(), v);
    }
    Ok(out)
}

fn scrape(lab: &Lab, node: usize) -> Result<BTreeMap<String, f64>, String> {
    let url = format!("http://{}:9323/metrics", lab.node_addr(node));
    parse(&curl(lab, &["-f", &url])?)
}

#[test]
fn metrics_count_traffic_and_status_reports_a_killed_node() {
    let lab = Lab::up("metr", 200, 3, 1);
    let image = lab.image();
    let args = [
        &words("service create -d --name web --replicas 2 -p 8080:80")[..],
        &[image.as_str(), "sh", "-c", HTTPD],
    ]
    .concat();
    ok(&lab, "n1", &args);
    let n1 = lab.node_addr(1);
    let web = format!("http://{n1}:8080/");
    eventually(Duration::from_mins(1), "web answering through n1", || {
        curl(&lab, &[&web])
    });

    // Every node serves parsable metrics and a healthy /healthz.
    for i in 1..=3 {
        let m = eventually(Duration::from_secs(30), "metrics parse", || scrape(&lab, i));
        assert!(m.contains_key("meshd_engine_reachable"), "{m:?}");
        let health = curl(
            &lab,
            &[
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://{}:9323/healthz", lab.node_addr(i)),
            ],
        );
        assert_eq!(health.as_deref(), Ok("200"), "healthz of n{i}");
    }
    let content_type = curl(
        &lab,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{content_type}",
            &format!("http://{n1}:9323/metrics"),
        ],
    );
    assert_eq!(
        content_type.as_deref(),
        Ok("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let leader = scrape(&lab, 1).unwrap();
    assert_eq!(leader.get("meshd_raft_leader"), Some(&1.0), "{leader:?}");

    // Counters of `web` on n1 rise with a request loop through n1.
    let node = lab.ns("n1");
    let packets = format!(r#"meshd_mesh_packets_total{{service="web",node="{node}"}}"#);
    let conns = format!(r#"meshd_mesh_connections_total{{service="web",node="{node}"}}"#);
    let before = scrape(&lab, 1).unwrap();
    let value = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    for _ in 0..20 {
        curl(&lab, &[&web]).expect("web answers");
    }
    eventually(Duration::from_secs(10), "counters rising", || {
        let after = scrape(&lab, 1)?;
        let grew = value(&after, &packets) >= value(&before, &packets) + 40.0
            && value(&after, &conns) >= value(&before, &conns) + 20.0;
        if grew {
            Ok(())
        } else {
            Err(format!(
                "before {} {}, after {} {}",
                value(&before, &packets),
                value(&before, &conns),
                value(&after, &packets),
                value(&after, &conns)
            ))
        }
    });

    // `meshctl status` on a healthy cluster.
    eventually(Duration::from_secs(30), "status OK", || {
        let out = meshctl(&lab, "n1", &["status"]);
        if out.status.success() {
            Ok(())
        } else {
            Err(stdout(&out))
        }
    });
    let json: serde_json::Value =
        serde_json::from_str(&ok(&lab, "n1", &["status", "--format", "json"])).unwrap();
    assert_eq!(json["mesh"]["datapath"], "tc", "{json}");

    // A killed node: its gossip is down, and status says so and fails.
    let killed = lab.meshctl_lab(&["stop", "--kill", "n3"]);
    assert!(killed.status.success(), "{}", stdout(&killed));
    let n3 = lab.ns("n3");
    let text = eventually(Duration::from_secs(30), "status reporting n3 down", || {
        let out = meshctl(&lab, "n1", &["status"]);
        let text = stdout(&out);
        let gossip = text
            .lines()
            .find(|l| l.starts_with("Gossip:"))
            .unwrap_or("");
        if !out.status.success() && gossip.contains("DEGRADED") && gossip.contains(&n3) {
            Ok(text)
        } else {
            Err(text)
        }
    });
    assert!(
        text.contains(&format!("{n3} dead")) || text.contains(&format!("{n3} unknown")),
        "{text}"
    );
    let m = scrape(&lab, 1).unwrap();
    let down = value(&m, r#"meshd_gossip_members{state="dead"}"#)
        + value(&m, r#"meshd_gossip_members{state="unknown"}"#);
    assert!(down >= 1.0, "{m:?}");
}
