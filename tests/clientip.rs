//! Published ports keep the client's address (issue #15, Swarm's moby#25526): through every
//! node (one without a task too), with `--datapath tc` and `xdp`, a task's HTTP and UDP servers
//! see the lab client's own address and port, and their answers reach the client from the
//! published address, as do a closed UDP port's errors; host mode too; Debian's haproxy in the
//! client, health-checking every node's published port, sees every node up and its requests
//! answered.
//!
//! The tasks are on a network of their own first (`front`) and on `ingress` second, as Swarm
//! orders them: their default route is not on `ingress`, and the UDP server answers from an
//! unbound socket (so from its `front` address), the hard case of the way back.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::routing::Routing;
use crate::support::{Lab, eventually, ok, stdout, words};

/// The servers run in each task's network namespace (nsenter, a host python3): HTTP on 80 and
/// UDP on 9000 (bound to 0.0.0.0), each answering with the peer's "address port".
const SERVER: &str = r#"
import http.server, socket, socketserver, threading
class Peer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("%s %d" % self.client_address).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 9000))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(("%s %d" % peer).encode(), peer)
threading.Thread(target=udp, daemon=True).start()
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("0.0.0.0", 80), Peer).serve_forever()
"#;

/// `count` fresh HTTP connections (`http`) or datagrams from fresh sockets (`udp`) from the
/// client (its address argv[5]) to host:port: per line `OK`, or what differed (`ERR ...`,
/// `PEER <seen> <sent from>`, `FROM <answered from>`). `udp-closed`: a datagram to a port
/// nothing listens on in the task, `OK` when the task's port unreachable reaches the client.
const ASK: &str = r#"
import socket, sys
proto, host, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for i in range(count):
    try:
        if proto == "http":
            s = socket.create_connection((host, port), timeout=2)
            me = "%s %d" % s.getsockname()
            s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b""
            while True:
                b = s.recv(4096)
                if not b:
                    break
                data += b
            seen = data.split(b"\r\n\r\n", 1)[1].decode().strip() if b"\r\n\r\n" in data else ""
            print("OK" if seen == me else "PEER %r %r" % (seen, me))
        elif proto == "udp-closed":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(2)
            s.connect((host, port))
            s.send(b"hi")
            try:
                s.recv(2048)
                print("ANSWERED")
            except ConnectionRefusedError:
                print("OK")
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(2)
            s.bind(("0.0.0.0", 0))
            s.sendto(b"hi", (host, port))
            data, frm = s.recvfrom(2048)
            me = "%s %d" % (sys.argv[5], s.getsockname()[1])
            seen = data.decode()
            if frm != (host, port):
                print("FROM %r" % (frm,))
            else:
                print("OK" if seen == me else "PEER %r %r" % (seen, me))
        s.close()
    except Exception as e:
        print("ERR", type(e).__name__)
"#;

/// The lab client's address on the underlay (its only one).
fn client_addr(lab: &Lab) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("client"),
            "ip",
            "-4",
            "-o",
            "addr",
            "show",
            "scope",
            "global",
        ])
        .output()
        .expect("ip addr in the client");
    stdout(&out)
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .expect("the client's address")
        .to_owned()
}

/// `count` requests from the client to host:port: the tally of their outcomes.
fn ask(
    lab: &Lab,
    client: &str,
    proto: &str,
    host: &str,
    port: u16,
    count: usize,
) -> BTreeMap<String, usize> {
    let out = Command::new("timeout")
        .args([
            "60",
            "ip",
            "netns",
            "exec",
            &lab.ns("client"),
            "python3",
            "-c",
            ASK,
        ])
        .args([proto, host, &port.to_string(), &count.to_string(), client])
        .output()
        .expect("run the client");
    let mut tally = BTreeMap::new();
    for l in stdout(&out).lines() {
        *tally.entry(l.to_owned()).or_insert(0) += 1;
    }
    tally
}

