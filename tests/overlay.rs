//! The overlay's netlink half (issue 5): bridges and VXLAN devices per network, static FDB and
//! neighbour entries for remote tasks, veths into task namespaces. meshd runs in the lab's nodes
//! but does nothing with networks yet: these tests drive `mesh-overlay` from the test thread into
//! each node's namespace, as meshd's agent will from inside it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::capture::Tcpdump;
use crate::support::{Lab, host, stderr, stdout};
use mesh_overlay::plan::NativeRoute;
use mesh_overlay::{
    EndpointOp, Mac, NetNs, NetworkDevices, Overlay, OverlayError, RemoteEndpoint, TaskInterface,
    TaskStep, task_host_ifname,
};

const IMAGE: &str = "meshd/busybox";
const NET_A: u32 = 4097;
const NET_B: u32 = 4098;

fn overlay_addr(vni: u32, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, (vni - 4096) as u8, host)
}

/// Node `i`'s devices for network `vni`: its address there is `.1 + i`.
fn network(lab: &Lab, vni: u32, i: usize) -> NetworkDevices {
    NetworkDevices {
        vni,
        node_addr: overlay_addr(vni, 1 + i as u8),
        prefix_len: 24,
        mtu: None,
        underlay_addr: lab.node_addr(i).parse().unwrap(),
        underlay_ifname: "eth0".into(),
    }
}

/// Task `host` (its last octet) on network `vni`, as interface `ethN` with host veth
/// `mv<task id><n>`.
fn iface(vni: u32, host: u8, task_id: &str, n: usize) -> TaskInterface {
    let addr = overlay_addr(vni, host);
    TaskInterface {
        vni,
        host_ifname: task_host_ifname(task_id, n).unwrap(),
        ifname: format!("eth{n}"),
        addr,
        prefix_len: 24,
        mac: Mac::from_ipv4(addr),
        mtu: 1450,
    }
}

fn endpoint(vni: u32, host: u8, vtep: &str) -> RemoteEndpoint {
    let ip = overlay_addr(vni, host);
    RemoteEndpoint {
        ip,
        mac: Mac::from_ipv4(ip),
        vtep: vtep.parse().unwrap(),
    }
}

/// Panics with what was being done, the error, and the node's devices and entries.
fn must<T>(lab: &Lab, node: &str, what: &str, r: Result<T, OverlayError>) -> T {
    r.unwrap_or_else(|e| {
        panic!(
            "{what} on {node} failed: {e}\n--- ip -d link ---\n{}\n--- bridge fdb ---\n{}",
            run(lab, node, &["ip", "-d", "link", "show"]),
            run(lab, node, &["bridge", "fdb", "show"])
        )
    })
}

/// A command in a lab member's namespace; its stdout, or a panic with its stderr.
fn run(lab: &Lab, member: &str, cmd: &[&str]) -> String {
    let out = lab.exec(member, cmd);
    assert!(
        out.status.success(),
        "{cmd:?} in {member} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn overlay_of(lab: &Lab, member: &str) -> Overlay {
    let ns = NetNs::open(&lab.ns(member)).expect("open a node namespace");
    Overlay::connect_in(&ns).expect("connect to the node's netlink")
}

/// Task containers of `meshd/busybox` without a network, removed on drop.
struct Containers {
    ids: Vec<String>,
}

impl Containers {
    fn new() -> Self {
        Self { ids: Vec::new() }
    }

    /// Starts one on lab node `node`; returns (id, its network namespace).
    fn start(&mut self, lab: &Lab, node: &str) -> (String, NetNs) {
        let out = Command::new("docker")
            .args([
                "run",
                "-d",
                "--network",
                "none",
                "--label",
                "meshd.task=test",
            ])
            .args(["--label", &format!("meshd.hostname={}", lab.ns(node))])
            .args([IMAGE, "sleep", "3600"])
            .output()
            .expect("run docker");
        assert!(out.status.success(), "docker run: {}", stderr(&out));
        let id = stdout(&out).trim().to_owned();
        self.ids.push(id.clone());
        let pid = host("docker", &["inspect", "-f", "{{.State.Pid}}", &id]);
        let pid: u32 = pid.trim().parse().expect("container pid");
        (
            id,
            NetNs::of_pid(pid).expect("open the container's namespace"),
        )
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        if !self.ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&self.ids)
                .output();
        }
    }
}

