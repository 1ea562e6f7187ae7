//! `meshctl`'s cluster commands (`swarm`, `node`, `service`, `network`, `mesh`, `stack`): how meshctl
//! finds its cluster, and the output as Docker prints it.
//!
//! meshctl talks to one meshd: `--host` (or `MESH_HOST`), by default the local node's socket
//! `unix:///var/lib/meshd/meshd.sock`. `--host tcp://IP:2377` reaches a manager over mutual TLS
//! with the certificate `swarm init`/`join` left in `<data-dir>/certs/` (`--cert-dir` or
//! `MESH_CERT_PATH`, default `/var/lib/meshd/certs`); a worker's certificate gets only what a
//! worker may do.

pub mod blob;
pub mod lab;
pub mod mesh;
pub mod network;
pub mod node;
pub mod service;
pub mod stack;
pub mod status;
pub mod swarm;
pub mod system;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use mesh_api::tls::Credentials;
use mesh_api::transport::Client;
use mesh_api::{ApiError, Code, Reply, Request};

/// Where meshctl goes by default.
pub const DEFAULT_HOST: &str = "unix:///var/lib/meshd/meshd.sock";
/// Where meshctl finds its client certificate for `tcp://` hosts by default.
pub const DEFAULT_CERT_DIR: &str = "/var/lib/meshd/certs";

/// `--host` and `--cert-dir`, shared by every cluster command.
#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    /// The meshd to talk to: `unix:///path/to/meshd.sock` or `tcp://IP:2377`.
    #[arg(long, short = 'H', env = "MESH_HOST", default_value = DEFAULT_HOST, global = true)]
    pub host: String,
    /// For tcp:// hosts: the folder with ca.pem, node.pem and node-key.pem.
    #[arg(long, env = "MESH_CERT_PATH", default_value = DEFAULT_CERT_DIR, global = true)]
    pub cert_dir: PathBuf,
}

/// An error already worded for the user, printed as is (Docker's "Error response from daemon").
#[derive(Debug)]
pub struct Reported(pub String);

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Reported {}

/// What `--host` names.
#[derive(Debug, PartialEq, Eq)]
pub enum Host {
    Unix(PathBuf),
    Tcp(String),
}

/// Parses `--host`.
pub fn parse_host(host: &str) -> Result<Host, String> {
    if let Some(p) = host.strip_prefix("unix://") {
        if p.is_empty() {
            return Err(format!("invalid --host {host:?}: the socket path is empty"));
        }
        return Ok(Host::Unix(PathBuf::from(p)));
    }
    if let Some(a) = host.strip_prefix("tcp://") {
        let a = a.trim_end_matches('/');
        let addr = if a.contains(':') {
            a.to_owned()
        } else {
            format!("{a}:2377")
        };
        if addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "invalid --host {host:?}: expected tcp://IP:PORT such as tcp://198.18.0.11:2377"
            ));
        }
        return Ok(Host::Tcp(addr));
    }
    Err(format!(
        "invalid --host {host:?}: use unix:///path/to/meshd.sock or tcp://IP:2377"
    ))
}

/// A client for `target`.
pub fn connect(target: &Target) -> Result<Client> {
    match parse_host(&target.host).map_err(anyhow::Error::msg)? {
        Host::Unix(p) => Ok(Client::local(&p)),
        Host::Tcp(addr) => {
            let creds = Credentials::load(&target.cert_dir).with_context(|| {
                format!(
                    "--host tcp:// needs this node's certificates in {} (made by `meshctl swarm init` or `join`; see --cert-dir)",
                    target.cert_dir.display()
                )
            })?;
            let now = mesh_api::now_millis().cast_signed() / 1000;
            creds
                .check_not_expired(now)
                .with_context(|| format!("{}", target.cert_dir.display()))?;
            Ok(Client::tls(&addr, creds.client_config()?))
        }
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Sends one request and waits for the answer; daemon errors come back as [`Reported`].
pub fn call(target: &Target, req: &Request) -> Result<Reply> {
    let rt = runtime()?;
    let _guard = rt.enter();
    let client = connect(target)?;
    // Joining a manager waits for raft to take it in: give membership changes time.
    let timeout = match req {
        Request::Init(_) | Request::Join(_) | Request::Leave { .. } => Duration::from_mins(2),
        _ => Duration::from_secs(30),
    };
    rt.block_on(client.call_with_timeout(req, timeout))
        .map_err(|e| reported(&client, &e))
}

pub(crate) fn reported(client: &Client, e: &ApiError) -> anyhow::Error {
    let text = match e.code {
        Code::Unavailable | Code::Unreachable if e.message.starts_with("cannot reach") => format!(
            "Cannot connect to the meshd daemon at {}. Is meshd running? ({})",
            client.target(),
            e.message
        ),
        _ => format!("Error response from daemon: {}", e.message),
    };
    Reported(text).into()
}

/// `Reply` was not the expected kind.
pub fn unexpected(reply: &Reply) -> anyhow::Error {
    anyhow::anyhow!("unexpected answer from meshd: {reply:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse_as_docker_hosts_do() {
        assert_eq!(
            parse_host("unix:///var/lib/meshd/meshd.sock"),
            Ok(Host::Unix("/var/lib/meshd/meshd.sock".into()))
        );
        assert_eq!(
            parse_host("tcp://198.18.0.11:2377"),
            Ok(Host::Tcp("198.18.0.11:2377".into()))
        );
        assert_eq!(
            parse_host("tcp://198.18.0.11"),
            Ok(Host::Tcp("198.18.0.11:2377".into()))
        );
        assert!(
            parse_host("198.18.0.11:2377")
                .unwrap_err()
                .contains("tcp://")
        );
        assert!(parse_host("tcp://nohost:x").is_err());
        assert!(parse_host("unix://").is_err());
    }
}
