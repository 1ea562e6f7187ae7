//! Overlay networks (issue 5) on lab swarms, with real `meshd/busybox` tasks: tasks of one
//! network on different nodes reach each other by ping and TCP (busybox `nc`) both ways, over
//! VXLAN between the nodes' underlay addresses with nothing flooded across nodes; a task of
//! another network does not reach them; scale down, drain and `service rm` take veths, FDB and
//! neighbour entries and unused devices away; a restarted meshd keeps its tasks connected; a
//! killed node's entries leave every other node's FDB about a second later (measured and
//! printed; only a generous bound ends a hung test); bad input changes nothing.
//!
//! What the kernel holds is read with `ip`, `bridge` and `tcpdump` in the nodes' namespaces, and
//! what the tasks see with `docker exec`.

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::routing::{Routing, native_routes, plain_overlay_lines, underlay_capture};
use crate::support::{
    Lab, eventually, fails, first_and_after, host, meshctl, ok, stderr, stdout, words,
};

pub(crate) fn lab_ok(lab: &Lab, line: &str) {
    let out = lab.meshctl_lab(&words(line));
    assert!(out.status.success(), "lab {line}: {}", stderr(&out));
}

/// A command in a node's namespace (`ip`, `bridge`), from the host; its stdout.
pub(crate) fn in_ns(lab: &Lab, member: &str, cmd: &[&str]) -> String {
    let ns = lab.ns(member);
    let mut args = vec!["netns", "exec", ns.as_str()];
    args.extend_from_slice(cmd);
    host("ip", &args)
}

/// Link names in a node's namespace.
pub(crate) fn links(lab: &Lab, member: &str) -> BTreeSet<String> {
    in_ns(lab, member, &["ip", "-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_owned())
        .collect()
}

/// Task veths (`mv...`) in a node's namespace.
fn task_veths(lab: &Lab, member: &str) -> BTreeSet<String> {
    links(lab, member)
        .into_iter()
        .filter(|l| {
            let vxlan = l
                .strip_prefix("mvx")
                .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()));
            l.starts_with("mv") && !vxlan
        })
        .collect()
}

/// `bridge fdb show dev mvx<vni>` in a node: `(MAC, dst)` of its own entries.
pub(crate) fn vxlan_fdb(lab: &Lab, member: &str, vni: u32) -> BTreeSet<(String, String)> {
    let text = in_ns(
        lab,
        member,
        &["bridge", "fdb", "show", "dev", &format!("mvx{vni}")],
    );
    first_and_after(&text, "dst").into_iter().collect()
}

/// A task veth or a network's device, other than `ingress`'s (VNI 4096), which the routing mesh
/// keeps on every node of a swarm.
fn is_overlay_device(link: &str) -> bool {
    link.starts_with("mv") && link != "mvx4096" || link.starts_with("mbr") && link != "mbr4096"
}

/// `ip neigh show dev mvx<vni>` in a node: the addresses with a permanent entry.
pub(crate) fn vxlan_neighbours(lab: &Lab, member: &str, vni: u32) -> BTreeSet<String> {
    in_ns(
        lab,
        member,
        &["ip", "neigh", "show", "dev", &format!("mvx{vni}")],
    )
    .lines()
    .filter(|l| l.contains("PERMANENT"))
    .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
    .collect()
}

