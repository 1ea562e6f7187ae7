//! `meshd`: the node daemon. Composition only: it enters the node's network namespace when
//! asked, then starts and wires the parts that live in the other crates.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use mesh_agent::net::NodeNetworking;
use mesh_agent::net::mesh::MeshSettings;
use mesh_dataplane::{Datapath, Timeouts};
use mesh_engine::EngineHandle;
use mesh_node::DaemonConfig;
use mesh_overlay::netns::NetNs;

/// Where published ports are served on the underlay interface.
///
/// `tc` is the default: on a veth (the lab, most VMs' virtio too), native XDP makes the kernel
/// split GSO super-packets into MTU-sized frames before the program sees them, so a bulk TCP
/// flow through a node drops to about a quarter of its speed (measured: iperf3 19 Gbit/s with
/// no program, 5 Gbit/s with an `XDP_PASS` program attached); tc runs after GSO/GRO and keeps
/// them whole. `xdp` wins on small packets (fewer per-packet costs, remote backends
/// encapsulated and sent with `XDP_TX`), and on NICs with native XDP support.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DatapathArg {
    Tc,
    Xdp,
}

#[derive(Parser, Debug)]
#[command(name = "meshd", version, about = "meshd node daemon")]
struct Args {
    /// Run inside this network namespace (a name from `ip netns`); the lab uses it.
    #[arg(long)]
    netns: Option<String>,
    /// Where the node keeps its raft log, state, certificates and socket.
    #[arg(long, default_value = "/var/lib/meshd")]
    data_dir: PathBuf,
    /// The node's name in the cluster (default: the machine's hostname).
    #[arg(long)]
    hostname: Option<String>,
    /// The address other nodes reach this one at.
    #[arg(long)]
    advertise_addr: Option<std::net::Ipv4Addr>,
    /// Where the routing mesh serves published ports: tc (keeps GSO: best for bulk TCP on
    /// veth) or xdp (best for small packets, and on NICs with native XDP).
    #[arg(long, value_enum, default_value = "tc")]
    datapath: DatapathArg,
    /// The node's Docker engine, where its tasks run: `unix:///PATH` (docker's `DOCKER_HOST`
    /// is read as docker reads it).
    #[arg(
        long,
        env = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    engine: String,
    /// Idle time after which a mesh TCP flow is balanced again (to the same backend while the
    /// backends are unchanged, so an idle connection survives it).
    #[arg(long, default_value = "24h", value_parser = duration)]
    conntrack_tcp_timeout: Duration,
    /// The same for UDP flows.
    #[arg(long, default_value = "5m", value_parser = duration)]
    conntrack_udp_timeout: Duration,
    /// Serve Prometheus metrics (`/metrics`) and `/healthz` over HTTP at `IP:PORT` (Docker's
    /// `metrics-addr` convention: port 9323). Off by default.
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
}

fn duration(s: &str) -> Result<Duration, String> {
    match mesh_cluster::spec::parse_duration(s) {
        Ok(0) => Err(format!("invalid duration {s:?}: it must be longer than 0")),
        Ok(ms) => Ok(Duration::from_millis(ms)),
        Err(e) => Err(e.0),
    }
}

/// The engine named by `--engine`: a unix socket, the only kind meshd speaks to.
fn engine_handle(engine: &str) -> Result<EngineHandle> {
    if engine.starts_with("unix://") || engine.starts_with('/') {
        Ok(EngineHandle::new(engine))
    } else {
        anyhow::bail!(
            "invalid --engine {engine:?}: give the engine's unix socket as unix:///PATH (for example unix:///var/run/docker.sock)"
        )
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .with_ansi(false)
        .init();
    // Before any thread exists, so that every thread the runtime starts inherits the namespace.
    if let Some(ns) = &args.netns {
        NetNs::open(ns)?.enter_process()?;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let hostname = match args.hostname {
        Some(h) => h,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("reading the machine's hostname (or give --hostname)")?
            .trim()
            .to_owned(),
    };
    // The node's networking: overlay devices by netlink (in the node's namespace, entered
    // above), gossip on 7946 once the node is in a swarm, task plumbing.
    // The node's one handle on its engine, for every part that needs it.
    let engine = engine_handle(&args.engine)?;
    let node_networking = NodeNetworking::new(&args.data_dir, engine.clone())
        .context("starting the node's networking")?;
    // The routing mesh (eBPF: published ports, VIPs) and DNS, fed from the node's networking
    // once the node is in a swarm.
    let mesh = mesh_agent::net::mesh::spawn(
        node_networking.clone(),
        MeshSettings {
            datapath: match args.datapath {
                DatapathArg::Tc => Datapath::Tc,
                DatapathArg::Xdp => Datapath::Xdp,
            },
            pin_root: PathBuf::from("/sys/fs/bpf/meshd"),
            timeouts: Timeouts {
                tcp: args.conntrack_tcp_timeout,
                udp: args.conntrack_udp_timeout,
            },
        },
    );
    let dns = mesh_agent::net::dns::spawn(node_networking.clone());
    let cfg = DaemonConfig {
        data_dir: args.data_dir,
        hostname,
        advertise_addr: args.advertise_addr,
        // The orchestrator, allocator and scheduler, on whichever manager leads.
        on_manager: vec![mesh_manager::planner::hook()],
        task_networking: node_networking.networking(),
        engine,
    };
    let metrics = match args.metrics_addr {
        Some(addr) => Some(
            mesh_metrics::start(addr, cfg.socket())
                .await
                .with_context(|| format!("serving metrics on {addr}"))?,
        ),
        None => None,
    };
    tracing::info!(?cfg, "meshd starting");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let result = mesh_node::run(cfg, stop).await.context("meshd failed");
    // The mesh's pins stay: the programs keep serving until the next meshd takes them over.
    mesh.abort();
    dns.abort();
    if let Some(m) = metrics {
        m.abort();
    }
    result
}
