//! The node daemon's runtime: what `meshd` runs.
//!
//! It serves `<data-dir>/meshd.sock` (mode 0600, no TLS, like docker.sock) from the start, so
//! that `swarm init` and `swarm join` can reach a node that is in no swarm yet. Once in one, the
//! node's identity lives in `<data-dir>/swarm.json`, its certificates in `<data-dir>/certs/` and,
//! on managers, raft in `<data-dir>/raft/`; after a restart the daemon resumes as the same node.
//! Managers also serve TCP 2377 (mutual TLS); every node runs an [`agent`].
//!
//! Authorisation is here, in `Daemon::call` (the [`Handler`] of both listeners): each request's
//! [`Access`] against the caller ([`Peer`]), then against the cluster state (`authorise`). The
//! managers' own requests then go to
//! [`Manager::serve_manager_request`](mesh_manager::Manager::serve_manager_request), the rest to
//! the cluster API or the dispatcher.
//!
//! The membership kept on disk ([`DaemonConfig`], [`Identity`]) is in `identity`; init, join,
//! leave and role changes are in `membership`.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock, Weak};

use anyhow::{Context, Result};
use futures::Stream;
use mesh_cluster::state::NodeRole;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, oneshot};

use mesh_agent::{AgentConfig, Describer, NodeEvents};
use mesh_api::tls::{Credentials, LiveCredentials};
use mesh_api::transport::{self, Handler, Peer};
use mesh_api::{Access, AgentMessage, ApiError, Info, ManagerMessage, Reply, Request, StreamItem};
use mesh_engine::{EngineError, is_pinned, pin, unpinned_warning};
use mesh_manager::dispatcher::Dispatcher;
use mesh_manager::handlers::services::normalize_image;
use mesh_manager::manager::{LOGS_KEPT, SNAPSHOT_EVERY};
use mesh_manager::peer_api::is_manager_request;
use mesh_manager::{ClusterApi, Manager, ManagerConfig};

mod admin;
mod authorise;
mod identity;
mod lock;
mod membership;
mod renew;
mod status;

use identity::Member;
pub use identity::{DaemonConfig, Identity};

/// The daemon. Requests from both listeners end up in [`Daemon::call`].
pub struct Daemon {
    cfg: DaemonConfig,
    describer: Describer,
    member: RwLock<Option<Arc<Member>>>,
    /// Held by init, join, leave, unlock and role changes.
    transition: tokio::sync::Mutex<()>,
    /// An autolocked manager waiting for `swarm unlock` (`lock`): its membership.
    locked: Mutex<Option<Identity>>,
    /// The data key `swarm unlock` opened, until the manager takes it.
    unlocked: Mutex<Option<mesh_manager::datakey::DataKey>>,
    me: Weak<Daemon>,
}

/// Runs a node until `stop` resolves: serves the socket, resumes the swarm membership kept on
/// disk, then shuts everything down cleanly.
pub async fn run(cfg: DaemonConfig, stop: impl Future<Output = ()>) -> Result<()> {
    secure_data_dir(&cfg).with_context(|| format!("securing {}", cfg.data_dir.display()))?;
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

/// The data directory 0700, and what an older meshd left wider in it (0644 certificates, ...)
/// tightened: `raft/` and `certs/` whole, `swarm.json`. Nothing else under it is touched (it may
/// be a directory the user shares with other things).
fn secure_data_dir(cfg: &DaemonConfig) -> std::io::Result<()> {
    use mesh_api::private;
    private::private_dir(&cfg.data_dir)?;
    for dir in [cfg.raft_dir(), cfg.cert_dir()] {
        if dir.is_dir() {
            private::tighten_tree(&dir)?;
        }
    }
    let identity = cfg.identity_file();
    if identity.exists() {
        private::private_file(&identity)?;
    }
    Ok(())
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
            locked: Mutex::new(None),
            unlocked: Mutex::new(None),
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

    /// The membership kept on disk, if any.
    fn read_identity(&self) -> Result<Option<Identity>> {
        let path = self.cfg.identity_file();
        let Ok(text) = fs::read_to_string(&path) else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("reading {}", path.display()))
    }

    /// Resumes the membership kept on disk, if any (an autolocked manager stays locked).
    async fn resume(&self) -> Result<()> {
        let Some(identity) = self.read_identity()? else {
            return Ok(());
        };
        if self.starts_locked(&identity) {
            tracing::warn!(node = %identity.node_id, "this manager is locked: run `meshctl swarm unlock`");
            self.set_locked(Some(identity));
            return Ok(());
        }
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
        let creds = LiveCredentials::new(creds)?;
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
                unlocked_data_key: self.take_unlocked_key(),
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
                task_files: self.cfg.data_dir.join("task-files"),
            },
        ));
        let renew_now = Arc::new(tokio::sync::Notify::new());
        let renewal = self.spawn_renewal(creds.clone(), renew_now.clone());
        Ok(Member {
            identity: Mutex::new(identity),
            creds,
            renew_now,
            manager,
            server: Mutex::new(server),
            agent: Mutex::new(Some(agent)),
            renewal: Mutex::new(Some(renewal)),
        })
    }

    fn info(&self) -> Reply {
        let cert_dir = self.cfg.cert_dir().display().to_string();
        if let Some(id) = self.locked() {
            return Reply::Info(Info {
                node_id: Some(id.node_id.clone()),
                cluster_id: Some(id.cluster_id.clone()),
                role: Some(id.role),
                node_addr: Some(id.advertise_addr),
                managers: id.managers.clone(),
                cert_dir,
                locked: true,
                ..Info::default()
            });
        }
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
            locked: false,
            cert_expiry_ms: m
                .manager
                .as_ref()
                .and_then(|m| m.state().cluster.as_ref().map(|c| c.cert_expiry_ms)),
        })
    }
}

