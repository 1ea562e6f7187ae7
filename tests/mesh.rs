//! The routing mesh on lab clusters, as users meet it: published ports answer through
//! every node (also one without a task), TCP (busybox httpd) and UDP (`udp-echo`), with
//! `--datapath tc` and `--datapath xdp`; host mode answers only where a task runs; `dnsrr` has no
//! VIP and may publish; names resolve inside tasks (`web`, `tasks.web`, aliases, PTR); a VIP is
//! balanced over the tasks; the mesh follows scaling, a drain, a restarted meshd and a killed
//! node while clients (one of them Debian's haproxy over all nodes) keep asking; bad ports are
//! refused with nothing changed; no iptables/nftables rule carries service traffic. Each test
//! runs on both routings (issue 19): VXLAN, and native (`--default-routing native`), where what
//! crosses n1's underlay must be the overlay's packets as they are and no VXLAN.
//!
//! Every task serves its container's hostname (its container id), so an answer names the task.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::routing::{Routing, underlay_capture};
use crate::support::{Lab, eventually, fails, host, ok, stderr, stdout, words};

/// The tasks' web server: answers `GET /` with the container's hostname (no newline).
const HTTPD: &str =
    "mkdir -p /www && hostname | tr -d '\\n' > /www/index.html && exec httpd -f -p 80 -h /www";

/// `service create -d FLAGS <lab registry>/meshd/busybox sh -c HTTPD` on n1, which must succeed.
fn create_httpd(lab: &Lab, flags: &str) {
    let image = lab.image();
    let args = [
        &words("service create -d")[..],
        &words(flags),
        &[image.as_str(), "sh", "-c", HTTPD],
    ]
    .concat();
    ok(lab, "n1", &args);
}

/// Batches of fresh connections (or datagrams from fresh ports) from the client: one answer
/// (or `ERR ...`) per line.
const CLIENT: &str = r#"
import socket, sys
proto, host, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for i in range(count):
    try:
        if proto == "http":
            s = socket.create_connection((host, port), timeout=2)
            s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b""
            while True:
                b = s.recv(4096)
                if not b:
                    break
                data += b
            body = data.split(b"\r\n\r\n", 1)[1].decode().strip() if b"\r\n\r\n" in data else ""
            print(body or "ERR empty")
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(2)
            s.sendto(b"hi", (host, port))
            print(s.recvfrom(2048)[0].decode().split()[0])
        s.close()
    except Exception as e:
        print("ERR", type(e).__name__)
"#;

/// `count` fresh HTTP connections (`http`) or datagrams (`udp`) from the client to host:port.
fn ask(lab: &Lab, proto: &str, host: &str, port: u16, count: usize) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.ns("client"), "python3", "-c", CLIENT])
        .args([proto, host, &port.to_string(), &count.to_string()])
        .output()
        .expect("run the client");
    stdout(&out).lines().map(str::to_owned).collect()
}

fn tally(answers: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for a in answers {
        *m.entry(a.clone()).or_insert(0) += 1;
    }
    m
}

/// The running containers of service `name` in the lab: container id (what its task answers)
/// to the node member (`n2`).
fn containers(lab: &Lab, name: &str) -> BTreeMap<String, String> {
    let out = lab.docker_all(&[
        "ps",
        "--filter",
        &format!("name=^{name}\\."),
        "--format",
        "{{.ID}} {{.Label \"meshd.hostname\"}}",
    ]);
    let node_prefix = format!("{}-", lab.prefix);
    out.lines()
        .filter_map(|l| {
            let (id, hostname) = l.split_once(' ')?;
            let member = hostname.strip_prefix(&node_prefix)?;
            Some((id.to_owned(), member.to_owned()))
        })
        .collect()
}