/// The MAC meshd gives an overlay address (Docker's scheme).
pub(crate) fn mac_of(addr: &str) -> String {
    let o: Vec<u8> = addr.split('.').map(|x| x.parse().unwrap()).collect();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// One running task: its container, its address on eth0 and its host veth.
#[derive(Clone, Debug)]
pub(crate) struct TaskBox {
    /// `unix:///...` of the node engine that runs it.
    engine: String,
    container: String,
    pub(crate) addr: String,
    veth: String,
}

/// The running containers of service `id` on node `member`, with their eth0 address.
pub(crate) fn tasks_on(lab: &Lab, service_id: &str, member: &str) -> Vec<TaskBox> {
    let node: usize = member
        .strip_prefix('n')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{member} is no node"));
    let out = lab.docker_out(
        node,
        &[
            "ps",
            "--filter",
            &format!("label=meshd.service={service_id}"),
            "--filter",
            &format!("label=meshd.hostname={}", lab.ns(member)),
            "--format",
            "{{.ID}}/{{.Label \"meshd.task\"}}",
        ],
    );
    out.split_whitespace()
        .filter_map(|line| {
            let (c, task) = line.split_once('/')?;
            let a = lab.docker_out(node, &["exec", c, "ip", "-4", "-o", "addr", "show", "eth0"]);
            let addr = a
                .split_whitespace()
                .skip_while(|w| *w != "inet")
                .nth(1)?
                .split('/')
                .next()?
                .to_owned();
            Some(TaskBox {
                engine: lab.engine(node),
                container: c.to_owned(),
                addr,
                veth: format!("mv{}0", task.get(..10)?),
            })
        })
        .collect()
}

/// Waits for exactly one running, plumbed task of the service on the node.
pub(crate) fn one_task_on(lab: &Lab, service_id: &str, member: &str) -> TaskBox {
    eventually(
        Duration::from_secs(30),
        &format!("a plumbed task of {service_id} on {member}"),
        || {
            let t = tasks_on(lab, service_id, member);
            if t.len() == 1 {
                Ok(t[0].clone())
            } else {
                Err(format!("{t:?}"))
            }
        },
    )
}

/// `docker exec` in a task's container, on its node's engine.
pub(crate) fn docker_exec(t: &TaskBox, cmd: &[&str]) -> Output {
    Command::new("docker")
        .args(["-H", &t.engine, "exec", &t.container])
        .args(cmd)
        .output()
        .expect("run docker exec")
}

/// A task's default gateway (its node's address on its first network).
fn gateway(t: &TaskBox) -> String {
    let route = stdout(&docker_exec(t, &["ip", "route"]));
    route
        .lines()
        .find_map(|l| l.strip_prefix("default via "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{t:?} has no default route: {route}"))
        .to_owned()
}

/// ping from a task's container.
pub(crate) fn pings(from: &TaskBox, to: &str) -> bool {
    docker_exec(from, &["ping", "-c", "1", "-W", "2", to])
        .status
        .success()
}

/// A TCP exchange with busybox `nc` from a task's container: what the server answered.
pub(crate) fn tcp(from: &TaskBox, to: &str) -> String {
    stdout(&docker_exec(from, &["timeout", "3", "nc", to, "8080"]))
}

/// Every task of the services below answers `pong-<hostname>` on TCP 8080, one connection at a
/// time, and stops at once when asked.
pub(crate) const SERVER: &str = "trap 'exit 0' TERM; \
    (while true; do echo pong-$(hostname) | nc -l -p 8080 >/dev/null; done) & \
    while true; do sleep 1; done";

/// The JSON `meshctl ... inspect --format '{{json PATH}}'` prints.
pub(crate) fn inspect_json(lab: &Lab, what: &str, name: &str, path: &str) -> serde_json::Value {
    let text = ok(
        lab,
        "n1",
        &[
            what,
            "inspect",
            "--format",
            &format!("{{{{json {path}}}}}"),
            name,
        ],
    );
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{what} {name} {path}: {e}: {text}"))
}

pub(crate) fn vni_of(lab: &Lab, network: &str) -> u32 {
    inspect_json(lab, "network", network, ".Options")["com.docker.network.driver.overlay.vxlanid_list"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a VXLAN id")
}

/// Two nodes: networks are created, listed and inspected as Docker shows them; bad input is
/// refused and changes nothing; tasks of `front` on both nodes reach each other (ping and TCP,
/// both ways) over VXLAN with no flooding, a task of `back` reaches none of them; `network rm`
/// is refused while used; a restarted meshd keeps its tasks connected; scale down, drain and
/// `service rm` leave no veth, entry, route or unused device behind; then the networks go. On a
/// native lab the same, with the tasks' packets crossing as they are and no VXLAN.
fn connect_tasks_across_nodes_and_clean_up(routing: Routing, name: &str, octet: u8) {
    let started = Instant::now();
    let lab = Lab::up_with(name, octet, 2, 1, routing.lab_args());
    let (ns1, ns2) = (lab.ns("n1"), lab.ns("n2"));
    let (u1, u2) = (lab.node_addr(1), lab.node_addr(2));
    let capture = underlay_capture(&lab, "n1");

    let front_id = ok(
        &lab,
        "n1",
        &words("network create -d overlay --subnet 10.0.9.0/24 --label team=web front"),
    );
    let front_id = front_id.trim().to_owned();
    let options = inspect_json(&lab, "network", "front", ".Options");
    assert_eq!(options["routing"], routing.option(), "{options}");
    assert_eq!(
        front_id.len(),
        25,
        "network create prints the id: {front_id:?}"
    );
    ok(
        &lab,
        "n1",
        &words("network create --attachable --opt mtu=1400 back"),
    );
    let ls = ok(&lab, "n1", &words("network ls"));
    let rows: Vec<Vec<&str>> = ls.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows[0],
        ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"],
        "{ls}"
    );
    let names: Vec<&str> = rows[1..].iter().map(|r| r[1]).collect();
    assert_eq!(names, ["back", "front", "ingress"], "{ls}");
    assert!(
        rows[1..]
            .iter()
            .all(|r| r[2] == "overlay" && r[3] == "swarm"),
        "{ls}"
    );
    assert_eq!(rows[2][0], &front_id[..12]);
    let ipam = inspect_json(&lab, "network", "front", ".IPAM.Config");
    assert_eq!(ipam[0]["Subnet"], "10.0.9.0/24", "{ipam}");
    let inspected_gateway = ipam[0]["Gateway"].as_str().unwrap().to_owned();
    assert!(inspected_gateway.starts_with("10.0.9."), "{ipam}");
    let front_vni = vni_of(&lab, "front");
    let back_vni = vni_of(&lab, "back");
    assert!(front_vni > 4096 && back_vni > 4096 && front_vni != back_vni);
    assert_eq!(
        inspect_json(&lab, "network", "back", ".Options")["com.docker.network.driver.mtu"],
        "1400"
    );
    assert_eq!(inspect_json(&lab, "network", "back", ".Attachable"), true);
    assert_eq!(
        inspect_json(&lab, "network", "front", ".Labels")["team"],
        "web"
    );
    assert_eq!(
        ok(
            &lab,
            "n1",
            &words("network inspect --format {{.Scope}}/{{.Driver}} front")
        ),
        "swarm/overlay\n"
    );

    // Bad input: clear errors, nothing changed.
    for (line, want) in [
        (
            "network create --subnet 10.0.9.128/25 x",
            "subnet 10.0.9.128/25 overlaps network front (10.0.9.0/24)",
        ),
        (
            "network create --subnet 10.0.9/24 x",
            "invalid subnet \"10.0.9/24\"",
        ),
        (
            "network create --subnet 10.0.10.1/24 x",
            "host bits are set",
        ),
        (
            "network create front",
            "network name \"front\" is already in use",
        ),
        (
            "network create -d bridge x",
            "unsupported network driver \"bridge\": only overlay exists",
        ),
        (
            "network create --opt mtu=100 x",
            "expected an MTU from 576 to 8950",
        ),
        ("network inspect nosuch", "network nosuch not found"),
        ("network rm nosuch", "network nosuch not found"),
        ("network rm ingress", "cannot be removed"),
        (
            "service create --name x --network nosuch meshd/busybox",
            "network nosuch not found",
        ),
        (
            "service create --name x --network front --network front meshd/busybox",
            "network front is given twice",
        ),
    ] {
        // The lab's registry image: a bare name would make the node ask Docker Hub for a digest.
        let line = line.replace("meshd/busybox", &lab.image());
        let err = fails(&lab, "n1", &words(&line));
        assert!(err.contains(want), "{line}: {want:?} not in {err:?}");
    }
    assert_eq!(
        ok(&lab, "n1", &words("network ls")),
        ls,
        "bad input changed the networks"
    );
    assert_eq!(
        ok(&lab, "n1", &words("service ls -q")),
        "",
        "bad input made a service"
    );

    // Services: one `web` task per node on front, a replicated `rep` spread on front, and `iso`
    // on back next to web's first task.
    let image = lab.image();
    let create = |line: &str| {
        let mut args = words(line);
        args.extend([image.as_str(), "sh", "-c", SERVER]);
        ok(&lab, "n1", &args).trim().to_owned()
    };
    let web =
        create("service create -d --name web --mode global --network front --stop-grace-period 1s");
    let rep = create(
        "service create -d --name rep --replicas 2 --replicas-max-per-node 1 --network front --stop-grace-period 1s",
    );
    let iso = create(&format!(
        "service create -d --name iso --network back --constraint node.hostname=={ns1} --stop-grace-period 1s"
    ));
    let err = fails(&lab, "n1", &words("network rm front"));
    assert!(err.contains("network front is in use by service"), "{err}");
    let web1 = one_task_on(&lab, &web, "n1");
    let web2 = one_task_on(&lab, &web, "n2");
    let rep1 = one_task_on(&lab, &rep, "n1");
    let rep2 = one_task_on(&lab, &rep, "n2");
    let iso1 = one_task_on(&lab, &iso, "n1");
    for t in [&web1, &web2, &rep1, &rep2] {
        assert!(t.addr.starts_with("10.0.9."), "{t:?}");
    }
    // Inside a task: eth0 with the overlay MTU, the node's address as gateway and nameserver.
    let node1_front = gateway(&web1);
    let node2_front = gateway(&web2);
    assert!(node1_front.starts_with("10.0.9.") && node2_front.starts_with("10.0.9."));
    assert_ne!(
        node1_front, node2_front,
        "each node is its own tasks' gateway"
    );
    assert_eq!(
        inspected_gateway, node1_front,
        "network inspect on n1 shows n1's address"
    );
    let resolv = stdout(&docker_exec(&web1, &["cat", "/etc/resolv.conf"]));
    assert!(
        resolv.contains(&format!("nameserver {node1_front}\n")),
        "{resolv}"
    );
    assert!(
        resolv.contains("options ndots:0") && !resolv.contains("search"),
        "{resolv}"
    );
    let link = stdout(&docker_exec(&web1, &["ip", "link", "show", "eth0"]));
    assert!(link.contains("mtu 1450"), "{link}");
    let link = stdout(&docker_exec(&iso1, &["ip", "link", "show", "eth0"]));
    assert!(link.contains("mtu 1400"), "back's --opt mtu=1400: {link}");

    // Each node holds the other's tasks and own address, behind its underlay address.
    eventually(
        Duration::from_secs(10),
        "remote entries on both nodes",
        || {
            let f1 = vxlan_fdb(&lab, "n1", front_vni);
            let f2 = vxlan_fdb(&lab, "n2", front_vni);
            let ok1 = [&web2, &rep2]
                .iter()
                .all(|t| f1.contains(&(mac_of(&t.addr), u2.clone())));
            let ok2 = [&web1, &rep1]
                .iter()
                .all(|t| f2.contains(&(mac_of(&t.addr), u1.clone())));
            let n1 = vxlan_neighbours(&lab, "n1", front_vni);
            (ok1 && ok2
                && n1.contains(&web2.addr)
                && f2.contains(&(mac_of(&node1_front), u1.clone())))
            .then_some(())
            .ok_or(format!("n1: {f1:?} {n1:?}\nn2: {f2:?}"))
        },
    );

    // First contact, both ways: ping and TCP.
    for (from, to) in [
        (&web1, &web2),
        (&web2, &web1),
        (&rep1, &web2),
        (&web2, &rep1),
    ] {
        assert!(pings(from, &to.addr), "{from:?} cannot ping {to:?}");
        let answer = tcp(from, &to.addr);
        assert!(
            answer.starts_with("pong-"),
            "{from:?} -> {to:?} over TCP: {answer:?}"
        );
    }
    // Another network's task reaches none of them (nor its node's routing: forwarding is off).
    for to in [&web1, &web2] {
        assert!(!pings(&iso1, &to.addr), "iso on back reached {to:?}");
        assert_eq!(
            tcp(&iso1, &to.addr),
            "",
            "iso on back got TCP through to {to:?}"
        );
    }

    // What crossed n1's underlay: VXLAN between the two nodes only, no overlay ARP, nothing
    // broadcast or multicast inside VXLAN, and every inner frame addressed to a MAC that the
    // sender's FDB puts behind the receiver (no unknown unicast: there is no default entry to
    // flood with either).
    let captured = capture.stop();
    let fdb = |m: &str| vxlan_fdb(&lab, m, front_vni);
    let (fdb1, fdb2) = (fdb("n1"), fdb("n2"));
    for (m, f) in [("n1", &fdb1), ("n2", &fdb2)] {
        assert!(
            !f.iter().any(|(mac, _)| mac == "00:00:00:00:00:00"),
            "{m} has a default (flooding) entry: {f:?}"
        );
    }
    let lines: Vec<&str> = captured.lines().collect();
    let mut frames = 0;
    for (i, l) in lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("VXLAN"))
    {
        let from_n1 = l.contains(&format!("{u1}.")) && l.contains(&format!("> {u2}.4789:"));
        let from_n2 = l.contains(&format!("{u2}.")) && l.contains(&format!("> {u1}.4789:"));
        assert!(
            from_n1 || from_n2,
            "VXLAN not between the nodes' underlay addresses: {l}"
        );
        // tcpdump prints the inner frame on the next line: `SRC > DST, ethertype ...`.
        let inner = lines.get(i + 1).copied().unwrap_or_default();
        let dst = inner
            .split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .trim_end_matches(',');
        let (sender_fdb, vtep) = if from_n1 { (&fdb1, &u2) } else { (&fdb2, &u1) };
        assert!(
            sender_fdb.contains(&(dst.to_owned(), vtep.clone())) && !inner.contains("ARP"),
            "flooded or unknown inside VXLAN: {l}\n{inner}\n(sender FDB {sender_fdb:?})"
        );
        frames += 1;
    }
    if routing == Routing::Vxlan {
        assert!(
            frames >= 8,
            "too little VXLAN seen on n1's eth0:\n{captured}"
        );
    }
    let crossed = routing.assert_crossed(&captured, "networks");
    if routing == Routing::Native {
        for (a, b) in [(&web1.addr, &web2.addr), (&web2.addr, &web1.addr)] {
            assert!(
                plain_overlay_lines(&captured)
                    .iter()
                    .any(|l| l.contains(&format!(": {a} > {b}: ICMP echo request"))),
                "no plain {a} > {b} on n1's underlay:\n{captured}"
            );
        }
    }
    assert!(
        !captured.lines().any(|l| l.contains("who-has 10.")),
        "overlay ARP on the underlay:\n{captured}"
    );
    eprintln!(
        "networks ({routing:?}): {crossed} overlay packets on n1's underlay, none flooded or unknown"
    );

    // service inspect: the networks by id, a VIP on front.
    let nets = inspect_json(&lab, "service", "web", ".Spec.TaskTemplate.Networks");
    assert_eq!(nets[0]["Target"], front_id.as_str(), "{nets}");
    let vips = inspect_json(&lab, "service", "web", ".Endpoint.VirtualIPs");
    assert_eq!(vips[0]["NetworkID"], front_id.as_str(), "{vips}");
    assert!(
        vips[0]["Addr"].as_str().unwrap().starts_with("10.0.9."),
        "{vips}"
    );

    // A restarted meshd keeps its tasks connected (adopted, plumbed again idempotently).
    let veths2 = task_veths(&lab, "n2");
    lab_ok(&lab, "restart n2");
    eventually(
        Duration::from_secs(20),
        "web on n1 reaches web on n2 after n2's restart",
        || {
            (pings(&web1, &web2.addr) && tcp(&web1, &web2.addr).starts_with("pong-"))
                .then_some(())
                .ok_or(format!("n1 fdb: {:?}", vxlan_fdb(&lab, "n1", front_vni)))
        },
    );
    assert_eq!(task_veths(&lab, "n2"), veths2, "the restart replaced veths");

    // Scale down: the task that goes takes its veth and the other node's entries with it.
    ok(&lab, "n1", &words("service scale -d rep=1"));
    let (gone, gone_on, other) =
        eventually(Duration::from_secs(30), "rep down to one task", || {
            match (
                tasks_on(&lab, &rep, "n1").len(),
                tasks_on(&lab, &rep, "n2").len(),
            ) {
                (1, 0) => Ok((rep2.clone(), "n2", "n1")),
                (0, 1) => Ok((rep1.clone(), "n1", "n2")),
                other => Err(format!("{other:?}")),
            }
        });
    eventually(
        Duration::from_secs(10),
        "the scaled-down task's veth and entries gone",
        || {
            let fdb = vxlan_fdb(&lab, other, front_vni);
            let neigh = vxlan_neighbours(&lab, other, front_vni);
            let veths = task_veths(&lab, gone_on);
            let web_there = if gone_on == "n1" { &web1 } else { &web2 };
            (!fdb.iter().any(|(m, _)| *m == mac_of(&gone.addr))
                && !neigh.contains(&gone.addr)
                && !veths.contains(&gone.veth)
                && veths.contains(&web_there.veth))
            .then_some(())
            .ok_or(format!(
                "{other} fdb {fdb:?} neigh {neigh:?}; {gone_on} veths {veths:?}"
            ))
        },
    );

    // Drain n2: its tasks go, and with them its veths, its front devices and n1's entries for
    // them (n2's own address stays: n2 is alive).
    ok(
        &lab,
        "n1",
        &words(&format!("node update --availability drain {ns2}")),
    );
    eventually(
        Duration::from_secs(30),
        "n2 drained of tasks, veths and devices",
        || {
            let l2 = links(&lab, "n2");
            let fdb1 = vxlan_fdb(&lab, "n1", front_vni);
            let tasks_left = fdb1
                .iter()
                .filter(|(m, d)| *d == u2 && *m != mac_of(&node2_front))
                .count();
            let devices = l2
                .iter()
                .filter(|l| is_overlay_device(l))
                .cloned()
                .collect::<Vec<_>>();
            (devices.is_empty()
                && tasks_left == 0
                && !vxlan_neighbours(&lab, "n1", front_vni).contains(&web2.addr))
            .then_some(())
            .ok_or(format!("n2 links {devices:?}; n1 fdb {fdb1:?}"))
        },
    );

    // --network-rm / --network-add change the spec (by name; stored by id).
    ok(
        &lab,
        "n1",
        &words("service update -d --network-rm back --network-add front iso"),
    );
    let nets = inspect_json(&lab, "service", "iso", ".Spec.TaskTemplate.Networks");
    assert_eq!(nets.as_array().map(Vec::len), Some(1), "{nets}");
    assert_eq!(nets[0]["Target"], front_id.as_str(), "{nets}");

    // rm: every veth and device goes from every node; then the networks can go.
    ok(&lab, "n1", &words("service rm web rep iso"));
    eventually(
        Duration::from_secs(30),
        "no task veth or network device left",
        || {
            let left: Vec<String> = ["n1", "n2"]
                .iter()
                .flat_map(|m| {
                    links(&lab, m)
                        .into_iter()
                        .filter(|l| is_overlay_device(l))
                        .map(move |l| format!("{m}:{l}"))
                })
                .collect();
            left.is_empty().then_some(()).ok_or(format!("{left:?}"))
        },
    );
    for net in ["front", "back"] {
        eventually(
            Duration::from_secs(30),
            "the network removed once unused",
            || {
                let out = meshctl(&lab, "n1", &["network", "rm", net]);
                out.status.success().then_some(()).ok_or(stderr(&out))
            },
        );
    }
    let ls = ok(&lab, "n1", &words("network ls"));
    assert_eq!(ls.lines().count(), 2, "only ingress is left:\n{ls}");
    // No route to an address of front or back is left (`ingress`'s own stay, on a native lab).
    let gone: BTreeSet<&String> = [&web1, &web2, &rep1, &rep2, &iso1]
        .iter()
        .map(|t| &t.addr)
        .chain([&node1_front, &node2_front])
        .collect();
    for m in ["n1", "n2"] {
        eventually(Duration::from_secs(10), "no native route left", || {
            let left: Vec<(String, String)> = native_routes(&lab, m)
                .into_iter()
                .filter(|(dst, _)| gone.contains(dst))
                .collect();
            left.is_empty()
                .then_some(())
                .ok_or(format!("{m}: {left:?}"))
        });
    }
    eprintln!("networks_connect ({routing:?}): {:?}", started.elapsed());
}

#[test]
fn networks_connect_tasks_across_nodes_and_clean_up() {
    connect_tasks_across_nodes_and_clean_up(Routing::Vxlan, "net", 180);
}

#[test]
fn networks_connect_tasks_across_nodes_and_clean_up_natively() {
    connect_tasks_across_nodes_and_clean_up(Routing::Native, "netn", 182);
}

/// Three nodes with a task each on one network: killing n3 (its meshd, and its namespace's
/// link down) makes n1 and n2 drop its entries (its task and its own address) from their FDB
/// and neighbour tables; the time it took is printed.
#[test]
fn networks_drop_a_dead_nodes_entries_at_once() {
    drop_a_dead_nodes_entries(&Lab::up("netkill", 181, 3, 1), "");
}

/// The body of [`networks_drop_a_dead_nodes_entries_at_once`], on `lab` (3 nodes) with `front`
/// created with `create_opts` (`tests/native.rs` runs it on a native network).
pub(crate) fn drop_a_dead_nodes_entries(lab: &Lab, create_opts: &str) {
    let u3 = lab.node_addr(3);
    ok(
        lab,
        "n1",
        &words(&format!("network create {create_opts} front")),
    );
    let vni = vni_of(lab, "front");
    let create = format!(
        "service create -d --name web --mode global --network front {} sleep 100000",
        lab.image()
    );
    let web = ok(lab, "n1", &words(&create)).trim().to_owned();
    let t3 = one_task_on(lab, &web, "n3");
    let behind_n3 = |member: &str| -> BTreeSet<String> {
        vxlan_fdb(lab, member, vni)
            .into_iter()
            .filter(|(_, d)| *d == u3)
            .map(|(m, _)| m)
            .collect()
    };
    for m in ["n1", "n2"] {
        eventually(
            Duration::from_secs(20),
            &format!("{m} holds n3's task and address"),
            || {
                let macs = behind_n3(m);
                (macs.contains(&mac_of(&t3.addr)) && macs.len() == 2)
                    .then_some(())
                    .ok_or(format!("{macs:?}"))
            },
        );
    }
    // Let the failure detectors sample n3 a little longer, as in a settled cluster.
    std::thread::sleep(Duration::from_secs(2));

    lab_ok(lab, "stop --kill n3");
    let out = lab.exec("n3", &["ip", "link", "set", "eth0", "down"]);
    assert!(out.status.success(), "eth0 down in n3: {}", stderr(&out));
    let killed = Instant::now();
    let mut left = vec!["n1", "n2"];
    while !left.is_empty() {
        left.retain(|m| {
            let gone = behind_n3(m).is_empty() && !vxlan_neighbours(lab, m, vni).contains(&t3.addr);
            if gone {
                eprintln!(
                    "networks: {m} dropped the killed node's entries {:?} after the kill",
                    killed.elapsed()
                );
            }
            !gone
        });
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "{left:?} still hold n3's entries 15s after the kill: {:?}",
            left.iter().map(|m| behind_n3(m)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