impl Daemon {
    /// `service create` / `update` asked (by a client of this node's socket) to resolve the
    /// image: `NAME:TAG` becomes `NAME:TAG@DIGEST` as the image's registry answers through this
    /// node's engine, so that every node runs the same bits (docker's digest pinning). When the
    /// registry does not answer, or the image exists only in this engine (built or loaded here:
    /// no registry is asked then), the tag is kept and docker's warning returned.
    async fn pin_image(&self, req: &mut Request) -> Vec<String> {
        let (Request::ServiceCreate { spec, image } | Request::ServiceUpdate { spec, image, .. }) =
            req
        else {
            return Vec::new();
        };
        let Some(wanted) = image_to_resolve(&spec.task.container.image, image.resolve) else {
            return Vec::new();
        };
        let login = image
            .registry_auth
            .as_ref()
            .map(mesh_agent::tasks::registry_login);
        let digest = match self.cfg.engine.get().await {
            Ok(engine) => match engine.local_repo_digests(&wanted).await {
                // Built or loaded here, never pulled: no registry has it to ask (and asking
                // would send a bare name to Docker Hub).
                Ok(Some(digests)) if digests.is_empty() => Err(EngineError::ImageUnavailable {
                    image: wanted.clone(),
                    reason: "the image exists only in this node's engine".into(),
                }),
                _ => engine.registry_digest(&wanted, login.as_ref()).await,
            },
            Err(e) => Err(e),
        };
        match digest {
            Ok(d) => {
                spec.task.container.image = pin(&wanted, &d);
                Vec::new()
            }
            Err(e) => {
                tracing::info!(image = %wanted, "not pinned to a digest: {e}");
                vec![unpinned_warning(&wanted)]
            }
        }
    }

    /// Refuses a service whose image reference this node's engine finds invalid. A missing
    /// image is no error: the nodes that run its tasks pull it. Managers talk to no engine.
    async fn check_image(&self, req: &Request) -> Result<(), ApiError> {
        let (Request::ServiceCreate { spec, .. } | Request::ServiceUpdate { spec, .. }) = req
        else {
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
            // A missing image is no error: the nodes that run the tasks pull it.
            Ok(_) => Ok(()),
            Err(EngineError::Invalid(m)) => Err(ApiError::invalid(m)),
            Err(e) => Err(ApiError::unavailable(format!(
                "cannot check image {image}: {e}"
            ))),
        }
    }
}

/// The reference to resolve to a digest, if any: asked for, named, and not pinned already.
fn image_to_resolve(image: &str, resolve: bool) -> Option<String> {
    let image = normalize_image(image.trim());
    (resolve && !image.is_empty() && !is_pinned(&image)).then_some(image)
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

impl Handler for Daemon {
    async fn call(&self, peer: Peer, req: Request) -> Result<Reply, ApiError> {
        self.authorise(&peer, &req).await?;
        self.check_unlocked(&req)?;
        match req {
            Request::Init(r) => self.init(r).await,
            Request::Join(r) => self.join(r).await,
            Request::Leave { force } if self.locked().is_some() => self.leave_locked(force).await,
            Request::Leave { force } => self.leave(force).await,
            Request::Unlock(r) => self.unlock(r).await,
            Request::Info => Ok(self.info()),
            Request::Status => Ok(Reply::Status(Box::new(self.status().await))),
            Request::AdminCert { expiry_ms } => self.admin_cert(expiry_ms).await,
            req if is_manager_request(&req) => {
                self.manager()?.serve_manager_request(&peer, req).await
            }
            mut other => {
                let m = self.manager()?;
                let warnings = if matches!(peer, Peer::Local) {
                    self.check_image(&other).await?;
                    self.pin_image(&mut other).await
                } else {
                    Vec::new()
                };
                let reply = ClusterApi::new(&m).serve(&peer, other).await?;
                Ok(reply.with_warnings(warnings))
            }
        }
    }

    async fn session(
        &self,
        peer: Peer,
        inbound: Pin<Box<dyn Stream<Item = Result<AgentMessage, ApiError>> + Send>>,
        outbound: mpsc::Sender<ManagerMessage>,
    ) {
        let Ok(m) = self.manager() else {
            let _ = outbound
                .send(ManagerMessage::NotLeader {
                    leader: None,
                    managers: Vec::new(),
                })
                .await;
            return;
        };
        // The leader's state is the swarm's: a node it no longer has is told so at once.
        if m.is_leader()
            && authorise::check_standing(&peer, Access::Node, "session", &m.state()).is_err()
        {
            let _ = outbound.send(ManagerMessage::Removed).await;
            return;
        }
        let Peer::Node(id) = peer else { return };
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
        if let Err(e) = self.authorise(&peer, &req).await {
            let _ = out.send(Err(e)).await;
            return;
        }
        if let Err(e) = self.check_unlocked(&req) {
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

    fn roots_announced(&self, ca_digest: &str) {
        self.roots_announced(ca_digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_named_unpinned_images_are_resolved_when_asked() {
        assert_eq!(
            image_to_resolve("meshd/busybox", true).as_deref(),
            Some("meshd/busybox:latest")
        );
        assert_eq!(
            image_to_resolve("127.0.0.1:5000/web:1", true).as_deref(),
            Some("127.0.0.1:5000/web:1")
        );
        // Pinned already (an update that leaves the image alone sends it back as stored).
        assert_eq!(image_to_resolve("web:1@sha256:0123", true), None);
        assert_eq!(image_to_resolve("web:1", false), None, "--no-resolve-image");
        assert_eq!(image_to_resolve("  ", true), None);
    }
}
