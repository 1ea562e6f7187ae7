//! The node daemon's runtime: what `meshd` runs.
//!
//! It serves `<data-dir>/meshd.sock` (mode 0600, no TLS, like docker.sock) from the start, so
//! that `swarm init` and `swarm join` can reach a node that is in no swarm yet. Once in one, the
//! node's identity lives in `<data-dir>/swarm.json`, its certificates in `<data-dir>/certs/` and,
//! on managers, raft in `<data-dir>/raft/`; after a restart the daemon resumes as the same node.
//! Managers also serve TCP 2377 (mutual TLS); every node runs an [`agent`].
//!
//! Authorisation is here, in `Daemon::call` (the [`Handler`] of both listeners): each request's [`Access`] against the caller
//! ([`Peer`]).

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::Stream;
use mesh_cluster::Id;
use mesh_cluster::state::NodeRole;
use mesh_cluster::token::JoinToken;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use mesh_agent::networking::Networking;
use mesh_agent::{AgentConfig, Describer, NodeEvents};
use mesh_api::tls::{self as pki, Credentials};
use mesh_api::transport::{self, Client, Handler, Peer};
use mesh_api::{
    Access, AgentMessage, ApiError, Code, Info, InitReply, InitRequest, JoinClusterRequest,
    JoinRequest, MANAGER_PORT, ManagerMessage, NodeUpdate, Reply, Request, StreamItem,
};
use mesh_engine::{EngineError, EngineHandle};
use mesh_manager::ca::{self, NodeKey};
use mesh_manager::dispatcher::Dispatcher;
use mesh_manager::handlers::services::normalize_image;
use mesh_manager::handlers::swarm::bootstrap_tx;
use mesh_manager::manager::{LOGS_KEPT, SNAPSHOT_EVERY};
use mesh_manager::{ClusterApi, Manager, ManagerConfig, ManagerHook};

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
    fn identity_file(&self) -> PathBuf {
        self.data_dir.join("swarm.json")
    }
    /// Where init/join keep this node's certificates (also what `meshctl --host tcp://` uses).
    pub fn cert_dir(&self) -> PathBuf {
        self.data_dir.join("certs")
    }
    fn raft_dir(&self) -> PathBuf {
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
    fn manager_addr(&self) -> String {
        format!("{}:{}", self.advertise_addr, self.listen_addr.port())
    }
}

/// A node that is part of a swarm: what runs for it.
struct Member {
    identity: Mutex<Identity>,
    creds: Credentials,
    manager: Option<Manager>,
    server: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
    agent: Mutex<Option<JoinHandle<()>>>,
}

