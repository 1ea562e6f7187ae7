//! Egress, as users meet it: a task reaches a server outside the cluster (in the lab's client
//! namespace) by address and by a name only the lab's upstream resolver knows (`outside.test`,
//! forwarded by the node's DNS), over TCP (wget), UDP (a DNS query straight to the resolver) and
//! ICMP (ping), with `--datapath tc` and `xdp`. The server sees the task's node's address. Other
//! nodes' addresses are not reached this way, and no iptables/nftables rule does any of it.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::routing::Routing;
use crate::support::{Lab, eventually, ok, stderr, stdout};

/// An HTTP server that answers `GET /` with the address the request came from.
const PEER_SERVER: &str = r#"
import http.server, sys
class Peer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = self.client_address[0].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Peer).serve_forever()
"#;
const PEER_PORT: &str = "8080";

/// A process in the client namespace, killed on drop (also when the test panics).
struct ClientProcess(Child);

impl Drop for ClientProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The running containers of service `name`: container id to node index.
fn containers(lab: &Lab, name: &str) -> BTreeMap<String, usize> {
    (1..=lab.nodes)
        .flat_map(|i| {
            lab.docker_out(
                i,
                &[
                    "ps",
                    "--filter",
                    &format!("name=^{name}\\."),
                    "--format",
                    "{{.ID}}",
                ],
            )
            .lines()
            .map(|id| (id.to_owned(), i))
            .collect::<Vec<_>>()
        })
        .collect()
}

/// `docker exec CONTAINER CMD...` on node `i`'s engine: (succeeded, stdout + stderr).
fn exec(lab: &Lab, i: usize, container: &str, cmd: &[&str]) -> (bool, String) {
    let out = lab.docker(i, &[&["exec", container], cmd].concat());
    (out.status.success(), stdout(&out) + &stderr(&out))
}

/// `GET url` from inside the container (bounded: busybox's `wget -T` crashes).
fn wget(lab: &Lab, i: usize, container: &str, url: &str) -> (bool, String) {
    exec(lab, i, container, &["timeout", "5", "wget", "-qO-", url])
}

/// No iptables or nftables rule in any node namespace translates addresses.
fn no_nat_rules(lab: &Lab, client: &str) {
    for i in 1..=lab.nodes {
        let ns = lab.ns(&format!("n{i}"));
        for cmd in [vec!["iptables-save"], vec!["nft", "list", "ruleset"]] {
            let mut args = vec!["netns", "exec", ns.as_str()];
            args.extend(cmd.iter().copied());
            let Ok(out) = Command::new("ip").args(&args).output() else {
                continue; // not installed: nothing can translate through it
            };
            let text = stdout(&out);
            for needle in ["SNAT", "MASQUERADE", "snat", "masquerade", client] {
                assert!(
                    !text.contains(needle),
                    "n{i}: `{}` shows {needle:?}:\n{text}",
                    cmd.join(" ")
                );
            }
        }
    }
}

fn egress(name: &str, octet: u8, extra: &[&str]) {
    let lab = Lab::up_with(name, octet, 2, 1, extra);
    let client = format!("198.18.{octet}.2");
    let _server = ClientProcess(
        Command::new("ip")
            .args(["netns", "exec", &lab.ns("client"), "python3", "-c"])
            .args([PEER_SERVER, client.as_str(), PEER_PORT])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the peer server in the client"),
    );

    ok(&lab, "n1", &["network", "create", "-d", "overlay", "egnet"]);
    let image = lab.image();
    ok(
        &lab,
        "n1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "eg",
            "--mode",
            "global",
            "--network",
            "egnet",
            &image,
            "sleep",
            "3600",
        ],
    );
    let tasks = eventually(Duration::from_mins(1), "a task of eg on each node", || {
        let c = containers(&lab, "eg");
        if c.values().collect::<std::collections::BTreeSet<_>>().len() == lab.nodes {
            Ok(c)
        } else {
            Err(format!("{c:?}"))
        }
    });

    for (task, &i) in &tasks {
        let node = lab.node_addr(i);
        // TCP by address: the server sees the node's address (the mesh is programmed a moment
        // after the task starts).
        let by_addr = format!("http://{client}:{PEER_PORT}/");
        eventually(
            Duration::from_secs(30),
            &format!("n{i}: wget {by_addr}"),
            || match wget(&lab, i, task, &by_addr) {
                (true, body) if body.trim() == node => Ok(()),
                (_, out) => Err(out),
            },
        );
        // By a name only the upstream resolver knows (forwarded by the node's DNS).
        let by_name = format!("http://{}:{PEER_PORT}/", mesh_lab::UPSTREAM_NAME);
        eventually(
            Duration::from_secs(30),
            &format!("n{i}: wget {by_name}"),
            || match wget(&lab, i, task, &by_name) {
                (true, body) if body.trim() == node => Ok(()),
                (_, out) => Err(out),
            },
        );
        // UDP: a DNS query straight to the upstream resolver, and its answer back.
        let (_, answer) = exec(
            &lab,
            i,
            task,
            &["timeout", "5", "nslookup", mesh_lab::UPSTREAM_NAME, &client],
        );
        assert!(
            answer
                .split_once("Name:")
                .is_some_and(|(_, a)| a.contains(mesh_lab::UPSTREAM_NAME) && a.contains(&client)),
            "n{i}: nslookup {} {client} from a task:\n{answer}",
            mesh_lab::UPSTREAM_NAME
        );
        // ICMP echo.
        let (pinged, out) = exec(&lab, i, task, &["ping", "-c", "2", "-W", "2", &client]);
        assert!(
            pinged && out.contains("2 packets received"),
            "n{i}: ping {client} from a task:\n{out}"
        );
        // Another node's address is not egress: the task's packet dies at its own node.
        let other = lab.node_addr(if i == 1 { 2 } else { 1 });
        let (reached, out) = wget(&lab, i, task, &format!("http://{other}:9323/metrics"));
        assert!(
            !reached,
            "n{i}: a task reached node {other} by egress:\n{out}"
        );
    }
    no_nat_rules(&lab, &client);
}

#[test]
fn tasks_reach_the_outside_by_address_and_name_with_tc() {
    egress("egtc", 232, &[]);
}

#[test]
fn tasks_reach_the_outside_by_address_and_name_with_xdp() {
    egress("egxdp", 233, &["--datapath", "xdp"]);
}

/// tc on a natively routed lab (issue 19).
#[test]
fn tasks_reach_the_outside_by_address_and_name_natively() {
    egress("egn", 198, Routing::Native.lab_args());
}
