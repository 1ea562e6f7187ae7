//! The measurements: one lab per data path, the same backend task (on n2) reached by every
//! scenario from the same client namespace, then DNS, convergence and memory. Thin: the tools
//! measure, `parse` reads them, `report` judges.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bpfstats::{self, RunTimeStats};
use crate::config::{self, Forward};
use crate::lab::{Lab, Task, task_ingress};
use crate::parse;
use crate::report::{
    Convergence, Datapath, Dns, Figure, Metric, Results, Rss, Scenario, ScenarioResult, median,
    recovery,
};
use crate::sys::{self, Spawned, TempDir, http_get, in_netns, retry, sample_rss};

/// The backend's ports: the mesh and direct use the published ones; iptables and `HAProxy` go to
/// other ports of the same servers, so that their connections never share a tuple with a
/// mesh flow (the mesh keeps the client's port when translating, and so does MASQUERADE).
const HTTP: u16 = 8080;
const IPERF: u16 = 5201;
const IPTABLES_HTTP: u16 = 18080;
const IPTABLES_IPERF: u16 = 15201;
const HAPROXY_HTTP: u16 = 28080;
const HAPROXY_IPERF: u16 = 25201;
/// The convergence service's published port.
const CONVERGENCE_PORT: u16 = 9080;
/// unbound's port on n2's ingress address (meshd has 53).
const UNBOUND_PORT: u16 = 5353;
/// UDP datagram payload for the fixed-rate run: fits the overlay's MTU (1450) with headers.
const UDP_PAYLOAD: &str = "1380";
/// The name dnsperf asks for.
const DNS_NAME: &str = "web";

/// The convergence service's tasks: busybox httpd serving a file.
const HTTPD: &str = "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 80 -h /www";

/// What the command line chose.
#[derive(Clone, Debug)]
pub struct Config {
    pub meshctl: PathBuf,
    pub server: PathBuf,
    pub prefix: String,
    pub net: [u8; 3],
    pub labs: Vec<Datapath>,
    pub iperf_seconds: u64,
    pub wrk_seconds: u64,
    pub wrk_threads: u32,
    pub wrk_connections: u32,
    pub udp_rate: String,
    pub dns_seconds: u64,
    /// Runs of each TCP throughput figure; the median is reported.
    pub repeat: u32,
    /// Measure what the eBPF programs cost per run (kernel run-time statistics, on only then).
    pub profile: bool,
}

/// `[bench +12.3s] ...` on stderr.
pub fn log(msg: &str) {
    static START: OnceLock<Instant> = OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("[bench +{t:6.1}s] {msg}");
}

/// Where a scenario's client sends its traffic.
struct Endpoint {
    host: Ipv4Addr,
    http: u16,
    iperf: u16,
    /// Why UDP cannot go this way, if it cannot.
    no_udp: Option<&'static str>,
}

/// Runs every lab in `cfg.labs`, filling `results`. Errs only when interrupted; a lab that
/// fails leaves its scenarios failed with the reason.
pub fn run(cfg: &Config, results: &mut Results) -> Result<()> {
    let _stats = if cfg.profile {
        Some(RunTimeStats::enable()?)
    } else {
        None
    };
    for &dp in &cfg.labs {
        let started = Instant::now();
        let before = results.scenarios.len();
        let outcome = run_lab(cfg, dp, results);
        results.settings.insert(
            format!("{}_lab_seconds", dp.name()),
            format!("{:.0}", started.elapsed().as_secs_f64()),
        );
        sys::check_interrupt()?;
        if let Err(e) = outcome {
            let reason = format!("the {} lab failed: {e:#}", dp.name());
            log(&reason);
            let done: Vec<Scenario> = results.scenarios[before..]
                .iter()
                .map(|r| r.scenario)
                .collect();
            for s in Scenario::of_lab(dp).filter(|s| !done.contains(s)) {
                results.scenarios.push(ScenarioResult::failed(s, &reason));
            }
            results.notes.push(reason);
        }
    }
    Ok(())
}