/// The servers started in the tasks' namespaces; stopped on drop.
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits for `n` running containers of service `name` and starts the servers in each.
fn serve(lab: &Lab, name: &str, n: usize, servers: &mut Servers) -> Vec<String> {
    let pids: Vec<(String, String)> = eventually(
        Duration::from_mins(1),
        &format!("{n} running tasks of {name}"),
        || {
            let mut found = Vec::new();
            for i in 1..=lab.nodes {
                let ids = lab.docker_out(i, &["ps", "-q", "--filter", &format!("name=^{name}\\.")]);
                for id in ids.split_whitespace() {
                    let pid = lab.docker_out(i, &["inspect", "-f", "{{.State.Pid}}", id]);
                    found.push((format!("n{i}"), pid.trim().to_owned()));
                }
            }
            if found.len() == n && found.iter().all(|(_, p)| !p.is_empty() && p != "0") {
                Ok(found)
            } else {
                Err(format!("{found:?}"))
            }
        },
    );
    for (_, pid) in &pids {
        let child = Command::new("nsenter")
            .args(["-t", pid, "-n", "--", "python3", "-c", SERVER])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the servers in a task");
        servers.0.push(child);
    }
    pids.into_iter().map(|(node, _)| node).collect()
}

/// Every request through node `i`'s address to `port` sees the client's address and port (or,
/// `udp-closed`, is refused by the task's port unreachable: 2 at a time, as a task's kernel
/// sends a peer a burst of 6 errors, then one a second).
fn keeps_client_address(lab: &Lab, client: &str, i: usize, proto: &str, port: u16) {
    let node = lab.node_addr(i);
    let count = if proto == "udp-closed" { 2 } else { 16 };
    eventually(
        Duration::from_secs(30),
        &format!("{proto} :{port} through n{i} sees the client {client}"),
        || {
            let t = ask(lab, client, proto, &node, port, count);
            if t.get("OK") == Some(&count) {
                println!("clientip: {proto} :{port} via n{i}: {count} OK");
                Ok(())
            } else {
                Err(format!("{t:?}"))
            }
        },
    );
}

/// Debian's haproxy in the client, health-checking every node's port 8080; stopped on drop.
struct Haproxy {
    child: Child,
    config: std::path::PathBuf,
    stats: std::path::PathBuf,
}

