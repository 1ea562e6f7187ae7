//! The Engine API as the tools built on it call it: the request sequences of Traefik's swarm
//! provider and of Portainer's agent, sent to a lab node's `meshd-docker.sock`, and the fields
//! their clients decode checked in the answers. Taken from their source:
//! - Traefik (`traefik/traefik` master fd5a576df2, `pkg/provider/docker/pswarm.go`:
//!   `listServices`, `parseService`, `listTasks`, `parseTasks`): `GET /version` (`ApiVersion` >=
//!   1.29 picks the network filter), `GET /services`, `GET /networks?filters={"scope":["swarm"]}`,
//!   then per service `Spec.Name`, `Spec.Labels`, `Spec.Mode.Global`, `Spec.EndpointSpec.Mode`,
//!   `Endpoint.VirtualIPs[].NetworkID/Addr`; `GET /tasks?filters={"service":[ID],
//!   "desired-state":["running"]}` and per task `Status.State`, `Slot`, `NodeID`,
//!   `NetworksAttachments[].Network.ID/Addresses`; `GET /nodes/ID` for `Status.Addr`.
//! - Portainer's agent (`portainer/agent` HEAD, `docker/docker.go`
//!   `GetRuntimeConfigurationFromDockerEngine`, `docker/snapshot.go`,
//!   `exec/docker_swarm_stack_status.go`): `GET /_ping`, `GET /info` (`Name`, `Swarm.NodeID`,
//!   `Swarm.ControlAvailable`), `GET /nodes/ID` (`ManagerStatus.Leader`), the snapshot's `GET
//!   /nodes`, `/services`, `/containers/json?all=1`, `/images/json`, `/volumes`, `/networks`,
//!   `/version`, and a stack's status: `GET /services?filters={"label":
//!   ["com.docker.stack.namespace=NAME"]}`, `GET /tasks?filters={"service":[ID]}` counted against
//!   `Spec.Mode.Replicated.Replicas`.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::{Lab, eventually, ok, stdout};

/// `GET path` (with `filters` url-encoded when given) on node `i`'s Engine API socket: the
/// status and the JSON body (`Null` when it is not JSON).
fn get(lab: &Lab, i: usize, path: &str, filters: Option<&str>) -> (u16, Value, String) {
    let socket = lab.path(&format!("n{i}/meshd-docker.sock"));
    let mut c = Command::new("curl");
    c.args([
        "-sS",
        "-D",
        "-",
        "--max-time",
        "20",
        "--unix-socket",
        &socket,
    ]);
    if let Some(f) = filters {
        c.args(["--get", "--data-urlencode", &format!("filters={f}")]);
    }
    c.arg(format!("http://docker/v1.41{path}"));
    let text = stdout(&c.output().expect("run curl"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::Null),
        head.to_owned(),
    )
}

fn get_ok(lab: &Lab, i: usize, path: &str, filters: Option<&str>) -> Value {
    let (status, body, head) = get(lab, i, path, filters);
    assert_eq!(status, 200, "GET {path} {filters:?}: {head}\n{body}");
    body
}

/// An address with its prefix (`10.0.9.2/24`), as Go's `netip.ParsePrefix` reads it.
fn is_prefix(v: &Value) -> bool {
    v.as_str()
        .and_then(|s| s.split_once('/'))
        .is_some_and(|(a, p)| a.parse::<std::net::Ipv4Addr>().is_ok() && p.parse::<u8>().is_ok())
}

