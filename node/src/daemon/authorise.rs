//! Authorisation: each request's [`Access`] against who sent it ([`Peer`]), then, for a node
//! certificate, against the cluster state as it is now: a removed node's certificate is refused
//! and a demoted manager's manager certificate no longer opens manager requests (issue 16).
//! A certificate that expired since its connection was opened is refused too (the handshake
//! refuses it on new connections), and an admin certificate opens the cluster API only.
//!
//! Raft messages themselves are checked by certificate only: the state a manager holds may lag
//! behind the entries that made the sender a manager (a joining manager replays the log, a
//! manager back from downtime catches up from a leader promoted meanwhile), and refusing its
//! leader there would stop it for good. The leader's membership loop takes a demoted manager
//! out of raft instead.

use mesh_api::transport::Peer;
use mesh_api::{Access, ApiError, Request};
use mesh_cluster::Id;
use mesh_cluster::state::{ClusterState, NodeRole};

use super::Daemon;

/// Checks `access` against the certificate (or socket) `peer` came with, at unix time `now`:
/// the first check, the same on every node.
pub(super) fn check_certificate(
    peer: &Peer,
    access: Access,
    name: &str,
    cluster_id: Option<&Id>,
    now: i64,
) -> Result<(), ApiError> {
    let cert = match peer {
        Peer::Node(id) => Some((&id.cluster_id, id.not_after)),
        Peer::Admin(a) => Some((&a.cluster_id, a.not_after)),
        Peer::Local | Peer::Anonymous => None,
    };
    if let Some((theirs, not_after)) = cert {
        if cluster_id.is_some_and(|ours| theirs != ours) {
            return Err(ApiError::denied(
                "permission denied: a certificate of another swarm",
            ));
        }
        if now > not_after {
            return Err(ApiError::denied(format!(
                "permission denied: the certificate expired (at {not_after}, unix time); a node renews its own before it expires, and one that expired must join the swarm again"
            )));
        }
    }
    let manager_cert = matches!(peer, Peer::Node(id) if id.role == NodeRole::Manager);
    let admin_cert = matches!(peer, Peer::Admin(_));
    let ok = match access {
        Access::Local => matches!(peer, Peer::Local),
        Access::Api => matches!(peer, Peer::Local) || manager_cert || admin_cert,
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
        Peer::Admin(a) => format!("admin certificate {}", a.name),
        Peer::Node(id) => format!(
            "node {} with a {} certificate",
            id.node_id,
            match id.role {
                NodeRole::Manager => "manager",
                NodeRole::Worker => "worker",
            }
        ),
    };
    let needs = match access {
        Access::Local => "is only served on the node's local socket",
        Access::Api | Access::Manager => "needs a manager certificate of this swarm",
        Access::Node => "needs a node certificate of this swarm",
        Access::Anyone => "is open to all",
    };
    Err(ApiError::denied(format!(
        "permission denied: {name} {needs}, and {who} called it"
    )))
}

/// Checks a node certificate against the cluster state `state`: its node must still be in the
/// swarm, and a manager certificate opens `Api` and `Manager` requests only while the state
/// still says the node is a manager. The local socket, anonymous peers and a state without a
/// cluster yet (a manager still catching up) pass: the certificate check decided for them.
pub(super) fn check_standing(
    peer: &Peer,
    access: Access,
    name: &str,
    state: &ClusterState,
) -> Result<(), ApiError> {
    let Peer::Node(id) = peer else { return Ok(()) };
    if state.cluster.is_none() {
        return Ok(());
    }
    let Some(node) = state.nodes.get(&id.node_id) else {
        return Err(ApiError::denied(format!(
            "permission denied: node {} is not part of this swarm (removed): its certificate is refused",
            id.node_id
        )));
    };
    let manager_access = matches!(access, Access::Api | Access::Manager);
    if manager_access && id.role == NodeRole::Manager && node.spec.role != NodeRole::Manager {
        return Err(ApiError::denied(format!(
            "permission denied: {name} needs a manager of this swarm, and node {} was demoted to a worker: its manager certificate is refused",
            id.node_id
        )));
    }
    Ok(())
}

