//! East-west: a task of a second service on n1 talking to `web`'s task on n2 over an overlay
//! network (`bench-ew`), through each way there is: the task's own address (no balancer), the
//! VIP with meshd's socket-level balancing, the VIP with per-packet balancing (a lab whose
//! meshds run `--socket-lb=false`), and a cluster IP translated by kube-proxy's chains in n1.
//! The client tools run in the client task's network namespace (host binaries by `nsenter`),
//! the servers in `web`'s, as in the other scenarios.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result};

use super::measure::{iperf_run, repeated, shown, wrk_run};
use super::{Config, HTTP, IPERF, forwarding, log, start_servers};
use crate::config::{self, Forward};
use crate::lab::{Lab, Task};
use crate::report::{Datapath, EastWest, EastWestResult, Figure, Metric, Results};
use crate::sys::{self, TempDir, http_get, in_netns, retry};

/// The overlay network client and server share.
const EW_NET: &str = "bench-ew";
const EW_SUBNET: [u8; 3] = [10, 77, 0];
/// A cluster subnet with no task on it, whose address is the cluster IP: inside the cluster, so
/// the mesh's egress leaves the task's packets to the kernel (its default route: n1's bridge).
const CIP_NET: &str = "bench-cip";
const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 200);
/// The cluster IP's ports (kube-proxy's service ports), translated to the task's.
const CIP_HTTP: u16 = 80;
const CIP_IPERF: u16 = 5202;

/// The rows of one lab: the default meshd's, then `--socket-lb=false`'s.
const LABS: [(&[&str], &[EastWest]); 2] = [
    (
        &[],
        &[
            EastWest::EwDirect,
            EastWest::EwSocketLb,
            EastWest::EwIptables,
        ],
    ),
    (&["--socket-lb=false"], &[EastWest::EwPerPacket]),
];

/// Every east-west row, in two tc labs one after the other (same prefix). Errs only when
/// interrupted; a lab that fails leaves its rows failed with the reason.
pub(super) fn east_west(cfg: &Config, results: &mut Results) -> Result<()> {
    let labs = [Datapath::Tc, Datapath::TcNative]
        .into_iter()
        .filter(|dp| cfg.labs.contains(dp));
    for (dp, (meshd_args, rows)) in labs.flat_map(|dp| LABS.map(|l| (dp, l))) {
        let before = results.east_west.len();
        let outcome = ew_lab(cfg, dp, meshd_args, rows, results);
        sys::check_interrupt()?;
        if let Err(e) = outcome {
            let reason = format!(
                "the east-west {} lab ({}) failed: {e:#}",
                dp.name(),
                meshd_args.join(" ")
            );
            log(&reason);
            let done: Vec<EastWest> = results.east_west[before..]
                .iter()
                .map(|r| r.scenario)
                .collect();
            for &s in rows.iter().filter(|s| !done.contains(s)) {
                results
                    .east_west
                    .push(EastWestResult::failed(s, dp, &reason));
            }
            results.notes.push(reason);
        }
    }
    Ok(())
}

/// The client and server tasks, and the addresses the rows dial.
struct Pair {
    client: Task,
    server: Task,
    server_addr: Ipv4Addr,
    vip: Ipv4Addr,
}

fn ew_lab(
    cfg: &Config,
    dp: Datapath,
    meshd_args: &[&str],
    rows: &[EastWest],
    results: &mut Results,
) -> Result<()> {
    log(&format!(
        "east-west {} lab: meshctl lab up --prefix {} -- {}",
        dp.name(),
        cfg.prefix,
        meshd_args.join(" ")
    ));
    let lab = Lab::up_with(&cfg.meshctl, &cfg.prefix, cfg.net, dp, meshd_args)?;
    let tmp = TempDir::new("mesh-bench-ew")?;
    let pair = pair(&lab)?;
    log(&format!(
        "east-west: client task on n1, web's task on n2 at {} (VIP {})",
        pair.server_addr, pair.vip
    ));
    let _servers = start_servers(cfg, &pair.server, tmp.path())?;
    for &s in rows {
        sys::check_interrupt()?;
        log(&format!("{}: {}", s.name(), s.wiring()));
        let r = match setup(&lab, s, &pair) {
            Ok((host, http, iperf)) => measure(cfg, (s, dp), &pair.client, host, http, iperf)?,
            Err(e) => EastWestResult::failed(s, dp, &format!("{e:#}")),
        };
        results.east_west.push(r);
    }
    Ok(())
}

