//! `meshctl`: the command line, as Docker's.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use mesh_cli::commands::{
    self, Reported, mesh::MeshCommand, network::NetworkCommand, node::NodeCommand,
    service::ServiceCommand, swarm::SwarmCommand,
};
use mesh_cli::lab;

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
    /// The routing mesh: stats.
    #[command(subcommand)]
    Mesh(MeshCommand),
    /// Manage overlay networks: create, ls, inspect, rm.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Run a whole cluster on this machine, in network namespaces.
    #[command(subcommand)]
    Lab(LabCommand),
}

#[derive(Subcommand, Debug)]
enum LabCommand {
    /// Build the lab and start meshd in every node.
    Up {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long, default_value_t = 1)]
        managers: usize,
        #[command(flatten)]
        at: LabAt,
        /// The underlay: a /24 inside 198.18.0.0/15.
        #[arg(long, default_value = "198.18.0.0/24")]
        subnet: String,
        /// The meshd binary to run (default: the one next to meshctl).
        #[arg(long)]
        meshd: Option<PathBuf>,
        /// The nodes' data path: tc, or xdp (then the switch ports run XDP too, as NICs would).
        #[arg(long, default_value = "tc")]
        datapath: String,
        /// Start meshd in every node but form no swarm (nothing of the mesh or the overlay is
        /// set up): for tests that drive the kernel-side crates directly.
        #[arg(long)]
        no_swarm: bool,
        /// Extra arguments for every meshd, after `--`.
        #[arg(last = true)]
        meshd_args: Vec<String>,
    },
    /// List the lab's members, their addresses, meshd processes and logs.
    Ls {
        #[command(flatten)]
        at: LabAt,
    },
    /// Run a command in a member's namespace: `meshctl lab exec n1 -- meshctl node ls`.
    Exec {
        #[command(flatten)]
        at: LabAt,
        /// n1..nN or client.
        member: String,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Stop a node's meshd (SIGTERM, or SIGKILL with --kill); its state stays.
    Stop {
        #[command(flatten)]
        at: LabAt,
        /// Kill it (SIGKILL) instead of asking it to stop.
        #[arg(long)]
        kill: bool,
        /// n1..nN, or `all`.
        member: String,
    },
    /// Start a stopped node's meshd again, with the arguments `lab up` gave it.
    Start {
        #[command(flatten)]
        at: LabAt,
        /// n1..nN, or `all`.
        member: String,
    },
    /// Stop then start a node's meshd.
    Restart {
        #[command(flatten)]
        at: LabAt,
        /// n1..nN, or `all`.
        member: String,
    },
    /// Remove every namespace, link, process, container and pin of the lab.
    Down {
        #[command(flatten)]
        at: LabAt,
    },
}

#[derive(clap::Args, Debug)]
struct LabAt {
    /// Names every namespace of the lab (`PREFIX-n1`, `PREFIX-client`), so that labs can coexist.
    #[arg(long, default_value = "mesh", env = "MESH_LAB_PREFIX")]
    prefix: String,
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
        Command::Network(cmd) => commands::network::run(&cli.target, cmd, &mut out),
        Command::Mesh(cmd) => commands::mesh::run(&cli.target, cmd, &mut out),
        Command::Lab(cmd) => run_lab(cmd),
    }
}

fn run_lab(cmd: LabCommand) -> Result<i32> {
    match cmd {
        LabCommand::Up {
            nodes,
            managers,
            at,
            subnet,
            meshd,
            datapath,
            no_swarm,
            meshd_args,
        } => {
            let plan = lab::LabPlan::new(&at.prefix, &subnet, nodes, managers)?;
            let meshd = match meshd {
                Some(p) => p,
                None => std::env::current_exe()?
                    .parent()
                    .context("meshctl has no folder")?
                    .join("meshd"),
            };
            lab::up(
                &plan,
                &lab::UpOptions {
                    meshd,
                    meshd_args,
                    datapath,
                    swarm: !no_swarm,
                },
            )?;
            lab::list(&at.prefix, &mut std::io::stdout())?;
            Ok(0)
        }
        LabCommand::Ls { at } => {
            lab::list(&at.prefix, &mut std::io::stdout())?;
            Ok(0)
        }
        LabCommand::Exec { at, member, cmd } => lab::exec(&at.prefix, &member, &cmd),
        LabCommand::Stop { at, kill, member } => {
            lab::stop(&at.prefix, &member, kill)?;
            Ok(0)
        }
        LabCommand::Start { at, member } => {
            lab::start(&at.prefix, &member)?;
            Ok(0)
        }
        LabCommand::Restart { at, member } => {
            lab::stop(&at.prefix, &member, false)?;
            lab::start(&at.prefix, &member)?;
            Ok(0)
        }
        LabCommand::Down { at } => {
            lab::down(&at.prefix)?;
            Ok(0)
        }
    }
}