fn run_lab(cfg: &Config, dp: Datapath, results: &mut Results) -> Result<()> {
    log(&format!(
        "{} lab: meshctl lab up --prefix {} --datapath {}",
        dp.name(),
        cfg.prefix,
        dp.name()
    ));
    // Dropped last (declared first): everything below lives in its namespaces or its tasks.
    let lab = Lab::up(&cfg.meshctl, &cfg.prefix, cfg.net, dp)?;
    let tmp = TempDir::new(&format!("mesh-bench-{}", dp.name()))?;
    let n2 = lab.ns("n2");
    lab.meshctl(&[
        "service",
        "create",
        "-d",
        "--name",
        "web",
        "-p",
        "5201:5201",
        "-p",
        "5201:5201/udp",
        "-p",
        "8080:8080",
        "--constraint",
        &format!("node.hostname=={n2}"),
        "meshd/busybox",
        "sleep",
        "1000000",
    ])?;
    let (task, task_addr) = retry(Duration::from_secs(90), || {
        let t = lab
            .tasks("web")?
            .into_iter()
            .find(|t| t.node == 2)
            .context("no running task of web on n2 yet")?;
        let a = task_ingress(&t)?;
        Ok((t, a))
    })
    .context("waiting for the backend task")?;
    log(&format!(
        "backend task {} on n2, ingress address {task_addr}",
        task.container
    ));
    let pids = lab.meshd_pids();
    sys::sleep(Duration::from_secs(1))?;
    let idle: BTreeMap<usize, u64> = pids
        .iter()
        .filter_map(|(n, p)| Some((*n, sys::rss_kib(*p)?)))
        .collect();
    let _servers = start_servers(cfg, &task, tmp.path())?;

    let mut load: BTreeMap<usize, u64> = BTreeMap::new();
    let mut haproxy: Option<Spawned> = None;
    for s in Scenario::of_lab(dp) {
        sys::check_interrupt()?;
        log(&format!("{}: {}", s.name(), s.wiring()));
        let ep = setup(&lab, s, task_addr, tmp.path(), &mut haproxy);
        sys::check_interrupt()?;
        let r = match ep {
            Ok(ep) => measure(cfg, &lab, s, &ep, &pids, &mut load, results)?,
            Err(e) => ScenarioResult::failed(s, &format!("{e:#}")),
        };
        results.scenarios.push(r);
    }
    drop(haproxy);

    if dp == Datapath::Tc {
        match dns(cfg, &lab, &task, tmp.path(), &pids, &mut load) {
            Ok(d) => results.dns = Some(d),
            Err(e) => {
                sys::check_interrupt()?;
                results.notes.push(format!("DNS not measured: {e:#}"));
            }
        }
        match convergence(&lab) {
            Ok(c) => results.convergence = Some(c),
            Err(e) => {
                sys::check_interrupt()?;
                results
                    .notes
                    .push(format!("convergence not measured: {e:#}"));
            }
        }
    }
    for i in 1..=3 {
        results.rss.push(Rss {
            lab: dp,
            node: lab.ns(&format!("n{i}")),
            idle_kib: idle.get(&i).copied(),
            load_max_kib: load.get(&i).copied(),
        });
    }
    Ok(())
}

/// mesh-bench-server and three iperf3 servers inside the task's network namespace, all
/// listening before this returns.
fn start_servers(cfg: &Config, task: &Task, tmp: &Path) -> Result<Vec<Spawned>> {
    let mut servers = Vec::new();
    let mut http = task.nsenter(&cfg.server);
    for p in [HTTP, IPTABLES_HTTP, HAPROXY_HTTP] {
        http.args(["--port", &p.to_string()]);
    }
    servers.push(Spawned::start(&mut http, &tmp.join("server.log"))?);
    for p in [IPERF, IPTABLES_IPERF, HAPROXY_IPERF] {
        servers.push(Spawned::start(
            task.nsenter("iperf3").args(["-s", "-p", &p.to_string()]),
            &tmp.join(format!("iperf3-{p}.log")),
        )?);
    }
    let ns = task.netns_file();
    retry(Duration::from_secs(10), || {
        for s in &mut servers {
            s.check_running()?;
        }
        in_netns(&ns, || {
            for p in [
                HTTP,
                IPTABLES_HTTP,
                HAPROXY_HTTP,
                IPERF,
                IPTABLES_IPERF,
                HAPROXY_IPERF,
            ] {
                let a = SocketAddr::from((Ipv4Addr::LOCALHOST, p));
                std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1))
                    .with_context(|| format!("nothing listens on port {p} in the task yet"))?;
            }
            anyhow::Ok(())
        })?
    })
    .context("starting the servers in the task")?;
    Ok(servers)
}

