//! `meshctl`: the command line, as Docker's.

use anyhow::Result;
use clap::{Parser, Subcommand};
use mesh_cli::commands::{
    self, Reported, blob::BlobCommand, lab::LabCommand, mesh::MeshCommand, network::NetworkCommand,
    node::NodeCommand, service::ServiceCommand, stack::StackCommand, swarm::SwarmCommand,
};

#[derive(Parser, Debug)]
#[command(
    name = "meshctl",
    version,
    about = "Drive a meshd cluster",
    propagate_version = true
)]
struct Cli {
    #[command(flatten)]
    target: commands::Target,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Manage the swarm: init, join, join-token, leave.
    #[command(subcommand)]
    Swarm(SwarmCommand),
    /// Manage the swarm's nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Manage services: create, ls, ps, inspect, logs, scale, update, publish, rollback, rm.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Manage stacks (compose files): deploy, ls, ps, services, rm.
    #[command(subcommand)]
    Stack(StackCommand),
    /// The routing mesh: stats.
    #[command(subcommand)]
    Mesh(MeshCommand),
    /// Manage overlay networks: create, ls, inspect, rm.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Manage secrets: create, ls, inspect (never the data), rm.
    #[command(subcommand)]
    Secret(BlobCommand),
    /// Manage configs: create, ls, inspect, rm.
    #[command(subcommand)]
    Config(BlobCommand),
    /// This node's parts, each OK or degraded (exits 1 when anything is degraded).
    Status {
        /// `json`: the node's whole status.
        #[arg(long)]
        format: Option<String>,
    },
    /// Run a whole cluster on this machine, in network namespaces.
    #[command(subcommand)]
    Lab(LabCommand),
}

fn main() {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            if let Some(r) = e.downcast_ref::<Reported>() {
                eprintln!("{r}");
            } else {
                eprintln!("Error: {e:#}");
            }
            std::process::exit(1);
        }
    }
}

fn run(cli: Cli) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Swarm(cmd) => commands::swarm::run(&cli.target, cmd, &mut out),
        Command::Node(cmd) => commands::node::run(&cli.target, cmd, &mut out),
        Command::Service(cmd) => commands::service::run(&cli.target, cmd, &mut out),
        Command::Stack(cmd) => commands::stack::run(&cli.target, cmd, &mut out),
        Command::Network(cmd) => commands::network::run(&cli.target, cmd, &mut out),
        Command::Mesh(cmd) => commands::mesh::run(&cli.target, cmd, &mut out),
        Command::Secret(cmd) => {
            commands::blob::run(&cli.target, mesh_api::BlobKind::Secret, cmd, &mut out)
        }
        Command::Config(cmd) => {
            commands::blob::run(&cli.target, mesh_api::BlobKind::Config, cmd, &mut out)
        }
        Command::Status { format } => {
            commands::status::run(&cli.target, format.as_deref(), &mut out)
        }
        Command::Lab(cmd) => commands::lab::run(cmd, &mut out),
    }
}
