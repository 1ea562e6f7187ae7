//! The routing mesh's data path (the kernel half): published ports through every node to
//! tasks on other nodes (VXLAN) and on the same node, TCP and UDP, with `--datapath tc` and
//! `--datapath xdp`; a VIP balanced from a task; conntrack swept when a backend leaves; no
//! iptables/nftables rule anywhere.
//!
//! These tests drive `mesh-dataplane` directly from a thread in each node's namespace, on a lab
//! whose meshd forms no swarm (so it sets up nothing itself): the kernel half alone, with
//! measurements meshd does not expose (conntrack sweeps). The overlay (bridges, VXLAN devices,
//! FDB and neighbour entries, task namespaces with veths) is built here with `ip`/`bridge`, as
//! `mesh-overlay` builds it, and removed by a guard. `tests/mesh.rs` has meshd do it all.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Lab, stderr, stdout};
use mesh_dataplane::probe::PacketProbe;
use mesh_dataplane::{
    Datapath, DesiredMesh, FlowKind, Mesh, MeshOptions, Protocol, PublishMode, PublishedPort,
    Service, Task, TaskAddress, Vip,
};
use mesh_overlay::netns::NetNs;

pub(crate) const NET: u32 = 4097;
const VIP_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 100);

/// Runs a command, panicking with its output if it fails.
pub(crate) fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

pub(crate) fn in_ns(ns: &str, args: &[&str]) -> String {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend(args);
    run(&v)
}

fn mac(kind: u8, n: u8) -> [u8; 6] {
    [0x02, 0x42, 0xaa, kind, 0, n]
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A task of the test: its namespace, node and addresses.
pub(crate) struct TestTask {
    pub(crate) name: &'static str,
    pub(crate) node: usize,
    /// Last octet of its addresses (10.255.1.N on ingress, 10.0.1.N on NET).
    pub(crate) n: u8,
    serves: bool,
}

impl TestTask {
    pub(crate) fn ingress(&self) -> TaskAddress {
        TaskAddress {
            vni: 4096,
            addr: Ipv4Addr::new(10, 255, 1, self.n),
            mac: mac(1, self.n),
        }
    }
    pub(crate) fn net(&self) -> TaskAddress {
        TaskAddress {
            vni: NET,
            addr: Ipv4Addr::new(10, 0, 1, self.n),
            mac: mac(2, self.n),
        }
    }
}

pub(crate) const TASKS: [TestTask; 3] = [
    TestTask {
        name: "t1",
        node: 2,
        n: 11,
        serves: true,
    },
    TestTask {
        name: "t2",
        node: 3,
        n: 12,
        serves: true,
    },
    // The caller of the VIP, on the node without a backend.
    TestTask {
        name: "t3",
        node: 1,
        n: 13,
        serves: false,
    },
];

/// Echo servers: TCP and UDP on 80 answer the task's name; iperf3 on 5201.
const SERVER: &str = r#"
import socket, sys, threading
name = sys.argv[1].encode() + b"\n"
def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 80)); s.listen(128)
    while True:
        c, _ = s.accept()
        try: c.sendall(name)
        finally: c.close()
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 80))
    while True:
        d, a = u.recvfrom(2048); u.sendto(name, a)
threading.Thread(target=udp, daemon=True).start()
tcp()
"#;

/// A client: `count` TCP connections (or UDP datagrams from fresh ports) to host:port, one
/// answer (or `ERR ...`) per line.
const CLIENT: &str = r#"
import socket, sys
host, port, count, proto = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
for i in range(count):
    try:
        if proto == "tcp":
            s = socket.create_connection((host, port), timeout=3)
            print(s.recv(100).decode().strip() or "ERR empty")
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
            s.sendto(b"hi", (host, port)); print(s.recvfrom(100)[0].decode().strip())
        s.close()
    except Exception as e:
        print("ERR", type(e).__name__, e)
"#;

/// The overlay, tasks, servers and meshes of one test; removed on drop (before the lab).
pub(crate) struct Plumbing {
    prefix: String,
    pub(crate) meshes: BTreeMap<usize, Mesh>,
    pub(crate) servers: Vec<Child>,
    /// `XDP_PASS` programs on the switch's ports (see `accept_xdp_tx`).
    switch_probes: Vec<PacketProbe>,
}