/// Wires a scenario's path (routes, sysctls, rules, `HAProxy`) and says where to send traffic.
fn setup(
    lab: &Lab,
    s: Scenario,
    task: Ipv4Addr,
    tmp: &Path,
    haproxy: &mut Option<Spawned>,
) -> Result<Endpoint> {
    let n1 = lab.node_addr(1);
    let mesh = |host| Endpoint {
        host,
        http: HTTP,
        iperf: IPERF,
        no_udp: None,
    };
    match s {
        Scenario::Direct | Scenario::DirectXdp => {
            // The client routes the task's address via n2, which forwards into its ingress
            // bridge (meshd leaves forwarding off on the bridge: turned on here).
            let (dev, _) = lab.node_ingress("n2")?;
            forwarding(lab, "n2", &dev)?;
            let via = lab.node_addr(2).to_string();
            lab.exec(
                "client",
                &["ip", "route", "replace", &format!("{task}/32"), "via", &via],
            )?;
            Ok(mesh(task))
        }
        Scenario::MeshTc | Scenario::MeshXdp => Ok(mesh(n1)),
        Scenario::MeshLocal => Ok(mesh(lab.node_addr(2))),
        Scenario::Userspace | Scenario::UserspaceXdp => {
            let cfg_path = tmp.join("haproxy.cfg");
            let forwards = [HAPROXY_HTTP, HAPROXY_IPERF].map(|p| Forward {
                proto: "tcp",
                node_port: p,
                task_port: p,
            });
            std::fs::write(&cfg_path, config::haproxy(n1, task, &forwards))?;
            let mut h = Spawned::start(
                lab.command("n1", "haproxy")
                    .arg("-db")
                    .arg("-f")
                    .arg(&cfg_path),
                &tmp.join("haproxy.log"),
            )?;
            sys::sleep(Duration::from_millis(300))?;
            h.check_running()?;
            *haproxy = Some(h);
            Ok(Endpoint {
                host: n1,
                http: HAPROXY_HTTP,
                iperf: HAPROXY_IPERF,
                no_udp: Some(
                    "HAProxy in TCP mode proxies TCP only (docker-proxy relays UDP with a \
                     per-flow user-space loop; it is not measured here)",
                ),
            })
        }
        Scenario::Iptables | Scenario::IptablesXdp => {
            let (dev, _) = lab.node_ingress("n1")?;
            forwarding(lab, "n1", &dev)?;
            let forwards = [
                Forward {
                    proto: "tcp",
                    node_port: IPTABLES_HTTP,
                    task_port: IPTABLES_HTTP,
                },
                Forward {
                    proto: "tcp",
                    node_port: IPTABLES_IPERF,
                    task_port: IPTABLES_IPERF,
                },
                Forward {
                    proto: "udp",
                    node_port: IPTABLES_IPERF,
                    task_port: IPTABLES_IPERF,
                },
            ];
            for rule in config::kube_proxy_rules(task, &forwards) {
                let mut args = vec!["iptables", "-w"];
                args.extend(rule.iter().map(String::as_str));
                lab.exec("n1", &args)?;
            }
            Ok(Endpoint {
                host: n1,
                http: IPTABLES_HTTP,
                iperf: IPTABLES_IPERF,
                no_udp: None,
            })
        }
    }
}

