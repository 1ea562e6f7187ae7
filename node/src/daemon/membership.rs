//! Membership transitions: `swarm init`, `swarm join`, `swarm leave` and role changes
//! (promote / demote), each under the daemon's transition lock, and [`call_leader`], how a node
//! reaches the swarm's leader.

use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use mesh_cluster::Id;
use mesh_cluster::certs::{DEFAULT_CERT_EXPIRY_MS, check_cert_expiry};
use mesh_cluster::state::NodeRole;
use mesh_cluster::token::JoinToken;

use mesh_api::tls::{self as pki, Credentials};
use mesh_api::transport::{Client, Peer};
use mesh_api::{
    ApiError, Code, InitReply, InitRequest, JoinClusterReply, JoinClusterRequest, JoinRequest,
    MANAGER_PORT, NodeUpdate, Reply, Request,
};
use mesh_manager::ca::{self, NodeKey};
use mesh_manager::handlers::swarm::{bootstrap_tx, seal_bootstrap, with_default_routing};
use mesh_manager::{ClusterApi, Manager};

use super::identity::{Identity, remove_dir};
use super::{Daemon, bind, internal};

impl Daemon {
    fn advertise(&self, asked: Option<Ipv4Addr>) -> Result<Ipv4Addr, ApiError> {
        asked.or(self.cfg.advertise_addr).ok_or_else(|| {
            ApiError::invalid(
                "could not choose an IP address to advertise: use --advertise-addr (or start meshd with --advertise-addr)",
            )
        })
    }

    /// `swarm init`.
    pub(super) async fn init(&self, r: InitRequest) -> Result<Reply, ApiError> {
        let _t = self.transition.lock().await;
        if self.member().is_some() {
            return Err(ApiError::already_in_swarm());
        }
        let advertise = self.advertise(r.advertise_addr)?;
        let listen = r
            .listen_addr
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], MANAGER_PORT)));
        let cert_expiry_ms = match r.cert_expiry_ms {
            Some(ms) => {
                check_cert_expiry(ms, ca::min_cert_expiry_ms()).map_err(ApiError::invalid)?
            }
            None => DEFAULT_CERT_EXPIRY_MS,
        };
        let listener = bind(listen)?;
        let cluster_id = Id::random();
        let node_id = Id::random();
        let unlock = r.autolock.then(mesh_manager::autolock::new_unlock_key);
        let ca = ca::generate_ca(&cluster_id).map_err(internal)?;
        let key = NodeKey::generate().map_err(internal)?;
        let cert = ca::issue(
            &ca::CaKeys {
                cert_pem: &ca.0,
                key_pem: &ca.1,
            },
            &key.csr_pem().map_err(internal)?,
            &cluster_id,
            &node_id,
            NodeRole::Manager,
            cert_expiry_ms,
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
                let key = manager.new_data_key(unlock.as_ref()).await?;
                let tx = bootstrap_tx(
                    &cluster_id,
                    &node_id,
                    &ca,
                    self.describer.get(),
                    advertise,
                    listen.port(),
                    cert_expiry_ms,
                );
                let tx = with_default_routing(tx, r.default_routing.unwrap_or_default());
                manager
                    .propose(seal_bootstrap(tx, &key, unlock.as_ref()))
                    .await?;
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
        let sealed = &state
            .cluster
            .as_ref()
            .ok_or_else(|| ApiError::internal("the swarm has no cluster object after init"))?
            .worker_token_secret;
        let secret = manager.open_sealed(sealed).await?;
        let ca_der = pki::pem_to_der(&ca.0).map_err(internal)?;
        tracing::info!(%node_id, %cluster_id, autolock = r.autolock, "swarm initialised");
        Ok(Reply::Init(InitReply {
            node_id,
            worker_token: JoinToken::new(&ca_der, &secret).to_string(),
            manager_addr: identity.manager_addr(),
            unlock_key: unlock.map(|u| u.to_string()),
        }))
    }

    /// `swarm join`.
    pub(super) async fn join(&self, r: JoinRequest) -> Result<Reply, ApiError> {
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
        let request = Request::JoinCluster(JoinClusterRequest {
            secret: token.secret.clone(),
            csr_pem: key.csr_pem().map_err(internal)?,
            description: self.describer.get(),
            advertise_addr: advertise,
            listen_port: listen.port(),
        });
        let j = call_join(&remote, &token, &request).await?;
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
    pub(super) async fn leave(&self, force: bool) -> Result<Reply, ApiError> {
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
    pub(super) fn request_role_change(self: Arc<Self>, role: NodeRole, via: String) {
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
            let ca_pem = member.creds.current().ca_pem;
            let reply = call_leader(
                &[vec![via.clone()], identity.managers.clone()].concat(),
                &tls,
                &Request::RenewCert {
                    csr_pem: key.csr_pem()?,
                },
            )
            .await?;
            let Reply::Cert {
                cert_pem,
                raft_id,
                ca_pem: roots,
            } = reply
            else {
                anyhow::bail!("unexpected reply to a certificate renewal");
            };
            let creds = Credentials {
                ca_pem: if roots.is_empty() { ca_pem } else { roots },
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
}

/// Sends `request` (a `JoinCluster`) to the manager at `remote` over TLS pinned to the token's
/// CA, and checks the CA it answers with: the swarm the node joins is the one the token was made
/// for. A manager that presents another CA is sent nothing.
async fn call_join(
    remote: &str,
    token: &JoinToken,
    request: &Request,
) -> Result<JoinClusterReply, ApiError> {
    let (tls, outcome) = pki::pinned_client_config(&token.ca_digest).map_err(internal)?;
    let reply = Client::tls(remote, tls)
        .call_with_timeout(request, Duration::from_secs(30))
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
    Ok(j)
}

/// Calls the leader among `managers` (following `NotLeader` answers), with the TLS config `tls`.
pub(super) async fn call_leader(
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
