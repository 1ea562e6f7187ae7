//! Native routing (issue 19) on lab swarms: the overlay tests' essentials on networks created
//! with `--opt routing=native` (or by `swarm init --default-routing native`), in tc and xdp
//! mode. Tasks of one native network on different nodes reach each other (ping, TCP, the
//! service's VIP by name) with their packets on the underlay as they are, no VXLAN; a task of
//! another native network reaches none of them; a bad routing value is refused and changes
//! nothing; a killed node's entries leave at once (the body of `tests/networks.rs`); a peer that
//! is not on-link is reached over VXLAN and the log says so. `tests/mesh.rs` and
//! `tests/networks.rs` run their tests on both routings as well.

use std::fs;
use std::time::Duration;

use crate::mesh::publishes_tcp_and_udp;
use crate::networks::{SERVER, drop_a_dead_nodes_entries, inspect_json, one_task_on, pings, tcp};
use crate::support::routing::{
    Routing, native_routes, plain_overlay_lines, underlay_capture, vxlan_lines,
};
use crate::support::{Lab, eventually, fails, host, ok, words};

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
    let capture = underlay_capture(lab, "n1");
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
    let swarm: serde_json::Value =
        serde_json::from_str(&ok(&lab, "n1", &words("swarm inspect"))).expect("swarm JSON");
    assert_eq!(swarm[0]["DefaultRouting"], "native", "{swarm}");
    native_networks_body(&lab, "");
    ok(&lab, "n1", &words("service rm web iso"));
    published_without_vxlan(&lab);
}

/// The routing mesh's published TCP and UDP through every node (`tests/mesh.rs`'s body), with no
/// VXLAN on n1's underlay meanwhile: flows to remote backends and their replies cross as they are.
fn published_without_vxlan(lab: &Lab) {
    let capture = underlay_capture(lab, "n1");
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

/// A peer that is not on-link falls back to VXLAN, said in the log, and comes back when it is
/// on-link again. The lab has one segment, so n1's route to n2 is given a gateway (n2 itself,
/// which keeps it reachable): that is how meshd sees a peer behind a router. n1 then sends to
/// n2's task in VXLAN and writes no host route to it, while n2 (whose route to n1 is on-link)
/// still sends to n1's task as it is; tasks talk both ways. Removing the route makes n1 send
/// natively again within a few seconds (the main table is read every second).
#[test]
fn native_networks_fall_back_to_vxlan_to_a_peer_behind_a_gateway() {
    let lab = Lab::up_with("natfb", 183, 2, 1, &["--default-routing", "native"]);
    let (u1, u2) = (lab.node_addr(1), lab.node_addr(2));
    let n1_route = |op: &str| {
        let (ns, dst) = (lab.ns("n1"), format!("{u2}/32"));
        let mut args = vec!["netns", "exec", &ns, "ip", "route", op, &dst];
        if op == "add" {
            args.extend(["via", u2.as_str(), "dev", "eth0"]);
        }
        let out = std::process::Command::new("ip")
            .args(&args)
            .output()
            .expect("run ip route");
        assert!(out.status.success(), "ip route {op} {dst} in n1: {out:?}");
    };
    n1_route("add");
    ok(&lab, "n1", &words("network create front"));
    let image = lab.image();
    let mut args =
        words("service create -d --name web --mode global --network front --stop-grace-period 1s");
    args.extend([image.as_str(), "sh", "-c", SERVER]);
    let web = ok(&lab, "n1", &args).trim().to_owned();
    let web1 = one_task_on(&lab, &web, "n1");
    let web2 = one_task_on(&lab, &web, "n2");

    let said = format!("native routing: node {u2} is not on-link (via gateway {u2})");
    eventually(
        Duration::from_secs(10),
        "n1's log saying the fallback",
        || {
            let log = fs::read_to_string(lab.path("n1/meshd.log")).unwrap_or_default();
            log.contains(&said).then_some(()).ok_or(said.clone())
        },
    );
    // n2 routes to n1's task natively; n1 has no route to n2's.
    eventually(Duration::from_secs(10), "n2's route to web on n1", || {
        let routes = native_routes(&lab, "n2");
        routes
            .contains(&(web1.addr.clone(), u1.clone()))
            .then_some(())
            .ok_or(format!("{routes:?}"))
    });
    let routes = native_routes(&lab, "n1");
    assert!(!routes.iter().any(|(_, via)| *via == u2), "{routes:?}");

    let capture = underlay_capture(&lab, "n1");
    for (from, to) in [(&web1, &web2), (&web2, &web1)] {
        assert!(pings(from, &to.addr), "{from:?} cannot ping {to:?}");
        let answer = tcp(from, &to.addr);
        assert!(
            answer.starts_with("pong-"),
            "{from:?} -> {to:?}: {answer:?}"
        );
    }
    let captured = capture.stop();
    let encapsulated = vxlan_lines(&captured);
    assert!(
        encapsulated
            .iter()
            .any(|l| l.contains(&format!("{u1}.")) && l.contains(&format!("> {u2}.4789:"))),
        "n1 sent nothing to n2 in VXLAN:\n{captured}"
    );
    assert!(
        !encapsulated
            .iter()
            .any(|l| l.contains(&format!("> {u1}.4789:"))),
        "n2 sent to n1 in VXLAN:\n{captured}"
    );
    let plain = plain_overlay_lines(&captured);
    let (a1, a2) = (&web1.addr, &web2.addr);
    assert!(
        plain
            .iter()
            .any(|l| l.contains(&format!(": {a2} > {a1}: ICMP echo request"))),
        "no plain {a2} > {a1} on n1's underlay:\n{captured}"
    );
    assert!(
        !plain.iter().any(|l| l.contains(&format!(": {a1} > {a2}:"))),
        "n1 sent to n2's task as it is:\n{captured}"
    );

    // On-link again: n1 routes n2's task natively, and its packets cross as they are.
    n1_route("del");
    eventually(Duration::from_secs(10), "n1's route to web on n2", || {
        let routes = native_routes(&lab, "n1");
        routes
            .contains(&(web2.addr.clone(), u2.clone()))
            .then_some(())
            .ok_or(format!("{routes:?}"))
    });
    let capture = underlay_capture(&lab, "n1");
    assert!(pings(&web1, &web2.addr), "web on n1 cannot ping web on n2");
    let captured = capture.stop();
    Routing::Native.assert_crossed(&captured, "back on-link");
    assert!(
        plain_overlay_lines(&captured)
            .iter()
            .any(|l| l.contains(&format!(": {a1} > {a2}: ICMP echo request"))),
        "no plain {a1} > {a2} on n1's underlay:\n{captured}"
    );
}