impl Drop for Plumbing {
    fn drop(&mut self) {
        self.switch_probes.clear();
        for mut c in self.servers.drain(..) {
            c.kill().ok();
            c.wait().ok();
        }
        for (_, m) in std::mem::take(&mut self.meshes) {
            let dir = m.options().pin_dir.clone();
            if let Err(e) = m.remove() {
                eprintln!("remove mesh pins {}: {e:#}", dir.display());
            }
        }
        for t in &TASKS {
            Command::new("ip")
                .args(["netns", "del", &format!("{}-{}", self.prefix, t.name)])
                .output()
                .ok();
        }
    }
}

/// Node i's address on the ingress network and on NET.
fn node_ingress(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 255, 0, i as u8)
}
pub(crate) fn node_net(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 1, i as u8)
}

/// Builds bridges and VXLAN devices on every node, the task namespaces, FDB and neighbour
/// entries (tasks and remote nodes' bridge addresses), and starts the servers.
pub(crate) fn build_overlay(lab: &Lab, nodes: usize) -> Plumbing {
    let mut p = Plumbing {
        prefix: lab.prefix.clone(),
        meshes: BTreeMap::new(),
        servers: Vec::new(),
        switch_probes: Vec::new(),
    };
    for i in 1..=nodes {
        let ns = lab.ns(&format!("n{i}"));
        let underlay = lab.node_addr(i);
        for (vni, addr, plen) in [(4096, node_ingress(i), 16), (NET, node_net(i), 24)] {
            let br = format!("mbr{vni}");
            let vx = format!("mvx{vni}");
            let bmac = mac_str(mac(if vni == 4096 { 3 } else { 4 }, i as u8));
            in_ns(
                &ns,
                &["ip", "link", "add", &br, "address", &bmac, "type", "bridge"],
            );
            in_ns(
                &ns,
                &[
                    "ip",
                    "link",
                    "add",
                    &vx,
                    "type",
                    "vxlan",
                    "id",
                    &vni.to_string(),
                    "dstport",
                    "4789",
                    "nolearning",
                    "proxy",
                    "local",
                    &underlay,
                    "dev",
                    "eth0",
                ],
            );
            in_ns(&ns, &["ip", "link", "set", &vx, "master", &br, "up"]);
            in_ns(
                &ns,
                &["ip", "addr", "add", &format!("{addr}/{plen}"), "dev", &br],
            );
            in_ns(&ns, &["ip", "link", "set", &br, "up"]);
        }
    }
    for t in &TASKS {
        let tns = format!("{}-{}", lab.prefix, t.name);
        let ns = lab.ns(&format!("n{}", t.node));
        run(&["ip", "netns", "add", &tns]);
        in_ns(&tns, &["ip", "link", "set", "lo", "up"]);
        for (host_if, peer, ep, br, plen) in [
            (format!("mvi{}", t.n), "eth0", t.ingress(), "mbr4096", 16),
            (format!("mvn{}", t.n), "eth1", t.net(), "mbr4097", 24),
        ] {
            let tmp = format!("mvp{}{}", t.n, peer);
            in_ns(
                &ns,
                &[
                    "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &tmp,
                ],
            );
            in_ns(&ns, &["ip", "link", "set", &tmp, "netns", &tns]);
            in_ns(
                &tns,
                &[
                    "ip",
                    "link",
                    "set",
                    &tmp,
                    "name",
                    peer,
                    "address",
                    &mac_str(ep.mac),
                    "mtu",
                    "1450",
                ],
            );
            in_ns(
                &tns,
                &[
                    "ip",
                    "addr",
                    "add",
                    &format!("{}/{plen}", ep.addr),
                    "dev",
                    peer,
                ],
            );
            in_ns(&tns, &["ip", "link", "set", peer, "up"]);
            in_ns(&ns, &["ip", "link", "set", &host_if, "master", br, "up"]);
        }
        // As meshd's tasks: a default route via the node on the first network (clients' replies
        // leave by it, docs/mesh.md).
        let gateway = node_ingress(t.node).to_string();
        in_ns(&tns, &["ip", "route", "add", "default", "via", &gateway]);
        if t.serves {
            let child = Command::new("ip")
                .args(["netns", "exec", &tns, "python3", "-c", SERVER, t.name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start server");
            p.servers.push(child);
            let iperf = Command::new("ip")
                .args(["netns", "exec", &tns, "iperf3", "-s", "-p", "5201"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start iperf3");
            p.servers.push(iperf);
        }
    }
    // Remote endpoints: tasks and other nodes' bridge addresses, behind their node's VTEP.
    for i in 1..=nodes {
        let ns = lab.ns(&format!("n{i}"));
        let mut remote: Vec<(u32, Ipv4Addr, [u8; 6], String)> = Vec::new();
        for t in TASKS.iter().filter(|t| t.node != i) {
            let vtep = lab.node_addr(t.node);
            remote.push((4096, t.ingress().addr, t.ingress().mac, vtep.clone()));
            remote.push((NET, t.net().addr, t.net().mac, vtep));
        }
        for j in (1..=nodes).filter(|j| *j != i) {
            remote.push((4096, node_ingress(j), mac(3, j as u8), lab.node_addr(j)));
            remote.push((NET, node_net(j), mac(4, j as u8), lab.node_addr(j)));
        }
        for (vni, addr, m, vtep) in remote {
            let vx = format!("mvx{vni}");
            let m = mac_str(m);
            in_ns(
                &ns,
                &["bridge", "fdb", "add", &m, "dev", &vx, "master", "static"],
            );
            in_ns(
                &ns,
                &[
                    "bridge",
                    "fdb",
                    "add",
                    &m,
                    "dev",
                    &vx,
                    "dst",
                    &vtep,
                    "self",
                    "permanent",
                ],
            );
            in_ns(
                &ns,
                &[
                    "ip",
                    "neigh",
                    "add",
                    &addr.to_string(),
                    "lladdr",
                    &m,
                    "dev",
                    &vx,
                    "nud",
                    "permanent",
                ],
            );
        }
    }
    p
}

fn desired(lab: &Lab, node: usize, tasks: &[&TestTask]) -> DesiredMesh {
    let task = |t: &TestTask| Task {
        id: t.name.into(),
        node_addr: lab.node_addr(t.node).parse().unwrap(),
        local: t.node == node,
        endpoints: vec![t.ingress(), t.net()],
        draining: false,
    };
    let port = |protocol, published, target| PublishedPort {
        protocol,
        published,
        target,
        mode: PublishMode::Ingress,
    };
    DesiredMesh {
        services: vec![
            Service {
                id: "web".into(),
                ports: vec![
                    port(Protocol::Tcp, 8080, 80),
                    port(Protocol::Udp, 8053, 80),
                    PublishedPort {
                        mode: PublishMode::Host,
                        ..port(Protocol::Tcp, 8081, 80)
                    },
                ],
                vips: vec![Vip {
                    vni: NET,
                    addr: VIP_ADDR,
                }],
                tasks: tasks.iter().map(|t| task(t)).collect(),
            },
            // iperf3 needs its control and data connections on one server: one task (t2).
            Service {
                id: "bench".into(),
                ports: vec![port(Protocol::Tcp, 5201, 5201)],
                vips: vec![],
                tasks: tasks
                    .iter()
                    .filter(|t| t.name == "t2")
                    .map(|t| task(t))
                    .collect(),
            },
            Service {
                id: "idle".into(),
                ports: vec![port(Protocol::Tcp, 9000, 80)],
                vips: vec![],
                tasks: vec![],
            },
        ],
    }
}

/// Loads and attaches the mesh in node i and applies `desired`. `fresh`: remove earlier pins
/// first (else the maps and attachments an earlier `Mesh` left are taken over, as after a
/// meshd restart).
pub(crate) fn load_mesh(
    lab: &Lab,
    i: usize,
    datapath: Datapath,
    want: DesiredMesh,
    fresh: bool,
) -> Mesh {
    let ns = NetNs::open(&lab.ns(&format!("n{i}"))).expect("open node namespace");
    let pin_dir = format!("/sys/fs/bpf/{}-n{i}-dp", lab.prefix);
    let underlay: Ipv4Addr = lab.node_addr(i).parse().unwrap();
    let locals: Vec<(String, u32, [u8; 6])> = TASKS
        .iter()
        .filter(|t| t.node == i)
        .flat_map(|t| {
            [
                (format!("mvi{}", t.n), 4096, t.ingress().mac),
                (format!("mvn{}", t.n), NET, t.net().mac),
            ]
        })
        .collect();
    ns.run(move || -> anyhow::Result<Mesh> {
        if fresh {
            Mesh::remove_pins(std::path::Path::new(&pin_dir))?;
        }
        let mut mesh = Mesh::load(MeshOptions::new("eth0", underlay, datapath, &pin_dir))?;
        mesh.attach_network_bridge("mbr4096", 4096, node_ingress(i))?;
        mesh.attach_network_bridge("mbr4097", NET, node_net(i))?;
        mesh.attach_ingress_vxlan("mvx4096")?;
        for (v, vni, mac) in &locals {
            mesh.attach_task_veth(v, *vni, *mac)?;
        }
        mesh.apply(&want)?;
        Ok(mesh)
    })
    .expect("enter node namespace")
    .unwrap_or_else(|e| panic!("load mesh in n{i} ({datapath:?}): {e:#}"))
}

pub(crate) fn client(
    lab: &Lab,
    ns: &str,
    host: &str,
    port: u16,
    count: usize,
    proto: &str,
) -> Vec<String> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(ns),
            "python3",
            "-c",
            CLIENT,
            host,
            &port.to_string(),
            &count.to_string(),
            proto,
        ])
        .output()
        .expect("run client");
    stdout(&out).lines().map(str::to_owned).collect()
}

fn tally(answers: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for a in answers {
        *m.entry(a.clone()).or_insert(0) += 1;
    }
    m
}

/// Waits until the servers in the task namespaces answer (directly, from their own node).
pub(crate) fn wait_for_servers(lab: &Lab) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for t in TASKS.iter().filter(|t| t.serves) {
        loop {
            let a = client(
                lab,
                &format!("n{}", t.node),
                &t.ingress().addr.to_string(),
                80,
                1,
                "tcp",
            );
            if a.first().map(String::as_str) == Some(t.name) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "server {} never answered: {a:?}",
                t.name
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn no_service_rules(lab: &Lab, nodes: usize) {
    for i in 1..=nodes {
        let ns = lab.ns(&format!("n{i}"));
        for cmd in [vec!["iptables-save"], vec!["nft", "list", "ruleset"]] {
            let mut v = vec!["ip", "netns", "exec", ns.as_str()];
            v.extend(cmd.iter().copied());
            let Ok(out) = Command::new(v[0]).args(&v[1..]).output() else {
                continue; // the tool is not installed: nothing can carry traffic through it
            };
            let text = stdout(&out);
            for needle in [
                "8080",
                "8053",
                "10.255.",
                "DNAT",
                "SNAT",
                "MASQUERADE",
                "dnat",
                "snat",
                "masquerade",
            ] {
                assert!(
                    !text.contains(needle),
                    "n{i}: `{}` shows {needle:?}:\n{text}",
                    cmd.join(" ")
                );
            }
        }
    }
}

fn iperf(lab: &Lab, ns: &str, host: &str, port: u16) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(ns),
            "iperf3",
            "-c",
            host,
            "-p",
            &port.to_string(),
            "-t",
            "3",
            "-J",
        ])
        .output()
        .expect("run iperf3");
    let text = stdout(&out);
    text.lines()
        .skip_while(|l| !l.contains("\"sum_received\""))
        .find(|l| l.contains("bits_per_second"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().trim_end_matches(',').parse::<f64>().ok())
        .map_or_else(
            || {
                let err = text
                    .lines()
                    .find(|l| l.contains("\"error\""))
                    .unwrap_or_default();
                format!("failed: {err} {}", stderr(&out))
            },
            |b| format!("{:.2} Gbit/s", b / 1e9),
        )
}

/// On this kernel (6.18) a frame a node sends with `XDP_TX` on its veth reaches the switch only
/// if the switch-side peer has a native XDP program (GRO on the peer is not enough: the frames
/// are counted as sent and never arrive). Real NICs need nothing of the sort; the lab's switch
/// ports get an `XDP_PASS` program (the probe) here until `lab up` attaches one itself.
pub(crate) fn accept_xdp_tx(lab: &Lab, plumbing: &mut Plumbing, nodes: usize) {
    let sw = NetNs::open(&lab.ns("sw")).expect("open switch namespace");
    let ports: Vec<String> = std::iter::once("client".to_owned())
        .chain((1..=nodes).map(|i| format!("n{i}")))
        .collect();
    for port in ports {
        let p = port.clone();
        let probe = sw
            .run(move || PacketProbe::attach(&p))
            .expect("enter switch namespace")
            .unwrap_or_else(|e| panic!("attach XDP_PASS to switch port {port}: {e:#}"));
        plumbing.switch_probes.push(probe);
    }
}

fn published_ports_through_every_node(name: &str, octet: u8, datapath: Datapath) {
    const NODES: usize = 3;
    let lab = Lab::up_with(name, octet, NODES, 1, &["--no-swarm"]);
    let mut plumbing = build_overlay(&lab, NODES);
    if datapath == Datapath::Xdp {
        accept_xdp_tx(&lab, &mut plumbing, NODES);
    }
    let both: Vec<&TestTask> = TASKS.iter().filter(|t| t.serves).collect();
    for i in 1..=NODES {
        let m = load_mesh(&lab, i, datapath, desired(&lab, i, &both), true);
        plumbing.meshes.insert(i, m);
    }
    wait_for_servers(&lab);

    // TCP and UDP through every node (n1 has no task; n2 and n3 each have one local and one
    // remote backend): every request answered, both backends hit.
    for i in 1..=NODES {
        let node = lab.node_addr(i);
        for (proto, port) in [("tcp", 8080), ("udp", 8053)] {
            let answers = client(&lab, "client", &node, port, 40, proto);
            let t = tally(&answers);
            println!("{datapath:?} n{i} {proto}: {t:?}");
            assert_eq!(answers.len(), 40, "{proto} via n{i}: {answers:?}");
            assert!(
                answers.iter().all(|a| a == "t1" || a == "t2"),
                "{proto} via n{i} ({datapath:?}) failed: {t:?}"
            );
            assert!(t.len() == 2, "{proto} via n{i} hit only {t:?}");
        }
    }

    // A published port without a backend refuses at once (RST), through every node.
    for i in 1..=NODES {
        let a = client(&lab, "client", &lab.node_addr(i), 9000, 1, "tcp");
        assert!(
            a[0].contains("ConnectionRefused"),
            "port 9000 via n{i}: {a:?}"
        );
    }

    // Host mode: a node answers with its own task only; n1 has none and refuses.
    for (i, want) in [(1, None), (2, Some("t1")), (3, Some("t2"))] {
        let answers = client(&lab, "client", &lab.node_addr(i), 8081, 10, "tcp");
        match want {
            Some(t) => assert!(
                answers.iter().all(|a| a == t),
                "host mode via n{i}: {answers:?}"
            ),
            None => assert!(
                answers.iter().all(|a| a.contains("ConnectionRefused")),
                "host mode via n1 (no task): {answers:?}"
            ),
        }
    }

    // A task calls the VIP: balanced over both tasks (both on other nodes).
    let answers = client(&lab, "t3", &VIP_ADDR.to_string(), 80, 40, "tcp");
    let t = tally(&answers);
    println!("{datapath:?} VIP: {t:?}");
    assert!(
        answers.iter().all(|a| a == "t1" || a == "t2"),
        "VIP calls failed: {t:?}"
    );
    assert_eq!(t.len(), 2, "VIP hit only {t:?}");
    let udp = client(&lab, "t3", &VIP_ADDR.to_string(), 80, 10, "udp");
    assert!(
        udp.iter().all(|a| a == "t1" || a == "t2"),
        "VIP UDP failed: {udp:?}"
    );

    // Counters.
    let stats = plumbing.meshes.get_mut(&1).unwrap().stats().unwrap();
    println!("{datapath:?} n1 stats: {stats:?}");
    assert!(stats["web"].connections >= 80, "{stats:?}");
    assert!(stats["web"].packets > stats["web"].connections, "{stats:?}");

    no_service_rules(&lab, NODES);

    if datapath == Datapath::Xdp {
        // The XDP paths really ran (encapsulation, decapsulated replies, RSTs), not only the
        // tc fallback.
        let stats = in_ns(&lab.ns("n1"), &["ethtool", "-S", "eth0"]);
        let tx: u64 = stats
            .lines()
            .filter(|l| l.contains("xdp_tx:"))
            .filter_map(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
            .sum();
        assert!(tx >= 80, "n1 sent only {tx} frames with XDP_TX:\n{stats}");
    }

    // Throughput, printed for the record (the bench measures it properly): through a node
    // without a task to a remote one, and the underlay alone.
    if std::env::var_os("MESH_IPERF").is_some() {
        let via = iperf(&lab, "client", &lab.node_addr(1), 5201);
        println!("iperf3 {datapath:?} client -> n1 -> remote task: {via}");
        let mut direct = Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.ns("n3"),
                "iperf3",
                "-s",
                "-1",
                "-p",
                "5202",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("start iperf3 in n3");
        std::thread::sleep(Duration::from_millis(500));
        let direct_rate = iperf(&lab, "client", &lab.node_addr(3), 5202);
        println!("iperf3 direct client -> n3 (underlay only): {direct_rate}");
        direct.kill().ok();
        direct.wait().ok();
    }

    // t2 leaves: its conntrack goes on every node, and everything lands on t1.
    let t1_only: Vec<&TestTask> = TASKS.iter().filter(|t| t.name == "t1").collect();
    let t2_addrs = [TASKS[1].ingress().addr, TASKS[1].net().addr];
    for i in 1..=NODES {
        let mesh = plumbing.meshes.get_mut(&i).unwrap();
        let had = mesh
            .flows()
            .unwrap()
            .iter()
            .filter(|f| t2_addrs.contains(&f.backend_addr()))
            .count();
        let report = mesh.apply(&desired(&lab, i, &t1_only)).unwrap();
        assert_eq!(report.swept, had, "n{i}: {report:?}");
        let left = mesh.flows().unwrap();
        assert!(
            left.iter().all(|f| !t2_addrs.contains(&f.backend_addr())),
            "n{i}: flows of t2 left: {left:?}"
        );
        if i == 1 {
            assert!(had > 0, "n1 had no flow to t2 to sweep");
            assert!(left.iter().any(|f| f.kind == FlowKind::IngressReply));
        }
    }
    for i in 1..=NODES {
        let answers = client(&lab, "client", &lab.node_addr(i), 8080, 10, "tcp");
        assert!(
            answers.iter().all(|a| a == "t1"),
            "after t2 left, via n{i}: {answers:?}"
        );
    }

    // A restarted meshd: the old Mesh goes without cleaning up (its pinned links keep serving),
    // a new one takes over the pins: conntrack kept, programs replaced in place.
    let flows_before = plumbing.meshes.get_mut(&1).unwrap().flows().unwrap().len();
    drop(plumbing.meshes.remove(&1));
    let answers = client(&lab, "client", &lab.node_addr(1), 8080, 5, "tcp");
    assert!(
        answers.iter().all(|a| a == "t1"),
        "with no meshd on n1: {answers:?}"
    );
    let mut again = load_mesh(&lab, 1, datapath, desired(&lab, 1, &t1_only), false);
    let flows_after = again.flows().unwrap().len();
    assert!(
        flows_after >= flows_before,
        "conntrack lost on restart: {flows_before} -> {flows_after}"
    );
    plumbing.meshes.insert(1, again);
    let answers = client(&lab, "client", &lab.node_addr(1), 8080, 10, "tcp");
    assert!(
        answers.iter().all(|a| a == "t1"),
        "after restart: {answers:?}"
    );
    let links = std::fs::read_dir(format!("/sys/fs/bpf/{}-n1-dp/links", lab.prefix))
        .unwrap()
        .count();
    assert_eq!(
        links,
        if datapath == Datapath::Xdp { 8 } else { 7 },
        "one pinned link per attachment, none doubled"
    );
    drop(plumbing);
}

/// `--datapath tc`: published TCP/UDP through every node, VIP, sweep, no rules.
#[test]
fn datapath_tc_publishes_through_every_node() {
    published_ports_through_every_node("dptc", 170, Datapath::Tc);
}

/// `--datapath xdp`: the same, with remote backends encapsulated and replies decapsulated in XDP.
#[test]
fn datapath_xdp_publishes_through_every_node() {
    published_ports_through_every_node("dpxdp", 171, Datapath::Xdp);
}