impl Member {
    fn identity(&self) -> Identity {
        self.identity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Stops the agent, the 2377 server and raft (requests still in flight fail).
    async fn stop(&self) {
        let agent = self
            .agent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(a) = agent {
            a.abort();
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

/// The daemon. Requests from both listeners end up in [`Daemon::call`].
pub struct Daemon {
    cfg: DaemonConfig,
    describer: Describer,
    member: RwLock<Option<Arc<Member>>>,
    /// Held by init, join, leave and role changes.
    transition: tokio::sync::Mutex<()>,
    me: Weak<Daemon>,
}

/// Runs a node until `stop` resolves: serves the socket, resumes the swarm membership kept on
/// disk, then shuts everything down cleanly.
pub async fn run(cfg: DaemonConfig, stop: impl Future<Output = ()>) -> Result<()> {
    fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let sock = cfg.socket();
    let _ = fs::remove_file(&sock);
    let listener =
        UnixListener::bind(&sock).with_context(|| format!("binding {}", sock.display()))?;
    fs::set_permissions(&sock, fs::Permissions::from_mode(0o600))?;
    let daemon = Daemon::new(cfg.clone());
    daemon.resume().await?;
    let local = tokio::spawn(transport::serve_unix(listener, daemon.clone()));
    tracing::info!(socket = %sock.display(), "meshd ready");
    stop.await;
    tracing::info!("meshd stopping");
    local.abort();
    daemon.stop_member().await;
    let _ = fs::remove_file(&sock);
    Ok(())
}

fn remove_dir(p: &Path) -> Result<()> {
    match fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", p.display())),
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e.to_string())
}

impl Daemon {
    pub fn new(cfg: DaemonConfig) -> Arc<Self> {
        let describer = Describer::new(&cfg.hostname, cfg.engine.clone());
        Arc::new_cyclic(|me| Self {
            cfg,
            describer,
            member: RwLock::new(None),
            transition: tokio::sync::Mutex::new(()),
            me: me.clone(),
        })
    }

    fn member(&self) -> Option<Arc<Member>> {
        self.member
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_member(&self, m: Option<Arc<Member>>) {
        *self
            .member
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = m;
    }

    fn take_member(&self) -> Option<Arc<Member>> {
        self.member
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Takes the current member out and stops everything it runs.
    async fn stop_member(&self) {
        if let Some(member) = self.take_member() {
            member.stop().await;
        }
    }

    /// The manager handle, when this node is a manager (what later control loops attach to).
    pub fn manager(&self) -> Result<Manager, ApiError> {
        let m = self.member().ok_or_else(ApiError::not_in_swarm)?;
        m.manager.clone().ok_or_else(ApiError::not_manager)
    }

    fn save_identity(&self, id: &Identity) -> Result<()> {
        let path = self.cfg.identity_file();
        let tmp = path.with_extension("json.tmp");
        fs::write(&tmp, serde_json::to_vec_pretty(id)?)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
        fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// The agent heard of a new set of managers: keep it for the next start.
    fn remember_managers(&self, managers: Vec<String>) {
        if let Some(m) = self.member() {
            let id = {
                let mut id = m
                    .identity
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                id.managers = managers;
                id.clone()
            };
            if let Err(e) = self.save_identity(&id) {
                tracing::warn!("saving the manager list: {e:#}");
            }
        }
    }

    /// Resumes the membership kept on disk, if any.
    async fn resume(&self) -> Result<()> {
        let path = self.cfg.identity_file();
        let Ok(text) = fs::read_to_string(&path) else {
            return Ok(());
        };
        let identity: Identity =
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
        let creds = Credentials::load(&self.cfg.cert_dir())?;
        let listener = match identity.role {
            NodeRole::Manager => Some(bind(identity.listen_addr).map_err(anyhow::Error::msg)?),
            NodeRole::Worker => None,
        };
        tracing::info!(node = %identity.node_id, role = ?identity.role, "resuming swarm membership");
        let member = self.start_member(identity, creds, listener).await?;
        self.set_member(Some(Arc::new(member)));
        Ok(())
    }

    /// Starts what a member runs: raft and the 2377 server on managers, the agent everywhere.
    async fn start_member(
        &self,
        identity: Identity,
        creds: Credentials,
        listener: Option<TcpListener>,
    ) -> Result<Member> {
        let tls = creds.client_config()?;
        let mut manager = None;
        let mut server = None;
        if identity.role == NodeRole::Manager {
            let m = Manager::start(ManagerConfig {
                raft_dir: self.cfg.raft_dir(),
                raft_id: identity.raft_id,
                node_id: identity.node_id.clone(),
                addr: identity.manager_addr(),
                tls: tls.clone(),
                snapshot_every: SNAPSHOT_EVERY,
                logs_kept: LOGS_KEPT,
            })
            .await?;
            for hook in &self.cfg.on_manager {
                (hook.0)(&m);
            }
            let listener = listener.context("a manager needs its listener")?;
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let handler = self.me.upgrade().context("daemon gone")?;
            let task = tokio::spawn(transport::serve_tls(
                listener,
                creds.server_config()?,
                handler,
                async move {
                    let _ = stop_rx.await;
                },
            ));
            manager = Some(m);
            server = Some((stop_tx, task));
        }
        let node: Weak<dyn NodeEvents> = self.me.clone();
        let agent = tokio::spawn(mesh_agent::run(
            node,
            AgentConfig {
                tls,
                cluster_id: identity.cluster_id.clone(),
                node_id: identity.node_id.clone(),
                hostname: self.cfg.hostname.clone(),
                role: identity.role,
                addr: identity.advertise_addr,
                managers: identity.managers.clone(),
                describer: self.describer.clone(),
                networking: self.cfg.task_networking.clone(),
                engine: self.cfg.engine.clone(),
            },
        ));
        Ok(Member {
            identity: Mutex::new(identity),
            creds,
            manager,
            server: Mutex::new(server),
            agent: Mutex::new(Some(agent)),
        })
    }

    fn advertise(&self, asked: Option<Ipv4Addr>) -> Result<Ipv4Addr, ApiError> {
        asked.or(self.cfg.advertise_addr).ok_or_else(|| {
            ApiError::invalid(
                "could not choose an IP address to advertise: use --advertise-addr (or start meshd with --advertise-addr)",
            )
        })
    }

    /// `swarm init`.
    async fn init(&self, r: InitRequest) -> Result<Reply, ApiError> {
        let _t = self.transition.lock().await;
        if self.member().is_some() {
            return Err(ApiError::already_in_swarm());
        }
        let advertise = self.advertise(r.advertise_addr)?;
        let listen = r
            .listen_addr
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], MANAGER_PORT)));
        let listener = bind(listen)?;
        let cluster_id = Id::random();
        let node_id = Id::random();
        let ca = ca::generate_ca(&cluster_id).map_err(internal)?;
        let key = NodeKey::generate().map_err(internal)?;
        let cert = ca::issue(
            &ca.0,
            &ca.1,
            &key.csr_pem().map_err(internal)?,
            &cluster_id,
            &node_id,
            NodeRole::Manager,
        )
        .map_err(internal)?;
        let creds = Credentials {
            ca_pem: ca.0.clone(),
            cert_pem: cert,
            key_pem: key.key_pem(),
        };
        let identity = Identity {
            cluster_id: cluster_id.clone(),
            node_id: node_id.clone(),
            role: NodeRole::Manager,
            raft_id: 1,
            advertise_addr: advertise,
            listen_addr: listen,
            managers: vec![format!("{advertise}:{}", listen.port())],
        };
        let result = async {
            remove_dir(&self.cfg.raft_dir())?;
            creds.save(&self.cfg.cert_dir())?;
            let member = self
                .start_member(identity.clone(), creds, Some(listener))
                .await?;
            let manager = member.manager.clone().context("a manager")?;
            let started = async {
                manager.bootstrap().await?;
                let tx = bootstrap_tx(
                    &cluster_id,
                    &node_id,
                    &ca,
                    self.describer.get(),
                    advertise,
                    listen.port(),
                );
                manager.propose(tx).await?;
                self.save_identity(&identity)?;
                anyhow::Ok(())
            }
            .await;
            if let Err(e) = started {
                member.stop().await;
                return Err(e);
            }
            anyhow::Ok((member, manager))
        }
        .await;
        let (member, manager) = match result {
            Ok(x) => x,
            Err(e) => {
                self.wipe();
                return Err(ApiError::internal(format!("swarm init failed: {e:#}")));
            }
        };
        self.set_member(Some(Arc::new(member)));
        let state = manager.state();
        let secret = state
            .cluster
            .as_ref()
            .map(|c| c.worker_token_secret.clone())
            .unwrap_or_default();
        let ca_der = pki::pem_to_der(&ca.0).map_err(internal)?;
        tracing::info!(%node_id, %cluster_id, "swarm initialised");
        Ok(Reply::Init(InitReply {
            node_id,
            worker_token: JoinToken::new(&ca_der, &secret).to_string(),
            manager_addr: identity.manager_addr(),
        }))
    }

    /// Removes the swarm membership from disk.
    fn wipe(&self) {
        let _ = fs::remove_file(self.cfg.identity_file());
        for d in [self.cfg.cert_dir(), self.cfg.raft_dir()] {
            if let Err(e) = remove_dir(&d) {
                tracing::warn!("{e:#}");
            }
        }
    }

    /// `swarm join`.
    async fn join(&self, r: JoinRequest) -> Result<Reply, ApiError> {
        let _t = self.transition.lock().await;
        if self.member().is_some() {
            return Err(ApiError::already_in_swarm());
        }
        let token: JoinToken = r
            .token
            .parse()
            .map_err(|e| ApiError::invalid(format!("{e}")))?;
        let advertise = self.advertise(r.advertise_addr)?;
        let listen = r
            .listen_addr
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], MANAGER_PORT)));
        let remote = if r.remote.contains(':') {
            r.remote.clone()
        } else {
            format!("{}:{MANAGER_PORT}", r.remote)
        };
        if remote.parse::<SocketAddr>().is_err() {
            return Err(ApiError::invalid(format!(
                "invalid manager address {:?}: expected IP:PORT such as 198.18.0.11:2377",
                r.remote
            )));
        }
        // A manager must be able to listen; find out before anything changes.
        let listener = bind(listen)?;
        let key = NodeKey::generate().map_err(internal)?;
        let (tls, outcome) = pki::pinned_client_config(&token.ca_digest).map_err(internal)?;
        let request = Request::JoinCluster(JoinClusterRequest {
            secret: token.secret.clone(),
            csr_pem: key.csr_pem().map_err(internal)?,
            description: self.describer.get(),
            advertise_addr: advertise,
            listen_port: listen.port(),
        });
        let reply = Client::tls(&remote, tls)
            .call_with_timeout(&request, Duration::from_secs(30))
            .await;
        let mismatch = outcome
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .mismatch
            .clone();
        if let Some(found) = mismatch {
            return Err(ApiError::new(
                Code::CaMismatch,
                format!(
                    "the manager at {remote} presented a root CA that does not match the join token (token: {}, manager: {}): the token belongs to another swarm, or {remote} is not a manager of the swarm it was made for. Nothing was sent to it",
                    token.ca_digest,
                    if found.is_empty() {
                        "no CA".to_owned()
                    } else {
                        found.join(", ")
                    }
                ),
            ));
        }
        let j = match reply? {
            Reply::ClusterJoined(j) => j,
            other => return Err(internal(format!("unexpected reply to a join: {other:?}"))),
        };
        if pki::ca_pem_digest(&j.ca_pem).map_err(internal)? != token.ca_digest {
            return Err(ApiError::new(
                Code::CaMismatch,
                "the manager answered with a CA that does not match the join token",
            ));
        }
        let creds = Credentials {
            ca_pem: j.ca_pem.clone(),
            cert_pem: j.cert_pem.clone(),
            key_pem: key.key_pem(),
        };
        let identity = Identity {
            cluster_id: j.cluster_id.clone(),
            node_id: j.node_id.clone(),
            role: j.role,
            raft_id: j.raft_id,
            advertise_addr: advertise,
            listen_addr: listen,
            managers: if j.managers.is_empty() {
                vec![remote.clone()]
            } else {
                j.managers.clone()
            },
        };
        let listener = (j.role == NodeRole::Manager).then_some(listener);
        let result = async {
            remove_dir(&self.cfg.raft_dir())?;
            creds.save(&self.cfg.cert_dir())?;
            let member = Arc::new(self.start_member(identity.clone(), creds, listener).await?);
            // Serve raft from now on: the leader replicates to us while we become a voter.
            self.set_member(Some(member.clone()));
            let joined = async {
                if let Some(m) = &member.manager {
                    self.become_voter(m, &identity).await?;
                }
                self.save_identity(&identity)
            }
            .await;
            if let Err(e) = joined {
                drop(member);
                self.stop_member().await;
                return Err(e);
            }
            anyhow::Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                tracing::info!(node = %j.node_id, role = ?j.role, "joined the swarm");
                Ok(Reply::Joined {
                    node_id: j.node_id,
                    role: j.role,
                })
            }
            Err(e) => {
                self.wipe();
                Err(ApiError::internal(format!(
                    "joined the swarm as node {} but could not start: {e:#}",
                    j.node_id
                )))
            }
        }
    }

    /// A new manager (raft started, 2377 served) asks the leader to make it a voter, then waits
    /// until its own state has caught up with its arrival.
    async fn become_voter(&self, m: &Manager, identity: &Identity) -> Result<()> {
        let req = Request::AddManager {
            raft_id: identity.raft_id,
            addr: identity.manager_addr(),
        };
        call_leader(&identity.managers, &m.tls(), &req).await?;
        let mut applied = m.watch();
        let me = identity.node_id.clone();
        tokio::time::timeout(
            Duration::from_secs(20),
            applied.wait_for(|a| a.state.nodes.contains_key(&me)),
        )
        .await
        .context("this manager did not catch up with the swarm within 20s")??;
        Ok(())
    }

    /// `swarm leave`.
    async fn leave(&self, force: bool) -> Result<Reply, ApiError> {
        let _t = self.transition.lock().await;
        let member = self.member().ok_or_else(ApiError::not_in_swarm)?;
        let identity = member.identity();
        if let Some(m) = &member.manager {
            let voters = m.voters().len();
            if !force {
                let msg = if voters <= 1 {
                    "You are attempting to leave the swarm on a node that is participating as a manager. Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message.".to_owned()
                } else {
                    format!(
                        "You are attempting to leave the swarm on a node that is participating as a manager. Removing this node leaves {} managers out of a possible {voters}. Without a Raft quorum your swarm will be inaccessible. Use `--force` to suppress this message.",
                        voters - 1
                    )
                };
                return Err(ApiError::precondition(msg));
            }
            if voters > 1 {
                // Demote ourselves so that raft does not keep waiting for us.
                let demote = Request::NodeUpdate(NodeUpdate {
                    node: identity.node_id.to_string(),
                    role: Some(NodeRole::Worker),
                    ..NodeUpdate::default()
                });
                match ClusterApi::new(m).serve(&Peer::Local, demote).await {
                    Ok(_) => {
                        let me = m.raft_id();
                        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                        while m.members().contains_key(&me)
                            && tokio::time::Instant::now() < deadline
                        {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                    Err(e) => tracing::warn!("leaving without demoting first: {e}"),
                }
            }
        }
        drop(member);
        self.stop_member().await;
        self.wipe();
        // The node's tasks belong to the swarm it left: their containers go with it, and so do
        // their networks' devices and the node's gossip.
        mesh_agent::tasks::remove_node_containers(&self.cfg.engine, &identity.node_id).await;
        self.cfg.task_networking.0.left().await;
        tracing::info!(node = %identity.node_id, "left the swarm");
        Ok(Reply::Left)
    }

    /// Starts [`Self::change_role`] in the background (the agent calls it, and is replaced by it).
    fn request_role_change(self: Arc<Self>, role: NodeRole, via: String) {
        let fut: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(self.change_role(role, via));
        tokio::spawn(fut);
    }

    /// The swarm gave this node another role (promote / demote): get a certificate for it, then
    /// start or stop the manager.
    async fn change_role(self: Arc<Self>, role: NodeRole, via: String) {
        let _t = self.transition.lock().await;
        let Some(member) = self.member() else { return };
        let identity = member.identity();
        if identity.role == role {
            return;
        }
        let result = async {
            let key = NodeKey::generate()?;
            let tls = member.creds.client_config()?;
            let reply = call_leader(
                &[vec![via.clone()], identity.managers.clone()].concat(),
                &tls,
                &Request::RenewCert {
                    csr_pem: key.csr_pem()?,
                },
            )
            .await?;
            let Reply::Cert { cert_pem, raft_id } = reply else {
                anyhow::bail!("unexpected reply to a certificate renewal");
            };
            let creds = Credentials {
                ca_pem: member.creds.ca_pem.clone(),
                cert_pem,
                key_pem: key.key_pem(),
            };
            let got = creds.identity()?.role;
            if got != role {
                anyhow::bail!("the swarm issued a {got:?} certificate, not {role:?}");
            }
            let mut new_identity = identity.clone();
            new_identity.role = role;
            new_identity.raft_id = raft_id;
            let listener = match role {
                NodeRole::Manager => Some(bind(identity.listen_addr).map_err(anyhow::Error::msg)?),
                NodeRole::Worker => None,
            };
            // Stop the old member (its agent, and raft on a demoted manager) before the new one.
            self.stop_member().await;
            remove_dir(&self.cfg.raft_dir())?;
            creds.save(&self.cfg.cert_dir())?;
            self.save_identity(&new_identity)?;
            let member = self
                .start_member(new_identity.clone(), creds, listener)
                .await?;
            let member = Arc::new(member);
            self.set_member(Some(member.clone()));
            if let Some(m) = &member.manager {
                self.become_voter(m, &new_identity).await?;
            }
            anyhow::Ok(())
        }
        .await;
        match result {
            Ok(()) => tracing::info!(?role, "this node's role changed"),
            Err(e) => {
                tracing::error!("changing role to {role:?}: {e:#}");
                // Keep running as before (or restart as saved) and let the agent try again.
                if self.member().is_none()
                    && let Err(e) = self.resume().await
                {
                    tracing::error!("resuming after a failed role change: {e:#}");
                }
            }
        }
    }

    fn info(&self) -> Reply {
        let cert_dir = self.cfg.cert_dir().display().to_string();
        let Some(m) = self.member() else {
            return Reply::Info(Info {
                cert_dir,
                ..Info::default()
            });
        };
        let id = m.identity();
        Reply::Info(Info {
            node_id: Some(id.node_id.clone()),
            cluster_id: Some(id.cluster_id.clone()),
            role: Some(id.role),
            node_addr: Some(id.advertise_addr),
            managers: id.managers.clone(),
            raft_id: m.manager.as_ref().map(Manager::raft_id),
            leader_addr: m.manager.as_ref().and_then(|m| m.leader().map(|(_, a)| a)),
            cert_dir,
        })
    }

    /// Checks `req` against who sent it.
    fn authorise(&self, peer: &Peer, req: &Request) -> Result<(), ApiError> {
        if let (Peer::Node(id), Some(m)) = (peer, self.member()) {
            let ours = m.identity().cluster_id;
            if id.cluster_id != ours {
                return Err(ApiError::denied(
                    "permission denied: a certificate of another swarm",
                ));
            }
        }
        let manager_cert = matches!(peer, Peer::Node(id) if id.role == NodeRole::Manager);
        let ok = match req.access() {
            Access::Local => matches!(peer, Peer::Local),
            Access::Api => matches!(peer, Peer::Local) || manager_cert,
            Access::Anyone => true,
            Access::Node => matches!(peer, Peer::Node(_)),
            Access::Manager => manager_cert,
        };
        if ok {
            return Ok(());
        }
        let who = match peer {
            Peer::Local => "the local socket".to_owned(),
            Peer::Anonymous => "a client without a certificate".to_owned(),
            Peer::Node(id) => format!(
                "node {} with a {} certificate",
                id.node_id,
                match id.role {
                    NodeRole::Manager => "manager",
                    NodeRole::Worker => "worker",
                }
            ),
        };
        let needs = match req.access() {
            Access::Local => "is only served on the node's local socket",
            Access::Api | Access::Manager => "needs a manager certificate of this swarm",
            Access::Node => "needs a node certificate of this swarm",
            Access::Anyone => "is open to all",
        };
        Err(ApiError::denied(format!(
            "permission denied: {} {needs}, and {who} called it",
            req.name()
        )))
    }
}

impl Daemon {
    /// Refuses a service whose image this node's engine does not have: no registry is reachable
    /// from a meshd cluster, so an image must be in the nodes' engines already. The node that
    /// takes the request checks (as the docker CLI resolves an image before it calls the
    /// swarm); managers talk to no engine.
    async fn check_image(&self, req: &Request) -> Result<(), ApiError> {
        let (Request::ServiceCreate { spec } | Request::ServiceUpdate { spec, .. }) = req else {
            return Ok(());
        };
        let image = normalize_image(&spec.task.container.image);
        if image.trim().is_empty() {
            return Ok(()); // the spec check says what is wrong
        }
        let engine = self
            .cfg
            .engine
            .get()
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        match engine.image_exists(&image).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ApiError::invalid(format!(
                "No such image: {image} (no registry is reachable: the image must be present in the nodes' Docker engines, built or loaded there first; this node's engine does not have it)"
            ))),
            Err(EngineError::Invalid(m)) => Err(ApiError::invalid(m)),
            Err(e) => Err(ApiError::unavailable(format!(
                "cannot check image {image}: {e}"
            ))),
        }
    }
}

