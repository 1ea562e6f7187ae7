//! Native routing (issue 19) on lab swarms: the overlay tests' essentials on networks created
//! with `--opt routing=native` (or by `swarm init --default-routing native`), in tc and xdp
//! mode. Tasks of one native network on different nodes reach each other (ping, TCP, the
//! service's VIP by name) with their packets on the underlay as they are, no VXLAN; a task of
//! another native network reaches none of them; a bad routing value is refused and changes
//! nothing; a killed node's entries leave at once (the body of `tests/networks.rs`).

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::mesh::publishes_tcp_and_udp;
use crate::networks::{SERVER, drop_a_dead_nodes_entries, inspect_json, one_task_on, pings, tcp};
use crate::support::{Lab, eventually, fails, host, ok, words};

/// meshd's native routes in a node (`ip route show proto 77`): `(destination, via)`.
fn native_routes(lab: &Lab, member: &str) -> Vec<(String, String)> {
    host(
        "ip",
        &[
            "netns",
            "exec",
            &lab.ns(member),
            "ip",
            "route",
            "show",
            "proto",
            "77",
        ],
    )
    .lines()
    .filter_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        let via = w.iter().position(|x| *x == "via")?;
        Some((w[0].to_owned(), w.get(via + 1)?.to_string()))
    })
    .collect()
}

/// tcpdump on a node's underlay of VXLAN and of plain overlay packets (10.0.0.0/8), killed (and
/// its file removed) on drop.
struct UnderlayCapture {
    child: Child,
    file: String,
}

impl UnderlayCapture {
    fn start(lab: &Lab, member: &str) -> Self {
        let file = format!("/tmp/{}-{member}.native.txt", lab.prefix);
        let out = fs::File::create(&file).expect("capture file");
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.ns(member)])
            .args(["tcpdump", "-i", "eth0", "-nn", "-l", "-U"])
            .args(["udp port 4789 or (ip and net 10.0.0.0/8)"])
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("run tcpdump");
        // tcpdump needs a moment to open the interface.
        std::thread::sleep(Duration::from_millis(500));
        Self { child, file }
    }

    fn stop(mut self) -> String {
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.child.kill();
        let _ = self.child.wait();
        fs::read_to_string(&self.file).unwrap_or_default()
    }
}

impl Drop for UnderlayCapture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.file);
    }
}

/// Two nodes; `front` and `back` native (by `create_opts`, or by the swarm's default when it is
/// empty): tasks of front on both nodes talk without encapsulation, iso on back reaches none.
fn native_networks_body(lab: &Lab, create_opts: &str) {
    let err = fails(lab, "n1", &words("network create --opt routing=geneve bad"));
    assert!(
        err.contains("invalid routing \"geneve\": expected native or vxlan"),
        "{err}"
    );
    for net in ["front", "back"] {
        ok(
            lab,
            "n1",
            &words(&format!("network create {create_opts} {net}")),
        );
        let options = inspect_json(lab, "network", net, ".Options");
        assert_eq!(options["routing"], "native", "{net}: {options}");
    }
    let ls = ok(lab, "n1", &words("network ls"));
    assert!(!ls.contains(" bad "), "a refused network was made:\n{ls}");

    let image = lab.image();
    let create = |line: &str| {
        let mut args = words(line);
        args.extend([image.as_str(), "sh", "-c", SERVER]);
        ok(lab, "n1", &args).trim().to_owned()
    };
    let web =
        create("service create -d --name web --mode global --network front --stop-grace-period 1s");
    let ns1 = lab.ns("n1");
    let iso = create(&format!(
        "service create -d --name iso --network back --constraint node.hostname=={ns1} --stop-grace-period 1s"
    ));
    let web1 = one_task_on(lab, &web, "n1");
    let web2 = one_task_on(lab, &web, "n2");
    let iso1 = one_task_on(lab, &iso, "n1");
    eventually(
        Duration::from_secs(20),
        "web on n1 reaches web on n2",
        || {
            pings(&web1, &web2.addr)
                .then_some(())
                .ok_or("no answer".to_owned())
        },
    );

    // The node's own packets go natively too: a host route per remote address, via its node.
    let route = (web2.addr.clone(), lab.node_addr(2));
    eventually(Duration::from_secs(10), "n1's route to web on n2", || {
        let routes = native_routes(lab, "n1");
        routes
            .contains(&route)
            .then_some(())
            .ok_or(format!("{routes:?}"))
    });
    let capture = UnderlayCapture::start(lab, "n1");
    let node_ping = host(
        "ip",
        &[
            "netns",
            "exec",
            &lab.ns("n1"),
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            &web2.addr,
        ],
    );
    assert!(
        node_ping.contains("1 received"),
        "n1 -> {}: {node_ping}",
        web2.addr
    );
    for (from, to) in [(&web1, &web2), (&web2, &web1)] {
        assert!(pings(from, &to.addr), "{from:?} cannot ping {to:?}");
        let answer = tcp(from, &to.addr);
        assert!(
            answer.starts_with("pong-"),
            "{from:?} -> {to:?} over TCP: {answer:?}"
        );
    }
    // The VIP, by name (DNS), from both nodes: a backend on either node answers.
    for from in [&web1, &web2] {
        let answer = eventually(Duration::from_secs(10), "web's VIP by name", || {
            let a = tcp(from, "web");
            a.starts_with("pong-").then_some(a.clone()).ok_or(a)
        });
        assert!(answer.starts_with("pong-"), "{answer}");
    }
    // Isolation: a task of another (native) network reaches neither.
    for to in [&web1, &web2] {
        assert!(!pings(&iso1, &to.addr), "iso on back reached {to:?}");
        assert_eq!(tcp(&iso1, &to.addr), "", "iso on back reached {to:?}");
    }
    let captured = capture.stop();
    assert!(
        !captured.lines().any(|l| l.contains("VXLAN")),
        "VXLAN on n1's underlay for a native network:\n{captured}"
    );
    for (a, b) in [(&web1.addr, &web2.addr), (&web2.addr, &web1.addr)] {
        assert!(
            captured
                .lines()
                .any(|l| l.contains(&format!(" {a} > {b}: ICMP echo request"))),
            "no plain {a} > {b} on n1's underlay:\n{captured}"
        );
    }
    let plain = captured.lines().filter(|l| l.contains(" > 10.")).count();
    eprintln!("native: {plain} unencapsulated overlay packets on n1's underlay, no VXLAN");
}