#[test]
fn traefik_and_portainer_request_sequences_get_the_shapes_they_decode() {
    let lab = Lab::up("dapicl", 223, 2, 1);
    ok(
        &lab,
        "n1",
        &[
            "network",
            "create",
            "-d",
            "overlay",
            "--subnet",
            "10.0.9.0/24",
            "front",
        ],
    );
    let image = lab.image();
    let server = "while true; do echo ok | nc -l -p 80; done";
    ok(
        &lab,
        "n1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--replicas",
            "2",
            "--network",
            "front",
            "--label",
            "traefik.enable=true",
            "--label",
            "com.docker.stack.namespace=shop",
            "-p",
            "8080:80",
            &image,
            "sh",
            "-c",
            server,
        ],
    );
    ok(
        &lab,
        "n1",
        &[
            "service", "create", "-d", "--name", "agent", "--mode", "global", &image, "sleep",
            "3600",
        ],
    );
    eventually(Duration::from_mins(2), "web and agent running", || {
        let ps = ok(&lab, "n1", &["service", "ls"]);
        (ps.matches(" 2/2 ").count() == 2).then_some(()).ok_or(ps)
    });

    // Traefik's provider.
    let version = get_ok(&lab, 1, "/version", None);
    let api = version["ApiVersion"].as_str().expect("ApiVersion");
    assert!(api >= "1.29", "{version}");
    let services = get_ok(&lab, 1, "/services", None);
    let networks = get_ok(&lab, 1, "/networks", Some(r#"{"scope":["swarm"]}"#));
    let networks = networks.as_array().expect("networks");
    assert!(
        networks.iter().all(|n| n["Scope"] == "swarm"),
        "{networks:?}"
    );
    let front = networks
        .iter()
        .find(|n| n["Name"] == "front")
        .expect("front among the swarm networks");
    let front_id = front["Id"].as_str().expect("Id").to_owned();
    let web = services
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["Spec"]["Name"] == "web")
        .expect("web");
    assert_eq!(web["Spec"]["Labels"]["traefik.enable"], "true", "{web}");
    assert!(web["Spec"]["Mode"]["Global"].is_null(), "{web}");
    assert_eq!(web["Spec"]["EndpointSpec"]["Mode"], "vip", "{web}");
    let vips = web["Endpoint"]["VirtualIPs"]
        .as_array()
        .expect("VirtualIPs");
    assert!(
        vips.iter()
            .any(|v| v["NetworkID"] == front_id.as_str() && is_prefix(&v["Addr"])),
        "{vips:?}"
    );
    let web_id = web["ID"].as_str().expect("ID");
    let tasks = get_ok(
        &lab,
        1,
        "/tasks",
        Some(&format!(
            r#"{{"service":["{web_id}"],"desired-state":["running"]}}"#
        )),
    );
    let tasks = tasks.as_array().expect("tasks");
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    for t in tasks {
        assert_eq!(t["Status"]["State"], "running", "{t}");
        assert!(t["Slot"].as_u64().is_some_and(|s| s >= 1), "{t}");
        let attached = t["NetworksAttachments"]
            .as_array()
            .expect("NetworksAttachments");
        assert!(
            attached
                .iter()
                .any(|a| a["Network"]["ID"] == front_id.as_str()
                    && a["Addresses"]
                        .as_array()
                        .is_some_and(|x| x.iter().all(is_prefix))),
            "{t}"
        );
        let node_id = t["NodeID"].as_str().expect("NodeID");
        let node = get_ok(&lab, 1, &format!("/nodes/{node_id}"), None);
        let addr = node["Status"]["Addr"].as_str().expect("Status.Addr");
        assert!(
            [lab.node_addr(1), lab.node_addr(2)].contains(&addr.to_owned()),
            "{node}"
        );
    }

    // Portainer's agent, on the manager and on the worker.
    let (status, _, head) = get(&lab, 1, "/_ping", None);
    assert_eq!(status, 200, "{head}");
    assert!(head.to_lowercase().contains("api-version:"), "{head}");
    for (i, manager) in [(1, true), (2, false)] {
        let info = get_ok(&lab, i, "/info", None);
        assert!(
            info["Name"].as_str().is_some_and(|n| !n.is_empty()),
            "{info}"
        );
        let node_id = info["Swarm"]["NodeID"].as_str().expect("Swarm.NodeID");
        assert!(!node_id.is_empty(), "{info}");
        assert_eq!(info["Swarm"]["ControlAvailable"], manager, "{info}");
        if manager {
            let node = get_ok(&lab, i, &format!("/nodes/{node_id}"), None);
            assert_eq!(node["ManagerStatus"]["Leader"], true, "{node}");
        }
    }
    assert_eq!(
        get_ok(&lab, 1, "/nodes", None).as_array().map(Vec::len),
        Some(2)
    );
    let containers = get_ok(&lab, 1, "/containers/json", Some("{}"));
    assert!(
        containers.as_array().is_some_and(|c| !c.is_empty()),
        "the engine's containers through the socket: {containers}"
    );
    for path in ["/images/json", "/volumes", "/networks", "/version"] {
        get_ok(&lab, 1, path, None);
    }
    let stack = get_ok(
        &lab,
        1,
        "/services",
        Some(r#"{"label":["com.docker.stack.namespace=shop"]}"#),
    );
    let stack = stack.as_array().expect("services");
    assert_eq!(stack.len(), 1, "only the stack's service: {stack:?}");
    let replicas = stack[0]["Spec"]["Mode"]["Replicated"]["Replicas"]
        .as_u64()
        .expect("Replicas");
    let id = stack[0]["ID"].as_str().expect("ID");
    let tasks = get_ok(
        &lab,
        1,
        "/tasks",
        Some(&format!(r#"{{"service":["{id}"]}}"#)),
    );
    let running = tasks
        .as_array()
        .expect("tasks")
        .iter()
        .filter(|t| t["Status"]["State"] == "running")
        .count() as u64;
    assert_eq!(running, replicas, "{tasks}");
    // A global service: Portainer counts it against the nodes.
    let agent = get_ok(&lab, 1, "/services", Some(r#"{"name":["agent"]}"#));
    assert!(agent[0]["Spec"]["Mode"]["Global"].is_object(), "{agent}");
}
