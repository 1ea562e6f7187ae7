//! `meshctl swarm init | join | join-token | leave`.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Result;
use clap::Subcommand;
use mesh_api::{InitRequest, JoinRequest, Reply, Request};
use mesh_cluster::state::NodeRole;

use super::{Target, call, unexpected};

#[derive(Subcommand, Debug)]
pub enum SwarmCommand {
    /// Make this node the first manager of a new swarm.
    Init {
        /// The address other nodes reach this one at.
        #[arg(long)]
        advertise_addr: Option<Ipv4Addr>,
        /// Where to listen for the swarm (default 0.0.0.0:2377).
        #[arg(long)]
        listen_addr: Option<SocketAddr>,
    },
    /// Join a swarm as a worker or a manager (the token decides).
    Join {
        #[arg(long)]
        token: String,
        #[arg(long)]
        advertise_addr: Option<Ipv4Addr>,
        #[arg(long)]
        listen_addr: Option<SocketAddr>,
        /// A manager: HOST:PORT.
        remote: String,
    },
    /// Show (or rotate) the join token of a role.
    JoinToken {
        /// Print the token only.
        #[arg(long, short)]
        quiet: bool,
        /// Replace the token: the old one admits no new node.
        #[arg(long)]
        rotate: bool,
        /// worker or manager.
        role: String,
    },
    /// Leave the swarm.
    Leave {
        /// Leave even as a manager.
        #[arg(long, short)]
        force: bool,
    },
}

/// The role argument of `join-token`.
pub fn parse_role(s: &str) -> Result<NodeRole, String> {
    match s {
        "worker" => Ok(NodeRole::Worker),
        "manager" => Ok(NodeRole::Manager),
        other => Err(format!("unknown role {other:?}: use worker or manager")),
    }
}

fn role_word(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Worker => "worker",
        NodeRole::Manager => "manager",
    }
}

/// The instructions Docker prints with a token.
pub fn join_instructions(role: NodeRole, token: &str, addr: &str) -> String {
    format!(
        "To add a {} to this swarm, run the following command:\n\n    meshctl swarm join --token {token} {addr}\n",
        role_word(role)
    )
}

/// What `swarm init` prints.
pub fn init_message(node_id: &str, token: &str, addr: &str) -> String {
    format!(
        "Swarm initialized: current node ({node_id}) is now a manager.\n\n{}\nTo add a manager to this swarm, run 'meshctl swarm join-token manager' and follow the instructions.\n",
        join_instructions(NodeRole::Worker, token, addr)
    )
}

pub fn run(target: &Target, cmd: SwarmCommand, out: &mut impl Write) -> Result<i32> {
    match cmd {
        SwarmCommand::Init {
            advertise_addr,
            listen_addr,
        } => {
            let reply = call(
                target,
                &Request::Init(InitRequest {
                    advertise_addr,
                    listen_addr,
                }),
            )?;
            let Reply::Init(r) = reply else {
                return Err(unexpected(&reply));
            };
            writeln!(
                out,
                "{}",
                init_message(r.node_id.as_str(), &r.worker_token, &r.manager_addr)
            )?;
        }
        SwarmCommand::Join {
            token,
            advertise_addr,
            listen_addr,
            remote,
        } => {
            let reply = call(
                target,
                &Request::Join(JoinRequest {
                    token,
                    remote,
                    advertise_addr,
                    listen_addr,
                }),
            )?;
            let Reply::Joined { role, .. } = reply else {
                return Err(unexpected(&reply));
            };
            writeln!(out, "This node joined a swarm as a {}.", role_word(role))?;
        }
        SwarmCommand::JoinToken {
            quiet,
            rotate,
            role,
        } => {
            let role = parse_role(&role).map_err(anyhow::Error::msg)?;
            let reply = call(target, &Request::JoinToken { role, rotate })?;
            let Reply::JoinToken(t) = reply else {
                return Err(unexpected(&reply));
            };
            if quiet {
                writeln!(out, "{}", t.token)?;
            } else {
                if rotate {
                    writeln!(
                        out,
                        "Successfully rotated {} join token.\n",
                        role_word(role)
                    )?;
                }
                writeln!(
                    out,
                    "{}",
                    join_instructions(role, &t.token, &t.manager_addr)
                )?;
            }
        }
        SwarmCommand::Leave { force } => {
            let reply = call(target, &Request::Leave { force })?;
            let Reply::Left = reply else {
                return Err(unexpected(&reply));
            };
            writeln!(out, "Node left the swarm.")?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_prints_what_swarm_prints() {
        assert_eq!(
            init_message("abc", "MSHTKN-1-x-y", "198.18.0.11:2377"),
            "Swarm initialized: current node (abc) is now a manager.\n\n\
             To add a worker to this swarm, run the following command:\n\n    \
             meshctl swarm join --token MSHTKN-1-x-y 198.18.0.11:2377\n\n\
             To add a manager to this swarm, run 'meshctl swarm join-token manager' and follow the instructions.\n"
        );
    }

    #[test]
    fn roles_parse() {
        assert_eq!(parse_role("worker"), Ok(NodeRole::Worker));
        assert_eq!(parse_role("manager"), Ok(NodeRole::Manager));
        assert!(
            parse_role("boss")
                .unwrap_err()
                .contains("worker or manager")
        );
    }
}
