//! The control plane (issue 3) on lab swarms: raft failover without losing a committed write,
//! restarts that keep the state, join tokens that admit only whom they should, and mutual TLS
//! that lets a certificate do only what its role may.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mesh_overlay::netns::NetNs;
use serde_json::Value;

use crate::support::{Lab, fails, meshctl, ok, stderr, stdout};

/// One row of `node ls --format json`.
#[derive(Debug, Clone)]
struct Row {
    hostname: String,
    status: String,
    manager_status: String,
}

/// `node ls` from `member`, by hostname; None when the command fails (no leader yet, ...).
fn node_ls(lab: &Lab, member: &str) -> Option<BTreeMap<String, Row>> {
    let out = meshctl(lab, member, &["node", "ls", "--format", "json"]);
    if !out.status.success() {
        return None;
    }
    Some(
        stdout(&out)
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("node ls --format json");
                let row = Row {
                    hostname: v["Hostname"].as_str().unwrap().to_owned(),
                    status: v["Status"].as_str().unwrap().to_owned(),
                    manager_status: v["ManagerStatus"].as_str().unwrap().to_owned(),
                };
                (row.hostname.clone(), row)
            })
            .collect(),
    )
}

/// Polls `check` every 200 ms until it returns Some, or panics after `within` with `what`.
fn eventually<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The member (`nI`) that leads, as `from` sees it.
fn leader(lab: &Lab, from: &str) -> Option<String> {
    let rows = node_ls(lab, from)?;
    let host = rows.values().find(|r| r.manager_status == "Leader")?;
    Some(host.hostname.rsplit('-').next().unwrap().to_owned())
}

/// A node's labels as `node inspect --format '{{json .Spec.Labels}}'` shows them from `member`.
fn inspect(lab: &Lab, member: &str, node: &str) -> Option<BTreeMap<String, String>> {
    let out = meshctl(
        lab,
        member,
        &["node", "inspect", "--format", "{{json .Spec.Labels}}", node],
    );
    out.status
        .success()
        .then(|| serde_json::from_str(stdout(&out).trim()).expect("node labels as JSON"))
}

fn lab_cmd(lab: &Lab, args: &[&str]) {
    let out = lab.meshctl_lab(args);
    assert!(
        out.status.success(),
        "meshctl lab {args:?} failed: {}",
        stderr(&out)
    );
}

/// Writes label `key=value` on `node` through `member`, retrying while an election settles.
/// Returns once the write is acknowledged.
fn write_label(lab: &Lab, member: &str, node: &str, key: &str, value: &str) {
    let label = format!("{key}={value}");
    eventually(Duration::from_secs(20), &format!("writing {label}"), || {
        meshctl(
            lab,
            member,
            &["node", "update", "--label-add", &label, node],
        )
        .status
        .success()
        .then_some(())
    });
}

/// 3 managers and a worker: killing the leader's meshd (SIGKILL) elects another leader within
/// seconds, `node ls` on a survivor shows the old one `Unreachable`, a write made afterwards is
/// read back from every live manager, and the killed node comes back as a follower with it.
#[test]
fn control_leader_failover_and_rejoin() {
    let lab = Lab::up("cfail", 130, 4, 3);
    let worker = lab.ns("n4");
    let old = eventually(Duration::from_secs(10), "a leader", || leader(&lab, "n1"));
    write_label(&lab, "n1", &worker, "before", "1");

    lab_cmd(&lab, &["stop", "--kill", &old]);
    let killed_at = Instant::now();
    let survivors: Vec<String> = ["n1", "n2", "n3"]
        .iter()
        .filter(|m| **m != old)
        .map(|m| (*m).to_owned())
        .collect();
    let old_host = lab.ns(&old);
    let new = eventually(Duration::from_secs(15), "a new leader", || {
        let rows = node_ls(&lab, &survivors[0])?;
        let new = rows.values().find(|r| r.manager_status == "Leader")?;
        (new.hostname != old_host && rows[&old_host].manager_status == "Unreachable")
            .then(|| new.hostname.clone())
    });
    eprintln!(
        "new leader {new} after {:?}; {old_host} Unreachable",
        killed_at.elapsed()
    );

    write_label(&lab, &survivors[1], &worker, "after", "1");
    for m in &survivors {
        let n = inspect(&lab, m, &worker).expect("inspect on a survivor");
        assert_eq!(
            n.get("after").map(String::as_str),
            Some("1"),
            "{m} does not show the write made after the failover"
        );
    }

    lab_cmd(&lab, &["start", &old]);
    eventually(
        Duration::from_secs(20),
        "the restarted manager back as a follower",
        || {
            let rows = node_ls(&lab, &old)?;
            let me = &rows[&old_host];
            let n = inspect(&lab, &old, &worker)?;
            (me.manager_status == "Reachable"
                && me.status == "Ready"
                && n.contains_key("before")
                && n.contains_key("after"))
            .then_some(())
        },
    );
}

