//! The measurements: one lab per data path, the same backend task (on n2) reached by every
//! scenario from the same client namespace, then DNS, convergence and memory. Thin: the tools
//! measure, `parse` reads them, `report` judges.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::bpfstats::RunTimeStats;
use crate::config::{self, Forward};
use crate::lab::{Lab, Task, task_ingress};
use crate::report::{Datapath, Results, Rss, Scenario, ScenarioResult};
use crate::sys::{self, Spawned, TempDir, in_netns, retry};

mod biglab;
pub mod control;
mod convergence;
mod dns;
mod eastwest;
mod measure;
mod scale;
mod scheduler;

use convergence::convergence;
use dns::dns;
use measure::measure;
pub use scale::scale;

pub use control::{ControlConfig, run_control};

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
    /// Also run the scale scenario, at these numbers of services (empty: not run).
    pub scale_sizes: Vec<usize>,
    /// The control plane and the big lab (`--control`), after the labs of `labs`.
    pub control: Option<ControlConfig>,
    /// The east-west rows, in labs of their own after the tc lab (`--no-east-west`: not).
    pub east_west: bool,
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
    if cfg.east_west {
        let started = Instant::now();
        eastwest::east_west(cfg, results)?;
        results.settings.insert(
            "east_west_seconds".to_owned(),
            format!("{:.0}", started.elapsed().as_secs_f64()),
        );
    }
    if !cfg.scale_sizes.is_empty() {
        let started = Instant::now();
        let outcome = scale(cfg);
        sys::check_interrupt()?;
        results.settings.insert(
            "scale_seconds".to_owned(),
            format!("{:.0}", started.elapsed().as_secs_f64()),
        );
        match outcome {
            Ok(s) => results.scale = Some(s),
            Err(e) => results.notes.push(format!("scale not measured: {e:#}")),
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
    let image = lab.image();
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
        &image,
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
        Scenario::Direct | Scenario::DirectXdp | Scenario::DirectNative => {
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
        Scenario::DirectVxlan => {
            // The client routes the task's address via n1, which forwards it into its ingress
            // bridge, whence the kernel's VXLAN device carries it to n2 (forwarding turned on
            // as for iptables, which runs next and needs it too).
            let (dev, _) = lab.node_ingress("n1")?;
            forwarding(lab, "n1", &dev)?;
            lab.exec(
                "client",
                &[
                    "ip",
                    "route",
                    "replace",
                    &format!("{task}/32"),
                    "via",
                    &n1.to_string(),
                ],
            )?;
            Ok(mesh(task))
        }
        Scenario::MeshTc | Scenario::MeshXdp | Scenario::MeshTcNative => Ok(mesh(n1)),
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
