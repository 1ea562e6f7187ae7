//! Expiring certificates (issue 16, item 2) on a lab swarm made with a short `--cert-expiry`
//! (the test-only `MESHD_MIN_CERT_EXPIRY` lowers Swarm's 1 hour minimum): every node renews its
//! own certificate while the swarm keeps working, a certificate past its expiry is refused in the
//! handshake while the renewed one is accepted, a bad expiry changes nothing, an admin client
//! certificate opens the cluster API but not raft, until it expires; a worker stopped past its
//! expiry must join again, a manager renews its own.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mesh_api::tls::{Credentials, validity};
use mesh_api::transport::Client;
use mesh_api::{ApiError, Reply, Request};
use mesh_overlay::netns::NetNs;

use crate::support::{Lab, MESHCTL, eventually, fails, meshctl, ok, stderr, stdout};

/// The certificates' lifetime in this test, and the minimum the managers accept.
const EXPIRY: &str = "40s";
const MIN_EXPIRY: &str = "10s";

/// A lab whose meshds run with the lowered minimum expiry, outside any swarm yet.
fn lab_without_swarm(name: &str, octet: u8, nodes: usize) -> Lab {
    let lab = Lab {
        prefix: Lab::prefix_for(name),
        subnet_octet: octet,
        nodes,
    };
    let out = Command::new(MESHCTL)
        .args(["lab", "up", "--no-swarm", "--nodes", &nodes.to_string()])
        .args(["--prefix", &lab.prefix, "--subnet", &lab.subnet()])
        .env("MESHD_MIN_CERT_EXPIRY", MIN_EXPIRY)
        .output()
        .expect("run meshctl lab up");
    assert!(
        out.status.success(),
        "lab up {} failed:\n{}",
        lab.prefix,
        stderr(&out)
    );
    lab
}

fn node_dir(lab: &Lab, n: &str) -> String {
    lab.path(n)
}