/// No committed write is lost: 100 writes through changing managers while leaders are killed
/// (and brought back) between them, then every meshd stopped and started: each acknowledged
/// write is on every manager.
#[test]
fn control_no_committed_write_is_lost_across_kills_and_restarts() {
    let lab = Lab::up("cdur", 131, 4, 3);
    let worker = lab.ns("n4");
    let managers = ["n1", "n2", "n3"];
    let mut down: Option<String> = None;
    let mut acked = Vec::new();
    for i in 0..100 {
        if i % 25 == 10 {
            let from = managers
                .iter()
                .find(|m| Some(**m) != down.as_deref())
                .unwrap();
            let l = eventually(Duration::from_secs(15), "a leader", || leader(&lab, from));
            lab_cmd(&lab, &["stop", "--kill", &l]);
            down = Some(l);
        }
        if i % 25 == 20
            && let Some(d) = down.take()
        {
            lab_cmd(&lab, &["start", &d]);
            // Back in raft before the next kill, so that a quorum always remains.
            let host = lab.ns(&d);
            eventually(
                Duration::from_secs(20),
                "the restarted manager Reachable",
                || {
                    let rows = node_ls(&lab, &d)?;
                    (rows.get(&host)?.manager_status == "Reachable"
                        || rows.get(&host)?.manager_status == "Leader")
                        .then_some(())
                },
            );
        }
        let live: Vec<&str> = managers
            .iter()
            .copied()
            .filter(|m| Some(*m) != down.as_deref())
            .collect();
        let via = live[i % live.len()];
        write_label(&lab, via, &worker, &format!("w{i}"), &i.to_string());
        acked.push(i);
    }

    let check_all = |when: &str| {
        for m in managers {
            let n = eventually(Duration::from_secs(20), "inspect", || {
                inspect(&lab, m, &worker)
            });
            let missing: Vec<usize> = acked
                .iter()
                .copied()
                .filter(|i| n.get(&format!("w{i}")) != Some(&i.to_string()))
                .collect();
            assert!(missing.is_empty(), "{when}: {m} lost writes {missing:?}");
        }
    };
    if let Some(d) = down.take() {
        lab_cmd(&lab, &["start", &d]);
    }
    check_all("after the kills");

    // Stop every meshd, start them all: the state is intact.
    lab_cmd(&lab, &["stop", "all"]);
    lab_cmd(&lab, &["start", "all"]);
    check_all("after stopping and starting every meshd");
    eventually(Duration::from_secs(20), "all nodes Ready again", || {
        let rows = node_ls(&lab, "n2")?;
        (rows.len() == 4
            && rows.values().all(|r| r.status == "Ready")
            && rows
                .values()
                .filter(|r| r.manager_status == "Leader")
                .count()
                == 1)
            .then_some(())
    });
}

/// Wrong token, token of another swarm, rotated token, a CA that does not match the token's
/// digest: each refused with its own message, nothing sent or changed; then the right token
/// joins.
#[test]
fn control_join_tokens_are_checked() {
    let lab = Lab::up("ctok", 132, 3, 1);
    // n3 leaves to be our joiner; n2 leaves and starts a swarm of its own.
    ok(&lab, "n3", &["swarm", "leave"]);
    ok(&lab, "n2", &["swarm", "leave"]);
    ok(
        &lab,
        "n2",
        &["swarm", "init", "--advertise-addr", &lab.node_addr(2)],
    );
    let n1 = format!("{}:2377", lab.node_addr(1));
    let n2 = format!("{}:2377", lab.node_addr(2));
    let ids = |lab: &Lab| -> Vec<String> {
        let out = ok(lab, "n1", &["node", "ls", "-q"]);
        out.lines().map(str::to_owned).collect()
    };
    let before = ids(&lab);
    let token = ok(&lab, "n1", &["swarm", "join-token", "-q", "worker"])
        .trim()
        .to_owned();
    let other = ok(&lab, "n2", &["swarm", "join-token", "-q", "worker"])
        .trim()
        .to_owned();
    let (digest_part, _) = token.rsplit_once('-').unwrap();

    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "a malformed token",
            "MSHTKN-1-nope".into(),
            n1.as_str(),
            "invalid join token: it must look like",
        ),
        (
            "a wrong secret",
            format!("{digest_part}-{}", "a".repeat(25)),
            n1.as_str(),
            "its secret is not a join token of this swarm",
        ),
        (
            "a token of another swarm",
            other.clone(),
            n1.as_str(),
            "does not match the join token",
        ),
        (
            "a manager whose CA does not match the digest",
            token.clone(),
            n2.as_str(),
            "does not match the join token",
        ),
        (
            "a forged digest",
            format!("MSHTKN-1-{}-{}", "a".repeat(50), "b".repeat(25)),
            n1.as_str(),
            "does not match the join token",
        ),
    ];
    for (what, tok, at, want) in &cases {
        let err = fails(&lab, "n3", &["swarm", "join", "--token", tok, at]);
        assert!(err.contains(want), "{what}: expected {want:?} in:\n{err}");
    }
    // Rotation: the old token is refused as rotated, the new one works.
    ok(&lab, "n1", &["swarm", "join-token", "--rotate", "worker"]);
    let err = fails(&lab, "n3", &["swarm", "join", "--token", &token, &n1]);
    assert!(err.contains("was rotated"), "rotated token: {err}");

    // Nothing changed: n3 is in no swarm, n1's swarm has the same nodes.
    let err = fails(&lab, "n3", &["node", "ls"]);
    assert!(err.contains("not part of a swarm"), "{err}");
    assert_eq!(ids(&lab), before, "a refused join changed the swarm");

    let fresh = ok(&lab, "n1", &["swarm", "join-token", "-q", "worker"])
        .trim()
        .to_owned();
    assert_ne!(fresh, token);
    let out = ok(&lab, "n3", &["swarm", "join", "--token", &fresh, &n1]);
    assert_eq!(out, "This node joined a swarm as a worker.\n");
    eventually(Duration::from_secs(15), "the new node Ready", || {
        let rows = node_ls(&lab, "n1")?;
        (rows
            .values()
            .filter(|r| r.hostname == lab.ns("n3") && r.status == "Ready")
            .count()
            == 1)
            .then_some(())
    });
}