fn docker_exec(id: &str, cmd: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(["exec", id])
        .args(cmd)
        .output()
        .expect("run docker exec")
}

fn ping(id: &str, to: Ipv4Addr) -> std::process::Output {
    docker_exec(id, &["ping", "-c", "2", "-W", "2", &to.to_string()])
}

/// A TCP exchange from `client` to `server` (busybox nc): the server answers what it read.
fn tcp_exchange(client: &str, server: &str, server_addr: Ipv4Addr, port: u16) -> String {
    let listen = format!("nc -l -p {port} -e sh -c 'read x; echo got-$x'");
    let out = Command::new("docker")
        .args(["exec", "-d", server, "sh", "-c", &listen])
        .output()
        .expect("start nc -l");
    assert!(out.status.success(), "nc -l: {}", stderr(&out));
    let connect = format!("echo hello-{port} | nc -w 3 {server_addr} {port}");
    // The listener starts asynchronously: retry the connection for a few seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = docker_exec(client, &["sh", "-c", &connect]);
        let got = stdout(&out);
        if got.contains(&format!("got-hello-{port}")) || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A plain namespace standing in for a task, removed on drop.
struct TaskNs {
    name: String,
}

impl TaskNs {
    fn new(lab: &Lab, name: &str) -> (Self, NetNs) {
        let name = format!("{}-{name}", lab.prefix);
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("ip netns add");
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            stderr(&out)
        );
        let ns = NetNs::open(&name).expect("open the task namespace");
        (Self { name }, ns)
    }

    fn ip(&self, args: &[&str]) -> String {
        host("ip", &[&["-n", self.name.as_str()], args].concat())
    }
}

impl Drop for TaskNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// What a capture says about VXLAN: (frames n1 → n2, frames n2 → n1, offending lines). tcpdump
/// prints a VXLAN frame's inner frame on the next line; an offending line is an inner frame that
/// is ARP, goes to a broadcast or multicast MAC, or does not show overlay addresses at all (the
/// check would be blind), or any ARP about an overlay address outside VXLAN.
fn vxlan_report(capture: &str, n1: &str, n2: &str) -> (usize, usize, Vec<String>) {
    let lines: Vec<&str> = capture.lines().collect();
    let (mut there, mut back, mut bad) = (0, 0, Vec::new());
    for (k, line) in lines.iter().enumerate() {
        if line.contains("VXLAN") {
            if line.contains(&format!("{n1}.")) && line.contains(&format!("> {n2}.4789:")) {
                there += 1;
            }
            if line.contains(&format!("{n2}.")) && line.contains(&format!("> {n1}.4789:")) {
                back += 1;
            }
            let inner = lines.get(k + 1).copied().unwrap_or("");
            let dst = inner
                .split(" > ")
                .nth(1)
                .and_then(|r| r.split(',').next())
                .unwrap_or("");
            let group = u8::from_str_radix(dst.get(..2).unwrap_or("ff"), 16).unwrap_or(1) & 1 == 1;
            if inner.contains("ARP") || group || !inner.contains(" 10.0.") {
                bad.push(format!("{line}\n{inner}"));
            }
        } else if line.contains("ARP") && line.contains(" 10.") {
            bad.push((*line).to_owned());
        }
    }
    (there, back, bad)
}