/// IPv4 forwarding on, and on the node's ingress bridge too.
fn forwarding(lab: &Lab, member: &str, dev: &str) -> Result<()> {
    lab.exec(
        member,
        &[
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
            &format!("net.ipv4.conf.{dev}.forwarding=1"),
        ],
    )?;
    Ok(())
}

/// Every figure of one scenario. Errs only when interrupted.
fn measure(
    cfg: &Config,
    lab: &Lab,
    s: Scenario,
    ep: &Endpoint,
    pids: &BTreeMap<usize, i32>,
    load: &mut BTreeMap<usize, u64>,
    results: &mut Results,
) -> Result<ScenarioResult> {
    let name = s.name();
    let addr = SocketAddr::from((ep.host, ep.http));
    let client = lab.ns_file("client");
    let check = retry(Duration::from_secs(20), || {
        in_netns(&client, || http_get(addr, Duration::from_secs(1)))?
    });
    sys::check_interrupt()?;
    if let Err(e) = check {
        log(&format!("{name}: no answer through {addr}: {e:#}"));
        return Ok(ScenarioResult::failed(
            s,
            &format!("no HTTP answer through {addr} within 20 s: {e:#}"),
        ));
    }
    let mut r = ScenarioResult::new(s);
    let host = ep.host.to_string();
    let put = |r: &mut ScenarioResult, m: Metric, f: Figure| {
        let shown = match &f {
            Figure::Value(v) => m.format(*v),
            Figure::NotApplicable(_) => "N/A".to_owned(),
            Figure::Failed(e) => format!("failed: {e}"),
        };
        log(&format!("{name}: {} {shown}", m.header()));
        r.figures.insert(m, f);
    };

    for (m, extra) in [(Metric::Tcp1, &[][..]), (Metric::Tcp4, &["-P", "4"][..])] {
        let f = profiled(cfg, s, &mut r, m, |r| {
            repeated(cfg, r, m, || {
                iperf(cfg, lab, &host, ep.iperf, extra).map(|i| i.bits_per_second / 1e9)
            })
        })?;
        put(&mut r, m, f);
    }
    if let Some(why) = ep.no_udp {
        for m in [Metric::UdpRate, Metric::UdpLoss, Metric::Pps64] {
            put(&mut r, m, Figure::NotApplicable(why.to_owned()));
        }
    } else {
        let udp = iperf(
            cfg,
            lab,
            &host,
            ep.iperf,
            &["-u", "-b", &cfg.udp_rate, "-l", UDP_PAYLOAD],
        );
        sys::check_interrupt()?;
        match udp {
            Ok(u) => {
                put(
                    &mut r,
                    Metric::UdpRate,
                    Figure::Value(u.bits_per_second / 1e6),
                );
                put(
                    &mut r,
                    Metric::UdpLoss,
                    u.lost_percent.map_or_else(
                        || Figure::Failed("no loss figure".to_owned()),
                        Figure::Value,
                    ),
                );
            }
            Err(e) => {
                put(&mut r, Metric::UdpRate, Figure::Failed(format!("{e:#}")));
                put(&mut r, Metric::UdpLoss, Figure::Failed(format!("{e:#}")));
            }
        }
        let small = iperf(cfg, lab, &host, ep.iperf, &["-u", "-b", "0", "-l", "64"]);
        sys::check_interrupt()?;
        put(
            &mut r,
            Metric::Pps64,
            small
                .and_then(|u| u.received_pps.context("no packet count"))
                .map(|p| p / 1e3)
                .into(),
        );
    }

    let url = format!("http://{addr}/");
    // One run only: back-to-back runs of new connections exhaust n1's source ports for
    // HAProxy and iptables (TIME_WAIT, MASQUERADE), which would measure that instead.
    let conns = profiled(cfg, s, &mut r, Metric::ConnPerSec, |_| {
        let (conns, peak) = sample_rss(pids, || {
            wrk(cfg, lab, &url, cfg.wrk_threads, cfg.wrk_connections, false)
        });
        sys::check_interrupt()?;
        for (n, k) in peak {
            let e = load.entry(n).or_default();
            *e = (*e).max(k);
        }
        if let Ok(w) = &conns
            && (w.socket_errors > 0 || w.non_2xx > 0)
        {
            results.notes.push(format!(
                "{name}: the conn/s run saw {} socket errors and {} non-2xx answers in {} requests",
                w.socket_errors, w.non_2xx, w.requests
            ));
        }
        Ok(Figure::from(conns.map(|w| w.requests_per_sec)))
    })?;
    put(&mut r, Metric::ConnPerSec, conns);
    let lat = wrk(cfg, lab, &url, 1, 1, true);
    sys::check_interrupt()?;
    match lat {
        Ok(w) => {
            let f = |v: Option<f64>| {
                v.map_or_else(
                    || Figure::Failed("no latency distribution".to_owned()),
                    Figure::Value,
                )
            };
            put(&mut r, Metric::LatP50, f(w.p50_us));
            put(&mut r, Metric::LatP99, f(w.p99_us));
        }
        Err(e) => {
            put(&mut r, Metric::LatP50, Figure::Failed(format!("{e:#}")));
            put(&mut r, Metric::LatP99, Figure::Failed(format!("{e:#}")));
        }
    }
    Ok(r)
}

