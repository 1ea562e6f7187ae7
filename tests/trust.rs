//! Trust nothing (issue 16) on a lab swarm: the state on disk is root's only, a demoted manager's
//! old certificate can no longer propose, a removed node's certificate is refused, anonymous
//! peers send only small frames, and a replica count past the cap is refused while the leader
//! keeps serving.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use mesh_api::tls::Credentials;
use mesh_api::transport::Client;
use mesh_api::{ApiError, JoinClusterRequest, Reply, Request};
use mesh_cluster::state::{NodeDescription, Tx};
use mesh_overlay::netns::NetNs;

use crate::support::{Lab, eventually, fails, ok, words};

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Calls `req` on `addr` over TLS from the lab's client namespace, as `creds` (None: without a
/// certificate, trusting the CA `ca`).
fn call_as(
    lab: &Lab,
    addr: &str,
    creds: Option<&Credentials>,
    ca: &str,
    req: Request,
) -> Result<Reply, ApiError> {
    let tls = match creds {
        Some(c) => c.client_config().unwrap(),
        None => mesh_api::tls::anonymous_client_config(ca).unwrap(),
    };
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

fn denied(what: &str, r: Result<Reply, ApiError>, want: &str) {
    let err = r.expect_err(what);
    assert!(
        err.message.contains("permission denied") && err.message.contains(want),
        "{what}: expected a refusal with {want:?}, got: {err}"
    );
}

#[test]
fn trust_state_decides_certificates_and_inputs_are_bounded() {
    let lab = Lab::up("trust", 134, 4, 3);
    let dir = |n: &str| lab.path(n);

    // At rest: directories 0700, files 0600, on a manager and on a worker.
    for n in ["n1", "n4"] {
        let d = dir(n);
        assert_eq!(mode(Path::new(&d)), 0o700, "{d}");
        assert_eq!(mode(Path::new(&format!("{d}/certs"))), 0o700, "{d}/certs");
        for f in [
            "swarm.json",
            "meshd.sock",
            "certs/ca.pem",
            "certs/node.pem",
            "certs/node-key.pem",
        ] {
            assert_eq!(mode(Path::new(&format!("{d}/{f}"))), 0o600, "{d}/{f}");
        }
    }
    assert_eq!(mode(Path::new(&format!("{}/raft", dir("n1")))), 0o700);
    assert_eq!(
        mode(Path::new(&format!("{}/raft/raft.redb", dir("n1")))),
        0o600
    );

    // What an older meshd left wider is tightened when meshd starts.
    let d4 = dir("n4");
    assert!(lab.meshctl_lab(&["stop", "n4"]).status.success());
    for (p, m) in [
        (d4.clone(), 0o755),
        (format!("{d4}/certs"), 0o755),
        (format!("{d4}/certs/ca.pem"), 0o644),
        (format!("{d4}/swarm.json"), 0o644),
    ] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
    }
    assert!(lab.meshctl_lab(&["start", "n4"]).status.success());
    eventually(Duration::from_secs(20), "n4's files tightened", || {
        let modes = [
            mode(Path::new(&d4)),
            mode(Path::new(&format!("{d4}/certs"))),
            mode(Path::new(&format!("{d4}/certs/ca.pem"))),
            mode(Path::new(&format!("{d4}/swarm.json"))),
        ];
        (modes == [0o700, 0o700, 0o600, 0o600])
            .then_some(())
            .ok_or(format!("{modes:?}"))
    });

    let leader = format!("{}:2377", lab.node_addr(1));
    let ca = std::fs::read_to_string(format!("{}/certs/ca.pem", dir("n1"))).unwrap();
    let n2_manager = Credentials::load(Path::new(&format!("{}/certs", dir("n2")))).unwrap();
    let n4_worker = Credentials::load(Path::new(&format!("{}/certs", dir("n4")))).unwrap();
    call_as(&lab, &leader, Some(&n2_manager), &ca, Request::NodeList)
        .expect("a manager's certificate lists the nodes");

    // Anonymous peers: a join passes (and is judged by its token), a big frame does not.
    let join = |csr_pem: String| {
        Request::JoinCluster(JoinClusterRequest {
            secret: "a".repeat(25),
            csr_pem,
            description: NodeDescription::default(),
            advertise_addr: "198.18.134.99".parse().unwrap(),
            listen_port: 2377,
        })
    };
    let err = call_as(&lab, &leader, None, &ca, join("CSR".into())).unwrap_err();
    assert!(err.message.contains("invalid join token"), "{err}");
    let err = call_as(&lab, &leader, None, &ca, join("x".repeat(200 << 10))).unwrap_err();
    assert!(
        err.message.contains("too large") || err.message.contains("limit"),
        "a 200 KiB anonymous frame: {err}"
    );

    // Demote n2: its old manager certificate can no longer propose, read or call the API.
    let n2 = lab.ns("n2");
    ok(&lab, "n1", &["node", "demote", &n2]);
    eventually(Duration::from_secs(30), "n2 out of the managers", || {
        let out = ok(&lab, "n1", &["node", "inspect", "--format", "json", &n2]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        v["ManagerStatus"].is_null().then_some(()).ok_or(out)
    });
    let propose = Request::Propose(Tx {
        at: 0,
        ops: Vec::new(),
    });
    for (what, req) in [
        ("propose", propose),
        ("read index", Request::ReadIndex),
        (
            "add manager",
            Request::AddManager {
                raft_id: 2,
                addr: format!("{}:2377", lab.node_addr(2)),
            },
        ),
        ("node ls", Request::NodeList),
    ] {
        denied(
            what,
            call_as(&lab, &leader, Some(&n2_manager), &ca, req),
            "demoted",
        );
    }

    // Remove the worker n4: its certificate is refused at once.
    ok(&lab, "n1", &["node", "rm", "--force", &lab.ns("n4")]);
    denied(
        "a removed node's renewal",
        call_as(
            &lab,
            &leader,
            Some(&n4_worker),
            &ca,
            Request::RenewCert {
                csr_pem: "CSR".into(),
            },
        ),
        "not part of this swarm",
    );

    // A replica count past the cap: refused by meshctl and by the leader, which keeps serving.
    ok(
        &lab,
        "n1",
        &words(&format!(
            "service create --detach --name web {} sleep 100000",
            lab.image()
        )),
    );
    let err = fails(&lab, "n1", &["service", "scale", "web=1000000000000"]);
    assert!(err.contains("at most 10000 replicas"), "{err}");
    let sock = format!("{}/meshd.sock", dir("n1"));
    let raw = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            Client::local(Path::new(&sock))
                .call(&Request::ServiceScale {
                    service: "web".into(),
                    replicas: 1_000_000_000_000,
                })
                .await
        });
    let err = raw.expect_err("the leader scaled to 10^12");
    assert!(err.message.contains("at most 10000 replicas"), "{err}");
    let ls = ok(&lab, "n1", &["service", "ls"]);
    assert!(ls.contains("web") && !ls.contains("1000000000000"), "{ls}");
}
