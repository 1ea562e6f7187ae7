//! The data path's hard cases (issue 18) on a lab driven as `tests/datapath.rs` drives it (the
//! kernel half, tasks in namespaces behind VXLAN, MTU 1450 inside, 1500 on the underlay and
//! the client): a 50 MB HTTP download and a 20 MB upload through a node without the task; a
//! 4,000-byte UDP answer (three fragments) back through the mesh; a closed UDP port reported
//! to the client by ICMP through the translation; a client's datagram too big for the tunnel
//! answered with "fragmentation needed" through the translation (path-MTU discovery); a task
//! calling its own service (VIP and published port) and balanced to itself. As the agent does,
//! remote flows go straight to the ingress VXLAN device.

use std::process::{Command, Stdio};

use crate::datapath::{
    NET, TASKS, accept_xdp_tx, build_overlay, client, in_ns, load_mesh, node_net, run,
    wait_for_servers,
};
use crate::support::{Lab, stderr, stdout};
use mesh_dataplane::Mesh;
use mesh_dataplane::{
    Datapath, DesiredMesh, Protocol, PublishMode, PublishedPort, Service, Task, Vip,
};
use mesh_overlay::netns::NetNs;

const NODES: usize = 3;
const SELF_VIP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 0, 1, 101);
/// The bytes of the download.
const DOWNLOAD: u64 = 50 * 1024 * 1024;
/// The bytes of the upload.
const UPLOAD: u64 = 20 * 1024 * 1024;

/// More servers in each serving task: HTTP on 8000 (`GET /big`: `DOWNLOAD` bytes), a TCP sink on
/// 9100 (answers how many bytes it read), UDP on 81 answering 4,000 bytes. Nothing on 82.
const SERVERS: &str = r#"
import http.server, socket, sys, threading
size = int(sys.argv[1])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", str(size)); self.end_headers()
        chunk = b"x" * 65536; left = size
        while left > 0:
            n = min(left, len(chunk)); self.wfile.write(chunk[:n]); left -= n
    def log_message(self, *a): pass
def sink():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 9100)); s.listen(16)
    while True:
        c, _ = s.accept(); n = 0
        while True:
            d = c.recv(65536)
            if not d: break
            n += len(d)
        c.sendall(str(n).encode()); c.close()
def big_udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 81))
    while True:
        d, a = u.recvfrom(2048); u.sendto(b"u" * 4000, a)
threading.Thread(target=sink, daemon=True).start()
threading.Thread(target=big_udp, daemon=True).start()
http.server.ThreadingHTTPServer(("0.0.0.0", 8000), H).serve_forever()
"#;

/// Sends `UPLOAD` bytes to host:port and prints what the sink answers.
const UPLOADER: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
block = b"y" * 65536; left = int(sys.argv[3])
while left > 0:
    n = min(left, len(block)); s.sendall(block[:n]); left -= n
s.shutdown(socket.SHUT_WR); print(s.recv(100).decode())
"#;

/// One UDP datagram to host:port from a connected socket: the answer's length, or the error
/// (an ICMP port unreachable reads as `ConnectionRefusedError`).
const UDP_PROBE: &str = r#"
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
u.connect((sys.argv[1], int(sys.argv[2])))
try:
    u.send(b"hi"); print(len(u.recv(65536)))
except Exception as e:
    print("ERR", type(e).__name__)
"#;

