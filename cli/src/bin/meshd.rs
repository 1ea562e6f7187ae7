//! `meshd`: the node daemon. Composition only: it enters the node's network namespace when
//! asked, then starts and wires the parts that live in the other crates.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
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
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
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
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let sock = args.data_dir.join("meshd.sock");
    let _ = std::fs::remove_file(&sock);
    let listener = tokio::net::UnixListener::bind(&sock)
        .with_context(|| format!("binding {}", sock.display()))?;
    tracing::info!(?args, "meshd started");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            conn = listener.accept() => drop(conn),
        }
    }
    tracing::info!("meshd stopping");
    let _ = std::fs::remove_file(&sock);
    Ok(())
}