/// A worker's certificate cannot call manager operations on 2377; a TLS client without a
/// certificate can only join; plain TCP gets nothing at all. Promoting the worker gives it a
/// manager certificate (and a place in raft); demoting it takes both away.
#[test]
fn control_certificates_decide_what_a_caller_may_do() {
    let lab = Lab::up("cauth", 133, 2, 1);
    let host = format!("tcp://{}:2377", lab.node_addr(1));

    // The manager's own certificate may.
    let out = ok(&lab, "n1", &["--host", &host, "node", "ls"]);
    assert!(out.contains(&lab.ns("n2")), "{out}");
    // The worker's may not, and its socket says it is not a manager.
    for args in [
        vec!["--host", host.as_str(), "node", "ls"],
        vec![
            "--host",
            host.as_str(),
            "node",
            "update",
            "--label-add",
            "a=b",
            "n1",
        ],
        vec!["--host", host.as_str(), "swarm", "join-token", "manager"],
    ] {
        let err = fails(&lab, "n2", &args);
        assert!(err.contains("permission denied"), "{args:?}: {err}");
    }
    let err = fails(&lab, "n2", &["node", "ls"]);
    assert!(err.contains("not a swarm manager"), "{err}");

    // Without a certificate (from the client namespace): TLS completes, but only joins pass.
    let ca = std::fs::read_to_string(lab.path("n1/certs/ca.pem")).expect("n1's CA");
    let addr = format!("{}:2377", lab.node_addr(1));
    let client_ns = NetNs::open(&lab.ns("client")).expect("client namespace");
    let (anonymous, plain) = client_ns
        .run(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let anonymous = rt.block_on(async {
                let tls = mesh_api::tls::anonymous_client_config(&ca).unwrap();
                mesh_api::transport::Client::tls(&addr, tls)
                    .call(&mesh_api::Request::NodeList)
                    .await
            });
            // Plain TCP: an HTTP/2 preface where a TLS ClientHello should be.
            let plain = {
                use std::io::{Read, Write};
                let mut s = std::net::TcpStream::connect(&addr).expect("connect 2377");
                s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
                let _ = s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0");
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf);
                buf
            };
            (anonymous, plain)
        })
        .expect("run in the client namespace");
    let err = anonymous.expect_err("a client without a certificate listed the nodes");
    assert!(err.message.contains("permission denied"), "{err}");
    // At most a TLS alert record (content type 21), never an HTTP/2 or gRPC answer.
    assert!(
        plain.is_empty() || plain[0] == 21,
        "plain TCP got an answer: {plain:?}"
    );

    // Promote: the node gets a manager certificate, joins raft, and may do what managers do.
    let n2 = lab.ns("n2");
    let out = ok(&lab, "n1", &["node", "promote", &n2]);
    assert_eq!(
        out,
        format!("Node {n2} promoted to a manager in the swarm.\n")
    );
    eventually(Duration::from_secs(20), "n2 a reachable manager", || {
        let rows = node_ls(&lab, "n2")?;
        (rows.get(&n2)?.manager_status == "Reachable").then_some(())
    });
    ok(&lab, "n2", &["--host", &host, "node", "ls"]);
    // Demote: back to a worker certificate, out of raft.
    let out = ok(&lab, "n1", &["node", "demote", &n2]);
    assert_eq!(out, format!("Manager {n2} demoted in the swarm.\n"));
    eventually(Duration::from_secs(20), "n2 a worker again", || {
        let rows = node_ls(&lab, "n1")?;
        let refused = meshctl(&lab, "n2", &["--host", &host, "node", "ls"]);
        (rows.get(&n2)?.manager_status.is_empty() && stderr(&refused).contains("permission denied"))
            .then_some(())
    });
}
