//! `meshctl swarm init | join | join-token | leave | inspect | update | ca [--rotate |
//! --admin-cert DIR] | unlock | unlock-key`.

use std::io::{BufRead, IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use mesh_api::{InitRequest, JoinRequest, Reply, Request, SwarmUpdate, UnlockRequest};
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
        /// Validity period for node certificates (default 2160h0m0s, at least 1h).
        #[arg(long, value_name = "DURATION", value_parser = cert_expiry)]
        cert_expiry: Option<u64>,
        /// How networks cross between nodes unless created with `--opt routing`, and the
        /// routing mesh's: vxlan (default) or native (no encapsulation).
        #[arg(long, value_name = "native|vxlan", value_parser = super::lab::routing)]
        default_routing: Option<mesh_cluster::net::Routing>,
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
    /// Show the swarm's settings (JSON, or `--pretty`).
    Inspect {
        /// Print the settings as text, as `docker info` does.
        #[arg(long)]
        pretty: bool,
    },
    /// Change the swarm's settings.
    Update {
        /// Lock managers when they restart (true|false; alone: true).
        #[arg(long, value_name = "true|false", num_args = 0..=1, default_missing_value = "true")]
        autolock: Option<bool>,
        /// Validity period for node certificates (at least 1h); each node's next renewal
        /// uses it.
        #[arg(long, value_name = "DURATION", value_parser = cert_expiry)]
        cert_expiry: Option<u64>,
    },
    /// The swarm's root CA: print it, or (`--admin-cert DIR`, on a manager) write an admin
    /// client certificate for `meshctl --host tcp://IP:2377 --cert-dir DIR`.
    Ca {
        /// Write a new admin client certificate, its key and the CA into this (new or empty)
        /// directory, as ca.pem, node.pem and node-key.pem.
        #[arg(long, value_name = "DIR")]
        admin_cert: Option<PathBuf>,
        /// With --admin-cert: how long the certificate is valid (default: the swarm's
        /// --cert-expiry).
        #[arg(long, value_name = "DURATION", value_parser = cert_expiry, requires = "admin_cert")]
        cert_expiry: Option<u64>,
        /// Make a new root CA: every node renews to it (it is cross-signed by the current one,
        /// so nothing stops), then it replaces the current one. The join tokens change.
        #[arg(long, conflicts_with = "admin_cert")]
        rotate: bool,
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

/// `--cert-expiry`: a Go duration, in milliseconds (the manager checks the minimum).
fn cert_expiry(s: &str) -> Result<u64, String> {
    mesh_cluster::spec::parse_duration(s).map_err(|e| e.0)
}

/// `swarm inspect`'s JSON, shaped as the Engine API's swarm object (durations in nanoseconds).
pub fn swarm_json(s: &mesh_api::SwarmInfo) -> serde_json::Value {
    use super::service::inspect::rfc3339;
    serde_json::json!([{
        "ID": s.id.as_str(),
        "Version": { "Index": s.version },
        "CreatedAt": rfc3339(s.created_at),
        "UpdatedAt": rfc3339(s.updated_at),
        "Spec": {
            "CAConfig": { "NodeCertExpiry": u128::from(s.cert_expiry_ms) * 1_000_000 },
        },
        "TLSInfo": { "TrustRoot": s.root_ca_cert_pem },
        "RootRotationInProgress": s.root_rotation_pending.is_some(),
        "DefaultRouting": s.default_routing.as_str(),
    }])
}

/// `swarm inspect --pretty`: the lines of `docker info`'s swarm section that say the same.
pub fn swarm_pretty(s: &mesh_api::SwarmInfo) -> String {
    let rotation = s.root_rotation_pending.map_or_else(String::new, |n| {
        format!(" Root Rotation In Progress: {n} nodes to renew\n")
    });
    format!(
        "ID: {}\nCA Configuration:\n Expiry Duration: {}\n{rotation}Default Routing: {}\n",
        s.id,
        mesh_cluster::certs::human_expiry(s.cert_expiry_ms),
        s.default_routing
    )
}

/// Writes an admin certificate into `dir`, which must not hold certificates already (it could
/// be a node's own `certs/`).
fn write_admin_cert(dir: &std::path::Path, c: mesh_api::AdminCertReply) -> Result<()> {
    for name in ["ca.pem", "node.pem", "node-key.pem"] {
        if dir.join(name).exists() {
            anyhow::bail!(
                "{} already holds {name}: give --admin-cert a new or empty directory (nothing was written)",
                dir.display()
            );
        }
    }
    mesh_api::tls::Credentials {
        ca_pem: c.ca_pem,
        cert_pem: c.cert_pem,
        key_pem: c.key_pem,
    }
    .save(dir)
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

/// `swarm unlock`, `unlock-key`.
fn run_lock(target: &Target, cmd: SwarmCommand, out: &mut impl Write) -> Result<i32> {
    match cmd {
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
            cert_expiry,
            default_routing,
        } => {
            let reply = call(
                target,
                &Request::Init(InitRequest {
                    advertise_addr,
                    listen_addr,
                    autolock,
                    cert_expiry_ms: cert_expiry,
                    default_routing,
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
        cmd @ (SwarmCommand::Unlock | SwarmCommand::UnlockKey { .. }) => {
            return run_lock(target, cmd, out);
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
        cmd @ (SwarmCommand::Inspect { .. }
        | SwarmCommand::Update { .. }
        | SwarmCommand::Ca { .. }) => return run_settings(target, cmd, out),
    }
    Ok(0)
}

/// `swarm inspect`, `update` and `ca`.
fn run_settings(target: &Target, cmd: SwarmCommand, out: &mut impl Write) -> Result<i32> {
    match cmd {
        SwarmCommand::Inspect { pretty } => {
            let reply = call(target, &Request::SwarmInspect)?;
            let Reply::Swarm(s) = reply else {
                return Err(unexpected(&reply));
            };
            if pretty {
                write!(out, "{}", swarm_pretty(&s))?;
            } else {
                writeln!(out, "{}", serde_json::to_string_pretty(&swarm_json(&s))?)?;
            }
        }
        SwarmCommand::Update {
            autolock,
            cert_expiry,
        } => {
            if autolock.is_none() && cert_expiry.is_none() {
                anyhow::bail!(
                    "nothing to update: use --autolock=true|false or --cert-expiry DURATION"
                );
            }
            // The expiry first: a bad one is refused before autolock changes.
            if cert_expiry.is_some() {
                let reply = call(
                    target,
                    &Request::SwarmUpdate(SwarmUpdate {
                        cert_expiry_ms: cert_expiry,
                    }),
                )?;
                let Reply::Done = reply else {
                    return Err(unexpected(&reply));
                };
            }
            let mut unlock_key = None;
            if let Some(enabled) = autolock {
                let reply = call(target, &Request::SwarmAutolock { enabled })?;
                let Reply::UnlockKey(k) = reply else {
                    return Err(unexpected(&reply));
                };
                unlock_key = k.key;
            }
            writeln!(out, "Swarm updated.")?;
            if let Some(key) = unlock_key {
                write!(out, "{}", unlock_message(&key))?;
            }
        }
        SwarmCommand::Ca { rotate: true, .. } => {
            let reply = call(target, &Request::CaRotate)?;
            let Reply::Done = reply else {
                return Err(unexpected(&reply));
            };
            writeln!(
                out,
                "Root CA rotation started: every node renews its certificate to the new root, which then replaces the current one (`meshctl swarm inspect --pretty` shows the progress). The join tokens change."
            )?;
        }
        SwarmCommand::Ca {
            admin_cert: Some(dir),
            cert_expiry,
            ..
        } => {
            let reply = call(
                target,
                &Request::AdminCert {
                    expiry_ms: cert_expiry,
                },
            )?;
            let Reply::AdminCert(c) = reply else {
                return Err(unexpected(&reply));
            };
            write_admin_cert(&dir, c)?;
            writeln!(
                out,
                "Wrote an admin client certificate to {}: use it with meshctl --host tcp://MANAGER:2377 --cert-dir {}",
                dir.display(),
                dir.display()
            )?;
        }
        SwarmCommand::Ca { .. } => {
            let reply = call(target, &Request::SwarmInspect)?;
            let Reply::Swarm(s) = reply else {
                return Err(unexpected(&reply));
            };
            write!(out, "{}", s.root_ca_cert_pem)?;
        }
        _ => unreachable!("run() sends only the settings commands here"),
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
    fn swarm_settings_print_as_docker() {
        let s = mesh_api::SwarmInfo {
            id: mesh_cluster::Id::from("abc"),
            created_at: 0,
            updated_at: 0,
            version: 7,
            cert_expiry_ms: mesh_cluster::certs::DEFAULT_CERT_EXPIRY_MS,
            root_ca_cert_pem: "PEM".into(),
            root_rotation_pending: None,
            default_routing: mesh_cluster::net::Routing::Native,
        };
        assert_eq!(
            swarm_pretty(&s),
            "ID: abc\nCA Configuration:\n Expiry Duration: 3 months\nDefault Routing: native\n"
        );
        let j = swarm_json(&s);
        assert_eq!(
            j[0]["Spec"]["CAConfig"]["NodeCertExpiry"],
            7_776_000_000_000_000_u64
        );
        assert_eq!(j[0]["TLSInfo"]["TrustRoot"], "PEM");
        assert_eq!(j[0]["RootRotationInProgress"], false);
        assert_eq!(j[0]["DefaultRouting"], "native");
        let rotating = mesh_api::SwarmInfo {
            root_rotation_pending: Some(2),
            ..s
        };
        assert!(
            swarm_pretty(&rotating).ends_with(
                " Root Rotation In Progress: 2 nodes to renew\nDefault Routing: native\n"
            )
        );
        assert_eq!(cert_expiry("2160h"), Ok(7_776_000_000));
        assert!(
            cert_expiry("3 months")
                .unwrap_err()
                .contains("invalid duration")
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
                swarm: SwarmCommand::Update { autolock, .. },
            } = Cli::try_parse_from(args).unwrap()
            else {
                panic!("{args:?}: not update")
            };
            assert_eq!(autolock, want, "{args:?}");
        }
        assert!(Cli::try_parse_from(["x", "update", "--autolock=maybe"]).is_err());
    }

    #[test]
    fn an_admin_certificate_never_overwrites_certificates() {
        /// A scratch directory, removed on drop.
        struct Scratch(PathBuf);
        impl Scratch {
            fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Scratch {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let dir =
            Scratch(std::env::temp_dir().join(format!("meshctl-admin-{}", std::process::id())));
        std::fs::create_dir_all(dir.path()).unwrap();
        std::fs::write(dir.path().join("node.pem"), "a node's").unwrap();
        let c = mesh_api::AdminCertReply {
            ca_pem: "CA".into(),
            cert_pem: "CERT".into(),
            key_pem: "KEY".into(),
        };
        let e = write_admin_cert(dir.path(), c.clone()).unwrap_err();
        assert!(e.to_string().contains("already holds node.pem"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("node.pem")).unwrap(),
            "a node's"
        );
        let fresh = dir.path().join("admin");
        write_admin_cert(&fresh, c).unwrap();
        assert_eq!(
            std::fs::read_to_string(fresh.join("node-key.pem")).unwrap(),
            "KEY"
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