/// Waits until service `name` has exactly `n` running containers, all plumbed (each answers
/// `probe` when given), and returns them.
fn wait_tasks(lab: &Lab, name: &str, n: usize) -> BTreeMap<String, String> {
    eventually(
        Duration::from_mins(1),
        &format!("{n} running tasks of {name}"),
        || {
            let c = containers(lab, name);
            let ls = ok(lab, "n1", &["service", "ls"]);
            let converged = ls.lines().any(|l| {
                l.split_whitespace().nth(1) == Some(name) && l.contains(&format!(" {n}/{n} "))
            });
            if c.len() == n && converged {
                Ok(c)
            } else {
                Err(format!("{c:?}\n{ls}"))
            }
        },
    )
}

/// `docker exec CONTAINER CMD...` on the engine that holds it: its stdout and stderr.
fn docker_exec(lab: &Lab, container: &str, cmd: &[&str]) -> String {
    let out = lab.docker(
        lab.engine_of(container),
        &[&["exec", container], cmd].concat(),
    );
    stdout(&out) + &stderr(&out)
}

/// The addresses `nslookup NAME` inside `container` answers (the server's own left out).
fn nslookup(lab: &Lab, container: &str, name: &str) -> BTreeSet<String> {
    let text = docker_exec(lab, container, &["nslookup", name]);
    let mut out = BTreeSet::new();
    let mut in_answer = false;
    for l in text.lines() {
        if l.starts_with("Name:") {
            in_answer = true;
        } else if in_answer && let Some(a) = l.strip_prefix("Address:") {
            out.insert(a.trim().to_owned());
        }
    }
    out
}

