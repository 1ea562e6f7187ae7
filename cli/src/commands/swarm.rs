//! `meshctl swarm init | join | join-token | leave | update | unlock | unlock-key`.

use std::io::{BufRead, IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Result;
use clap::Subcommand;
use mesh_api::{InitRequest, JoinRequest, Reply, Request, UnlockRequest};
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
        /// Lock managers when they restart: they need the unlock key printed now.
        #[arg(long)]
        autolock: bool,
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
    /// Change the swarm's settings.
    Update {
        /// Lock managers when they restart (true|false; alone: true).
        #[arg(long, value_name = "true|false", num_args = 0..=1, default_missing_value = "true")]
        autolock: Option<bool>,
    },
    /// Unlock a locked manager: the key is read from standard input (asked for on a terminal).
    Unlock,
    /// Show (or rotate) the unlock key.
    UnlockKey {
        /// Print the key only.
        #[arg(long, short)]
        quiet: bool,
        /// Replace the key: locked managers then need the new one.
        #[arg(long)]
        rotate: bool,
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

/// What Swarm prints with an unlock key.
pub fn unlock_message(key: &str) -> String {
    format!(
        "To unlock a swarm manager after it restarts, run the `meshctl swarm unlock`\ncommand and provide the following key:\n\n    {key}\n\nPlease remember to store this key in a password manager, since without it you\nwill not be able to restart the manager.\n"
    )
}

/// The unlock key: one line of standard input, asked for when it is a terminal (without echo).
fn read_unlock_key() -> Result<String> {
    let stdin = std::io::stdin();
    let mut line = String::new();
    if stdin.is_terminal() {
        eprint!("Enter unlock key: ");
        let _echo_off = EchoOff::new(&stdin);
        stdin.lock().read_line(&mut line)?;
        eprintln!();
    } else {
        stdin.lock().read_line(&mut line)?;
    }
    Ok(line.trim().to_owned())
}

/// The terminal's echo turned off until dropped.
struct EchoOff<'a> {
    fd: std::os::fd::BorrowedFd<'a>,
    saved: Option<nix::sys::termios::Termios>,
}

impl<'a> EchoOff<'a> {
    fn new(stdin: &'a std::io::Stdin) -> Self {
        use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
        use std::os::fd::AsFd;
        let fd = stdin.as_fd();
        let saved = tcgetattr(fd).ok();
        if let Some(t) = &saved {
            let mut quiet = t.clone();
            quiet.local_flags.remove(LocalFlags::ECHO);
            let _ = tcsetattr(fd, SetArg::TCSANOW, &quiet);
        }
        Self { fd, saved }
    }
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(self.fd, nix::sys::termios::SetArg::TCSANOW, t);
        }
    }
}

/// `swarm update`, `unlock`, `unlock-key`.
fn run_lock(target: &Target, cmd: SwarmCommand, out: &mut impl Write) -> Result<i32> {
    match cmd {
        SwarmCommand::Update { autolock } => {
            let Some(enabled) = autolock else {
                anyhow::bail!("nothing to update: use --autolock=true or --autolock=false");
            };
            let reply = call(target, &Request::SwarmAutolock { enabled })?;
            let Reply::UnlockKey(k) = reply else {
                return Err(unexpected(&reply));
            };
            writeln!(out, "Swarm updated.")?;
            if let Some(key) = k.key {
                write!(out, "{}", unlock_message(&key))?;
            }
        }
        SwarmCommand::Unlock => {
            // As docker: say so before asking for a key that is not needed.
            let info = call(target, &Request::Info)?;
            let Reply::Info(info) = info else {
                return Err(unexpected(&info));
            };
            if info.node_id.is_none() {
                anyhow::bail!("This node is not part of a swarm");
            }
            if !info.locked {
                anyhow::bail!("swarm is not locked");
            }
            let key = read_unlock_key()?;
            let reply = call(target, &Request::Unlock(UnlockRequest { key }))?;
            let Reply::Done = reply else {
                return Err(unexpected(&reply));
            };
        }
        SwarmCommand::UnlockKey { quiet, rotate } => {
            let reply = call(target, &Request::UnlockKey { rotate })?;
            let Reply::UnlockKey(k) = reply else {
                return Err(unexpected(&reply));
            };
            let key = k.key.unwrap_or_default();
            if quiet {
                writeln!(out, "{key}")?;
            } else {
                if rotate {
                    writeln!(out, "Successfully rotated manager unlock key.\n")?;
                }
                write!(out, "{}", unlock_message(&key))?;
            }
        }
        other => return Err(anyhow::anyhow!("not a lock command: {other:?}")),
    }
    Ok(0)
}

pub fn run(target: &Target, cmd: SwarmCommand, out: &mut impl Write) -> Result<i32> {
    match cmd {
        SwarmCommand::Init {
            advertise_addr,
            listen_addr,
            autolock,
        } => {
            let reply = call(
                target,
                &Request::Init(InitRequest {
                    advertise_addr,
                    listen_addr,
                    autolock,
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
            if let Some(key) = r.unlock_key {
                write!(out, "{}", unlock_message(&key))?;
            }
        }
        cmd @ (SwarmCommand::Update { .. }
        | SwarmCommand::Unlock
        | SwarmCommand::UnlockKey { .. }) => return run_lock(target, cmd, out),
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
    fn the_unlock_key_is_printed_as_swarm_prints_it() {
        assert_eq!(
            unlock_message("SWMKEY-1-abc"),
            "To unlock a swarm manager after it restarts, run the `meshctl swarm unlock`\n\
             command and provide the following key:\n\n    SWMKEY-1-abc\n\n\
             Please remember to store this key in a password manager, since without it you\n\
             will not be able to restart the manager.\n"
        );
    }

    #[test]
    fn update_takes_autolock_true_false_or_alone() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(subcommand)]
            swarm: SwarmCommand,
        }
        for (args, want) in [
            (&["x", "update", "--autolock=true"][..], Some(true)),
            (&["x", "update", "--autolock=false"][..], Some(false)),
            (&["x", "update", "--autolock"][..], Some(true)),
            (&["x", "update"][..], None),
        ] {
            let Cli {
                swarm: SwarmCommand::Update { autolock },
            } = Cli::try_parse_from(args).unwrap()
            else {
                panic!("{args:?}: not update")
            };
            assert_eq!(autolock, want, "{args:?}");
        }
        assert!(Cli::try_parse_from(["x", "update", "--autolock=maybe"]).is_err());
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