/// `figure(r)`, and with `--profile` on a mesh scenario the eBPF programs' cost during it (in
/// `r.bpf`; a failed snapshot is a note there, never a failed figure).
fn profiled(
    cfg: &Config,
    s: Scenario,
    r: &mut ScenarioResult,
    m: Metric,
    figure: impl FnOnce(&mut ScenarioResult) -> Result<Figure>,
) -> Result<Figure> {
    let on = cfg.profile
        && matches!(
            s,
            Scenario::MeshTc | Scenario::MeshLocal | Scenario::MeshXdp
        );
    let before = if on { bpfstats::snapshot().ok() } else { None };
    let f = figure(r)?;
    if let Some(before) = before
        && let Ok(after) = bpfstats::snapshot()
    {
        r.bpf.insert(m, bpfstats::cost(&before, &after));
    }
    Ok(f)
}

/// `one` run `cfg.repeat` times: the median of the runs that gave a number (every run kept in
/// `r.samples`), or the first failure when none did. Errs only when interrupted.
fn repeated(
    cfg: &Config,
    r: &mut ScenarioResult,
    m: Metric,
    mut one: impl FnMut() -> Result<f64>,
) -> Result<Figure> {
    let mut runs = Vec::new();
    let mut failure = None;
    for _ in 0..cfg.repeat.max(1) {
        let f = Figure::from(one());
        sys::check_interrupt()?;
        match f {
            Figure::Value(v) => runs.push(v),
            other => {
                failure.get_or_insert(other);
            }
        }
    }
    let figure = median(&runs).map_or_else(
        || failure.unwrap_or_else(|| Figure::Failed("no run".to_owned())),
        Figure::Value,
    );
    r.samples.insert(m, runs);
    Ok(figure)
}