/// `bench-ew` and `bench-cip`, `web` (server, on n2) and `ew-client` (on n1) on `bench-ew`.
fn pair(lab: &Lab) -> Result<Pair> {
    let cip = CLUSTER_IP.octets();
    for ([a, b, c], name) in [(EW_SUBNET, EW_NET), ([cip[0], cip[1], cip[2]], CIP_NET)] {
        let subnet = format!("{a}.{b}.{c}.0/24");
        lab.meshctl(&[
            "network", "create", "--driver", "overlay", "--subnet", &subnet, name,
        ])?;
    }
    let image = lab.image();
    for (name, node) in [("web", "n2"), ("ew-client", "n1")] {
        lab.meshctl(&[
            "service",
            "create",
            "-d",
            "--name",
            name,
            "--network",
            EW_NET,
            "--constraint",
            &format!("node.hostname=={}", lab.ns(node)),
            &image,
            "sleep",
            "1000000",
        ])?;
    }
    let task_on = |name: &str, node: usize| {
        retry(Duration::from_secs(90), || {
            lab.tasks(name)?
                .into_iter()
                .find(|t| t.node == node)
                .with_context(|| format!("no running task of {name} on n{node} yet"))
        })
    };
    let server = task_on("web", 2)?;
    let client = task_on("ew-client", 1)?;
    let addrs = sys::run(
        server.nsenter("ip").args(["-4", "-o", "addr", "show"]),
        Duration::from_secs(10),
    )?;
    let server_addr = addr_in(&addrs, EW_SUBNET)
        .with_context(|| format!("web's task has no address on {EW_NET}:\n{addrs}"))?;
    let vips = lab.meshctl(&[
        "service",
        "inspect",
        "--format",
        "{{json .Endpoint.VirtualIPs}}",
        "web",
    ])?;
    let vip =
        addr_in(&vips, EW_SUBNET).with_context(|| format!("web has no VIP on {EW_NET}: {vips}"))?;
    Ok(Pair {
        client,
        server,
        server_addr,
        vip,
    })
}

/// Wires a row's path; says where the client sends HTTP and iperf3.
fn setup(lab: &Lab, s: EastWest, p: &Pair) -> Result<(Ipv4Addr, u16, u16)> {
    match s {
        EastWest::EwDirect => Ok((p.server_addr, HTTP, IPERF)),
        EastWest::EwSocketLb | EastWest::EwPerPacket => Ok((p.vip, HTTP, IPERF)),
        EastWest::EwIptables => {
            // The task's default route is n1's bridge on bench-ew, whose forwarding meshd
            // leaves off (a task is never routed through its node): on for this row.
            let (bridge, n1_addr) = bridge_of(lab, "n1")?;
            forwarding(lab, "n1", &bridge)?;
            let forwards = [(CIP_HTTP, HTTP), (CIP_IPERF, IPERF)].map(|(cip, task)| Forward {
                proto: "tcp",
                node_port: cip,
                task_port: task,
            });
            for rule in config::cluster_ip_rules(CLUSTER_IP, p.server_addr, n1_addr, &forwards) {
                let mut args = vec!["iptables", "-w"];
                args.extend(rule.iter().map(String::as_str));
                lab.exec("n1", &args)?;
            }
            Ok((CLUSTER_IP, CIP_HTTP, CIP_IPERF))
        }
    }
}

