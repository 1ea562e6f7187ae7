//! The baselines' configurations (pure): kube-proxy-style iptables rules, `HAProxy` in TCP mode
//! (as docker-proxy forwards), and unbound serving one name as local-data.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

/// A port the baseline forwards: protocol (`tcp`/`udp`), the port on the ingress node, the
/// port on the task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forward {
    pub proto: &'static str,
    pub node_port: u16,
    pub task_port: u16,
}

/// kube-proxy's `NodePort` chains (iptables mode) for a service with one endpoint: `iptables`
/// arguments, one rule per element, in order. Local destinations -> NODEPORTS -> EXT (mark for
/// masquerade) -> SVC -> SEP (DNAT); POSTROUTING masquerades marked packets (`--random-fully`,
/// as kube-proxy does); FORWARD accepts marked and established packets, drops invalid ones.
pub fn kube_proxy_rules(task: Ipv4Addr, forwards: &[Forward]) -> Vec<Vec<String>> {
    let mut rules: Vec<String> = vec![
        "-t nat -N BENCH-SERVICES".into(),
        "-t nat -N BENCH-NODEPORTS".into(),
        "-t nat -N BENCH-MARK-MASQ".into(),
        "-t nat -N BENCH-POSTROUTING".into(),
        "-t nat -A BENCH-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000".into(),
        "-t nat -A BENCH-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN".into(),
        "-t nat -A BENCH-POSTROUTING -j MARK --set-xmark 0x4000/0x0".into(),
        "-t nat -A BENCH-POSTROUTING -j MASQUERADE --random-fully".into(),
    ];
    for (i, f) in forwards.iter().enumerate() {
        let p = f.proto;
        rules.extend([
            format!("-t nat -N BENCH-EXT-{i}"),
            format!("-t nat -N BENCH-SVC-{i}"),
            format!("-t nat -N BENCH-SEP-{i}"),
            format!(
                "-t nat -A BENCH-NODEPORTS -p {p} -m {p} --dport {} -j BENCH-EXT-{i}",
                f.node_port
            ),
            format!("-t nat -A BENCH-EXT-{i} -j BENCH-MARK-MASQ"),
            format!("-t nat -A BENCH-EXT-{i} -j BENCH-SVC-{i}"),
            format!("-t nat -A BENCH-SVC-{i} -j BENCH-SEP-{i}"),
            format!(
                "-t nat -A BENCH-SEP-{i} -p {p} -m {p} -j DNAT --to-destination {task}:{}",
                f.task_port
            ),
        ]);
    }
    rules.extend([
        "-t nat -A BENCH-SERVICES -m addrtype --dst-type LOCAL -j BENCH-NODEPORTS".into(),
        "-t nat -A PREROUTING -j BENCH-SERVICES".into(),
        "-t nat -A POSTROUTING -j BENCH-POSTROUTING".into(),
        "-t filter -N BENCH-FORWARD".into(),
        "-t filter -A BENCH-FORWARD -m conntrack --ctstate INVALID -j DROP".into(),
        "-t filter -A BENCH-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT".into(),
        "-t filter -A BENCH-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT".into(),
        "-t filter -A FORWARD -j BENCH-FORWARD".into(),
    ]);
    rules
        .iter()
        .map(|r| r.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// kube-proxy's `ClusterIP` chains (iptables mode) for a service with one endpoint, in chains
/// of their own (`BENCH-EW-*`): SERVICES matches the cluster IP and port -> SVC marks for
/// masquerade and jumps to SEP (DNAT); POSTROUTING masquerades marked packets; FORWARD accepts
/// marked and established ones. Every connection is marked (kube-proxy's `--masquerade-all`):
/// client and server tasks share one bridged overlay subnet, so an unmasqueraded reply would
/// be bridged straight back to the client, past the conntrack entry that undoes the DNAT.
/// The masquerade is an SNAT to `source`, the node's own address on that subnet: what
/// MASQUERADE picks when the packet leaves by the bridge (VXLAN), and with native routing
/// (where it would leave by the underlay and take the node's underlay address) the same.
pub fn cluster_ip_rules(
    cluster_ip: Ipv4Addr,
    task: Ipv4Addr,
    source: Ipv4Addr,
    forwards: &[Forward],
) -> Vec<Vec<String>> {
    let mut rules: Vec<String> = vec![
        "-t nat -N BENCH-EW-SERVICES".into(),
        "-t nat -N BENCH-EW-MARK-MASQ".into(),
        "-t nat -N BENCH-EW-POSTROUTING".into(),
        "-t nat -A BENCH-EW-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000".into(),
        "-t nat -A BENCH-EW-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN".into(),
        "-t nat -A BENCH-EW-POSTROUTING -j MARK --set-xmark 0x4000/0x0".into(),
        format!("-t nat -A BENCH-EW-POSTROUTING -j SNAT --to-source {source} --random-fully"),
    ];
    for (i, f) in forwards.iter().enumerate() {
        let p = f.proto;
        rules.extend([
            format!("-t nat -N BENCH-EW-SVC-{i}"),
            format!("-t nat -N BENCH-EW-SEP-{i}"),
            format!(
                "-t nat -A BENCH-EW-SERVICES -d {cluster_ip}/32 -p {p} -m {p} --dport {} -j BENCH-EW-SVC-{i}",
                f.node_port
            ),
            format!("-t nat -A BENCH-EW-SVC-{i} -j BENCH-EW-MARK-MASQ"),
            format!("-t nat -A BENCH-EW-SVC-{i} -j BENCH-EW-SEP-{i}"),
            format!(
                "-t nat -A BENCH-EW-SEP-{i} -p {p} -m {p} -j DNAT --to-destination {task}:{}",
                f.task_port
            ),
        ]);
    }
    rules.extend([
        "-t nat -A PREROUTING -j BENCH-EW-SERVICES".into(),
        "-t nat -A POSTROUTING -j BENCH-EW-POSTROUTING".into(),
        "-t filter -N BENCH-EW-FORWARD".into(),
        "-t filter -A BENCH-EW-FORWARD -m conntrack --ctstate INVALID -j DROP".into(),
        "-t filter -A BENCH-EW-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT".into(),
        "-t filter -A BENCH-EW-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT".into(),
        "-t filter -A FORWARD -j BENCH-EW-FORWARD".into(),
    ]);
    rules
        .iter()
        .map(|r| r.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// `HAProxy` forwarding TCP ports of `node` to the task, one frontend and backend per port.
pub fn haproxy(node: Ipv4Addr, task: Ipv4Addr, forwards: &[Forward]) -> String {
    let mut s = "global\n    maxconn 4096\n\ndefaults\n    mode tcp\n    timeout connect 2s\n    \
                 timeout client 30s\n    timeout server 30s\n"
        .to_owned();
    for f in forwards {
        let _ = write!(
            s,
            "\nfrontend port{n}\n    bind {node}:{n}\n    default_backend task{n}\n\n\
             backend task{n}\n    server task {task}:{t}\n",
            n = f.node_port,
            t = f.task_port
        );
    }
    s
}

/// unbound answering `name` A `addr` from local-data, on `listen`:`port`, with its files in
/// `dir`, in the foreground.
pub fn unbound(
    dir: &Path,
    listen: Ipv4Addr,
    port: u16,
    threads: usize,
    name: &str,
    addr: Ipv4Addr,
) -> String {
    let d = dir.display();
    format!(
        "server:\n    interface: {listen}@{port}\n    port: {port}\n    do-daemonize: no\n    \
         chroot: \"\"\n    username: \"\"\n    directory: \"{d}\"\n    pidfile: \"{d}/unbound.pid\"\n    \
         use-syslog: no\n    logfile: \"\"\n    verbosity: 0\n    num-threads: {threads}\n    \
         do-ip6: no\n    access-control: 0.0.0.0/0 allow\n    module-config: \"iterator\"\n    \
         local-zone: \"{name}.\" static\n    local-data: \"{name}. 600 IN A {addr}\"\n\
         remote-control:\n    control-enable: no\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TASK: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 5);

    #[test]
    fn kube_proxy_chains_dnat_every_forward_and_masquerade() {
        let rules = kube_proxy_rules(
            TASK,
            &[
                Forward {
                    proto: "tcp",
                    node_port: 18080,
                    task_port: 18080,
                },
                Forward {
                    proto: "udp",
                    node_port: 15201,
                    task_port: 15201,
                },
            ],
        );
        let lines: Vec<String> = rules.iter().map(|r| r.join(" ")).collect();
        assert!(lines.contains(
            &"-t nat -A BENCH-NODEPORTS -p udp -m udp --dport 15201 -j BENCH-EXT-1".to_owned()
        ));
        assert!(
            lines.contains(
                &"-t nat -A BENCH-SEP-0 -p tcp -m tcp -j DNAT --to-destination 10.255.0.5:18080"
                    .to_owned()
            )
        );
        // Chains exist before a rule jumps to them, and the hooks come last.
        for (i, l) in lines.iter().enumerate() {
            if let Some(target) = l.split(" -j ").nth(1).and_then(|t| t.split(' ').next())
                && target.starts_with("BENCH-")
            {
                let created = lines
                    .iter()
                    .position(|x| x.ends_with(&format!("-N {target}")))
                    .unwrap();
                assert!(created < i, "{target} used before it is created");
            }
        }
        assert_eq!(
            lines.last().unwrap(),
            "-t filter -A FORWARD -j BENCH-FORWARD"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.ends_with("MASQUERADE --random-fully"))
        );
    }

    #[test]
    fn cluster_ip_rules_match_the_cluster_ip_and_dnat_to_the_task() {
        let cip = Ipv4Addr::new(10, 78, 0, 200);
        let rules = cluster_ip_rules(
            cip,
            TASK,
            Ipv4Addr::new(10, 78, 0, 2),
            &[Forward {
                proto: "tcp",
                node_port: 80,
                task_port: 8080,
            }],
        );
        let text: Vec<String> = rules.iter().map(|r| r.join(" ")).collect();
        assert!(text.contains(
            &"-t nat -A BENCH-EW-SERVICES -d 10.78.0.200/32 -p tcp -m tcp --dport 80 -j BENCH-EW-SVC-0"
                .to_owned()
        ));
        assert!(
            text.iter()
                .any(|r| r.ends_with(&format!("--to-destination {TASK}:8080")))
        );
        // Chains are created before anything jumps to them.
        let created = text
            .iter()
            .position(|r| r == "-t nat -N BENCH-EW-SVC-0")
            .unwrap();
        let jumped = text
            .iter()
            .position(|r| r.ends_with("-j BENCH-EW-SVC-0"))
            .unwrap();
        assert!(created < jumped);
        assert_eq!(
            text.last().unwrap(),
            "-t filter -A FORWARD -j BENCH-EW-FORWARD"
        );
    }

    #[test]
    fn haproxy_has_a_frontend_per_port() {
        let cfg = haproxy(
            Ipv4Addr::new(198, 18, 200, 11),
            TASK,
            &[
                Forward {
                    proto: "tcp",
                    node_port: 28080,
                    task_port: 28080,
                },
                Forward {
                    proto: "tcp",
                    node_port: 25201,
                    task_port: 25201,
                },
            ],
        );
        assert!(cfg.contains("mode tcp"));
        assert!(cfg.contains("bind 198.18.200.11:28080"));
        assert!(cfg.contains("server task 10.255.0.5:25201"));
    }

    #[test]
    fn unbound_serves_the_name_as_local_data() {
        let cfg = unbound(
            Path::new("/tmp/x"),
            Ipv4Addr::new(10, 255, 0, 2),
            5353,
            2,
            "web",
            Ipv4Addr::new(10, 255, 0, 4),
        );
        assert!(cfg.contains("interface: 10.255.0.2@5353"));
        assert!(cfg.contains("local-data: \"web. 600 IN A 10.255.0.4\""));
        assert!(cfg.contains("pidfile: \"/tmp/x/unbound.pid\""));
        assert!(cfg.contains("num-threads: 2"));
    }
}