impl Daemon {
    /// Checks `req` against who sent it: its certificate, then (on a manager, for anything but
    /// raft) the cluster state. A follower whose state refuses looks again at the leader's (a
    /// linearizable read): it may not have applied the caller's join or promotion yet.
    pub(super) async fn authorise(&self, peer: &Peer, req: &Request) -> Result<(), ApiError> {
        let member = self.member();
        let cluster_id = member.as_ref().map(|m| m.identity().cluster_id);
        let route = req.route();
        check_certificate(
            peer,
            route.access,
            route.name,
            cluster_id.as_ref(),
            mesh_api::now_millis().cast_signed() / 1000,
        )?;
        let Some(manager) = member.and_then(|m| m.manager.clone()) else {
            return Ok(());
        };
        if matches!(req, Request::Raft(_)) {
            return Ok(());
        }
        let refused = check_standing(peer, route.access, route.name, &manager.state());
        match refused {
            Err(e) if !manager.is_leader() => match manager.read().await {
                Ok(view) => check_standing(peer, route.access, route.name, &view.applied.state),
                Err(_) => Err(e),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_api::tls::CertIdentity;
    use mesh_cluster::state::{ManagerStatus, Node, NodeSpec, Object, Op, Tx};

    fn peer(node: &str, role: NodeRole) -> Peer {
        Peer::Node(CertIdentity {
            node_id: Id::from(node),
            role,
            cluster_id: Id::from("c"),
            not_after: NOW + 3600,
        })
    }

    /// The tests' clock.
    const NOW: i64 = 1_000_000;

    fn node(id: &str, role: NodeRole) -> Node {
        Node {
            id: Id::from(id),
            meta: mesh_cluster::state::Meta::default(),
            spec: NodeSpec {
                role,
                ..NodeSpec::default()
            },
            description: mesh_cluster::state::NodeDescription::default(),
            status: mesh_cluster::state::NodeStatus::default(),
            manager_status: (role == NodeRole::Manager).then(|| ManagerStatus {
                raft_id: 1,
                ..ManagerStatus::default()
            }),
            attachments: std::collections::BTreeMap::new(),
        }
    }

    /// A swarm with manager m1, worker w1, and m2 demoted to a worker.
    fn state() -> ClusterState {
        let mut s = ClusterState::default();
        let boot = mesh_manager::handlers::swarm::bootstrap_tx(
            &Id::from("c"),
            &Id::from("m1"),
            &("CA".into(), "KEY".into()),
            mesh_cluster::state::NodeDescription::default(),
            std::net::Ipv4Addr::LOCALHOST,
            2377,
            mesh_cluster::certs::DEFAULT_CERT_EXPIRY_MS,
        );
        s.apply(&boot, 1).unwrap();
        let tx = Tx {
            at: 2,
            ops: vec![
                Op::Put(Object::Node(node("w1", NodeRole::Worker))),
                Op::Put(Object::Node(node("m2", NodeRole::Worker))),
            ],
        };
        s.apply(&tx, 2).unwrap();
        s
    }

    #[test]
    fn the_state_decides_for_node_certificates() {
        use Access::{Anyone, Api, Local, Manager, Node as AnyNode};
        let s = state();
        let ok = |p: &Peer, a| check_standing(p, a, "x", &s).is_ok();
        // A manager of the state may do everything a manager certificate opens.
        for a in [Api, Manager, AnyNode, Anyone] {
            assert!(ok(&peer("m1", NodeRole::Manager), a), "{a:?}");
        }
        // A worker, for what its certificate opens.
        assert!(ok(&peer("w1", NodeRole::Worker), AnyNode));
        // A demoted manager's old certificate: no API, no manager requests, but it may still
        // renew its certificate and keep its session.
        let demoted = peer("m2", NodeRole::Manager);
        for a in [Api, Manager] {
            let err = check_standing(&demoted, a, "propose", &s).unwrap_err();
            assert_eq!(err.code, mesh_api::Code::PermissionDenied);
            assert!(err.message.contains("demoted"), "{err}");
            assert!(err.message.contains("propose"), "{err}");
        }
        assert!(ok(&demoted, AnyNode));
        // A removed node: refused whatever it asks.
        for a in [Api, Manager, AnyNode, Anyone, Local] {
            for role in [NodeRole::Manager, NodeRole::Worker] {
                let err = check_standing(&peer("gone", role), a, "x", &s).unwrap_err();
                assert!(err.message.contains("not part of this swarm"), "{err}");
            }
        }
        // The socket and anonymous joiners are not the state's to judge.
        assert!(ok(&Peer::Local, Api));
        assert!(ok(&Peer::Anonymous, Anyone));
        // A manager whose state has no cluster yet (catching up) cannot tell: it lets pass.
        assert!(
            check_standing(
                &peer("gone", NodeRole::Manager),
                Manager,
                "raft",
                &ClusterState::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn certificates_open_what_their_role_may() {
        let c = Id::from("c");
        let worker = peer("w1", NodeRole::Worker);
        let manager = peer("m1", NodeRole::Manager);
        assert!(check_certificate(&manager, Access::Manager, "x", Some(&c), NOW).is_ok());
        let err = check_certificate(&worker, Access::Api, "node ls", Some(&c), NOW).unwrap_err();
        assert!(
            err.message
                .contains("node ls needs a manager certificate of this swarm"),
            "{err}"
        );
        assert!(check_certificate(&worker, Access::Node, "x", Some(&c), NOW).is_ok());
        assert!(check_certificate(&Peer::Anonymous, Access::Node, "x", Some(&c), NOW).is_err());
        assert!(check_certificate(&Peer::Anonymous, Access::Anyone, "x", Some(&c), NOW).is_ok());
        assert!(check_certificate(&manager, Access::Local, "x", Some(&c), NOW).is_err());
        let err = check_certificate(&manager, Access::Api, "x", Some(&Id::from("other")), NOW)
            .unwrap_err();
        assert!(err.message.contains("another swarm"), "{err}");
    }

    #[test]
    fn expired_certificates_open_nothing() {
        let c = Id::from("c");
        let manager = peer("m1", NodeRole::Manager);
        assert!(check_certificate(&manager, Access::Manager, "x", Some(&c), NOW + 3600).is_ok());
        for access in [Access::Manager, Access::Api, Access::Node, Access::Anyone] {
            let err = check_certificate(&manager, access, "x", Some(&c), NOW + 3601).unwrap_err();
            assert_eq!(err.code, mesh_api::Code::PermissionDenied);
            assert!(err.message.contains("certificate expired"), "{err}");
        }
    }

    #[test]
    fn admin_certificates_open_the_cluster_api_only() {
        use mesh_api::tls::AdminIdentity;
        let c = Id::from("c");
        let admin = Peer::Admin(AdminIdentity {
            name: "admin-1".into(),
            cluster_id: c.clone(),
            not_after: NOW + 60,
        });
        assert!(check_certificate(&admin, Access::Api, "service ls", Some(&c), NOW).is_ok());
        for access in [Access::Manager, Access::Node, Access::Local] {
            let err = check_certificate(&admin, access, "raft", Some(&c), NOW).unwrap_err();
            assert!(err.message.contains("admin certificate admin-1"), "{err}");
        }
        assert!(check_certificate(&admin, Access::Api, "x", Some(&c), NOW + 61).is_err());
        assert!(check_certificate(&admin, Access::Api, "x", Some(&Id::from("o")), NOW).is_err());
        // The state has nothing to say about an admin.
        assert!(check_standing(&admin, Access::Api, "x", &state()).is_ok());
    }
}