/// The interface of `member` with an address on bench-ew (its bridge), and that address.
fn bridge_of(lab: &Lab, member: &str) -> Result<(String, Ipv4Addr)> {
    let text = lab.exec(member, &["ip", "-4", "-o", "addr", "show"])?;
    text.lines()
        .find_map(|l| {
            Some((
                l.split_whitespace().nth(1)?.to_owned(),
                addr_in(l, EW_SUBNET)?,
            ))
        })
        .with_context(|| format!("{} has no address on {EW_NET}:\n{text}", lab.ns(member)))
}

/// conn/s, then TCP with 1 and 4 streams (the median of `cfg.repeat` runs), from the client
/// task. Errs only when interrupted.
fn measure(
    cfg: &Config,
    (s, dp): (EastWest, Datapath),
    client: &Task,
    host: Ipv4Addr,
    http: u16,
    iperf: u16,
) -> Result<EastWestResult> {
    let name = s.name();
    let addr = SocketAddr::from((host, http));
    let ns = client.netns_file();
    let check = retry(Duration::from_secs(20), || {
        in_netns(&ns, || http_get(addr, Duration::from_secs(1)))?
    });
    sys::check_interrupt()?;
    if let Err(e) = check {
        log(&format!("{name}: no answer through {addr}: {e:#}"));
        return Ok(EastWestResult::failed(
            s,
            dp,
            &format!("no HTTP answer through {addr} within 20 s: {e:#}"),
        ));
    }
    let mut r = EastWestResult::new(s, dp);
    let conns = Figure::from(wrk(cfg, client, &format!("http://{addr}/")));
    sys::check_interrupt()?;
    put(&mut r, Metric::ConnPerSec, conns);
    for (m, extra) in [(Metric::Tcp1, &[][..]), (Metric::Tcp4, &["-P", "4"][..])] {
        let f = repeated(cfg, &mut r.samples, m, || {
            iperf3(cfg, client, host, iperf, extra)
        })?;
        put(&mut r, m, f);
    }
    Ok(r)
}

fn put(r: &mut EastWestResult, m: Metric, f: Figure) {
    log(&format!("{}: {} {}", r.label(), m.header(), shown(m, &f)));
    r.figures.insert(m, f);
}

/// `iperf3 -c` from the client task: Gbit/s.
fn iperf3(cfg: &Config, client: &Task, host: Ipv4Addr, port: u16, extra: &[&str]) -> Result<f64> {
    let host = host.to_string();
    Ok(iperf_run(cfg, || client.nsenter("iperf3"), &host, port, extra)?.bits_per_second / 1e9)
}

/// `wrk` from the client task, every request on a new connection: requests per second.
fn wrk(cfg: &Config, client: &Task, url: &str) -> Result<f64> {
    let (threads, connections) = (cfg.wrk_threads, cfg.wrk_connections);
    Ok(wrk_run(cfg, client.nsenter("wrk"), url, threads, connections, false)?.requests_per_sec)
}

/// The first address of `text` (`ip -o addr` lines, JSON) inside the /24 `net`, not its
/// network or broadcast address.
fn addr_in(text: &str, net: [u8; 3]) -> Option<Ipv4Addr> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|w| w.parse::<Ipv4Addr>().ok())
        .find(|a| {
            let [x, y, z, host] = a.octets();
            [x, y, z] == net && host != 0 && host != 255
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_on_the_network_is_found_in_ip_output_and_json() {
        let ip = "1: lo    inet 127.0.0.1/8 scope host lo\n\
                  12: eth0    inet 10.77.0.3/24 brd 10.77.0.255 scope global eth0\n";
        assert_eq!(addr_in(ip, EW_SUBNET), Some(Ipv4Addr::new(10, 77, 0, 3)));
        let json = r#"[{"NetworkID":"ab12","Addr":"10.255.0.4/16"},{"NetworkID":"cd34","Addr":"10.77.0.2/24"}]"#;
        assert_eq!(addr_in(json, EW_SUBNET), Some(Ipv4Addr::new(10, 77, 0, 2)));
        assert_eq!(addr_in("inet 10.77.0.255/24 10.77.1.4", EW_SUBNET), None);
    }
}
