//! A node's membership on disk: how `meshd` was started ([`DaemonConfig`], where its files
//! are), who the node is in its swarm ([`Identity`], `swarm.json`), and what runs for a member
//! ([`Member`]).

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use mesh_cluster::Id;
use mesh_cluster::state::NodeRole;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use mesh_agent::networking::Networking;
use mesh_api::tls::LiveCredentials;
use mesh_engine::EngineHandle;
use mesh_manager::{Manager, ManagerHook};

use super::Daemon;

/// How `meshd` was started.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    pub data_dir: PathBuf,
    pub hostname: String,
    /// The default for `swarm init/join --advertise-addr`.
    pub advertise_addr: Option<Ipv4Addr>,
    /// Control loops to attach to each manager this node starts.
    pub on_manager: Vec<ManagerHook>,
    /// How the agent plumbs its tasks' networks ([`mesh_agent::networking`]).
    pub task_networking: Networking,
    /// The node's engine: where its tasks run.
    pub engine: EngineHandle,
}

impl DaemonConfig {
    pub fn socket(&self) -> PathBuf {
        self.data_dir.join("meshd.sock")
    }
    pub(super) fn identity_file(&self) -> PathBuf {
        self.data_dir.join("swarm.json")
    }
    /// Where init/join keep this node's certificates (also what `meshctl --host tcp://` uses).
    pub fn cert_dir(&self) -> PathBuf {
        self.data_dir.join("certs")
    }
    pub(super) fn raft_dir(&self) -> PathBuf {
        self.data_dir.join("raft")
    }
}

/// Who this node is in its swarm (`swarm.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Identity {
    pub cluster_id: Id,
    pub node_id: Id,
    pub role: NodeRole,
    /// 0 unless a manager.
    pub raft_id: u64,
    pub advertise_addr: Ipv4Addr,
    pub listen_addr: SocketAddr,
    /// The managers last heard of (`IP:PORT`).
    pub managers: Vec<String>,
}

impl Identity {
    pub(super) fn manager_addr(&self) -> String {
        format!("{}:{}", self.advertise_addr, self.listen_addr.port())
    }
}

/// A node that is part of a swarm: what runs for it.
pub(super) struct Member {
    pub(super) identity: Mutex<Identity>,
    /// Its certificate, renewed in place ([`super::renew`]).
    pub(super) creds: Arc<LiveCredentials>,
    /// Wakes the renewal loop at once (the swarm trusts other roots: a CA rotation).
    pub(super) renew_now: Arc<tokio::sync::Notify>,
    pub(super) manager: Option<Manager>,
    pub(super) server: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
    pub(super) agent: Mutex<Option<JoinHandle<()>>>,
    pub(super) renewal: Mutex<Option<JoinHandle<()>>>,
}

impl Member {
    pub(super) fn identity(&self) -> Identity {
        self.identity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Stops the renewals, the agent, the 2377 server and raft (requests still in flight fail).
    pub(super) async fn stop(&self) {
        for task in [&self.renewal, &self.agent] {
            let task = task
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(t) = task {
                t.abort();
            }
        }
        let server = self
            .server
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some((stop, mut task)) = server {
            let _ = stop.send(());
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                tracing::debug!("2377 server did not drain within 2s; dropping its connections");
                task.abort();
            }
        }
        if let Some(m) = &self.manager {
            m.shutdown().await;
        }
    }
}

pub(super) fn remove_dir(p: &Path) -> Result<()> {
    match fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", p.display())),
    }
}

impl Daemon {
    pub(super) fn save_identity(&self, id: &Identity) -> Result<()> {
        let path = self.cfg.identity_file();
        mesh_api::private::write_private(&path, &serde_json::to_vec_pretty(id)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Removes the swarm membership from disk.
    pub(super) fn wipe(&self) {
        let _ = fs::remove_file(self.cfg.identity_file());
        for d in [self.cfg.cert_dir(), self.cfg.raft_dir()] {
            if let Err(e) = remove_dir(&d) {
                tracing::warn!("{e:#}");
            }
        }
    }
}