/// Two tasks of network A on two nodes talk (ping, TCP, both ways) over VXLAN between the
/// underlay addresses, with nothing flooded and no ARP across nodes; a task of network B cannot
/// reach them; afterwards nothing of the overlay is left.
#[test]
fn tasks_on_two_nodes_talk_over_vxlan_and_nothing_floods() {
    let lab = Lab::up_with("ovl", 150, 2, 1, &["--no-swarm"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _enter = rt.enter();
    let n1 = overlay_of(&lab, "n1");
    let n2 = overlay_of(&lab, "n2");
    let (u1, u2) = (lab.node_addr(1), lab.node_addr(2));

    for (ov, node, i) in [(&n1, "n1", 1), (&n2, "n2", 2)] {
        must(
            &lab,
            node,
            "ensure_network A",
            rt.block_on(ov.ensure_network(&network(&lab, NET_A, i))),
        );
    }
    must(
        &lab,
        "n1",
        "ensure_network B",
        rt.block_on(n1.ensure_network(&network(&lab, NET_B, 1))),
    );

    let mut containers = Containers::new();
    let (t1, ns1) = containers.start(&lab, "n1");
    let (t2, ns2) = containers.start(&lab, "n2");
    let (t3, ns3) = containers.start(&lab, "n1");
    let if1 = iface(NET_A, 11, "0000000001", 0);
    let if2 = iface(NET_A, 12, "0000000002", 0);
    let if3 = iface(NET_B, 13, "0000000003", 0);
    let gw = |vni, i: u8| Some(overlay_addr(vni, 1 + i));
    must(
        &lab,
        "n1",
        "plumb t1",
        rt.block_on(n1.plumb_task(&ns1, std::slice::from_ref(&if1), gw(NET_A, 1))),
    );
    must(
        &lab,
        "n2",
        "plumb t2",
        rt.block_on(n2.plumb_task(&ns2, std::slice::from_ref(&if2), gw(NET_A, 2))),
    );
    must(
        &lab,
        "n1",
        "plumb t3",
        rt.block_on(n1.plumb_task(&ns3, std::slice::from_ref(&if3), gw(NET_B, 1))),
    );
    must(
        &lab,
        "n1",
        "endpoints",
        rt.block_on(n1.set_remote_endpoints(NET_A, &[endpoint(NET_A, 12, &u2)])),
    );
    must(
        &lab,
        "n2",
        "endpoints",
        rt.block_on(n2.set_remote_endpoints(NET_A, &[endpoint(NET_A, 11, &u1)])),
    );

    let mtu = stdout(&docker_exec(&t1, &["cat", "/sys/class/net/eth0/mtu"]));
    assert_eq!(mtu.trim(), "1450", "t1's eth0 MTU");
    let fwd = run(
        &lab,
        "n1",
        &[
            "cat",
            &format!("/proc/sys/net/ipv4/conf/mbr{NET_A}/forwarding"),
        ],
    );
    assert_eq!(fwd.trim(), "0", "n1 must not route between networks");

    // First contact, captured on n1's underlay: no ARP cache anywhere yet.
    let capture = Tcpdump::start(&lab, "n1", "eth0", "");
    let out = ping(&t1, if2.addr);
    assert!(
        out.status.success(),
        "t1 (n1) → t2 (n2) ping failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = ping(&t2, if1.addr);
    assert!(
        out.status.success(),
        "t2 (n2) → t1 (n1) ping failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    let got = tcp_exchange(&t1, &t2, if2.addr, 7001);
    assert!(got.contains("got-hello-7001"), "TCP t1 → t2: got {got:?}");
    let got = tcp_exchange(&t2, &t1, if1.addr, 7002);
    assert!(got.contains("got-hello-7002"), "TCP t2 → t1: got {got:?}");
    let text = capture.stop();
    let (there, back, bad) = vxlan_report(&text, &u1, &u2);
    println!("capture on n1 eth0: {there} VXLAN frames n1 → n2, {back} n2 → n1");
    for line in text.lines().filter(|l| l.contains("VXLAN")).take(2) {
        println!("  {line}");
    }
    assert!(
        there >= 4 && back >= 4,
        "too few VXLAN frames ({there} out, {back} back):\n{text}"
    );
    assert!(
        bad.is_empty(),
        "ARP or flooding crossed the underlay:\n{}\n--- capture ---\n{text}",
        bad.join("\n")
    );

    // Network B is another world, on the same node and across nodes.
    for (from, to, what) in [
        (&t3, if1.addr, "t3 (B, n1) → t1 (A, n1)"),
        (&t3, if2.addr, "t3 (B, n1) → t2 (A, n2)"),
        (&t1, if3.addr, "t1 (A, n1) → t3 (B, n1)"),
        (&t2, if3.addr, "t2 (A, n2) → t3 (B, n1)"),
    ] {
        let out = ping(from, to);
        assert!(
            !out.status.success(),
            "{what} must not connect:\n{}",
            stdout(&out)
        );
    }

    // Undo everything: entries, veths, devices.
    for (ov, node) in [(&n1, "n1"), (&n2, "n2")] {
        must(
            &lab,
            node,
            "clear endpoints",
            rt.block_on(ov.set_remote_endpoints(NET_A, &[])),
        );
    }
    must(
        &lab,
        "n1",
        "unplumb",
        rt.block_on(n1.unplumb_task(&[if1.host_ifname.clone(), if3.host_ifname.clone()])),
    );
    must(
        &lab,
        "n2",
        "unplumb",
        rt.block_on(n2.unplumb_task(std::slice::from_ref(&if2.host_ifname))),
    );
    let inside = stdout(&docker_exec(&t1, &["ip", "link"]));
    assert!(!inside.contains("eth0"), "t1 still has eth0:\n{inside}");
    for (ov, node) in [(&n1, "n1"), (&n2, "n2")] {
        for vni in [NET_A, NET_B] {
            must(
                &lab,
                node,
                "remove_network",
                rt.block_on(ov.remove_network(vni)),
            );
        }
        assert_no_overlay_left(&lab, node);
        assert!(must(&lab, node, "list", rt.block_on(ov.list_networks())).is_empty());
    }
}

/// `ip link`, `bridge fdb` and `ip neigh` in a node show nothing of the overlay.
fn assert_no_overlay_left(lab: &Lab, node: &str) {
    let links = run(lab, node, &["ip", "-o", "link", "show"]);
    for l in links.lines() {
        let name = l.split(':').nth(1).unwrap_or("").trim();
        assert!(
            !(name.starts_with("mbr") || name.starts_with("mvx") || name.starts_with("mv")),
            "{node} still has {name}:\n{links}"
        );
    }
    let fdb = run(lab, node, &["bridge", "fdb", "show"]);
    assert!(
        !fdb.contains("02:42:0a:"),
        "{node} still has FDB entries:\n{fdb}"
    );
    let neigh = run(lab, node, &["ip", "neigh", "show"]);
    assert!(
        !neigh.contains("10.0."),
        "{node} still has overlay neighbours:\n{neigh}"
    );
}

/// Every call converges: a second call changes nothing, drift is repaired, a moved task's
/// entry follows it, bad input changes nothing, and removal leaves nothing.
#[test]
fn overlay_calls_converge_and_refuse_bad_input_unchanged() {
    let lab = Lab::up_with("ovlidem", 151, 1, 1, &["--no-swarm"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _enter = rt.enter();
    let n1 = overlay_of(&lab, "n1");
    let net = network(&lab, NET_A, 1);
    let ns = lab.ns("n1");
    let sh = |cmd: &[&str]| run(&lab, "n1", cmd);

    // Networks: created once, then nothing to do.
    let first = must(&lab, "n1", "ensure", rt.block_on(n1.ensure_network(&net)));
    assert!(!first.is_empty());
    let again = must(
        &lab,
        "n1",
        "ensure again",
        rt.block_on(n1.ensure_network(&net)),
    );
    assert!(
        again.is_empty(),
        "second ensure_network changed things: {again:?}"
    );
    let vx = sh(&["ip", "-d", "link", "show", "mvx4097"]);
    for want in [
        "vxlan id 4097",
        "local 198.18.151.11",
        "dev eth0",
        "dstport 4789",
        "nolearning",
        "proxy",
        "master mbr4097",
        "mtu 1450",
    ] {
        assert!(vx.contains(want), "mvx4097 lacks {want:?}:\n{vx}");
    }
    let port = sh(&["ip", "-d", "link", "show", "mvx4097"]);
    assert!(
        port.contains("learning off")
            && port.contains("neigh_suppress on")
            && port.contains("flood off"),
        "{port}"
    );
    let br = sh(&["ip", "addr", "show", "mbr4097"]);
    assert!(
        br.contains("inet 10.0.1.2/24") && br.contains("02:42:0a:00:01:02"),
        "{br}"
    );

    // Drift is repaired in place; a device of the wrong kind is recreated.
    host("ip", &["-n", &ns, "link", "set", "mbr4097", "mtu", "1400"]);
    host("ip", &["-n", &ns, "link", "set", "mvx4097", "nomaster"]);
    let fixed = must(&lab, "n1", "repair", rt.block_on(n1.ensure_network(&net)));
    let fixed: Vec<String> = fixed.iter().map(ToString::to_string).collect();
    assert!(
        fixed.contains(&"set mbr4097 mtu 1450".to_owned())
            && fixed.contains(&"set mvx4097 master mbr4097".to_owned()),
        "{fixed:?}"
    );
    host("ip", &["-n", &ns, "link", "del", "mvx4097"]);
    host(
        "ip",
        &["-n", &ns, "link", "add", "mvx4097", "type", "bridge"],
    );
    let fixed = must(&lab, "n1", "recreate", rt.block_on(n1.ensure_network(&net)));
    assert!(
        fixed[0].to_string().starts_with("delete mvx4097"),
        "{fixed:?}"
    );
    assert!(sh(&["ip", "-d", "link", "show", "mvx4097"]).contains("vxlan id 4097"));
    assert!(must(&lab, "n1", "ensure", rt.block_on(n1.ensure_network(&net))).is_empty());

    // Endpoints: the kernel's static entries equal the list, and only differences are applied.
    let (v2, v3) = ("198.18.151.12", "198.18.151.13");
    let list = [endpoint(NET_A, 12, v2), endpoint(NET_A, 13, v2)];
    let ops = must(
        &lab,
        "n1",
        "endpoints",
        rt.block_on(n1.set_remote_endpoints(NET_A, &list)),
    );
    assert_eq!(ops.len(), 6, "{ops:?}");
    let fdb = sh(&["bridge", "fdb", "show", "dev", "mvx4097"]);
    for want in [
        "02:42:0a:00:01:0c dst 198.18.151.12 self permanent",
        "02:42:0a:00:01:0d dst 198.18.151.12 self permanent",
        "02:42:0a:00:01:0c master mbr4097 static",
        "02:42:0a:00:01:0d master mbr4097 static",
    ] {
        assert!(fdb.contains(want), "fdb lacks {want:?}:\n{fdb}");
    }
    let neigh = sh(&["ip", "neigh", "show", "dev", "mvx4097"]);
    assert!(
        neigh.contains("10.0.1.12 lladdr 02:42:0a:00:01:0c PERMANENT"),
        "{neigh}"
    );
    let again = must(
        &lab,
        "n1",
        "endpoints again",
        rt.block_on(n1.set_remote_endpoints(NET_A, &list)),
    );
    assert!(again.is_empty(), "{again:?}");
    // Task .12 moves to another node: one replace, the entry follows.
    let moved = [endpoint(NET_A, 12, v3), endpoint(NET_A, 13, v2)];
    let ops = must(
        &lab,
        "n1",
        "move",
        rt.block_on(n1.set_remote_endpoints(NET_A, &moved)),
    );
    assert_eq!(
        ops,
        vec![EndpointOp::SetVxlanFdb {
            mac: moved[0].mac,
            vtep: v3.parse().unwrap()
        }]
    );
    let fdb = sh(&["bridge", "fdb", "show", "dev", "mvx4097"]);
    assert!(
        fdb.contains("02:42:0a:00:01:0c dst 198.18.151.13 self permanent"),
        "{fdb}"
    );
    assert!(
        !fdb.contains("02:42:0a:00:01:0c dst 198.18.151.12"),
        "{fdb}"
    );
    // Bad input changes nothing.
    let e = rt.block_on(n1.set_remote_endpoints(
        NET_A,
        &[
            moved[0],
            RemoteEndpoint {
                vtep: v2.parse().unwrap(),
                ..moved[0]
            },
        ],
    ));
    assert!(e.unwrap_err().to_string().contains("behind two nodes"));
    assert_eq!(sh(&["bridge", "fdb", "show", "dev", "mvx4097"]), fdb);
    // Removing one leaves the other.
    must(
        &lab,
        "n1",
        "remove one",
        rt.block_on(n1.set_remote_endpoints(NET_A, &moved[1..])),
    );
    let fdb = sh(&["bridge", "fdb", "show", "dev", "mvx4097"]);
    let neigh = sh(&["ip", "neigh", "show", "dev", "mvx4097"]);
    assert!(
        !fdb.contains("02:42:0a:00:01:0c") && fdb.contains("02:42:0a:00:01:0d"),
        "{fdb}"
    );
    assert!(
        !neigh.contains("10.0.1.12") && neigh.contains("10.0.1.13"),
        "{neigh}"
    );

    // Native routing (issue 19): how the peers are reached decides, by the main table; meshd's
    // host routes converge like the FDB and never touch another route.
    let peers = BTreeSet::from([v2.parse().unwrap(), v3.parse().unwrap()]);
    sh(&[
        "ip",
        "route",
        "add",
        "198.18.151.13/32",
        "via",
        v2,
        "proto",
        "static",
    ]);
    let hops = must(&lab, "n1", "next hops", rt.block_on(n1.next_hops(&peers)));
    assert_eq!(
        hops.values().map(ToString::to_string).collect::<Vec<_>>(),
        ["on-link", "via gateway 198.18.151.12"],
        "{hops:?}"
    );
    let src = net.node_addr;
    let wanted = BTreeMap::from([
        (
            overlay_addr(NET_A, 12),
            NativeRoute {
                via: v2.parse().unwrap(),
                src,
            },
        ),
        (
            overlay_addr(NET_A, 13),
            NativeRoute {
                via: v2.parse().unwrap(),
                src,
            },
        ),
    ]);
    let routes = || sh(&["ip", "route", "show", "proto", "77"]);
    let changed = rt.block_on(n1.set_native_routes(&wanted, "eth0"));
    assert_eq!(must(&lab, "n1", "native routes", changed), 2);
    let shown = routes();
    for want in [
        "10.0.1.12 via 198.18.151.12 dev eth0 src 10.0.1.2",
        "10.0.1.13 via 198.18.151.12 dev eth0 src 10.0.1.2",
    ] {
        assert!(shown.contains(want), "no {want:?}:\n{shown}");
    }
    let again = rt.block_on(n1.set_native_routes(&wanted, "eth0"));
    assert_eq!(must(&lab, "n1", "native routes again", again), 0);
    // Drift is repaired; a moved address's route follows it; a bad underlay changes nothing.
    sh(&["ip", "route", "del", "10.0.1.13/32", "proto", "77"]);
    let mut moved_routes = wanted.clone();
    moved_routes.insert(
        overlay_addr(NET_A, 12),
        NativeRoute {
            via: v3.parse().unwrap(),
            src,
        },
    );
    let e = rt.block_on(n1.set_native_routes(&moved_routes, "nosuch0"));
    assert!(
        e.unwrap_err()
            .to_string()
            .contains("\"nosuch0\" does not exist"),
        "a bad underlay name is named"
    );
    assert!(!routes().contains("10.0.1.13"), "{}", routes());
    let fixed = rt.block_on(n1.set_native_routes(&moved_routes, "eth0"));
    assert_eq!(must(&lab, "n1", "native routes fixed", fixed), 2);
    let shown = routes();
    assert!(
        shown.contains("10.0.1.12 via 198.18.151.13")
            && shown.contains("10.0.1.13 via 198.18.151.12"),
        "{shown}"
    );
    // Removal takes meshd's routes only.
    let none = rt.block_on(n1.set_native_routes(&BTreeMap::new(), "eth0"));
    assert_eq!(must(&lab, "n1", "native routes removed", none), 2);
    assert_eq!(routes().trim(), "");
    assert!(sh(&["ip", "route", "show"]).contains("198.18.151.13 via 198.18.151.12"));
    sh(&["ip", "route", "del", "198.18.151.13/32"]);

    // Tasks: plumbed once, then nothing to do; refused input creates nothing. A strict
    // reverse-path filter (as a host with rp_filter=1 hands its new namespaces) is loosened.
    let (task, task_ns) = TaskNs::new(&lab, "t1");
    let rp_filter = |set: Option<&str>| {
        let key = "net.ipv4.conf.all.rp_filter";
        let assign = set.map(|v| format!("{key}={v}"));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &task.name, "sysctl", "-n"]);
        match &assign {
            Some(a) => cmd.args(["-w", a.as_str()]),
            None => cmd.arg(key),
        };
        stdout(&cmd.output().expect("sysctl in the task"))
    };
    rp_filter(Some("1"));
    let i0 = iface(NET_A, 11, "00000000aa", 0);
    let gw = Some(net.node_addr);
    let steps = must(
        &lab,
        "n1",
        "plumb",
        rt.block_on(n1.plumb_task(&task_ns, std::slice::from_ref(&i0), gw)),
    );
    assert!(!steps.is_empty());
    assert!(
        steps.iter().any(|s| matches!(s, TaskStep::LoosenRpFilter)),
        "{steps:?}"
    );
    assert_eq!(rp_filter(None).trim(), "2");
    let again = must(
        &lab,
        "n1",
        "plumb again",
        rt.block_on(n1.plumb_task(&task_ns, std::slice::from_ref(&i0), gw)),
    );
    assert!(again.is_empty(), "{again:?}");
    let addr = task.ip(&["addr", "show", "eth0"]);
    assert!(
        addr.contains("inet 10.0.1.11/24")
            && addr.contains("02:42:0a:00:01:0b")
            && addr.contains("mtu 1450")
            && addr.contains("UP"),
        "{addr}"
    );
    assert!(
        task.ip(&["route"])
            .contains("default via 10.0.1.2 dev eth0")
    );
    assert!(sh(&["ip", "link", "show", &i0.host_ifname]).contains("master mbr4097"));
    let out = Command::new("ip")
        .args([
            "netns", "exec", &task.name, "ping", "-c", "1", "-W", "2", "10.0.1.2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the task cannot reach its gateway: {}",
        stdout(&out)
    );

    let (other, other_ns) = TaskNs::new(&lab, "t2");
    let j0 = iface(NET_A, 21, "00000000bb", 0);
    let j1 = iface(NET_B, 21, "00000000bb", 1);
    let e = rt
        .block_on(n1.plumb_task(&other_ns, &[j0.clone(), j1], None))
        .unwrap_err();
    assert!(e.to_string().contains("no bridge mbr4098"), "{e}");
    assert!(
        !sh(&["ip", "link"]).contains(&j0.host_ifname),
        "a refused plumb left a veth"
    );
    assert!(
        !other.ip(&["link"]).contains("eth0"),
        "a refused plumb left eth0"
    );

    // A network in use is not removed.
    let e = rt.block_on(n1.remove_network(NET_A)).unwrap_err();
    assert!(e.to_string().contains(&i0.host_ifname), "{e}");
    assert!(sh(&["ip", "link"]).contains("mvx4097"));
    let nets = must(&lab, "n1", "list", rt.block_on(n1.list_networks()));
    assert_eq!(nets.len(), 1);
    assert_eq!(nets[0].task_ports, vec![i0.host_ifname.clone()]);

    // Undo: each call twice, the second one with nothing to do.
    let gone = must(
        &lab,
        "n1",
        "unplumb",
        rt.block_on(n1.unplumb_task(std::slice::from_ref(&i0.host_ifname))),
    );
    assert_eq!(gone, vec![i0.host_ifname.clone()]);
    assert!(
        !task.ip(&["link"]).contains("eth0"),
        "the task's end survived"
    );
    assert!(
        must(
            &lab,
            "n1",
            "unplumb again",
            rt.block_on(n1.unplumb_task(std::slice::from_ref(&i0.host_ifname)))
        )
        .is_empty()
    );
    must(
        &lab,
        "n1",
        "clear",
        rt.block_on(n1.set_remote_endpoints(NET_A, &[])),
    );
    // Only the ports' own addresses (permanent, no dst) remain on the VXLAN port.
    let fdb = sh(&["bridge", "fdb", "show", "dev", "mvx4097"]);
    assert!(!fdb.contains(" dst ") && !fdb.contains(" static"), "{fdb}");
    let neigh = sh(&["ip", "neigh", "show", "dev", "mvx4097"]);
    assert!(neigh.trim().is_empty(), "{neigh}");
    assert_eq!(
        must(&lab, "n1", "remove", rt.block_on(n1.remove_network(NET_A))).len(),
        2
    );
    assert!(
        must(
            &lab,
            "n1",
            "remove again",
            rt.block_on(n1.remove_network(NET_A))
        )
        .is_empty()
    );
    assert_no_overlay_left(&lab, "n1");
    drop((task, other));
}
