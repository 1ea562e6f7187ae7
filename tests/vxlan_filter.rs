//! VXLAN only from the cluster's nodes, as a host on the underlay meets it: `mesh-client` sends
//! VXLAN frames (the ingress network's VNI, an inner broadcast ARP) to a node's port 4789. From
//! its own address they are dropped by the node's underlay program: the node's `status` counts
//! every one (`vxlan_not_from_node`) and none reaches the ingress bridge. The same frames with
//! the source address of the other node (spoofed from the client) do reach the bridge, which
//! shows the capture would have seen the client's. Published ports keep answering the client.

use std::time::Duration;

use crate::support::capture::Tcpdump;
use crate::support::{Lab, client_get, client_python, eventually, ok, words};

/// The tasks' web server: answers `GET /` with the container's hostname.
const HTTPD: &str =
    "mkdir -p /www && hostname | tr -d '\\n' > /www/index.html && exec httpd -f -p 80 -h /www";

/// Sends `count` VXLAN datagrams (VNI 4096, the ingress network) to NODE:4789, each carrying a
/// broadcast ARP request from MAC. SRC `-`: from the client's own address (a UDP socket);
/// otherwise from SRC, written by hand on a raw socket.
const INJECT: &str = r#"
import socket, struct, sys
node, src, mac, count = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3].replace(":", "")), int(sys.argv[4])
arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + socket.inet_aton("10.255.254.254") \
    + b"\0" * 6 + socket.inet_aton("10.255.0.250")
inner = b"\xff" * 6 + mac + b"\x08\x06" + arp
vxlan = struct.pack("!II", 0x08000000, 4096 << 8) + inner
if src == "-":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(count):
        s.sendto(vxlan, (node, 4789))
else:
    udp = struct.pack("!HHHH", 40000, 4789, 8 + len(vxlan), 0) + vxlan
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(node))
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    for _ in range(count):
        s.sendto(ip + udp, (node, 0))
"#;

/// The inner source MAC of the client's own frames, and of those spoofed from a node.
const STRANGER_MAC: &str = "02:00:de:ad:00:01";
const SPOOFED_MAC: &str = "02:00:de:ad:00:02";

fn inject(lab: &Lab, node: &str, src: &str, mac: &str, count: usize) {
    client_python(lab, INJECT, &[node, src, mac, &count.to_string()]);
}

/// `vxlan_not_from_node` of a node's `status` (0 before the first drop is read).
fn dropped(lab: &Lab, member: &str) -> u64 {
    let status: serde_json::Value =
        serde_json::from_str(&ok(lab, member, &["status", "--format", "json"]))
            .expect("status JSON");
    status["mesh"]["drops"]["vxlan_not_from_node"]
        .as_u64()
        .unwrap_or(0)
}

fn web_answers(lab: &Lab, node: &str) -> String {
    eventually(
        Duration::from_mins(1),
        &format!("the published port answers through {node}"),
        || {
            let body = client_get(lab, node, 8080);
            if body.is_empty() || body.starts_with("ERR") {
                Err(body)
            } else {
                Ok(body)
            }
        },
    )
}

#[test]
fn vxlan_from_the_client_is_dropped_and_the_mesh_still_answers() {
    let lab = Lab::up("vxfilt", 146, 2, 1);
    let image = lab.image();
    let args = [
        &words("service create -d --name web -p 8080:80")[..],
        &[image.as_str(), "sh", "-c", HTTPD],
    ]
    .concat();
    ok(&lab, "n1", &args);
    let (n1, n2) = (lab.node_addr(1), lab.node_addr(2));
    web_answers(&lab, &n1);

    // The node list is written once the node's view settled: wait for a first counted drop.
    eventually(
        Duration::from_secs(30),
        "VXLAN from the client counted as dropped on n1",
        || {
            inject(&lab, &n1, "-", STRANGER_MAC, 1);
            let n = dropped(&lab, "n1");
            if n > 0 {
                Ok(n)
            } else {
                Err(format!("vxlan_not_from_node = {n}"))
            }
        },
    );
    // The counter is read once a second: let the last probe's drop show before counting.
    std::thread::sleep(Duration::from_secs(2));
    let before = dropped(&lab, "n1");

    let capture = Tcpdump::start(
        &lab,
        "n1",
        "mbr4096",
        &format!("ether src {STRANGER_MAC} or ether src {SPOOFED_MAC}"),
    );
    inject(&lab, &n1, "-", STRANGER_MAC, 50);
    inject(&lab, &n1, &n2, SPOOFED_MAC, 5);
    let after = eventually(Duration::from_secs(10), "the 50 datagrams counted", || {
        let n = dropped(&lab, "n1");
        if n >= before + 50 {
            Ok(n)
        } else {
            Err(format!("before {before}, now {n}"))
        }
    });
    let seen = capture.stop();
    println!(
        "vxlan_filter: dropped {} from the client; bridge saw:\n{seen}",
        after - before
    );
    assert_eq!(
        after - before,
        50,
        "exactly the client's datagrams are counted (the spoofed node's pass)"
    );
    assert!(
        !seen.contains(STRANGER_MAC),
        "a frame of the client's VXLAN reached the ingress bridge:\n{seen}"
    );
    assert!(
        seen.contains(SPOOFED_MAC),
        "VXLAN from a node's address should reach the bridge (the capture works):\n{seen}"
    );

    // The mesh still serves the client through both nodes.
    web_answers(&lab, &n1);
    web_answers(&lab, &n2);
}
