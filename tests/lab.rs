//! The lab itself (issue 2): it builds, it is reachable, it leaves nothing behind, and the kernel
//! half of meshd loads into it.

use std::process::Command;
use std::time::Duration;

use crate::support::{Lab, MESHCTL, host, stderr, stdout};
use mesh_dataplane::probe::PacketProbe;
use mesh_overlay::netns::NetNs;

fn namespaces_of(prefix: &str) -> Vec<String> {
    host("ip", &["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(str::to_owned)
        .collect()
}

fn processes_of(prefix: &str) -> Vec<String> {
    host("ps", &["-eo", "pid,stat,args"])
        .lines()
        .filter(|l| {
            l.contains(&format!("/{prefix}/"))
                && !l.split_whitespace().nth(1).unwrap_or("").starts_with('Z')
        })
        .map(str::to_owned)
        .collect()
}

fn host_links() -> Vec<String> {
    host("ip", &["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_owned()))
        .collect()
}

/// `lab up --nodes 3`: the client reaches every node's underlay address, and nothing outside.
#[test]
fn lab_up_reaches_every_node_and_down_leaves_nothing() {
    let links_before = host_links();
    let lab = Lab::up("lab", 101, 3, 1);
    for i in 1..=3 {
        let out = lab.exec("client", &["ping", "-c", "1", "-W", "2", &lab.node_addr(i)]);
        assert!(
            out.status.success(),
            "client cannot reach n{i}: {}",
            stdout(&out)
        );
    }
    // No route out of the lab.
    let out = lab.exec("n1", &["ip", "route", "get", "192.0.2.1"]);
    assert!(
        !out.status.success(),
        "a lab node has a route out: {}",
        stdout(&out)
    );

    // The switch is a plain L2 switch: no netfilter on its bridge.
    let sw = format!("{}-sw", lab.prefix);
    let nf = host(
        "ip",
        &[
            "netns",
            "exec",
            &sw,
            "sh",
            "-c",
            "cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || echo 0",
        ],
    );
    assert_eq!(nf.trim(), "0", "br_netfilter is on in {sw}");

    let ls = stdout(&lab.meshctl_lab(&["ls"]));
    for i in 1..=3 {
        assert!(
            ls.contains(&format!("{}-n{i}", lab.prefix)),
            "lab ls lacks n{i}:\n{ls}"
        );
    }
    assert!(ls.contains("meshd.log"), "lab ls shows no log path:\n{ls}");

    // A second `up` on a running lab says so and changes nothing.
    let again = lab.meshctl_lab(&["up", "--nodes", "3"]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already up"), "{}", stderr(&again));
    // The switch, the client, the registry and three nodes.
    assert_eq!(namespaces_of(&lab.prefix).len(), 6);

    let prefix = lab.prefix.clone();
    drop(lab);
    assert!(
        namespaces_of(&prefix).is_empty(),
        "namespaces left: {:?}",
        namespaces_of(&prefix)
    );
    assert!(
        processes_of(&prefix).is_empty(),
        "processes left: {:?}",
        processes_of(&prefix)
    );
    assert_eq!(host_links(), links_before, "host links changed");
    let containers = host(
        "docker",
        &[
            "ps",
            "-aq",
            "--filter",
            "label=meshd.task",
            "--filter",
            &format!("label=meshd.hostname={prefix}-n1"),
        ],
    );
    assert!(
        containers.trim().is_empty(),
        "containers left: {containers}"
    );
}

/// `lab up` killed half-way leaves remains; the next `lab up` removes them and succeeds.
#[test]
fn lab_up_recovers_after_a_killed_up() {
    let prefix = Lab::prefix_for("kill");
    let subnet = "198.18.102.0/24";
    let mut child = Command::new(MESHCTL)
        .args([
            "lab", "up", "--nodes", "3", "--prefix", &prefix, "--subnet", subnet,
        ])
        .spawn()
        .expect("spawn lab up");
    // Kill it as soon as its first namespace exists: the lab is then half-built.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while namespaces_of(&prefix).len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().ok();
    child.wait().ok();
    let lab = Lab::up("kill", 102, 3, 1);
    assert_eq!(namespaces_of(&lab.prefix).len(), 6);
    let out = lab.exec("client", &["ping", "-c", "1", "-W", "2", &lab.node_addr(3)]);
    assert!(
        out.status.success(),
        "client cannot reach n3 after recovery"
    );
}

/// A trivial program from ebpf/ loads through aya onto a lab interface in native mode, and its
/// counter map, read from Rust through the ABI mirror, counts the packets sent to it.
#[test]
fn probe_program_counts_packets_on_a_lab_interface() {
    let lab = Lab::up("probe", 103, 1, 1);
    let ns = NetNs::open(&lab.ns("n1")).expect("open n1");
    let probe = ns
        .run(|| PacketProbe::attach("eth0"))
        .expect("enter n1")
        .expect("attach xdp_probe to n1's eth0");
    let out = lab.exec(
        "client",
        &[
            "ping",
            "-c",
            "5",
            "-i",
            "0.05",
            "-W",
            "2",
            &lab.node_addr(1),
        ],
    );
    assert!(
        out.status.success(),
        "ping through the probe failed: {}",
        stdout(&out)
    );
    let icmp = probe.count(1).expect("read probe_counters");
    assert!(
        icmp.packets >= 5,
        "xdp_probe counted {} ICMP packets, expected at least 5",
        icmp.packets
    );
    assert!(
        icmp.bytes >= 5 * 98,
        "xdp_probe counted {} bytes",
        icmp.bytes
    );
}