fn not_after(dir: &str) -> i64 {
    let pem = std::fs::read_to_string(format!("{dir}/node.pem")).expect("node.pem");
    validity(&pem).expect("a certificate").not_after
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// Sleeps until unix time `t` has passed.
fn sleep_past(t: i64) {
    while now() <= t {
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Calls `req` on `addr` from the client namespace with the certificates in `dir`.
fn call_with(lab: &Lab, addr: &str, dir: &str, req: Request) -> Result<Reply, ApiError> {
    let tls = Credentials::load(Path::new(dir))
        .expect("certificates")
        .client_config()
        .unwrap();
    let addr = addr.to_owned();
    NetNs::open(&lab.ns("client"))
        .expect("client namespace")
        .run(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async { Client::tls(&addr, tls).call(&req).await })
        })
        .expect("run in the client namespace")
}

/// `meshctl --host tcp://ADDR --cert-dir DIR ARGS` from the client namespace.
fn remote(lab: &Lab, addr: &str, dir: &str, args: &[&str]) -> std::process::Output {
    let host = format!("tcp://{addr}");
    let mut all = vec!["--host", &host, "--cert-dir", dir];
    all.extend_from_slice(args);
    meshctl(lab, "client", &all)
}

/// A swarm of n1 (manager), n2 (manager) and n3 (worker) with `--cert-expiry EXPIRY`.
fn form_swarm(lab: &Lab) {
    ok(lab, "n1", &["swarm", "init", "--cert-expiry", EXPIRY]);
    let manager = ok(lab, "n1", &["swarm", "join-token", "-q", "manager"]);
    let worker = ok(lab, "n1", &["swarm", "join-token", "-q", "worker"]);
    let leader = format!("{}:2377", lab.node_addr(1));
    ok(
        lab,
        "n2",
        &["swarm", "join", "--token", manager.trim(), &leader],
    );
    ok(
        lab,
        "n3",
        &["swarm", "join", "--token", worker.trim(), &leader],
    );
}

#[test]
fn certs_expire_renew_and_admin_certificates_open_the_api_only() {
    let lab = lab_without_swarm("certs", 224, 3);
    form_swarm(&lab);
    let n1 = format!("{}:2377", lab.node_addr(1));
    let (d2, d3) = (
        format!("{}/certs", node_dir(&lab, "n2")),
        format!("{}/certs", node_dir(&lab, "n3")),
    );

    // The expiry shows, and a bad one is refused and changes nothing.
    let pretty = ok(&lab, "n1", &["swarm", "inspect", "--pretty"]);
    assert!(pretty.contains("Expiry Duration: 40 seconds"), "{pretty}");
    let err = fails(&lab, "n2", &["swarm", "update", "--cert-expiry", "5s"]);
    assert!(
        err.contains("minimum certificate expiry time is: 10s"),
        "{err}"
    );
    let err = fails(&lab, "n1", &["swarm", "update", "--cert-expiry", "forty"]);
    assert!(err.contains("invalid duration"), "{err}");
    let json = ok(&lab, "n1", &["swarm", "inspect"]);
    assert!(json.contains("\"NodeCertExpiry\": 40000000000"), "{json}");

    // Keep the worker's first certificate: it will expire.
    let first = format!("{}/n3-first-certs", node_dir(&lab, ""));
    std::fs::create_dir_all(&first).unwrap();
    for f in ["ca.pem", "node.pem", "node-key.pem"] {
        std::fs::copy(format!("{d3}/{f}"), format!("{first}/{f}")).unwrap();
    }
    let first_expiry = not_after(&first);
    let manager_expiry = not_after(&d2);
    assert!(
        first_expiry <= now() + 41,
        "a 40s certificate: {first_expiry}"
    );
    // Its certificate lets the worker in now (a worker may not list services: refused by
    // authorisation, after the handshake).
    let e = call_with(&lab, &n1, &first, Request::ServiceList).unwrap_err();
    assert!(e.message.contains("needs a manager certificate"), "{e}");

    // Every node renews by itself before its certificate expires: node.pem's expiry moves.
    eventually(Duration::from_secs(45), "n2 and n3 renew", || {
        let (a, b) = (not_after(&d2), not_after(&d3));
        if a > manager_expiry && b > first_expiry {
            Ok(())
        } else {
            Err(format!(
                "n2 until {a} (was {manager_expiry}), n3 until {b} (was {first_expiry})"
            ))
        }
    });

    // Past the first certificate's expiry: it is refused in the handshake, the renewed ones are
    // accepted, and the swarm kept working (every node Ready, seen from a fresh connection).
    sleep_past(first_expiry + 1);
    let e = call_with(&lab, &n1, &first, Request::ServiceList).unwrap_err();
    assert!(
        !e.message.contains("permission denied"),
        "an expired certificate must fail the handshake, not reach authorisation: {e}"
    );
    let log = format!("{}/meshd.log", node_dir(&lab, "n1"));
    eventually(Duration::from_secs(5), "n1 says why", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("refused an expired certificate") {
            Ok(())
        } else {
            Err("no refusal logged".into())
        }
    });
    let e = call_with(&lab, &n1, &d3, Request::ServiceList).unwrap_err();
    assert!(e.message.contains("needs a manager certificate"), "{e}");
    let nodes = remote(&lab, &n1, &d2, &["node", "ls"]);
    assert!(nodes.status.success(), "{}", stderr(&nodes));
    let ready = stdout(&nodes).matches("Ready").count();
    assert_eq!(ready, 3, "{}", stdout(&nodes));

    // An admin certificate: written on a manager, never over existing certificates.
    let admin = format!("{}/admin", node_dir(&lab, ""));
    let err = fails(&lab, "n1", &["swarm", "ca", "--admin-cert", &d2]);
    assert!(err.contains("already holds"), "{err}");
    let err = fails(
        &lab,
        "n1",
        &["swarm", "ca", "--admin-cert", &admin, "--cert-expiry", "5s"],
    );
    assert!(err.contains("minimum certificate expiry time is"), "{err}");
    assert!(
        !Path::new(&admin).exists(),
        "a refused admin certificate wrote nothing"
    );
    let err = fails(&lab, "n3", &["swarm", "ca", "--admin-cert", &admin]);
    assert!(
        err.contains("manager"),
        "a worker has no CA to sign with: {err}"
    );
    // The worker stops, and stays stopped past its certificate's expiry (while the admin
    // certificate is tried below).
    lab_cmd(&lab, &["stop", "n3"]);
    let n3_expiry = not_after(&d3);
    ok(
        &lab,
        "n1",
        &[
            "swarm",
            "ca",
            "--admin-cert",
            &admin,
            "--cert-expiry",
            "20s",
        ],
    );
    let admin_expiry = not_after(&admin);
    // It opens the cluster API, on any manager ...
    for addr in [n1.clone(), format!("{}:2377", lab.node_addr(2))] {
        let ls = remote(&lab, &addr, &admin, &["service", "ls"]);
        assert!(ls.status.success(), "{addr}: {}", stderr(&ls));
        assert!(stdout(&ls).starts_with("ID"), "{}", stdout(&ls));
        let nodes = remote(&lab, &addr, &admin, &["node", "ls"]);
        assert!(nodes.status.success(), "{addr}: {}", stderr(&nodes));
    }
    // ... but not raft, nor what nodes do.
    for req in [Request::ReadIndex, Request::DataKey] {
        let e = call_with(&lab, &n1, &admin, req).unwrap_err();
        assert!(
            e.message.contains("needs a manager certificate")
                && e.message.contains("admin certificate admin-"),
            "{e}"
        );
    }
    let e = call_with(
        &lab,
        &n1,
        &admin,
        Request::RenewCert {
            csr_pem: String::new(),
        },
    )
    .unwrap_err();
    assert!(e.message.contains("needs a node certificate"), "{e}");
    // ... until it expires.
    let deadline = Instant::now() + Duration::from_secs(30);
    sleep_past(admin_expiry + 1);
    assert!(Instant::now() < deadline);
    let ls = remote(&lab, &n1, &admin, &["service", "ls"]);
    assert!(
        !ls.status.success() && stderr(&ls).contains("the certificate expired"),
        "meshctl says an admin certificate expired: {}{}",
        stdout(&ls),
        stderr(&ls)
    );
    let e = call_with(&lab, &n1, &admin, Request::ServiceList).unwrap_err();
    assert!(
        !e.message.contains("permission denied"),
        "refused in the handshake: {e}"
    );

    // The worker back after its certificate expired: it cannot reach the managers any more,
    // says why, and joins again (as a new node), as in Swarm.
    sleep_past(n3_expiry + 1);
    lab_cmd(&lab, &["start", "n3"]);
    let n3_log = format!("{}/meshd.log", node_dir(&lab, "n3"));
    // (Its first renewal tries each manager in turn before it gives up: under load, over 20 s.)
    eventually(
        Duration::from_mins(1),
        "n3 says its certificate expired",
        || {
            let text = std::fs::read_to_string(&n3_log).unwrap_or_default();
            if text.contains("the managers refuse it") {
                Ok(())
            } else {
                Err("nothing yet".into())
            }
        },
    );
    let nodes = ok(&lab, "n1", &["node", "ls"]);
    assert_eq!(nodes.matches("Ready").count(), 2, "n3 stays Down: {nodes}");
    assert!(not_after(&d3) < now(), "n3 renewed nothing");
    ok(&lab, "n3", &["swarm", "leave"]);
    let worker = ok(&lab, "n1", &["swarm", "join-token", "-q", "worker"]);
    ok(
        &lab,
        "n3",
        &["swarm", "join", "--token", worker.trim(), &n1],
    );
    // The managers kept working through it all, and renewed meanwhile.
    eventually(Duration::from_secs(20), "n3 is back as a new node", || {
        let nodes = ok(&lab, "n1", &["node", "ls"]);
        if nodes.matches("Ready").count() == 3 {
            Ok(())
        } else {
            Err(nodes)
        }
    });
    assert!(not_after(&d2) > now(), "n2's certificate is current");

    // A manager stopped past its expiry signs its own new certificate with the CA it holds, and
    // is back (had every manager been stopped, the swarm would come back the same way).
    lab_cmd(&lab, &["stop", "n2"]);
    sleep_past(not_after(&d2) + 1);
    lab_cmd(&lab, &["start", "n2"]);
    eventually(Duration::from_secs(30), "n2 renews and is back", || {
        let nodes = ok(&lab, "n1", &["node", "ls"]);
        if not_after(&d2) > now() && nodes.matches("Ready").count() == 3 {
            Ok(())
        } else {
            Err(nodes)
        }
    });
    let nodes = remote(
        &lab,
        &format!("{}:2377", lab.node_addr(2)),
        &d2,
        &["node", "ls"],
    );
    assert!(nodes.status.success(), "{}", stderr(&nodes));
}

