//! A spoofed-SYN flood to a published port, as issue 16 asks: `mesh-client` sends 100k TCP SYNs
//! to n1:8080 from random addresses of the lab's underlay range (198.19.0.0/16, never answered:
//! the backend's SYN-ACKs come back to the client's MAC for addresses it does not have). Each
//! takes a conntrack entry pair (the client's address is kept: no SNAT port is used up);
//! SYN-only entries expire after 5 s idle, so the table empties soon after. The
//! flood and the wait are bounded in time; their numbers are printed, not asserted.

use std::time::{Duration, Instant};

use crate::support::routing::Routing;
use crate::support::{Lab, client_get, client_python, eventually, ok, words};

const HTTPD: &str =
    "mkdir -p /www && hostname | tr -d '\\n' > /www/index.html && exec httpd -f -p 80 -h /www";

/// Sends COUNT SYNs to NODE:PORT from random 198.19.x.y:port sources (checksums right, so the
/// backend's kernel takes them); prints how many were sent.
const FLOOD: &str = r#"
import random, socket, struct, sys
node, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
dst = socket.inet_aton(node)
def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
rnd = random.Random(16)
sent = 0
for i in range(count):
    src = bytes([198, 19, rnd.randrange(256), rnd.randrange(1, 255)])
    sport = rnd.randrange(1024, 65536)
    tcp = struct.pack("!HHIIBBHHH", sport, port, rnd.getrandbits(32), 0, 0x50, 0x02, 64240, 0, 0)
    c = csum(src + dst + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, src, dst)
    try:
        s.sendto(ip + tcp, (node, 0))
        sent += 1
    except OSError:
        pass
print(sent)
"#;

fn get(lab: &Lab, node: &str) -> String {
    client_get(lab, node, 8080)
}

/// n1's `status` mesh section: conntrack fill and drops, for the log.
fn mesh_status(lab: &Lab) -> String {
    let status: serde_json::Value =
        serde_json::from_str(&ok(lab, "n1", &["status", "--format", "json"])).expect("status JSON");
    format!(
        "maps {} drops {}",
        status["mesh"]["maps"], status["mesh"]["drops"]
    )
}

fn leaves_the_service_answering(routing: Routing, name: &str, octet: u8) {
    let lab = Lab::up_with(name, octet, 2, 1, routing.lab_args());
    let image = lab.image();
    let args = [
        &words("service create -d --name web -p 8080:80")[..],
        &[image.as_str(), "sh", "-c", HTTPD],
    ]
    .concat();
    ok(&lab, "n1", &args);
    let n1 = lab.node_addr(1);
    let answers = |body: String| {
        if body.is_empty() || body.starts_with("ERR") {
            Err(body)
        } else {
            Ok(body)
        }
    };
    let task = eventually(Duration::from_mins(1), "web answers through n1", || {
        answers(get(&lab, &n1))
    });

    let started = Instant::now();
    let sent = client_python(&lab, FLOOD, &[&n1, "8080", "100000"]);
    let flood_took = started.elapsed();
    let during = get(&lab, &n1);
    println!(
        "syn_flood: {sent} SYNs sent in {flood_took:?}; right after: {during}; {}",
        mesh_status(&lab)
    );
    assert_eq!(sent, "100000", "every SYN sent");

    let started = Instant::now();
    let after = eventually(
        Duration::from_mins(1),
        "web answers through n1 after the flood",
        || answers(get(&lab, &n1)),
    );
    println!(
        "syn_flood: answered again after {:?}; {}",
        started.elapsed(),
        mesh_status(&lab)
    );
    assert_eq!(after, task, "the one task answers");
    // And through the other node.
    eventually(Duration::from_secs(30), "web answers through n2", || {
        answers(get(&lab, &lab.node_addr(2)))
    });
}

#[test]
fn a_spoofed_syn_flood_leaves_the_service_answering() {
    leaves_the_service_answering(Routing::Vxlan, "synflood", 246);
}

/// The same on a natively routed lab (issue 19).
#[test]
fn a_spoofed_syn_flood_leaves_the_service_answering_natively() {
    leaves_the_service_answering(Routing::Native, "synfln", 197);
}
