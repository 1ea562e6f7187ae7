//! `meshctl lab`: its flags and output; the lab itself is the `mesh-lab` crate.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum LabCommand {
    /// Build the lab and start a Docker engine and meshd in every node, and the lab registry.
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
        /// `swarm init --default-routing`: native or vxlan (the swarm's default).
        #[arg(long, value_parser = routing)]
        default_routing: Option<mesh_cluster::net::Routing>,
        /// Extra arguments for every meshd, after `--`.
        #[arg(last = true)]
        meshd_args: Vec<String>,
    },
    /// List the lab's members, their addresses, meshd processes, engines and logs, the
    /// registry and the lab's images.
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
    /// Remove every namespace, link, process (meshds, engines, the registry), container and pin
    /// of the lab.
    Down {
        #[command(flatten)]
        at: LabAt,
    },
}

#[derive(clap::Args, Debug)]
pub struct LabAt {
    /// Names every namespace of the lab (`PREFIX-n1`, `PREFIX-client`), so that labs can coexist.
    #[arg(long, default_value = "mesh", env = "MESH_LAB_PREFIX")]
    pub prefix: String,
}

/// `--default-routing`'s value.
pub(crate) fn routing(s: &str) -> Result<mesh_cluster::net::Routing, String> {
    s.parse()
}

pub fn run(cmd: LabCommand, out: &mut impl Write) -> Result<i32> {
    match cmd {
        LabCommand::Up {
            nodes,
            managers,
            at,
            subnet,
            meshd,
            datapath,
            no_swarm,
            default_routing,
            meshd_args,
        } => {
            let plan = mesh_lab::LabPlan::new(&at.prefix, &subnet, nodes, managers)?;
            let meshd = match meshd {
                Some(p) => p,
                None => std::env::current_exe()?
                    .parent()
                    .context("meshctl has no folder")?
                    .join("meshd"),
            };
            mesh_lab::up(
                &plan,
                &mesh_lab::UpOptions {
                    meshd,
                    meshd_args,
                    datapath,
                    swarm: !no_swarm,
                    default_routing,
                },
            )?;
            list(&at.prefix, out)?;
            Ok(0)
        }
        LabCommand::Ls { at } => {
            list(&at.prefix, out)?;
            Ok(0)
        }
        LabCommand::Exec { at, member, cmd } => mesh_lab::exec(&at.prefix, &member, &cmd),
        LabCommand::Stop { at, kill, member } => {
            mesh_lab::stop(&at.prefix, &member, kill)?;
            Ok(0)
        }
        LabCommand::Start { at, member } => {
            mesh_lab::start(&at.prefix, &member)?;
            Ok(0)
        }
        LabCommand::Restart { at, member } => {
            mesh_lab::stop(&at.prefix, &member, false)?;
            mesh_lab::start(&at.prefix, &member)?;
            Ok(0)
        }
        LabCommand::Down { at } => {
            mesh_lab::down(&at.prefix)?;
            Ok(0)
        }
    }
}

/// `lab ls` as a table.
fn list(prefix: &str, out: &mut impl Write) -> Result<()> {
    let Some(listing) = mesh_lab::list(prefix) else {
        writeln!(out, "no lab {prefix:?} (start one with `meshctl lab up`)")?;
        return Ok(());
    };
    crate::format::tabwriter::write_rows(out, &listing.rows)?;
    writeln!(out, "images: {}", listing.images.join(" "))?;
    writeln!(out, "lab CA: {}", listing.ca_cert.display())?;
    if !listing.complete {
        writeln!(
            out,
            "(this lab did not finish coming up; `meshctl lab up` cleans it and starts again)"
        )?;
    }
    Ok(())
}