fn desired(lab: &Lab, node: usize) -> DesiredMesh {
    let task = |t: &crate::datapath::TestTask| Task {
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
    // t1 (on n2) and t2 (on n3) serve; t3 (on n1) serves nothing.
    let serving = || TASKS.iter().filter(|t| t.name != "t3").map(task).collect();
    DesiredMesh {
        services: vec![
            Service {
                id: "big".into(),
                ports: vec![
                    port(Protocol::Tcp, 8088, 8000),
                    port(Protocol::Tcp, 9100, 9100),
                    port(Protocol::Udp, 8054, 81),
                    port(Protocol::Udp, 8055, 82),
                ],
                vips: vec![],
                tasks: serving(),
            },
            // t1 alone: whoever calls it from t1 is balanced to t1 itself.
            Service {
                id: "self".into(),
                ports: vec![port(Protocol::Tcp, 8089, 80)],
                vips: vec![Vip {
                    vni: NET,
                    addr: SELF_VIP,
                }],
                tasks: TASKS.iter().filter(|t| t.name == "t1").map(task).collect(),
            },
        ],
    }
}

/// A client's datagram of `sys.argv[3]` bytes with DF set to host:port, sent until the path MTU
/// the kernel learnt for host changes (or 3 s): that MTU, or the error.
const DF_PROBE: &str = r#"
import socket, sys, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO
u.connect((sys.argv[1], int(sys.argv[2])))
mtu = u.getsockopt(socket.IPPROTO_IP, 14)  # IP_MTU
deadline = time.time() + 3
while time.time() < deadline:
    try:
        u.send(b"d" * int(sys.argv[3]))
    except OSError as e:
        if e.errno != 90: print("ERR", e); sys.exit()
    time.sleep(0.2)
    mtu = u.getsockopt(socket.IPPROTO_IP, 14)
    if mtu != 1500: break
print(mtu)
"#;

/// Has node i's mesh take remote flows straight to the ingress VXLAN device, as the agent does.
fn attach_ingress_vxlan(lab: &Lab, i: usize, mesh: Mesh) -> Mesh {
    let ns = NetNs::open(&lab.ns(&format!("n{i}"))).expect("open node namespace");
    ns.run(move || -> anyhow::Result<Mesh> {
        let mut mesh = mesh;
        mesh.attach_ingress_vxlan("mvx4096")?;
        Ok(mesh)
    })
    .expect("enter node namespace")
    .unwrap_or_else(|e| panic!("n{i}: attach the ingress VXLAN device: {e:#}"))
}

fn in_netns(ns: &str, args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{ns}: {args:?}: {e}"))
}

fn mtu_of(ns: &str, ifname: &str) -> String {
    let out = in_ns(ns, &["ip", "-o", "link", "show", ifname]);
    out.split_whitespace()
        .skip_while(|w| *w != "mtu")
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

fn hard_cases(name: &str, octet: u8, datapath: Datapath) {
    let lab = Lab::up_with(name, octet, NODES, 1, &["--no-swarm"]);
    let mut plumbing = build_overlay(&lab, NODES);
    if datapath == Datapath::Xdp {
        accept_xdp_tx(&lab, &mut plumbing, NODES);
    }
    for t in TASKS.iter().filter(|t| t.name != "t3") {
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.ns(t.name), "python3", "-c", SERVERS])
            .arg(DOWNLOAD.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the task's servers");
        plumbing.servers.push(child);
    }
    for i in 1..=NODES {
        let m = load_mesh(&lab, i, datapath, desired(&lab, i), true);
        plumbing.meshes.insert(i, attach_ingress_vxlan(&lab, i, m));
    }
    wait_for_servers(&lab);
    let client_ns = lab.ns("client");
    let client_if = in_ns(&client_ns, &["ip", "-o", "route", "get", &lab.node_addr(1)]);
    let client_if = client_if
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .expect("the client's route to n1")
        .to_owned();
    assert_eq!(mtu_of(&client_ns, &client_if), "1500", "the client's MTU");
    assert_eq!(mtu_of(&lab.ns("t1"), "eth0"), "1450", "a task's MTU");
    let n1 = lab.node_addr(1);

    // A 50 MB download and a 20 MB upload through n1 (no task) to a task behind VXLAN: the
    // task's 1450-byte MTU sets the MSS both ways; a stall of 10 s fails.
    let url = format!("http://{n1}:8088/big");
    let out = in_netns(
        &client_ns,
        &[
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "--max-time",
            "120",
            "--speed-time",
            "10",
            "--speed-limit",
            "1",
            "-w",
            "%{http_code} %{size_download}",
            &url,
        ],
    );
    assert_eq!(
        stdout(&out).trim(),
        format!("200 {DOWNLOAD}"),
        "{datapath:?}: download via n1: {}",
        stderr(&out)
    );
    let out = in_netns(
        &client_ns,
        &["python3", "-c", UPLOADER, &n1, "9100", &UPLOAD.to_string()],
    );
    assert_eq!(
        stdout(&out).trim(),
        UPLOAD.to_string(),
        "{datapath:?}: upload via n1: {}",
        stderr(&out)
    );

    // A 4,000-byte UDP answer (three fragments from the task) reaches the client, through the
    // node without a task and through the nodes with one (local and remote backends).
    for i in 1..=NODES {
        for _ in 0..4 {
            let out = in_netns(
                &client_ns,
                &["python3", "-c", UDP_PROBE, &lab.node_addr(i), "8054"],
            );
            assert_eq!(
                stdout(&out).trim(),
                "4000",
                "{datapath:?}: 4,000-byte UDP answer via n{i}: {}",
                stderr(&out)
            );
        }
    }

    // A published UDP port whose task does not listen: the task's port unreachable, translated
    // back, reaches the client's socket.
    for i in 1..=NODES {
        let out = in_netns(
            &client_ns,
            &["python3", "-c", UDP_PROBE, &lab.node_addr(i), "8055"],
        );
        assert_eq!(
            stdout(&out).trim(),
            "ERR ConnectionRefusedError",
            "{datapath:?}: closed UDP port via n{i}: {}",
            stderr(&out)
        );
        // The task's kernel limits its ICMP errors per destination (one a second).
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }

    // Hairpin: t1 calls its service's VIP and is balanced to itself.
    let answers = client(&lab, "t1", &SELF_VIP.to_string(), 80, 5, "tcp");
    assert!(
        answers.iter().all(|a| a == "t1"),
        "{datapath:?}: t1 calling its own VIP: {answers:?}"
    );
    // And its own node's published port (its route to the node's address goes through its
    // veth on NET, as a task's default route goes through its first network).
    let t1 = &TASKS[0];
    let node = lab.node_addr(t1.node);
    run(&[
        "ip",
        "netns",
        "exec",
        &lab.ns(t1.name),
        "ip",
        "route",
        "add",
        &format!("{node}/32"),
        "via",
        &node_net(t1.node).to_string(),
    ]);
    let answers = client(&lab, "t1", &node, 8089, 5, "tcp");
    assert!(
        answers.iter().all(|a| a == "t1"),
        "{datapath:?}: t1 calling its node's published port: {answers:?}"
    );

    // Path MTU: the client's 1500-byte datagram with DF cannot cross the tunnel; the VXLAN
    // device answers "fragmentation needed" (MTU 1450), which reaches the client translated
    // back (from n1, about what the client sent), and the client's kernel learns the MTU.
    let out = in_netns(
        &client_ns,
        &["python3", "-c", DF_PROBE, &n1, "8054", "1472"],
    );
    assert_eq!(
        stdout(&out).trim(),
        "1450",
        "{datapath:?}: the path MTU the client learnt for n1: {}",
        stderr(&out)
    );
    drop(plumbing);
}

/// `--datapath tc`: the hard cases.
#[test]
fn pathmtu_tc_fragments_icmp_and_hairpin() {
    hard_cases("pmtutc", 180, Datapath::Tc);
}

/// `--datapath xdp`: the same, with remote backends encapsulated and replies decapsulated in XDP.
#[test]
fn pathmtu_xdp_fragments_icmp_and_hairpin() {
    hard_cases("pmtuxdp", 181, Datapath::Xdp);
}