#[test]
fn native_networks_route_tasks_unencapsulated() {
    let lab = Lab::up("native", 234, 2, 1);
    native_networks_body(&lab, "--opt routing=native");
}

/// The same in xdp mode, with native routing the swarm's default (`ingress` too), on three
/// nodes; then the routing mesh's published TCP and UDP through every node, without VXLAN.
#[test]
fn native_networks_by_default_route_tasks_unencapsulated_xdp() {
    let lab = Lab::up_with(
        "natxdp",
        235,
        3,
        1,
        &["--datapath", "xdp", "--default-routing", "native"],
    );
    let options = inspect_json(&lab, "network", "ingress", ".Options");
    assert_eq!(options["routing"], "native", "{options}");
    native_networks_body(&lab, "");
    ok(&lab, "n1", &words("service rm web iso"));
    published_without_vxlan(&lab);
}

/// The routing mesh's published TCP and UDP through every node (`tests/mesh.rs`'s body), with no
/// VXLAN on n1's underlay meanwhile: flows to remote backends and their replies cross as they are.
fn published_without_vxlan(lab: &Lab) {
    let capture = UnderlayCapture::start(lab, "n1");
    publishes_tcp_and_udp(lab);
    let captured = capture.stop();
    assert!(
        !captured.lines().any(|l| l.contains("VXLAN")),
        "VXLAN on n1's underlay with a native ingress:\n{captured}"
    );
    let plain = captured
        .lines()
        .filter(|l| l.contains(" > 10.255."))
        .count();
    eprintln!("native: {plain} unencapsulated ingress packets on n1's underlay, no VXLAN");
}

/// tc, native by default: the routing mesh's published TCP and UDP through every node, with no
/// VXLAN on the underlay (flows to remote backends and their replies cross unencapsulated), then
/// a killed node's entries leaving a native network at once (`tests/networks.rs`'s body).
#[test]
fn native_networks_drop_a_dead_nodes_entries_at_once() {
    let lab = Lab::up_with("natkill", 236, 3, 1, &["--default-routing", "native"]);
    published_without_vxlan(&lab);
    ok(&lab, "n1", &words("service rm web echo"));
    drop_a_dead_nodes_entries(&lab, "");
    let u3 = lab.node_addr(3);
    eventually(Duration::from_secs(5), "n1's routes via n3 gone", || {
        let routes = native_routes(&lab, "n1");
        (!routes.is_empty() && !routes.iter().any(|(_, via)| *via == u3))
            .then_some(())
            .ok_or(format!("{routes:?}"))
    });
    let options = inspect_json(&lab, "network", "front", ".Options");
    assert_eq!(options["routing"], "native", "{options}");
}