/// The address of `container` on its interface `ifname`.
fn addr_of(lab: &Lab, container: &str, ifname: &str) -> String {
    let text = docker_exec(lab, container, &["ip", "-4", "-o", "addr", "show", ifname]);
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_default()
        .to_owned()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// No iptables or nftables rule in any node namespace carries service traffic.
fn no_service_rules(lab: &Lab, nodes: usize, ports: &[u16]) {
    for i in 1..=nodes {
        let ns = lab.ns(&format!("n{i}"));
        for cmd in [vec!["iptables-save"], vec!["nft", "list", "ruleset"]] {
            let mut v = vec!["netns", "exec", ns.as_str()];
            v.extend(cmd.iter().copied());
            let Ok(out) = Command::new("ip").args(&v).output() else {
                continue; // not installed: nothing can carry traffic through it
            };
            let text = stdout(&out);
            let mut needles: Vec<String> = ports.iter().map(u16::to_string).collect();
            needles.extend(
                [
                    "10.255.",
                    "DNAT",
                    "SNAT",
                    "MASQUERADE",
                    "dnat",
                    "snat",
                    "masquerade",
                ]
                .map(str::to_owned),
            );
            for needle in needles {
                assert!(
                    !text.contains(&needle),
                    "n{i}: `{}` shows {needle:?}:\n{text}",
                    cmd.join(" ")
                );
            }
        }
    }
}

/// Published TCP and UDP through every node: every answer from a task, every task answering
/// through every node (so also through one that runs none).
fn through_every_node(lab: &Lab, nodes: usize, proto: &str, port: u16, tasks: &BTreeSet<String>) {
    for i in 1..=nodes {
        let node = lab.node_addr(i);
        eventually(
            Duration::from_secs(20),
            &format!("{proto} port {port} through n{i} reaching {tasks:?}"),
            || {
                let answers = ask(lab, proto, &node, port, 24);
                let t = tally(&answers);
                let got: BTreeSet<String> = t.keys().cloned().collect();
                if got == *tasks && answers.len() == 24 {
                    println!("mesh: {proto} :{port} via n{i}: {t:?}");
                    Ok(())
                } else {
                    Err(format!("{t:?}"))
                }
            },
        );
    }
}

/// Publishing on a tc or xdp data path: `-p 8080:80` (TCP) with 2 replicas on 3 nodes and a
/// UDP echo, through all three nodes.
pub(crate) fn publishes_tcp_and_udp(lab: &Lab) {
    create_httpd(lab, "--name web -p 8080:80 --replicas 2");
    ok(
        lab,
        "n1",
        &words(&format!(
            "service create -d --name echo -p 9000:9000/udp --replicas 2 {} udp-echo 9000",
            lab.image()
        )),
    );
    let web = wait_tasks(lab, "web", 2);
    let echo = wait_tasks(lab, "echo", 2);
    let idle: Vec<&str> = ["n1", "n2", "n3"]
        .into_iter()
        .filter(|n| !web.values().any(|m| m == n))
        .collect();
    println!("mesh: web tasks {web:?}; nodes without one: {idle:?}");
    assert!(!idle.is_empty());
    through_every_node(lab, 3, "http", 8080, &web.keys().cloned().collect());
    through_every_node(lab, 3, "udp", 9000, &echo.keys().cloned().collect());
}

/// `--datapath tc` (the default): publishing through every node, TCP and UDP; host mode; DNS
/// (`web`, `tasks.web`, aliases, PTR, dnsrr); a VIP balanced from another service's task;
/// `service publish` on a dnsrr service; counters; bad ports refused; no firewall rules; what
/// crossed n1's underlay went the way of the lab's routing.
fn publishes_resolves_and_balances(routing: Routing, name: &str, octet: u8) {
    let started = Instant::now();
    let lab = Lab::up_with(name, octet, 3, 1, routing.lab_args());
    let capture = underlay_capture(&lab, "n1");
    ok(&lab, "n1", &["network", "create", "-d", "overlay", "front"]);
    for net in ["ingress", "front"] {
        let options = json(&ok(
            &lab,
            "n1",
            &["network", "inspect", "--format", "{{json .Options}}", net],
        ));
        assert_eq!(options["routing"], routing.option(), "{net}: {options}");
    }
    publishes_tcp_and_udp(&lab);

    // What users see of the ports.
    let ls = ok(&lab, "n1", &["service", "ls"]);
    assert!(
        ls.lines()
            .any(|l| l.contains(" web ") && l.trim_end().ends_with("*:8080->80/tcp")),
        "{ls}"
    );
    assert_eq!(
        ok(
            &lab,
            "n1",
            &[
                "service",
                "inspect",
                "--format",
                "{{json .Endpoint.Spec.Ports}}",
                "web"
            ]
        )
        .trim(),
        r#"[{"Protocol":"tcp","TargetPort":80,"PublishedPort":8080,"PublishMode":"ingress"}]"#
    );

    // Bad ports are refused with nothing changed.
    let inspect_version = words("service inspect --format {{.Version.Index}} web");
    let version = ok(&lab, "n1", &inspect_version);
    for (args, want) in [
        (
            words("service create -d --name bad -p 2377:80 meshd/busybox"),
            "port 2377/tcp cannot be published",
        ),
        (
            words("service create -d --name bad -p 8080:81 meshd/busybox"),
            "8080/tcp is already in use by service web",
        ),
        (
            words("service publish -d 7946:80/udp web"),
            "port 7946/udp cannot be published",
        ),
        (
            words("service publish -d 9000:80/udp web"),
            "9000/udp is already in use by service echo",
        ),
        (words("service publish -d 80:80:80 web"), "invalid port"),
    ] {
        // The lab's registry image: a bare name would make the node ask Docker Hub for a digest.
        let args: Vec<String> = args
            .into_iter()
            .map(|a| a.replace("meshd/busybox", &lab.image()))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let e = fails(&lab, "n1", &args);
        assert!(e.contains(want), "{args:?}: {e}");
    }
    assert!(!ok(&lab, "n1", &["service", "ls"]).contains(" bad "));
    assert_eq!(
        ok(&lab, "n1", &inspect_version),
        version,
        "a refused publish changed web"
    );

    // Host mode: only the node running the task answers.
    create_httpd(
        &lab,
        "--name hweb --publish published=8081,target=80,mode=host",
    );
    let hweb = wait_tasks(&lab, "hweb", 1);
    let (task, on) = hweb
        .iter()
        .next()
        .map(|(a, b)| (a.clone(), b.clone()))
        .unwrap();
    for i in 1..=3 {
        let member = format!("n{i}");
        let want = if member == on {
            vec![task.clone(); 4]
        } else {
            vec!["ERR ConnectionRefusedError".to_owned(); 4]
        };
        eventually(
            Duration::from_secs(20),
            &format!("host mode through {member} (task on {on})"),
            || {
                let got = ask(&lab, "http", &lab.node_addr(i), 8081, 4);
                if got == want {
                    Ok(())
                } else {
                    Err(format!("{got:?}"))
                }
            },
        );
    }

    // DNS and east-west: `api` (3 tasks, alias `backend`) and `rr` (dnsrr) on `front`, called
    // from a task of another service there.
    create_httpd(
        &lab,
        "--name api --network name=front,alias=backend --replicas 3",
    );
    ok(
        &lab,
        "n1",
        &words(&format!(
            "service create -d --name rr --endpoint-mode dnsrr --network front --replicas 2 --update-parallelism 0 {} udp-echo 9100",
            lab.image()
        )),
    );
    ok(
        &lab,
        "n1",
        &words(&format!(
            "service create -d --name cli --network front {} sleep 100000",
            lab.image()
        )),
    );
    let api = wait_tasks(&lab, "api", 3);
    let rr = wait_tasks(&lab, "rr", 2);
    let cli = wait_tasks(&lab, "cli", 1);
    let cli = cli.keys().next().unwrap().clone();
    let vips = json(&ok(
        &lab,
        "n1",
        &[
            "service",
            "inspect",
            "--format",
            "{{json .Endpoint.VirtualIPs}}",
            "api",
        ],
    ));
    let api_vip = vips[0]["Addr"].as_str().unwrap().to_owned();
    let rr_vips = ok(
        &lab,
        "n1",
        &[
            "service",
            "inspect",
            "--format",
            "{{json .Endpoint.VirtualIPs}}",
            "rr",
        ],
    );
    assert!(
        matches!(rr_vips.trim(), "null" | "[]" | "<no value>"),
        "dnsrr has no VIP: {rr_vips}"
    );
    let api_addrs: BTreeSet<String> = api.keys().map(|c| addr_of(&lab, c, "eth0")).collect();
    let rr_addrs: BTreeSet<String> = rr.keys().map(|c| addr_of(&lab, c, "eth0")).collect();
    eventually(Duration::from_secs(15), "names resolve in a task", || {
        let got = [
            ("api", nslookup(&lab, &cli, "api")),
            ("backend", nslookup(&lab, &cli, "backend")),
            ("tasks.api", nslookup(&lab, &cli, "tasks.api")),
            ("rr", nslookup(&lab, &cli, "rr")),
            ("tasks.rr", nslookup(&lab, &cli, "tasks.rr")),
        ];
        let want = [
            ("api", BTreeSet::from([api_vip.clone()])),
            ("backend", BTreeSet::from([api_vip.clone()])),
            ("tasks.api", api_addrs.clone()),
            ("rr", rr_addrs.clone()),
            ("tasks.rr", rr_addrs.clone()),
        ];
        if got == want {
            Ok(())
        } else {
            Err(format!("got {got:?}\nwant {want:?}"))
        }
    });
    println!(
        "mesh: DNS in a task: api -> {api_vip}, tasks.api -> {api_addrs:?}, rr -> {rr_addrs:?}"
    );
    // PTR: a task's address names the task, the VIP names the service.
    let a_task = api_addrs.iter().next().unwrap();
    let ptr = docker_exec(&lab, &cli, &["nslookup", a_task]);
    assert!(ptr.contains("name = api."), "PTR of {a_task}: {ptr}");
    let ptr = docker_exec(&lab, &cli, &["nslookup", &api_vip]);
    assert!(
        ptr.contains("name = api"),
        "PTR of the VIP {api_vip}: {ptr}"
    );
    // Inside a task of the publishing service itself: `web` and `tasks.web` (on ingress).
    let (web_task, _) = containers(&lab, "web").into_iter().next().unwrap();
    let web_vip = json(&ok(
        &lab,
        "n1",
        &[
            "service",
            "inspect",
            "--format",
            "{{json .Endpoint.VirtualIPs}}",
            "web",
        ],
    ))[0]["Addr"]
        .as_str()
        .unwrap()
        .to_owned();
    let web_addrs: BTreeSet<String> = containers(&lab, "web")
        .keys()
        .map(|c| addr_of(&lab, c, "eth0"))
        .collect();
    assert_eq!(nslookup(&lab, &web_task, "web"), BTreeSet::from([web_vip]));
    assert_eq!(nslookup(&lab, &web_task, "tasks.web"), web_addrs);
    // An external name: no upstream here (the lab has none outside), answered, not hung.
    let ext = docker_exec(&lab, &web_task, &["nslookup", "example.com"]);
    assert!(
        ext.contains("SERVFAIL") || ext.contains("NXDOMAIN"),
        "{ext}"
    );

    // The VIP balanced over all of api's tasks, by name.
    let answers: Vec<String> = (0..30)
        // (busybox's `wget -T` crashes: `timeout` bounds it instead)
        .map(|_| docker_exec(&lab, &cli, &["timeout", "3", "wget", "-qO-", "http://api/"]))
        .collect();
    let t = tally(&answers);
    println!("mesh: cli -> http://api/ (VIP): {t:?}");
    assert_eq!(
        t.keys().cloned().collect::<BTreeSet<_>>(),
        api.keys().cloned().collect(),
        "the VIP reaches every api task and nothing else"
    );

    // `service publish` on the dnsrr service (Swarm refuses dnsrr with published ports): its
    // tasks are replaced and answer through every node, balanced over their addresses.
    let out = ok(
        &lab,
        "n1",
        &["service", "publish", "-d", "9100:9100/udp", "rr"],
    );
    assert_eq!(out.trim(), "rr");
    let rr = eventually(
        Duration::from_mins(1),
        "rr replaced with an ingress address",
        || {
            let c = wait_tasks(&lab, "rr", 2);
            if c.keys().all(|id| !addr_of(&lab, id, "eth1").is_empty()) {
                Ok(c)
            } else {
                Err(format!("{c:?}"))
            }
        },
    );
    through_every_node(&lab, 3, "udp", 9100, &rr.keys().cloned().collect());

    // Counters: per node in `mesh stats`, summed in `service inspect`.
    let rows = eventually(Duration::from_secs(10), "web's counters", || {
        let text = ok(&lab, "n1", &["mesh", "stats", "--format", "json", "web"]);
        let rows: Vec<serde_json::Value> = text.lines().map(json).collect();
        let conns: u64 = rows
            .iter()
            .map(|r| r["Connections"].as_u64().unwrap())
            .sum();
        if rows.len() == 3 && conns >= 72 {
            Ok(rows)
        } else {
            Err(text)
        }
    });
    for r in &rows {
        assert!(r["Packets"].as_u64().unwrap() > r["Connections"].as_u64().unwrap());
        assert_eq!(r["Ports"], "*:8080->80/tcp");
    }
    let table = ok(&lab, "n1", &["mesh", "stats"]);
    println!("mesh: mesh stats\n{table}");
    assert!(table.starts_with("SERVICE"), "{table}");
    let pretty = ok(&lab, "n1", &["service", "inspect", "--pretty", "web"]);
    assert!(pretty.contains("Mesh:\n Packets:"), "{pretty}");
    let total = json(&ok(
        &lab,
        "n1",
        &[
            "service",
            "inspect",
            "--format",
            "{{json .MeshStats}}",
            "web",
        ],
    ));
    assert!(total["Connections"].as_u64().unwrap() >= 72, "{total}");

    no_service_rules(&lab, 3, &[8080, 8081, 9000, 9100]);
    let crossed = routing.assert_crossed(&capture.stop(), "mesh, tc");
    println!(
        "mesh: tc test ({routing:?}) took {:?}; {crossed} overlay packets crossed n1's underlay",
        started.elapsed()
    );
}

#[test]
fn mesh_publishes_resolves_and_balances() {
    publishes_resolves_and_balances(Routing::Vxlan, "meshtc", 190);
}

#[test]
fn mesh_publishes_resolves_and_balances_natively() {
    publishes_resolves_and_balances(Routing::Native, "meshtcn", 193);
}

/// `--datapath xdp`: the same published TCP and UDP through every node, with remote backends
/// encapsulated and replies decapsulated in XDP (VXLAN), or sent as they are (native).
fn publishes_on_the_xdp_datapath(routing: Routing, name: &str, octet: u8) {
    let started = Instant::now();
    let args = [&["--datapath", "xdp"], routing.lab_args()].concat();
    let lab = Lab::up_with(name, octet, 3, 1, &args);
    let capture = underlay_capture(&lab, "n1");
    publishes_tcp_and_udp(&lab);
    // The XDP program really runs on the nodes' underlay (and sent frames with XDP_TX).
    let links = host(
        "ls",
        &[&format!("/sys/fs/bpf/meshd/{}/links", lab.ns("n1"))],
    );
    assert!(links.contains("xdp_mesh@eth0"), "{links}");
    let stats = Command::new("ip")
        .args(["netns", "exec", &lab.ns("n1"), "ethtool", "-S", "eth0"])
        .output()
        .map(|o| stdout(&o))
        .unwrap_or_default();
    let tx: u64 = stats
        .lines()
        .filter(|l| l.contains("xdp_tx:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
        .sum();
    println!("mesh: xdp n1 xdp_tx frames: {tx}");
    no_service_rules(&lab, 3, &[8080, 9000]);
    let crossed = routing.assert_crossed(&capture.stop(), "mesh, xdp");
    println!(
        "mesh: xdp test ({routing:?}) took {:?}; {crossed} overlay packets crossed n1's underlay",
        started.elapsed()
    );
}

#[test]
fn mesh_publishes_on_the_xdp_datapath() {
    publishes_on_the_xdp_datapath(Routing::Vxlan, "meshxdp", 191);
}

#[test]
fn mesh_publishes_on_the_xdp_datapath_natively() {
    publishes_on_the_xdp_datapath(Routing::Native, "meshxdpn", 194);
}

/// One request's time and its answer, or curl's exit code (7: refused, 28: timed out, 22: an
/// HTTP error, 56: reset).
type Sample = (Instant, Result<String, i32>);

/// One request every 100 ms from the client to `url` (curl), until stopped.
struct Probe {
    name: &'static str,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<Sample>>>,
}

impl Probe {
    fn start(lab: &Lab, name: &'static str, url: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ns = lab.ns("client");
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !s.load(Ordering::Relaxed) {
                let at = Instant::now();
                // -f: an HTTP error (HAProxy's 503 when no server is up) is a failure too.
                let out = Command::new("ip")
                    .args(["netns", "exec", &ns, "curl", "-sf", "-m", "1", &url])
                    .output();
                let answer = match out {
                    Ok(o) if o.status.success() && !o.stdout.is_empty() => Ok(stdout(&o)),
                    Ok(o) => Err(o.status.code().unwrap_or(-1)),
                    Err(_) => Err(-1),
                };
                samples.push((at, answer));
                std::thread::sleep(Duration::from_millis(100).saturating_sub(at.elapsed()));
            }
            samples
        });
        Self {
            name,
            stop,
            thread: Some(thread),
        }
    }

    /// The answers since `from` (None: failed).
    fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How many of `samples` after `from` failed, and for how long (first to last failure).
fn outage(samples: &[Sample], from: Instant) -> (usize, usize, Duration) {
    let after: Vec<&Sample> = samples.iter().filter(|s| s.0 >= from).collect();
    let failed: Vec<Instant> = after.iter().filter(|s| s.1.is_err()).map(|s| s.0).collect();
    let span = match (failed.first(), failed.last()) {
        (Some(a), Some(b)) => *b - *a + Duration::from_millis(100),
        _ => Duration::ZERO,
    };
    (failed.len(), after.len(), span)
}

/// Debian's haproxy in the client namespace, balancing over every node's published port;
/// stopped on drop.
struct Haproxy {
    child: Child,
    config: std::path::PathBuf,
}

impl Haproxy {
    fn start(lab: &Lab, nodes: usize, listen: u16, port: u16) -> Self {
        let config = std::env::temp_dir().join(format!("{}-haproxy.cfg", lab.prefix));
        let mut cfg = format!(
            "global\n    maxconn 256\n\
             defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    \
             timeout server 5s\n    retries 2\n    option redispatch\n\
             frontend mesh\n    bind 127.0.0.1:{listen}\n    default_backend nodes\n\
             backend nodes\n    balance roundrobin\n    option httpchk GET /\n"
        );
        for i in 1..=nodes {
            let _ = writeln!(
                cfg,
                "    server n{i} {}:{port} check inter 300 fall 2 rise 2",
                lab.node_addr(i)
            );
        }
        std::fs::write(&config, cfg).expect("write the HAProxy config");
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.ns("client"), "haproxy", "-db", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        Self { child, config }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

/// The mesh follows the tasks while clients keep asking (one through n1, the manager, which
/// runs no task; one through haproxy over all nodes, configured once): scale 2 -> 4, a drain,
/// a restart of n1's meshd, scale -> 1, and the node of the last task killed (meshd killed with SIGKILL,
/// its link cut). Prints how many requests failed and for how long.
fn follows_scaling_and_node_death(routing: Routing, name: &str, octet: u8) {
    let started = Instant::now();
    let lab = Lab::up_with(name, octet, 3, 1, routing.lab_args());
    let capture = underlay_capture(&lab, "n1");
    create_httpd(
        &lab,
        "--name web -p 8080:80 --replicas 2 --constraint node.role==worker --update-parallelism 0",
    );
    let two = wait_tasks(&lab, "web", 2);
    through_every_node(&lab, 3, "http", 8080, &two.keys().cloned().collect());
    let haproxy = Haproxy::start(&lab, 3, 18080, 8080);
    eventually(Duration::from_secs(10), "HAProxy serving", || {
        let out = Command::new("ip")
            .args(["netns", "exec", &lab.ns("client"), "curl", "-sf", "-m", "1"])
            .arg("http://127.0.0.1:18080/")
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("curl exit {:?}", out.status.code()))
        }
    });
    let via_n1 = Probe::start(&lab, "via n1", format!("http://{}:8080/", lab.node_addr(1)));
    let via_haproxy = Probe::start(&lab, "via HAProxy", "http://127.0.0.1:18080/".to_owned());
    let answers_are = |want: &BTreeSet<String>, what: &str| {
        eventually(Duration::from_mins(1), what, || {
            let t = tally(&ask(&lab, "http", &lab.node_addr(1), 8080, 32));
            let got: BTreeSet<String> = t.keys().cloned().collect();
            if got == *want {
                Ok(())
            } else {
                Err(format!("{t:?}, want {want:?}"))
            }
        });
    };

    let mut phases: Vec<(&str, u128)> = Vec::new();
    let phase = |what, phases: &mut Vec<(&str, u128)>| {
        phases.push((what, started.elapsed().as_millis()));
    };
    // 2 -> 4.
    phase("scale 2->4", &mut phases);
    ok(&lab, "n1", &["service", "scale", "-d", "web=4"]);
    let four = wait_tasks(&lab, "web", 4);
    answers_are(&four.keys().cloned().collect(), "4 tasks answering");
    // Drain n3: its tasks move to n2.
    phase("drain n3", &mut phases);
    ok(
        &lab,
        "n1",
        &["node", "update", "--availability", "drain", &lab.ns("n3")],
    );
    let drained = eventually(Duration::from_mins(1), "n3 drained", || {
        let c = wait_tasks(&lab, "web", 4);
        if c.values().all(|n| n == "n2") {
            Ok(c)
        } else {
            Err(format!("{c:?}"))
        }
    });
    answers_are(
        &drained.keys().cloned().collect(),
        "the moved tasks answering",
    );
    ok(
        &lab,
        "n1",
        &["node", "update", "--availability", "active", &lab.ns("n3")],
    );
    // A restart of n1's meshd: its pinned programs keep serving, the new meshd takes them over.
    phase("restart n1", &mut phases);
    let restart_at = Instant::now();
    let out = lab.meshctl_lab(&["restart", "n1"]);
    assert!(out.status.success(), "lab restart n1: {}", stderr(&out));
    answers_are(
        &drained.keys().cloned().collect(),
        "answers after n1's restart",
    );
    let restarted_ok = Instant::now();
    // 4 -> 1.
    phase("scale 4->1", &mut phases);
    ok(&lab, "n1", &["service", "scale", "-d", "web=1"]);
    let one = wait_tasks(&lab, "web", 1);
    answers_are(&one.keys().cloned().collect(), "1 task answering");
    // Kill the node of the last task.
    let (_, victim) = one
        .iter()
        .next()
        .map(|(a, b)| (a.clone(), b.clone()))
        .unwrap();
    phase("kill", &mut phases);
    let kill_at = Instant::now();
    let out = lab.meshctl_lab(&["stop", "--kill", &victim]);
    assert!(
        out.status.success(),
        "lab stop --kill {victim}: {}",
        stderr(&out)
    );
    let out = lab.exec(&victim, &["ip", "link", "set", "eth0", "down"]);
    assert!(
        out.status.success(),
        "eth0 down in {victim}: {}",
        stderr(&out)
    );
    let moved = eventually(Duration::from_secs(90), "the task rescheduled", || {
        let c = containers(&lab, "web");
        let fresh: BTreeMap<String, String> = c.into_iter().filter(|(_, n)| *n != victim).collect();
        if fresh.len() == 1 {
            Ok(fresh)
        } else {
            Err(format!("{fresh:?}"))
        }
    });
    answers_are(
        &moved.keys().cloned().collect(),
        "the rescheduled task answering",
    );
    let recovered = kill_at.elapsed();
    std::thread::sleep(Duration::from_secs(2));

    println!("mesh: phases (ms since the start): {phases:?}");
    for probe in [via_n1, via_haproxy] {
        let name = probe.name;
        let samples = probe.finish();
        let window = |from: Instant, to: Instant| {
            let s: Vec<Sample> = samples
                .iter()
                .filter(|s| s.0 >= from && s.0 < to)
                .cloned()
                .collect();
            outage(&s, from)
        };
        let (f, n, span) = window(samples[0].0, restart_at);
        println!("mesh: {name}: scale 2->4 and drain: {f} of {n} requests failed (over {span:?})");
        let (f, n, span) = window(restart_at, restarted_ok);
        println!("mesh: {name}: n1's meshd restart: {f} of {n} requests failed (over {span:?})");
        let (f, n, span) = window(restarted_ok, kill_at);
        println!("mesh: {name}: scale 4->1: {f} of {n} requests failed (over {span:?})");
        let (f, n, span) = outage(&samples, kill_at);
        println!(
            "mesh: {name}: node {victim} killed: {f} of {n} requests failed, for {span:?} \
             (the task answered again {recovered:?} after the kill)"
        );
        let failures: Vec<String> = samples
            .iter()
            .filter_map(|(at, r)| {
                let code = r.as_ref().err()?;
                let since = |t: Instant| at.saturating_duration_since(t).as_millis();
                Some(format!(
                    "curl {code} at +{}ms (restart +{}ms, kill +{}ms)",
                    since(started),
                    since(restart_at),
                    since(kill_at)
                ))
            })
            .collect();
        println!("mesh: {name}: failures: {failures:?}");
        // The generous bound: the last requests all succeed.
        let tail: Vec<&Result<String, i32>> = samples.iter().rev().take(10).map(|s| &s.1).collect();
        assert!(
            tail.iter().all(|b| b.is_ok()),
            "{name}: the last requests failed: {tail:?}"
        );
    }
    drop(haproxy);
    let crossed = routing.assert_crossed(&capture.stop(), "mesh, following");
    println!(
        "mesh: follow test ({routing:?}) took {:?}; {crossed} overlay packets crossed n1's underlay",
        started.elapsed()
    );
}

#[test]
fn mesh_follows_scaling_and_node_death() {
    follows_scaling_and_node_death(Routing::Vxlan, "meshfo", 192);
}

#[test]
fn mesh_follows_scaling_and_node_death_natively() {
    follows_scaling_and_node_death(Routing::Native, "meshfon", 195);
}