/// `iperf3 -c HOST -p PORT -t N -O 1 --json EXTRA` from the client; a busy server is asked
/// again.
fn iperf(cfg: &Config, lab: &Lab, host: &str, port: u16, extra: &[&str]) -> Result<parse::Iperf> {
    let secs = cfg.iperf_seconds.to_string();
    let mut last = None;
    for _ in 0..3 {
        let o = sys::output(
            lab.command("client", "iperf3")
                .args(["-c", host, "-p", &port.to_string(), "-t", &secs])
                .args(["-O", "1", "--json", "--connect-timeout", "3000"])
                .args(extra),
            Duration::from_secs(cfg.iperf_seconds + 30),
        )?;
        match parse::iperf3(&String::from_utf8_lossy(&o.stdout)) {
            Ok(r) => return Ok(r),
            Err(e) if e.to_string().contains("busy") => {
                last = Some(e);
                sys::sleep(Duration::from_secs(1))?;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("iperf3 gave no result")))
}

/// `wrk` from the client, every request on a new connection (`Connection: close`).
fn wrk(
    cfg: &Config,
    lab: &Lab,
    url: &str,
    threads: u32,
    connections: u32,
    latency: bool,
) -> Result<parse::Wrk> {
    let mut c = lab.command("client", "wrk");
    c.args([
        "-t",
        &threads.to_string(),
        "-c",
        &connections.to_string(),
        "-d",
        &format!("{}s", cfg.wrk_seconds),
        "-H",
        "Connection: close",
    ]);
    if latency {
        c.arg("--latency");
    }
    c.arg(url);
    let o = sys::output(&mut c, Duration::from_secs(cfg.wrk_seconds + 30))?;
    parse::wrk(&String::from_utf8_lossy(&o.stdout)).with_context(|| {
        format!(
            "wrk {url} ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )
    })
}

/// dnsperf inside the task against meshd (its nameserver: n2's ingress address, port 53) and
/// against unbound on the same address (port 5353, in n2's namespace), for the same A record.
fn dns(
    cfg: &Config,
    lab: &Lab,
    task: &Task,
    tmp: &Path,
    pids: &BTreeMap<usize, i32>,
    load: &mut BTreeMap<usize, u64>,
) -> Result<Dns> {
    let resolv = std::fs::read_to_string(format!("/proc/{}/root/etc/resolv.conf", task.pid))
        .context("reading the task's resolv.conf")?;
    let server: Ipv4Addr = resolv
        .lines()
        .find_map(|l| l.strip_prefix("nameserver"))
        .and_then(|a| a.trim().parse().ok())
        .context("no nameserver in the task's resolv.conf")?;
    let vips = lab.meshctl(&[
        "service",
        "inspect",
        "--format",
        "{{json .Endpoint.VirtualIPs}}",
        DNS_NAME,
    ])?;
    let vip: Ipv4Addr = serde_json::from_str::<serde_json::Value>(vips.trim())?[0]["Addr"]
        .as_str()
        .and_then(|a| a.split('/').next()?.parse().ok())
        .with_context(|| format!("no VIP in {vips}"))?;
    let queries = tmp.join("queries.txt");
    std::fs::write(&queries, format!("{DNS_NAME} A\n"))?;
    let how = format!(
        "dnsperf -c 4 -T 1 -l {} inside the task; meshd on {server}:53 (n2), unbound (local-data, {} threads) on {server}:{UNBOUND_PORT} in n2",
        cfg.dns_seconds,
        unbound_threads()
    );

    let ask = |port: u16| -> Result<()> {
        let out = sys::run(
            task.nsenter("dig").args([
                "+short",
                "+time=1",
                "+tries=1",
                "-p",
                &port.to_string(),
                &format!("@{server}"),
                DNS_NAME,
                "A",
            ]),
            Duration::from_secs(5),
        )?;
        if out.trim() == vip.to_string() {
            Ok(())
        } else {
            bail!(
                "{server}:{port} answered {:?} for {DNS_NAME}, not {vip}",
                out.trim()
            )
        }
    };
    let perf = |port: u16| -> Result<parse::Dnsperf> {
        let o = sys::output(
            task.nsenter("dnsperf")
                .args(["-s", &server.to_string(), "-p", &port.to_string(), "-d"])
                .arg(&queries)
                .args(["-l", &cfg.dns_seconds.to_string(), "-c", "4", "-T", "1"]),
            Duration::from_secs(cfg.dns_seconds + 30),
        )?;
        let d = parse::dnsperf(&String::from_utf8_lossy(&o.stdout))
            .with_context(|| format!("dnsperf: {}", String::from_utf8_lossy(&o.stderr).trim()))?;
        if d.noerror == 0 {
            bail!("dnsperf got no NOERROR answers");
        }
        Ok(d)
    };

    log(&format!("dns: meshd on {server}:53, {DNS_NAME} -> {vip}"));
    let meshd = retry(Duration::from_secs(15), || ask(53)).and_then(|()| {
        let (d, peak) = sample_rss(pids, || perf(53));
        for (n, k) in peak {
            let e = load.entry(n).or_default();
            *e = (*e).max(k);
        }
        d
    });
    sys::check_interrupt()?;
    log(&format!("dns: meshd {meshd:?}"));

    let dir = tmp.join("unbound");
    std::fs::create_dir_all(&dir)?;
    let conf = dir.join("unbound.conf");
    std::fs::write(
        &conf,
        config::unbound(&dir, server, UNBOUND_PORT, unbound_threads(), DNS_NAME, vip),
    )?;
    let unbound = (|| {
        let mut u = Spawned::start(
            lab.command("n2", "unbound").arg("-d").arg("-c").arg(&conf),
            &dir.join("unbound.log"),
        )?;
        retry(Duration::from_secs(10), || {
            u.check_running()?;
            ask(UNBOUND_PORT)
        })?;
        perf(UNBOUND_PORT)
    })();
    sys::check_interrupt()?;
    log(&format!("dns: unbound {unbound:?}"));
    Ok(Dns {
        name: DNS_NAME.to_owned(),
        meshd_lost_percent: meshd.as_ref().ok().map(|d| d.lost_percent),
        unbound_lost_percent: unbound.as_ref().ok().map(|d| d.lost_percent),
        meshd_qps: meshd.map(|d| d.queries_per_second).into(),
        unbound_qps: unbound.map(|d| d.queries_per_second).into(),
        how,
    })
}

/// As many threads as meshd's DNS receivers (the cores, at most 4).
fn unbound_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// A request every 20 ms from the client to `addr`, on a thread in the client's namespace,
/// until dropped.
struct RequestLoop {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<(Instant, bool)>>>,
    handle: Option<JoinHandle<Result<()>>>,
}

impl RequestLoop {
    fn start(client: PathBuf, addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (s, out) = (stop.clone(), samples.clone());
        let handle = sys::spawn_in_netns(client, move || {
            while !s.load(Ordering::SeqCst) && !sys::interrupted() {
                let at = Instant::now();
                let ok = http_get(addr, Duration::from_millis(250)).is_ok();
                out.lock().map(|mut v| v.push((at, ok))).ok();
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self {
            stop,
            samples,
            handle: Some(handle),
        }
    }

    /// Successes in a row at the end.
    fn tail_successes(&self) -> usize {
        self.samples
            .lock()
            .map_or(0, |v| v.iter().rev().take_while(|s| s.1).count())
    }

    fn finish(mut self) -> Result<Vec<(Instant, bool)>> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join()
                .map_err(|_| anyhow::anyhow!("the request loop panicked"))??;
        }
        Ok(self.samples.lock().map(|v| v.clone()).unwrap_or_default())
    }
}

impl Drop for RequestLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// `service create --replicas 3 -p` until every node answers; then a node holding a task is
/// killed (meshd killed with SIGKILL, its link cut) while requests loop through n1.
fn convergence(lab: &Lab) -> Result<Convergence> {
    let client = lab.ns_file("client");
    let nodes: Vec<SocketAddr> = (1..=3)
        .map(|i| SocketAddr::from((lab.node_addr(i), CONVERGENCE_PORT)))
        .collect();
    log("convergence: service create --replicas 3 -p 9080:80");
    let t0 = Instant::now();
    lab.meshctl(&[
        "service",
        "create",
        "-d",
        "--name",
        "conv",
        "--replicas",
        "3",
        "-p",
        &format!("{CONVERGENCE_PORT}:80"),
        "meshd/busybox",
        "sh",
        "-c",
        HTTPD,
    ])?;
    let firsts = in_netns(&client, || {
        let mut firsts: Vec<Option<f64>> = vec![None; nodes.len()];
        while firsts.iter().any(Option::is_none)
            && t0.elapsed() < Duration::from_mins(1)
            && !sys::interrupted()
        {
            for (i, a) in nodes.iter().enumerate() {
                if firsts[i].is_none() && http_get(*a, Duration::from_millis(300)).is_ok() {
                    firsts[i] = Some(t0.elapsed().as_secs_f64());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        firsts
    })?;
    sys::check_interrupt()?;
    let per_node_s: Vec<(String, Figure)> = firsts
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let fig = f.map_or_else(
                || Figure::Failed("no successful request within 60 s".to_owned()),
                Figure::Value,
            );
            (format!("n{}", i + 1), fig)
        })
        .collect();
    let all = if firsts.iter().all(Option::is_some) {
        Figure::Value(firsts.iter().flatten().copied().fold(0.0, f64::max))
    } else {
        Figure::Failed("not every node answered within 60 s".to_owned())
    };
    log(&format!(
        "convergence: every node answers after {all:?} ({per_node_s:?})"
    ));

    let (kill, detail) = match node_kill(lab, &client) {
        Ok(v) => v,
        Err(e) => {
            sys::check_interrupt()?;
            (Figure::Failed(format!("{e:#}")), String::new())
        }
    };
    log(&format!("convergence: node kill: {kill:?} {detail}"));
    Ok(Convergence {
        create_to_all_nodes_s: all,
        per_node_s,
        node_kill_recovery_s: kill,
        node_kill_detail: detail,
    })
}

fn node_kill(lab: &Lab, client: &Path) -> Result<(Figure, String)> {
    let tasks = retry(Duration::from_mins(1), || {
        let t = lab.tasks("conv")?;
        if t.len() == 3 {
            Ok(t)
        } else {
            bail!("{} of 3 conv tasks running", t.len())
        }
    })?;
    // A node other than n1 (the manager, which the requests go through).
    let victim = tasks
        .iter()
        .map(|t| t.node)
        .filter(|n| *n != 1)
        .max()
        .context("every conv task runs on n1")?;
    let on: Vec<String> = tasks.iter().map(|t| format!("n{}", t.node)).collect();
    let probe = RequestLoop::start(
        client.to_owned(),
        SocketAddr::from((lab.node_addr(1), CONVERGENCE_PORT)),
    );
    // Requests succeed before the kill.
    let started = Instant::now();
    while probe.tail_successes() < 20 {
        if started.elapsed() > Duration::from_secs(20) {
            bail!("requests through n1 did not succeed 20 times in a row before the kill");
        }
        sys::sleep(Duration::from_millis(50))?;
    }
    log(&format!(
        "convergence: conv tasks on {}; killing n{victim}",
        on.join(", ")
    ));
    let kill_at = Instant::now();
    let member = format!("n{victim}");
    lab.lab(&["stop", "--kill", &member])?;
    lab.exec(&member, &["ip", "link", "set", "eth0", "down"])?;
    // Until 30 in a row succeed (10 are the criterion; 30 rule out luck with the hash).
    loop {
        sys::sleep(Duration::from_millis(100))?;
        let waited = kill_at.elapsed();
        if probe.tail_successes() >= 30 && waited >= Duration::from_secs(3) {
            break;
        }
        if waited > Duration::from_mins(1) {
            break;
        }
    }
    let samples: Vec<(f64, bool)> = probe
        .finish()?
        .into_iter()
        .map(|(at, ok)| {
            let t = match at.checked_duration_since(kill_at) {
                Some(d) => d.as_secs_f64(),
                None => -(kill_at - at).as_secs_f64(),
            };
            (t, ok)
        })
        .collect();
    let r = recovery(&samples, 10);
    let span = match (r.first_failure_s, r.last_failure_s) {
        (Some(a), Some(b)) => format!(", failures from +{a:.2} s to +{b:.2} s"),
        _ => String::new(),
    };
    let detail = format!(
        "n{victim} killed (tasks on {}); {} of {} requests through n1 failed{span}",
        on.join(", "),
        r.failed,
        r.total
    );
    let fig = r.recovered_s.map_or_else(
        || Figure::Failed(format!("requests did not recover within 60 s ({detail})")),
        Figure::Value,
    );
    Ok((fig, detail))
}