/// Binds the 2377 listener, or says why not.
fn bind(addr: SocketAddr) -> Result<TcpListener, ApiError> {
    let sock = tokio::net::TcpSocket::new_v4().map_err(internal)?;
    sock.set_reuseaddr(true).map_err(internal)?;
    sock.bind(addr)
        .map_err(|e| ApiError::invalid(format!("cannot listen on {addr}: {e}")))?;
    sock.listen(128)
        .map_err(|e| ApiError::invalid(format!("cannot listen on {addr}: {e}")))
}

/// Calls the leader among `managers` (following `NotLeader` answers), with the TLS config `tls`.
async fn call_leader(
    managers: &[String],
    tls: &Arc<rustls::ClientConfig>,
    req: &Request,
) -> Result<Reply> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut hint: Option<String> = None;
    let mut i = 0usize;
    loop {
        let target = hint.take().unwrap_or_else(|| {
            let t = managers[i % managers.len().max(1)].clone();
            i += 1;
            t
        });
        match Client::tls(&target, tls.clone()).call(req).await {
            Ok(r) => return Ok(r),
            Err(ApiError {
                code: Code::NotLeader(next),
                ..
            }) => hint = next,
            Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                tracing::debug!("{} at {target}: {e}", req.name());
            }
            Err(e) => return Err(anyhow::anyhow!("{}: {e}", req.name())),
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("{}: no leader answered within 20s", req.name());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Handler for Daemon {
    async fn call(&self, peer: Peer, req: Request) -> Result<Reply, ApiError> {
        self.authorise(&peer, &req)?;
        match req {
            Request::Init(r) => self.init(r).await,
            Request::Join(r) => self.join(r).await,
            Request::Leave { force } => self.leave(force).await,
            Request::Info => Ok(self.info()),
            Request::Raft(r) => Ok(Reply::Raft(self.manager()?.raft_rpc(&r).await?)),
            Request::Propose(tx) => self.manager()?.propose_here(tx).await,
            Request::ReadIndex => Ok(Reply::ReadIndex(self.manager()?.read_index_here().await?)),
            Request::AddManager { raft_id, addr } => {
                let m = self.manager()?;
                let Peer::Node(id) = &peer else {
                    return Err(ApiError::denied("adding a manager needs its certificate"));
                };
                let state = m.state();
                let allowed = state.nodes.get(&id.node_id).is_some_and(|n| {
                    n.spec.role == NodeRole::Manager
                        && n.manager_status
                            .as_ref()
                            .is_some_and(|s| s.raft_id == raft_id)
                });
                if !allowed && m.is_leader() {
                    return Err(ApiError::denied(format!(
                        "permission denied: node {} is not manager {raft_id} of this swarm",
                        id.node_id
                    )));
                }
                m.add_manager(raft_id, &addr).await
            }
            other => {
                let m = self.manager()?;
                self.check_image(&other).await?;
                ClusterApi::new(&m).serve(&peer, other).await
            }
        }
    }

    async fn session(
        &self,
        peer: Peer,
        inbound: Pin<Box<dyn Stream<Item = Result<AgentMessage, ApiError>> + Send>>,
        outbound: mpsc::Sender<ManagerMessage>,
    ) {
        let Peer::Node(id) = peer else { return };
        let Ok(m) = self.manager() else {
            let _ = outbound
                .send(ManagerMessage::NotLeader {
                    leader: None,
                    managers: Vec::new(),
                })
                .await;
            return;
        };
        Dispatcher::new(m)
            .serve_session(id.node_id, inbound, outbound)
            .await;
    }

    async fn stream(
        &self,
        peer: Peer,
        req: Request,
        out: mpsc::Sender<Result<StreamItem, ApiError>>,
    ) {
        if let Err(e) = self.authorise(&peer, &req) {
            let _ = out.send(Err(e)).await;
            return;
        }
        let m = match self.manager() {
            Ok(m) => m,
            Err(e) => {
                let _ = out.send(Err(e)).await;
                return;
            }
        };
        match req {
            Request::ServiceLogs(r) => Dispatcher::new(m).service_logs(r, out).await,
            other => {
                let _ = out
                    .send(Err(ApiError::invalid(format!(
                        "{} is not a streaming request",
                        other.name()
                    ))))
                    .await;
            }
        }
    }
}

impl NodeEvents for Daemon {
    fn managers_changed(&self, managers: Vec<String>) {
        self.remember_managers(managers);
    }

    fn role_changed(&self, role: NodeRole, via: String) {
        if let Some(me) = self.me.upgrade() {
            me.request_role_change(role, via);
        }
    }
}
