//! Socket-level balancing (`ebpf/sock_lb.c`) on a lab: a node's own processes reach a published
//! port at 127.0.0.1 and at the node's own address (TCP, connected and unconnected UDP), also
//! when the only task runs on another node; `getpeername` and the source of a UDP reply show what
//! was dialled; the socket programs count the translations while the per-packet (tc) counters
//! stay still; a task's connection to a VIP is balanced at connect, with no tc translation on
//! any node; the nodes' own dockerds push to and pull from `127.0.0.1:5000` (a published
//! registry), as Swarm's registry tutorial does. The lab's other nodes' programs, attached at
//! the same cgroup2 root, and those of labs of other tests, leave these sockets alone (each acts
//! only in its own namespaces).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use mesh_dataplane::PinnedTotals;

use crate::support::routing::Routing;
use crate::support::{Lab, eventually, meshctl, ok, stderr, stdout, words};

/// The tasks' web server: answers `GET /` with the container's hostname (no newline).
const HTTPD: &str =
    "mkdir -p /www && hostname | tr -d '\\n' > /www/index.html && exec httpd -f -p 80 -h /www";

/// One request from a node's own namespace: prints `<answer> <peer as the socket sees it>`, or
/// `ERR <kind>`. `http` connects with TCP; `udp` sends unconnected (`sendto`/`recvfrom`: the
/// peer is the reply's source); `udpc` connects the UDP socket first (`getpeername`).
const NODE_CLIENT: &str = r#"
import socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    if proto == "http":
        s = socket.create_connection((host, port), timeout=3)
        peer = s.getpeername()
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            data += b
        body = data.split(b"\r\n\r\n", 1)[1].decode().strip() if b"\r\n\r\n" in data else ""
        print(body or "ERR empty", "%s:%d" % peer)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(3)
        if proto == "udpc":
            s.connect((host, port))
            s.send(b"hi")
            data, peer = s.recv(2048), s.getpeername()
        else:
            s.sendto(b"hi", (host, port))
            data, peer = s.recvfrom(2048)
        print(data.decode().split()[0], "%s:%d" % peer)
except Exception as e:
    print("ERR", type(e).__name__)
"#;

/// Runs the client in `member`'s namespace (a node's own process, as dockerd or curl there).
fn from_node(lab: &Lab, member: &str, proto: &str, host: &str, port: u16) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(member),
            "python3",
            "-c",
            NODE_CLIENT,
        ])
        .args([proto, host, &port.to_string()])
        .output()
        .expect("run the node client");
    stdout(&out).trim().to_owned()
}

fn create(lab: &Lab, args: &str, cmd: &[&str]) {
    let args = [&words(args)[..], cmd].concat();
    ok(lab, "n1", &args);
}

/// The containers of service `name`: (container id, node member), once `n` run.
fn wait_tasks(lab: &Lab, name: &str, n: usize) -> Vec<(String, String)> {
    let node_prefix = format!("{}-", lab.prefix);
    eventually(
        Duration::from_mins(1),
        &format!("{n} tasks of {name}"),
        || {
            let out = lab.docker_all(&[
                "ps",
                "--filter",
                &format!("name=^{name}\\."),
                "--format",
                "{{.ID}} {{.Label \"meshd.hostname\"}}",
            ]);
            let c: Vec<(String, String)> = out
                .lines()
                .filter_map(|l| {
                    let (id, hostname) = l.split_once(' ')?;
                    Some((
                        id.to_owned(),
                        hostname.strip_prefix(&node_prefix)?.to_owned(),
                    ))
                })
                .collect();
            if c.len() == n {
                Ok(c)
            } else {
                Err(format!("{c:?}"))
            }
        },
    )
}

fn pins(lab: &Lab, member: &str) -> PathBuf {
    PathBuf::from(format!("/sys/fs/bpf/meshd/{}", lab.ns(member)))
}

/// The node's counters, once its meshd has loaded the socket programs (their pins exist).
fn totals(lab: &Lab, member: &str) -> PinnedTotals {
    eventually(
        Duration::from_secs(20),
        &format!("{member}'s counters"),
        || PinnedTotals::read(&pins(lab, member)).map_err(|e| format!("{e:#}")),
    )
}

