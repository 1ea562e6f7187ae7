//! `meshctl swarm init | join | join-token | leave | inspect | update | ca [--rotate |
//! --admin-cert DIR]`.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use mesh_api::{InitRequest, JoinRequest, Reply, Request, SwarmUpdate};
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
        /// Validity period for node certificates (default 2160h0m0s, at least 1h).
        #[arg(long, value_name = "DURATION", value_parser = cert_expiry)]
        cert_expiry: Option<u64>,
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
    }])
}

/// `swarm inspect --pretty`: the lines of `docker info`'s swarm section that say the same.
pub fn swarm_pretty(s: &mesh_api::SwarmInfo) -> String {
    let rotation = s.root_rotation_pending.map_or_else(String::new, |n| {
        format!(" Root Rotation In Progress: {n} nodes to renew\n")
    });
    format!(
        "ID: {}\nCA Configuration:\n Expiry Duration: {}\n{rotation}",
        s.id,
        mesh_cluster::certs::human_expiry(s.cert_expiry_ms)
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

pub fn run(target: &Target, cmd: SwarmCommand, out: &mut impl Write) -> Result<i32> {
    match cmd {
        SwarmCommand::Init {
            advertise_addr,
            listen_addr,
            cert_expiry,
        } => {
            let reply = call(
                target,
                &Request::Init(InitRequest {
                    advertise_addr,
                    listen_addr,
                    cert_expiry_ms: cert_expiry,
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
        SwarmCommand::Update { cert_expiry } => {
            let reply = call(
                target,
                &Request::SwarmUpdate(SwarmUpdate {
                    cert_expiry_ms: cert_expiry,
                }),
            )?;
            let Reply::Done = reply else {
                return Err(unexpected(&reply));
            };
            writeln!(out, "Swarm updated.")?;
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
    fn swarm_settings_print_as_docker() {
        let s = mesh_api::SwarmInfo {
            id: mesh_cluster::Id::from("abc"),
            created_at: 0,
            updated_at: 0,
            version: 7,
            cert_expiry_ms: mesh_cluster::certs::DEFAULT_CERT_EXPIRY_MS,
            root_ca_cert_pem: "PEM".into(),
            root_rotation_pending: None,
        };
        assert_eq!(
            swarm_pretty(&s),
            "ID: abc\nCA Configuration:\n Expiry Duration: 3 months\n"
        );
        let j = swarm_json(&s);
        assert_eq!(
            j[0]["Spec"]["CAConfig"]["NodeCertExpiry"],
            7_776_000_000_000_000_u64
        );
        assert_eq!(j[0]["TLSInfo"]["TrustRoot"], "PEM");
        assert_eq!(j[0]["RootRotationInProgress"], false);
        let rotating = mesh_api::SwarmInfo {
            root_rotation_pending: Some(2),
            ..s
        };
        assert!(
            swarm_pretty(&rotating).ends_with(" Root Rotation In Progress: 2 nodes to renew\n")
        );
        assert_eq!(cert_expiry("2160h"), Ok(7_776_000_000));
        assert!(
            cert_expiry("3 months")
                .unwrap_err()
                .contains("invalid duration")
        );
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
