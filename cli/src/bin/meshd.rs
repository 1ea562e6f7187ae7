//! `meshd`: the node daemon. Composition only: it enters the node's network namespace when
//! asked, then starts and wires the parts that live in the other crates.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use mesh_control::agent::net::NodeNetworking;
use mesh_control::daemon::DaemonConfig;
use mesh_overlay::netns::NetNs;

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
    let node_networking =
        NodeNetworking::new(&args.data_dir).context("starting the node's networking")?;
    let cfg = DaemonConfig {
        data_dir: args.data_dir,
        hostname,
        advertise_addr: args.advertise_addr,
        // The orchestrator, allocator and scheduler, on whichever manager leads.
        on_manager: vec![mesh_control::planner::hook()],
        task_networking: node_networking.networking(),
    };
    tracing::info!(?cfg, "meshd starting");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    mesh_control::daemon::run(cfg, stop)
        .await
        .context("meshd failed")
}