/// `curl localhost:8080` and `curl <own address>:8080` on every node answer, also where no task
/// runs; UDP through 127.0.0.1 too; the answers show what was dialled; no tc translation.
fn serves_published_ports_to_the_node_itself(routing: Routing, name: &str, octet: u8) {
    let lab = Lab::up_with(name, octet, 2, 1, routing.lab_args());
    create(
        &lab,
        "service create -d --name web -p 8080:80",
        &[lab.image().as_str(), "sh", "-c", HTTPD],
    );
    create(
        &lab,
        "service create -d --name echo -p 9000:9000/udp",
        &[lab.image().as_str(), "udp-echo", "9000"],
    );
    let web = wait_tasks(&lab, "web", 1);
    let echo = wait_tasks(&lab, "echo", 1);
    let (web_task, web_node) = web[0].clone();
    let echo_task = echo[0].0.clone();
    println!(
        "socklb: web {web_task} on {web_node}, echo on {}",
        echo[0].1
    );

    for i in 1..=2 {
        let member = format!("n{i}");
        let before = totals(&lab, &member);
        for addr in ["127.0.0.1".to_owned(), lab.node_addr(i)] {
            // What users run.
            let curl = eventually(
                Duration::from_secs(30),
                &format!("curl http://{addr}:8080/ on {member} (web on {web_node})"),
                || {
                    let out = lab.exec(
                        &member,
                        &["curl", "-sS", "-m", "3", &format!("http://{addr}:8080/")],
                    );
                    let body = stdout(&out);
                    if body == web_task {
                        Ok(body)
                    } else {
                        Err(format!("{body:?} {}", stderr(&out)))
                    }
                },
            );
            assert_eq!(curl, web_task);
            // The socket sees the address it dialled, not the task's.
            assert_eq!(
                from_node(&lab, &member, "http", &addr, 8080),
                format!("{web_task} {addr}:8080"),
                "{member}: TCP to {addr}:8080"
            );
        }
        for proto in ["udp", "udpc"] {
            // (echo's task may be on the other node, heard of by gossip a moment later)
            let want = format!("{echo_task} 127.0.0.1:9000");
            eventually(
                Duration::from_secs(20),
                &format!("{member}: {proto} to 127.0.0.1:9000"),
                || {
                    let got = from_node(&lab, &member, proto, "127.0.0.1", 9000);
                    if got == want { Ok(()) } else { Err(got) }
                },
            );
        }
        let after = totals(&lab, &member);
        println!("socklb: {member} counters before {before:?} after {after:?}");
        // 2 curl + 2 python TCP connects and one connected UDP; one unconnected datagram.
        assert!(
            after.socket.connects >= before.socket.connects + 5,
            "{member}: {before:?} -> {after:?}"
        );
        assert!(
            after.socket.sendmsgs > before.socket.sendmsgs,
            "{member}: {before:?} -> {after:?}"
        );
        assert_eq!(
            (after.packets, after.flows),
            (before.packets, before.flows),
            "{member}: the node's own sockets went through the per-packet translation"
        );
    }

    east_west_vip_is_balanced_at_connect(&lab);
    nodes_push_and_pull_through_localhost(&lab);

    // The socket programs are listed in the node's status.
    let status = stdout(&meshctl(&lab, "n2", &["status", "--format", "json"]));
    assert!(status.contains("sock_connect4"), "{status}");
    // A wrong address is not a published port: left alone (refused by the node's stack).
    assert!(
        from_node(&lab, "n1", "http", "127.0.0.2", 8081).starts_with("ERR"),
        "an unpublished port answered"
    );
}

#[test]
fn socket_lb_serves_published_ports_to_the_node_itself() {
    serves_published_ports_to_the_node_itself(Routing::Vxlan, "socklb", 215);
}

/// The same on a natively routed lab (issue 19).
#[test]
fn socket_lb_serves_published_ports_to_the_node_itself_natively() {
    serves_published_ports_to_the_node_itself(Routing::Native, "socklbn", 196);
}