impl Haproxy {
    fn start(lab: &Lab) -> Self {
        let config = std::env::temp_dir().join(format!("{}-haproxy.cfg", lab.prefix));
        let stats = std::env::temp_dir().join(format!("{}-haproxy.sock", lab.prefix));
        let mut cfg = format!(
            "global\n    maxconn 256\n    stats socket {}\n\
             defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    \
             timeout server 5s\n    retries 2\n    option redispatch\n\
             frontend mesh\n    bind 127.0.0.1:18080\n    default_backend nodes\n\
             backend nodes\n    balance roundrobin\n    option httpchk GET /\n",
            stats.display()
        );
        for i in 1..=lab.nodes {
            let _ = writeln!(
                cfg,
                "    server n{i} {}:8080 check inter 300 fall 2 rise 2",
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
        Self {
            child,
            config,
            stats,
        }
    }

    /// Each server's status in `show stat` (`n1 UP`).
    fn statuses(&self) -> String {
        let script = "import socket, sys\n\
                      s = socket.socket(socket.AF_UNIX)\n\
                      s.connect(sys.argv[1])\n\
                      s.sendall(b'show stat\\n')\n\
                      data = b''\n\
                      while True:\n    b = s.recv(65536)\n    if not b:\n        break\n    data += b\n\
                      for l in data.decode().splitlines():\n    f = l.split(',')\n    \
                      if len(f) > 17 and f[0] == 'nodes' and f[1].startswith('n'):\n        print(f[1], f[17])\n";
        let out = Command::new("python3")
            .args(["-c", script])
            .arg(&self.stats)
            .output()
            .expect("ask haproxy");
        stdout(&out)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
        let _ = std::fs::remove_file(&self.stats);
    }
}

/// The whole story on one lab (`extra`: more `lab up` arguments).
fn client_address_is_kept(name: &str, octet: u8, extra: &[&str]) {
    let lab = Lab::up_with(name, octet, 3, 1, extra);
    let client = client_addr(&lab);
    let image = lab.image();
    ok(&lab, "n1", &["network", "create", "-d", "overlay", "front"]);
    ok(
        &lab,
        "n1",
        &[
            &words("service create -d --name peer --network front -p 8080:80 -p 9000:9000/udp -p 9002:9002/udp --replicas 2")[..],
            &[image.as_str(), "sleep", "100000"],
        ]
        .concat(),
    );
    ok(
        &lab,
        "n1",
        &[
            &words(
                "service create -d --name hpeer --publish published=8081,target=80,mode=host \
                 --publish published=9001,target=9000,protocol=udp,mode=host",
            )[..],
            &[image.as_str(), "sleep", "100000"],
        ]
        .concat(),
    );
    let mut servers = Servers(Vec::new());
    let on = serve(&lab, "peer", 2, &mut servers);
    let host_on = serve(&lab, "hpeer", 1, &mut servers);
    println!("clientip: client {client}; peer tasks on {on:?}, hpeer on {host_on:?}");
    assert!(
        (1..=3).any(|i| !on.contains(&format!("n{i}"))),
        "a node without a task"
    );

    for i in 1..=3 {
        keeps_client_address(&lab, &client, i, "http", 8080);
        keeps_client_address(&lab, &client, i, "udp", 9000);
        // The task's ICMP error (from its first network's address) finds its way back too.
        keeps_client_address(&lab, &client, i, "udp-closed", 9002);
    }
    let h: usize = host_on[0][1..].parse().unwrap();
    keeps_client_address(&lab, &client, h, "http", 8081);
    keeps_client_address(&lab, &client, h, "udp", 9001);

    let haproxy = Haproxy::start(&lab);
    eventually(
        Duration::from_secs(30),
        "haproxy's health checks see every node up",
        || {
            let s = haproxy.statuses();
            if (1..=3).all(|i| s.contains(&format!("n{i} UP"))) {
                Ok(())
            } else {
                Err(s)
            }
        },
    );
    let answers = Command::new("ip")
        .args(["netns", "exec", &lab.ns("client"), "sh", "-c"])
        .arg("for i in 1 2 3 4 5 6 7 8 9; do curl -sf -m 2 http://127.0.0.1:18080/; echo; done")
        .output()
        .expect("curl through haproxy");
    let answers = stdout(&answers);
    let seen: Vec<&str> = answers.lines().collect();
    assert_eq!(seen.len(), 9, "{answers}");
    assert!(
        seen.iter().all(|a| a.starts_with(&format!("{client} "))),
        "through haproxy every request reaches a task from the client's address: {answers}"
    );
    assert!(
        (1..=3).all(|i| haproxy.statuses().contains(&format!("n{i} UP"))),
        "{}",
        haproxy.statuses()
    );
    drop(haproxy);
    drop(servers);
}

#[test]
fn published_ports_keep_the_client_address_with_tc() {
    client_address_is_kept("cliptc", 230, &[]);
}

#[test]
fn published_ports_keep_the_client_address_with_xdp() {
    client_address_is_kept("clipxdp", 231, &["--datapath", "xdp"]);
}

/// tc on a natively routed lab (issue 19): flows to remote backends cross the underlay as they
/// are, from the client's address.
#[test]
fn published_ports_keep_the_client_address_natively() {
    client_address_is_kept("clipn", 199, Routing::Native.lab_args());
}

/// xdp on a natively routed lab.
#[test]
fn published_ports_keep_the_client_address_natively_with_xdp() {
    let args = [&["--datapath", "xdp"], Routing::Native.lab_args()].concat();
    client_address_is_kept("clipxdpn", 201, &args);
}
