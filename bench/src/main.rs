//! `mesh-bench`: runs every scenario of the benchmark and writes the results and their chart
//! (see `bench/README.md`; `bench/run.sh` is the one command); `mesh-bench chart` redraws the
//! chart of a results file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use mesh_bench::chart;
use mesh_bench::lab::parse_subnet;
use mesh_bench::machine::{Machine, now_utc};
use mesh_bench::report::control::chart as control_chart;
use mesh_bench::report::{Datapath, Results};
use mesh_bench::run::{Config, ControlConfig, log, run, run_control};
use mesh_bench::sys;

#[derive(Parser, Debug)]
#[command(
    about = "Benchmarks meshd's routing mesh against direct forwarding, iptables and HAProxy",
    args_conflicts_with_subcommands = true
)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "command-line switches, each independent of the others"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The meshctl binary (its meshd is the one next to it).
    #[arg(long, default_value_os_t = sibling("meshctl"))]
    meshctl: PathBuf,
    /// The backend HTTP server.
    #[arg(long, default_value_os_t = sibling("mesh-bench-server"))]
    server: PathBuf,
    /// The lab's prefix (its namespaces are PREFIX-n1.., PREFIX-client).
    #[arg(long, default_value = "bench")]
    prefix: String,
    /// The lab's underlay: a /24 inside 198.18.0.0/15 that no other lab uses.
    #[arg(long, default_value = "198.18.200.0/24")]
    subnet: String,
    /// Where `<UTC time>.json`, its chart `<UTC time>.svg` and `latest.md` go.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    results: PathBuf,
    /// Where the chart is also written (the README's; not with --profile, whose figures are
    /// not the ones to quote).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/chart.svg"))]
    chart: PathBuf,
    /// The labs to run: tc, xdp, tc-native (the tc lab with `--default-routing native`), or
    /// several, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "tc,xdp,tc-native")]
    labs: Vec<String>,
    /// Seconds of each iperf3 run (after 1 s omitted).
    #[arg(long, default_value_t = 4)]
    iperf_seconds: u64,
    /// Seconds of each wrk run.
    #[arg(long, default_value_t = 4)]
    wrk_seconds: u64,
    /// wrk threads for the connections-per-second run.
    #[arg(long, default_value_t = 2)]
    wrk_threads: u32,
    /// wrk connections for the connections-per-second run.
    #[arg(long, default_value_t = 16)]
    wrk_connections: u32,
    /// The fixed UDP rate (iperf3 -b).
    #[arg(long, default_value = "300M")]
    udp_rate: String,
    /// Leave out the east-west rows (run with the tc lab, in two labs of their own).
    #[arg(long)]
    no_east_west: bool,
    /// Runs of each TCP throughput figure (the median is reported: short runs on shared cores
    /// vary).
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// Also measure each eBPF program's cost per run on the mesh scenarios (turns
    /// `kernel.bpf_stats_enabled` on for the run, which slows every program a little: keep the
    /// figures of a run without it).
    #[arg(long)]
    profile: bool,
    /// Also run the scale scenario: published services through one node, by the mesh and by
    /// kube-proxy's iptables layout (`--labs none --scale` runs it alone).
    #[arg(long)]
    scale: bool,
    /// The numbers of services the scale scenario measures.
    #[arg(long, value_delimiter = ',', default_value = "1,100,250,1000")]
    scale_sizes: Vec<usize>,
    /// Seconds of each dnsperf run.
    #[arg(long, default_value_t = 5)]
    dns_seconds: u64,
    /// Measure the control plane and a big lab instead of the data path (see the README's
    /// "Control plane"): API throughput with 1 and 3 managers, creates to serving, leader
    /// failover, the scheduler, gossip after a node's death and memory at --big-nodes.
    #[arg(long)]
    control: bool,
    /// Concurrent API clients of the control plane's throughput runs.
    #[arg(long, default_value_t = 16)]
    control_clients: usize,
    /// Seconds of each control plane throughput run.
    #[arg(long, default_value_t = 5.0)]
    control_seconds: f64,
    /// Services created (one replica, a published port each) before timing until every one
    /// answers.
    #[arg(long, default_value_t = 100)]
    control_services: usize,
    /// Leader kills of the failover figure (3 managers).
    #[arg(long, default_value_t = 10)]
    control_kills: usize,
    /// Nodes of the big lab.
    #[arg(long, default_value_t = 20)]
    big_nodes: usize,
    /// Managers of the big lab (odd).
    #[arg(long, default_value_t = 1)]
    big_managers: usize,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// (Re)draws the chart of a results file, e.g. `mesh-bench chart bench/results/X.json -o
    /// bench/chart.svg`.
    Chart {
        /// A results file (`bench/results/<UTC time>.json`).
        json: PathBuf,
        /// The SVG to write (default: the results file with `.svg`).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

/// `NAME` in the folder of this binary.
fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = match &args.command {
        Some(Command::Chart { json, output }) => {
            let svg = output.clone().unwrap_or_else(|| json.with_extension("svg"));
            chart::redraw(json, &svg).map(|()| eprintln!("mesh-bench: wrote {}", svg.display()))
        }
        None => main_with(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh-bench: {e:#}");
            if sys::interrupted() {
                eprintln!(
                    "mesh-bench: interrupted; the lab and everything the bench started are removed"
                );
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn main_with(args: &Args) -> Result<()> {
    preflight(args)?;
    let cfg = config(args)?;
    std::fs::create_dir_all(&args.results)
        .with_context(|| format!("creating {}", args.results.display()))?;
    sys::install_signal_handlers();

    let started = Instant::now();
    let (stamp, file_stamp) = now_utc();
    let machine = Machine::from_proc();
    log(&format!("machine: {}", machine.summary()));
    let mut results = Results {
        started_utc: stamp,
        wall_seconds: 0.0,
        machine,
        settings: settings(args, &cfg),
        scenarios: Vec::new(),
        dns: None,
        convergence: None,
        rss: Vec::new(),
        targets: Vec::new(),
        notes: Vec::new(),
        scale: None,
        control: None,
        east_west: Vec::new(),
    };
    run(&cfg, &mut results)?;
    if let Some(ctl) = &cfg.control {
        results.control = Some(run_control(&cfg, ctl, &mut results.notes)?);
    }
    results.scenarios.sort_by_key(|r| r.scenario);
    results
        .rss
        .sort_by(|a, b| (a.lab, &a.node).cmp(&(b.lab, &b.node)));
    results.wall_seconds = started.elapsed().as_secs_f64();
    if !results.scenarios.is_empty() {
        results.targets = results.evaluate_targets();
    }

    println!("{}", results.render_text());
    write(args, &results, &file_stamp)
}

/// Root, the tools and the binaries the bench runs.
fn preflight(args: &Args) -> Result<()> {
    // SAFETY: geteuid(2) reads a process attribute; it cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the bench needs root (it builds a lab of network namespaces)");
    }
    let tools: &[&str] = if args.control && !args.scale {
        &["ip", "docker"]
    } else {
        &[
            "ip", "nsenter", "docker", "iperf3", "wrk", "dnsperf", "dig", "unbound", "haproxy",
            "iptables", "sysctl",
        ]
    };
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .chain(
            args.scale
                .then_some(["bpftool", "iptables-restore"])
                .into_iter()
                .flatten(),
        )
        .filter(|p| !sys::have(p))
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing {}: run ./scripts/deps.sh (it installs them)",
            missing.join(", ")
        );
    }
    for (what, p) in [
        ("meshctl", &args.meshctl),
        ("mesh-bench-server", &args.server),
    ] {
        if !p.is_file() {
            bail!(
                "{what} not found at {}: build it with `cargo build --release -p meshd -p mesh-cli -p mesh-bench`",
                p.display()
            );
        }
    }
    Ok(())
}

/// The run's configuration from the command line.
fn config(args: &Args) -> Result<Config> {
    let labs: Vec<Datapath> = args
        .labs
        .iter()
        .filter(|l| l.as_str() != "none")
        // `--control` alone measures the control plane only; `--scale` runs everything.
        .filter(|_| args.scale || !args.control)
        .map(|l| match l.as_str() {
            "tc" => Ok(Datapath::Tc),
            "xdp" => Ok(Datapath::Xdp),
            "tc-native" => Ok(Datapath::TcNative),
            other => {
                bail!("invalid --labs {other:?}: use tc, xdp, tc-native (comma-separated) or none")
            }
        })
        .collect::<Result<_>>()?;
    if labs.is_empty() && !args.scale && !args.control {
        bail!("--labs none runs nothing without --scale or --control");
    }
    if args.scale && (args.scale_sizes.is_empty() || args.scale_sizes.contains(&0)) {
        bail!(
            "invalid --scale-sizes {:?}: give numbers of services from 1, e.g. 1,100,1000",
            args.scale_sizes
        );
    }
    Ok(Config {
        east_west: !args.no_east_west
            && (labs.contains(&Datapath::Tc) || labs.contains(&Datapath::TcNative)),
        meshctl: absolute(&args.meshctl)?,
        server: absolute(&args.server)?,
        prefix: args.prefix.clone(),
        net: parse_subnet(&args.subnet)?,
        labs,
        iperf_seconds: args.iperf_seconds,
        wrk_seconds: args.wrk_seconds,
        wrk_threads: args.wrk_threads,
        wrk_connections: args.wrk_connections,
        udp_rate: args.udp_rate.clone(),
        dns_seconds: args.dns_seconds,
        repeat: args.repeat,
        profile: args.profile,
        scale_sizes: if args.scale {
            args.scale_sizes.clone()
        } else {
            Vec::new()
        },
        // `--scale` includes the control plane and the big lab.
        control: (args.control || args.scale)
            .then(|| control_config(args))
            .transpose()?,
    })
}

/// `--control`'s sizes, checked.
fn control_config(args: &Args) -> Result<ControlConfig> {
    if args.control_clients == 0 {
        bail!("invalid --control-clients 0: give 1 or more");
    }
    if !(args.control_seconds > 0.0 && args.control_seconds <= 600.0) {
        bail!(
            "invalid --control-seconds {}: give more than 0 and at most 600",
            args.control_seconds
        );
    }
    if !(1..=1000).contains(&args.control_services) {
        bail!(
            "invalid --control-services {}: give 1 to 1000 (one published port each from 20000)",
            args.control_services
        );
    }
    if args.big_nodes < 3 || args.big_nodes > 200 {
        bail!("invalid --big-nodes {}: give 3 to 200", args.big_nodes);
    }
    if args.big_managers == 0
        || args.big_managers.is_multiple_of(2)
        || args.big_managers > args.big_nodes
    {
        bail!(
            "invalid --big-managers {}: give an odd number no larger than --big-nodes",
            args.big_managers
        );
    }
    Ok(ControlConfig {
        clients: args.control_clients,
        seconds: args.control_seconds,
        services: args.control_services,
        kills: args.control_kills,
        big_nodes: args.big_nodes,
        big_managers: args.big_managers,
    })
}

/// The settings recorded in the results.
fn settings(args: &Args, cfg: &Config) -> BTreeMap<String, String> {
    let mut settings = BTreeMap::new();
    for (k, v) in [
        ("prefix", cfg.prefix.clone()),
        ("subnet", args.subnet.clone()),
        (
            "iperf3",
            format!(
                "-t {} -O 1; UDP -b {} -l 1380; small UDP -b 0 -l 64",
                cfg.iperf_seconds, cfg.udp_rate
            ),
        ),
        (
            "wrk_conn_per_s",
            format!(
                "-t {} -c {} -d {}s -H 'Connection: close'",
                cfg.wrk_threads, cfg.wrk_connections, cfg.wrk_seconds
            ),
        ),
        (
            "wrk_latency",
            format!(
                "-t 1 -c 1 -d {}s --latency -H 'Connection: close'",
                cfg.wrk_seconds
            ),
        ),
        ("dnsperf", format!("-c 4 -T 1 -l {}", cfg.dns_seconds)),
        (
            "repeat",
            format!("TCP 1/4 streams: median of {} runs", cfg.repeat),
        ),
        (
            "meshd",
            cfg.meshctl.with_file_name("meshd").display().to_string(),
        ),
    ] {
        settings.insert(k.to_owned(), v);
    }
    if let Some(c) = &cfg.control {
        settings.insert(
            "control".to_owned(),
            format!(
                "{} clients for {} s per throughput run; {} services to serving; {} leader \
                 kills; big lab {} nodes, {} managers",
                c.clients, c.seconds, c.services, c.kills, c.big_nodes, c.big_managers
            ),
        );
    }
    settings
}

/// `<UTC time>.json`, its chart `<UTC time>.svg`, `latest.md`, and the chart again at
/// `--chart` (unless profiled).
fn write(args: &Args, results: &Results, file_stamp: &str) -> Result<()> {
    let json = args.results.join(format!("{file_stamp}.json"));
    let mut text = serde_json::to_vec_pretty(results)?;
    text.push(b'\n');
    std::fs::write(&json, text).with_context(|| format!("writing {}", json.display()))?;
    // A control-only run keeps the data path's latest.md and chart (the README quotes them).
    let control_only = results.scenarios.is_empty() && results.scale.is_none();
    let md = args.results.join(if control_only {
        "latest-control.md"
    } else {
        "latest.md"
    });
    std::fs::write(&md, results.render_markdown())
        .with_context(|| format!("writing {}", md.display()))?;
    log(&format!("wrote {} and {}", json.display(), md.display()));
    if control_only {
        // Its own chart (the README's data path chart stays).
        if let Some(c) = &results.control {
            let svg = json.with_extension("svg");
            let title = format!("meshd control plane, {}", results.started_utc);
            let text = control_chart::draw_svg(&title, &control_chart::bars(c))?;
            std::fs::write(&svg, text).with_context(|| format!("writing {}", svg.display()))?;
            log(&format!("wrote {}", svg.display()));
        }
        return Ok(());
    }
    let data = chart::of_results(results);
    let svg = json.with_extension("svg");
    chart::write(&svg, &data)?;
    if args.profile {
        log(&format!(
            "wrote {} (not {}: a profiled run)",
            svg.display(),
            args.chart.display()
        ));
    } else {
        chart::write(&args.chart, &data)?;
        log(&format!(
            "wrote {} and {}",
            svg.display(),
            args.chart.display()
        ));
    }
    Ok(())
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(p).with_context(|| format!("resolving {}", p.display()))
}