/// From a task, `wget http://api/` (the name gives the VIP) reaches every task of `api`, and
/// neither node's per-packet (tc) counters move: the flows were translated at connect.
fn east_west_vip_is_balanced_at_connect(lab: &Lab) {
    ok(lab, "n1", &words("network create -d overlay front"));
    create(
        lab,
        "service create -d --name api --network front --replicas 2",
        &[lab.image().as_str(), "sh", "-c", HTTPD],
    );
    create(
        lab,
        "service create -d --name cli --network front",
        &[lab.image().as_str(), "sleep", "3600"],
    );
    let api: Vec<String> = wait_tasks(lab, "api", 2).into_iter().map(|t| t.0).collect();
    let (cli, cli_node) = wait_tasks(lab, "cli", 1)[0].clone();
    let cli_engine = lab.engine_of(&cli);
    let wget = || {
        stdout(&lab.docker(
            cli_engine,
            &["exec", &cli, "timeout", "3", "wget", "-qO-", "http://api/"],
        ))
    };
    eventually(
        Duration::from_secs(30),
        "api through its VIP from cli",
        || {
            let a = wget();
            if api.contains(&a) { Ok(()) } else { Err(a) }
        },
    );
    let nodes = ["n1", "n2"];
    let before: Vec<PinnedTotals> = nodes.iter().map(|n| totals(lab, n)).collect();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let a = wget();
        assert!(api.contains(&a), "cli -> api answered {a:?}, tasks {api:?}");
        seen.insert(a);
    }
    let after: Vec<PinnedTotals> = nodes.iter().map(|n| totals(lab, n)).collect();
    println!("socklb: east-west from {cli_node}: {seen:?}; before {before:?} after {after:?}");
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(
            (after[i].packets, after[i].flows),
            (before[i].packets, before[i].flows),
            "{n}: a VIP flow from a task went through the per-packet translation"
        );
    }
    let at = nodes.iter().position(|n| *n == cli_node).unwrap();
    assert!(
        after[at].socket.connects >= before[at].socket.connects + 12,
        "{cli_node}: {:?} -> {:?}",
        before[at],
        after[at]
    );
    // Sockets land on both tasks (each connect is a new socket, balanced by Maglev).
    assert_eq!(seen.len(), 2, "cli reached only {seen:?} of {api:?}");
}

/// The seed tutorial: a registry published on 5000; a node's own dockerd pushes to
/// `127.0.0.1:5000/app` and the other node's dockerd pulls it from its own `127.0.0.1:5000`,
/// both through the mesh (the registry task runs on one of them).
fn nodes_push_and_pull_through_localhost(lab: &Lab) {
    ok(
        lab,
        "n1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "registry",
            "-p",
            "5000:5000",
            &lab.image_named("registry"),
        ],
    );
    let (_, on) = wait_tasks(lab, "registry", 1)[0].clone();
    let (pusher, puller) = if on == "n1" { (2, 1) } else { (1, 2) };
    let docker_ok = |i: usize, args: &[&str]| {
        let out = lab.docker(i, args);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("docker {args:?} on n{i}: {}", stderr(&out)))
        }
    };
    // Tasks pull by digest (pinned at create), so the tag itself is pulled first.
    docker_ok(pusher, &["pull", &lab.image()]).unwrap();
    docker_ok(pusher, &["tag", &lab.image(), "127.0.0.1:5000/app"]).unwrap();
    eventually(
        Duration::from_mins(1),
        &format!("n{pusher}'s dockerd pushing to 127.0.0.1:5000 (registry on {on})"),
        || docker_ok(pusher, &["push", "127.0.0.1:5000/app"]),
    );
    eventually(
        Duration::from_mins(1),
        &format!("n{puller}'s dockerd pulling from 127.0.0.1:5000 (registry on {on})"),
        || docker_ok(puller, &["pull", "127.0.0.1:5000/app"]),
    );
    println!("socklb: n{pusher} pushed and n{puller} pulled 127.0.0.1:5000/app (registry on {on})");
}