fn lab_cmd(lab: &Lab, args: &[&str]) {
    let out = lab.meshctl_lab(args);
    assert!(
        out.status.success(),
        "meshctl lab {args:?} failed: {}",
        stderr(&out)
    );
}

/// The certificates of a PEM text.
fn pem_count(text: &str) -> usize {
    text.matches("-----BEGIN CERTIFICATE-----").count()
}

#[test]
fn certs_ca_rotation_moves_every_node_to_a_new_root_without_stopping() {
    let lab = Lab::up("rotca", 225, 4, 3);
    let old_root = ok(&lab, "n1", &["swarm", "ca"]);
    let old_token = ok(&lab, "n1", &["swarm", "join-token", "-q", "worker"]);
    let dirs: Vec<String> = (1..=4)
        .map(|i| format!("{}/certs", node_dir(&lab, &format!("n{i}"))))
        .collect();

    let out = ok(&lab, "n2", &["swarm", "ca", "--rotate"]);
    assert!(out.contains("Root CA rotation started"), "{out}");
    // Every node renews to the new root (through the cross-signed one), then the new root
    // replaces the old one and every node renews again to drop it.
    // Writes go on through it (each must be acknowledged), on the leader and through a follower.
    let mut writes = 0;
    let host = format!("{}-n1", lab.prefix);
    let new_root = eventually(Duration::from_mins(1), "the rotation ends", || {
        writes += 1;
        let label = format!("write={writes}");
        ok(
            &lab,
            ["n1", "n2"][writes % 2],
            &["node", "update", "--label-add", &label, &host],
        );
        let json = ok(&lab, "n1", &["swarm", "inspect"]);
        let root = ok(&lab, "n1", &["swarm", "ca"]);
        if json.contains("\"RootRotationInProgress\": false") && root != old_root {
            Ok(root)
        } else {
            Err(json)
        }
    });
    eventually(
        Duration::from_secs(30),
        "every node trusts the new root only",
        || {
            for d in &dirs {
                let ca = std::fs::read_to_string(format!("{d}/ca.pem")).unwrap_or_default();
                let cert = std::fs::read_to_string(format!("{d}/node.pem")).unwrap_or_default();
                if ca.trim() != new_root.trim() || pem_count(&cert) != 1 {
                    return Err(format!(
                        "{d}: {} roots, {} certificates",
                        pem_count(&ca),
                        pem_count(&cert)
                    ));
                }
            }
            Ok(())
        },
    );

    // The swarm kept working: every node Ready, and fresh connections with the new
    // certificates reach both managers.
    let nodes = ok(&lab, "n1", &["node", "ls"]);
    assert_eq!(nodes.matches("Ready").count(), 4, "{nodes}");
    let labels = ok(&lab, "n3", &["node", "inspect", &host]);
    assert!(
        labels.contains(&format!("\"write\": \"{writes}\"")),
        "{labels}"
    );
    for i in [1, 2, 3] {
        let addr = format!("{}:2377", lab.node_addr(i));
        let ls = remote(&lab, &addr, &dirs[1], &["node", "ls"]);
        assert!(ls.status.success(), "{addr}: {}", stderr(&ls));
    }
    // The join tokens follow the root: the old one names a CA the swarm no longer has.
    let new_token = ok(&lab, "n1", &["swarm", "join-token", "-q", "worker"]);
    assert_ne!(new_token.trim(), old_token.trim());
}
