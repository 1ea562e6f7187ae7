//! `meshd`: the node daemon. Composition only: it enters the node's network namespace when
//! asked, then starts and wires the parts that live in the other crates.

mod addr;
mod flags;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use mesh_agent::net::NodeNetworking;
use mesh_agent::net::mesh::MeshSettings;
use mesh_dataplane::{Datapath, Timeouts};
use mesh_engine::EngineHandle;
use mesh_node::DaemonConfig;
use mesh_overlay::netns::NetNs;

use crate::flags::{Args, DatapathArg};

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
    // In the node's namespace: an interface name is looked up there, and so is the default
    // route when no address is given.
    let advertise = addr::resolve(args.advertise_addr.as_ref())?;
    if let Some(a) = advertise.addr {
        tracing::info!("advertising {a}: {}", advertise.how);
    } else {
        tracing::info!("no address to advertise yet: {}", advertise.how);
    }
    let docker_host = std::env::var("DOCKER_HOST").ok();
    let engine = flags::engine_address(args.engine.as_deref(), docker_host.as_deref())
        .map_err(anyhow::Error::msg)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args, advertise.addr, &engine))
}

async fn run(args: Args, advertise_addr: Option<Ipv4Addr>, engine_addr: &str) -> Result<()> {
    let engine = EngineHandle::new(engine_addr);
    let docker_api_tcp = args.docker_api_tcp();
    let hostname = match args.hostname {
        Some(h) => h,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("reading the machine's hostname (or give --hostname)")?
            .trim()
            .to_owned(),
    };
    // The node's networking: overlay devices by netlink (in the node's namespace, entered
    // above), gossip on 7946 once the node is in a swarm, task plumbing.
    // The node's one handle on its engine (it connects on first use), for every part that
    // needs it.
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
            socket_lb: args.socket_lb,
        },
    );
    let dns = mesh_agent::net::dns::spawn(node_networking.clone(), args.resolv_conf.clone());
    let cfg = DaemonConfig {
        data_dir: args.data_dir,
        hostname,
        advertise_addr,
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
    let docker_api = start_docker_api(
        &args.docker_api_socket,
        docker_api_tcp,
        &cfg.socket(),
        engine_addr,
    )
    .await?;
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
    for d in docker_api {
        d.abort();
    }
    result
}

/// Docker's Engine API, through this node's own local socket (as meshctl) and engine: on the
/// unix socket unless `none`, and on TCP with mutual TLS when asked.
async fn start_docker_api(
    socket_flag: &str,
    tcp: Option<flags::DockerApiTcp>,
    meshd_socket: &Path,
    engine_addr: &str,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let front = mesh_dockerapi::front(meshd_socket, flags::engine_socket_path(engine_addr));
    let mut tasks = Vec::new();
    if let Some(path) = flags::docker_api_socket(socket_flag) {
        let listener = mesh_dockerapi::bind(&path)
            .with_context(|| format!("serving the Engine API on {}", path.display()))?;
        tracing::info!("serving Docker's Engine API on {}", path.display());
        tasks.push(tokio::spawn(mesh_dockerapi::serve(listener, front.clone())));
    }
    if let Some(flags::DockerApiTcp {
        addr,
        ca,
        cert,
        key,
    }) = tcp
    {
        let read = |p: &PathBuf| {
            std::fs::read(p).with_context(|| format!("reading {} (--docker-api-tls*)", p.display()))
        };
        let tls = mesh_dockerapi::tls::server_config(&read(&ca)?, &read(&cert)?, &read(&key)?)
            .context("the Engine API's TLS files (--docker-api-tlscacert, --docker-api-tlscert, --docker-api-tlskey)")?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("serving the Engine API on {addr} (--docker-api-tcp)"))?;
        tracing::info!("serving Docker's Engine API on tcp://{addr} with mutual TLS");
        tasks.push(tokio::spawn(mesh_dockerapi::serve_tls(
            listener, tls, front,
        )));
    }
    Ok(tasks)
}
