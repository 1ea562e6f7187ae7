//! The service API as a manager serves it: create, ls, inspect, ps, update, rollback, scale, rm.
//!
//! Each write is a pure function of the state it reads (`*_tx`): it checks everything the user
//! could have got wrong (the spec, published ports against other services, networks by name,
//! names) and returns the transaction, or the error and no transaction, so that bad input
//! changes nothing. The leader proposes it under its write lock, reading again on conflict.
//!
//! Images are not checked here: a manager talks to no Docker engine. The node that takes the
//! request checks its own engine before it reaches the managers (as the docker CLI resolves an
//! image before it calls the swarm), and tasks scheduled onto a node whose engine lacks the image
//! are rejected there (`No such image: ...`).

use mesh_api::{ApiError, Code, Reply, Request, ServiceSummary, ServiceTasksReply, now_millis};
use mesh_cluster::Id;
use mesh_cluster::alloc::check_ports;
use mesh_cluster::naming::{ports_column, replicas_column};
use mesh_cluster::net::RESERVED_PORTS;
use mesh_cluster::orchestrator::{new_service, rollback_service, update_service};
use mesh_cluster::spec::limits::check_replicas;
use mesh_cluster::spec::validate_service_spec;
use mesh_cluster::state::{
    ClusterState, Kind, Millis, Object, Op, PublishMode, RegistryAuth, Sealed, Service,
    ServiceMode, ServiceSpec, Tx,
};

use crate::lookup::find_service;
use crate::manager::Manager;

/// `busybox` is `busybox:latest`, as Docker resolves it (a digest or a tag stays as given).
pub fn normalize_image(image: &str) -> String {
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    if image.contains('@') || image[name_start..].contains(':') || image.trim().is_empty() {
        image.to_owned()
    } else {
        format!("{image}:latest")
    }
}

/// Secrets and configs are given by name (or id); the spec stores both, with the ids of the
/// objects as they are now. An unknown one is refused as the docker CLI says it.
fn resolve_files(state: &ClusterState, spec: &mut ServiceSpec) -> Result<(), ApiError> {
    let c = &mut spec.task.container;
    for (kind, refs) in [
        (mesh_api::BlobKind::Secret, &mut c.secrets),
        (mesh_api::BlobKind::Config, &mut c.configs),
    ] {
        for r in refs.iter_mut() {
            let query = if r.name.is_empty() {
                r.id.as_str()
            } else {
                r.name.as_str()
            };
            let found = crate::lookup::find_blob(state, kind, query).map_err(|_| {
                ApiError::not_found(format!("{} not found: {query}", kind.as_str()))
            })?;
            r.id = found.id.clone();
            r.name.clone_from(&found.name);
        }
    }
    mesh_cluster::spec::check_file_targets(&c.secrets, &c.configs)
        .map_err(|e| ApiError::invalid(e.to_string()))
}

/// Networks are given by name or id; the spec stores ids. The ingress network is the routing
/// mesh's and cannot be attached to by hand, as in Swarm.
fn resolve_networks(state: &ClusterState, spec: &mut ServiceSpec) -> Result<(), ApiError> {
    for attachment in &mut spec.task.networks {
        let query = attachment.target.as_str();
        let by_id = state.networks.get(&attachment.target);
        let by_name = || state.networks.values().find(|n| n.spec.name == query);
        let by_prefix = || {
            let mut m = state
                .networks
                .values()
                .filter(|n| n.id.matches_prefix(query));
            match (m.next(), m.next()) {
                (Some(n), None) => Some(n),
                _ => None,
            }
        };
        let Some(network) = by_id.or_else(by_name).or_else(by_prefix) else {
            return Err(ApiError::not_found(format!("network {query} not found")));
        };
        if network.spec.ingress {
            return Err(ApiError::invalid(format!(
                "service cannot be explicitly attached to the ingress network {:?}",
                network.spec.name
            )));
        }
        attachment.target = network.id.clone();
    }
    for (i, a) in spec.task.networks.iter().enumerate() {
        if spec.task.networks[..i].iter().any(|b| b.target == a.target) {
            let name = state
                .networks
                .get(&a.target)
                .map_or(a.target.as_str(), |n| n.spec.name.as_str());
            return Err(ApiError::invalid(format!(
                "network {name} is given twice; attach a service to each network once"
            )));
        }
    }
    Ok(())
}

/// Everything about a spec that can be checked against the state: the spec itself, networks,
/// published ports and the name. `service` is the service being updated.
pub fn check_spec(
    state: &ClusterState,
    spec: &mut ServiceSpec,
    service: Option<&Id>,
) -> Result<(), ApiError> {
    spec.task.container.image = normalize_image(&spec.task.container.image);
    resolve_networks(state, spec)?;
    resolve_files(state, spec)?;
    validate_service_spec(spec).map_err(|e| ApiError::invalid(e.to_string()))?;
    check_mesh_ports(spec)?;
    check_ports(state, service, spec).map_err(|e| ApiError::invalid(e.to_string()))?;
    if let Some(other) = state.id_by_name(Kind::Service, &spec.name)
        && Some(&other) != service
    {
        return Err(ApiError::invalid(format!(
            "name conflicts with an existing object: service {} already exists",
            spec.name
        )));
    }
    Ok(())
}

/// Refuses what the routing mesh cannot publish: a port meshd uses itself, and a host-mode
/// port without a published port (meshd does not pick one per node, as Docker does).
fn check_mesh_ports(spec: &ServiceSpec) -> Result<(), ApiError> {
    for p in &spec.endpoint.ports {
        if let Some((_, _, what)) = RESERVED_PORTS
            .iter()
            .find(|(proto, port, _)| *proto == p.protocol && *port == p.published_port)
        {
            return Err(ApiError::invalid(format!(
                "port {}/{} cannot be published: every node uses it for {what} (reserved: \
                 2377/tcp, 7946/tcp, 7946/udp, 4789/udp)",
                p.published_port,
                p.protocol.as_str()
            )));
        }
        if p.publish_mode == PublishMode::Host && p.published_port == 0 {
            return Err(ApiError::invalid(format!(
                "port ->{}/{} in host mode needs a published port: give published=PORT \
                 (meshd does not pick host-mode ports)",
                p.target_port,
                p.protocol.as_str()
            )));
        }
    }
    Ok(())
}

/// `service create`: the new service `id`, checked whole.
pub fn create_service_tx(
    state: &ClusterState,
    mut spec: ServiceSpec,
    id: &Id,
    now: Millis,
) -> Result<Tx, ApiError> {
    check_spec(state, &mut spec, None)?;
    Ok(Tx {
        at: now,
        ops: vec![Op::Put(Object::Service(new_service(spec, id.clone())))],
    })
}

/// `service update`: the new spec, made from the service at `version` (None: nothing changes).
pub fn update_service_tx(
    state: &ClusterState,
    query: &str,
    version: u64,
    mut spec: ServiceSpec,
    now: Millis,
) -> Result<Option<Tx>, ApiError> {
    let current = find_service(state, query)?;
    if current.meta.version != version {
        return Err(ApiError::new(
            Code::Conflict,
            format!(
                "update out of sequence: service {} changed since it was read (version {version}, now {})",
                current.spec.name, current.meta.version
            ),
        ));
    }
    check_spec(state, &mut spec, Some(&current.id))?;
    let updated = update_service(current, spec).map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok((updated != *current).then(|| Tx {
        at: now,
        ops: vec![Op::Put(Object::Service(updated))],
    }))
}

/// Stores `auth` (when given, sealed with the data key) with the service the transaction
/// writes; `None` keeps what the service has, as docker's update does without
/// `--with-registry-auth`.
fn with_registry_auth(mut tx: Tx, auth: Option<&Sealed<RegistryAuth>>) -> Tx {
    if let Some(auth) = auth {
        for op in &mut tx.ops {
            if let Op::Put(Object::Service(s)) = op {
                s.registry_auth = Some(auth.clone());
            }
        }
    }
    tx
}

/// `service update --rollback`.
pub fn rollback_service_tx(state: &ClusterState, query: &str, now: Millis) -> Result<Tx, ApiError> {
    let current = find_service(state, query)?;
    let s = rollback_service(current, now).map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(Tx {
        at: now,
        ops: vec![Op::Put(Object::Service(s))],
    })
}

/// `service scale SERVICE=REPLICAS` (None: it already has that many).
pub fn scale_service_tx(
    state: &ClusterState,
    query: &str,
    replicas: u64,
    now: Millis,
) -> Result<Option<Tx>, ApiError> {
    check_replicas(replicas).map_err(|e| ApiError::invalid(e.to_string()))?;
    let current = find_service(state, query)?;
    let ServiceMode::Replicated { .. } = current.spec.mode else {
        return Err(ApiError::invalid(format!(
            "{}: scale can only be used with replicated mode",
            current.spec.name
        )));
    };
    let mut spec = current.spec.clone();
    spec.mode = ServiceMode::Replicated { replicas };
    let updated = update_service(current, spec).map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok((updated != *current).then(|| Tx {
        at: now,
        ops: vec![Op::Put(Object::Service(updated))],
    }))
}

/// `service rm`: the service goes; the orchestrator then stops its tasks and deletes them once
/// their nodes report them stopped, and the agents remove their containers.
pub fn remove_service_tx(state: &ClusterState, query: &str, now: Millis) -> Result<Tx, ApiError> {
    let s = find_service(state, query)?;
    Ok(Tx {
        at: now,
        ops: vec![Op::Delete {
            kind: Kind::Service,
            id: s.id.clone(),
            version: s.meta.version,
        }],
    })
}

/// `service ls`, by name.
pub fn summaries(state: &ClusterState) -> Vec<ServiceSummary> {
    let mut services: Vec<&Service> = state.services.values().collect();
    services.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    services
        .into_iter()
        .map(|s| ServiceSummary {
            service: shown(s),
            replicas: replicas_column(state, s),
            ports: ports_column(s),
        })
        .collect()
}

/// A service as replies show it: without its registry login (`--with-registry-auth`), which
/// only the nodes that pull its image get.
pub fn shown(s: &Service) -> Service {
    Service {
        registry_auth: None,
        ..s.clone()
    }
}

/// `service ps SERVICE...`: the services, their tasks, and the nodes.
pub fn tasks_reply(
    state: &ClusterState,
    queries: &[String],
) -> Result<ServiceTasksReply, ApiError> {
    let mut services: Vec<Service> = Vec::new();
    for q in queries {
        let s = find_service(state, q)?;
        if !services.iter().any(|x| x.id == s.id) {
            services.push(shown(s));
        }
    }
    let tasks = services
        .iter()
        .flat_map(|s| state.tasks_of(&s.id).cloned())
        .collect();
    Ok(ServiceTasksReply {
        services,
        tasks,
        nodes: state.nodes.values().cloned().collect(),
    })
}

/// The service requests of the cluster API (writes arrive here on the leader).
pub struct ServiceApi<'m> {
    pub(crate) m: &'m Manager,
}

impl ServiceApi<'_> {
    /// A registry login as raft keeps it: sealed with the data key.
    async fn sealed_login(
        &self,
        login: Option<RegistryAuth>,
    ) -> Result<Option<Sealed<RegistryAuth>>, ApiError> {
        match login {
            Some(l) => Ok(Some(self.m.data_key().await?.seal_value(&l))),
            None => Ok(None),
        }
    }

    /// The service requests of the cluster API (writes arrive here on the leader).
    pub async fn serve(&self, req: Request) -> Result<Reply, ApiError> {
        match req {
            Request::ServiceCreate { spec, image } => {
                let id = Id::random();
                let auth = self.sealed_login(image.registry_auth).await?;
                self.m
                    .with_retries(|s| {
                        create_service_tx(s, spec.clone(), &id, now_millis())
                            .map(|tx| Some(with_registry_auth(tx, auth.as_ref())))
                    })
                    .await?;
                tracing::info!(service = %spec.name, %id, "service created");
                Ok(Reply::ServiceCreated { id })
            }
            Request::ServiceList => {
                let view = self.m.read().await?;
                Ok(Reply::Services(summaries(&view.applied.state)))
            }
            Request::ServiceInspect { service } => {
                let view = self.m.read().await?;
                let s = find_service(&view.applied.state, &service)?;
                Ok(Reply::Service(Box::new(shown(s))))
            }
            Request::ServiceTasks { services } => {
                let view = self.m.read().await?;
                Ok(Reply::ServiceTasks(tasks_reply(
                    &view.applied.state,
                    &services,
                )?))
            }
            Request::ServiceUpdate {
                service,
                version,
                spec,
                image,
            } => {
                let auth = self.sealed_login(image.registry_auth).await?;
                self.m
                    .with_retries(|s| {
                        update_service_tx(s, &service, version, spec.clone(), now_millis())
                            .map(|tx| tx.map(|tx| with_registry_auth(tx, auth.as_ref())))
                    })
                    .await?;
                Ok(Reply::Done)
            }
            Request::ServiceRollback { service } => {
                self.m
                    .with_retries(|s| rollback_service_tx(s, &service, now_millis()).map(Some))
                    .await
            }
            Request::ServiceScale { service, replicas } => {
                self.m
                    .with_retries(|s| scale_service_tx(s, &service, replicas, now_millis()))
                    .await
            }
            Request::ServiceRemove { service } => {
                let reply = self
                    .m
                    .with_retries(|s| remove_service_tx(s, &service, now_millis()).map(Some))
                    .await?;
                tracing::info!(%service, "service removed");
                Ok(reply)
            }
            other => Err(ApiError::internal(format!(
                "{} is not a service request",
                other.name()
            ))),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use mesh_cluster::spec::parse_port;
    use mesh_cluster::state::{
        Meta, Network, NetworkAttachmentConfig, NetworkSpec, Node, NodeDescription, NodeSpec,
        NodeState, NodeStatus,
    };

    use super::*;

    pub(crate) fn node(id: &str, hostname: &str) -> Node {
        Node {
            id: Id::from(id),
            meta: Meta::default(),
            spec: NodeSpec::default(),
            description: NodeDescription {
                hostname: hostname.into(),
                ..NodeDescription::default()
            },
            status: NodeStatus {
                state: NodeState::Ready,
                message: String::new(),
                addr: None,
            },
            manager_status: None,
            attachments: BTreeMap::new(),
        }
    }

    fn spec(name: &str) -> ServiceSpec {
        let mut s = ServiceSpec {
            name: name.into(),
            ..ServiceSpec::default()
        };
        s.task.container.image = "meshd/busybox".into();
        s
    }

    fn apply(state: &mut ClusterState, tx: &Tx) {
        let index = state
            .services
            .values()
            .map(|s| s.meta.version)
            .max()
            .unwrap_or(0)
            + 1;
        state.apply(tx, index).unwrap();
    }

    fn network(id: &str, name: &str, ingress: bool) -> Network {
        Network {
            id: Id::from(id),
            meta: Meta::default(),
            spec: NetworkSpec {
                name: name.into(),
                driver: "overlay".into(),
                ingress,
                ..NetworkSpec::default()
            },
            subnet: "10.0.1.0/24".parse().unwrap(),
            vni: 4097,
        }
    }

    /// Bad input is refused whole, with what was wrong: the state is left as it was.
    #[test]
    fn creates_check_everything_first() {
        let mut s = ClusterState::default();
        s.networks
            .insert(Id::from("ing"), network("ing", "ingress", true));
        s.networks
            .insert(Id::from("net1"), network("net1", "front", false));
        let tx = create_service_tx(&s, spec("web"), &Id::from("w"), 1).unwrap();
        apply(&mut s, &tx);
        assert_eq!(
            s.services[&Id::from("w")].spec.task.container.image,
            "meshd/busybox:latest"
        );
        let before = s.clone();
        let mut bad_constraint = spec("api");
        bad_constraint.task.placement.constraints = vec!["node.labels.zone=east".into()];
        let mut taken_port = spec("api");
        taken_port.endpoint.ports = vec![parse_port("8080:80").unwrap()];
        let mut web = spec("web2");
        web.endpoint.ports = vec![parse_port("8080:80").unwrap()];
        let tx = create_service_tx(&s, web, &Id::from("w2"), 2).unwrap();
        apply(&mut s, &tx);
        let mut ingress = spec("api");
        ingress.task.networks = vec![NetworkAttachmentConfig {
            target: Id::from("ingress"),
            aliases: vec![],
        }];
        let mut unknown_net = spec("api");
        unknown_net.task.networks = vec![NetworkAttachmentConfig {
            target: Id::from("back"),
            aliases: vec![],
        }];
        let with_port = |p: &str| {
            let mut s = spec("api");
            s.endpoint.ports = vec![parse_port(p).unwrap()];
            s
        };
        for (what, spec, want) in [
            (
                "raft port",
                with_port("2377:80"),
                "port 2377/tcp cannot be published",
            ),
            (
                "gossip port",
                with_port("published=7946,target=80,protocol=udp"),
                "port 7946/udp cannot be published: every node uses it for meshd's gossip",
            ),
            ("vxlan port", with_port("4789:80/udp"), "4789/udp cannot"),
            (
                "host port 0",
                with_port("target=80,mode=host"),
                "host mode needs a published port",
            ),
            ("constraint", bad_constraint, "invalid constraint"),
            ("name", spec("web"), "already exists"),
            ("port", taken_port, "8080/tcp is already in use"),
            ("ingress", ingress, "ingress network"),
            ("network", unknown_net, "network back not found"),
            ("bad name", spec("-x"), "invalid service name"),
        ] {
            let e = create_service_tx(&s, spec, &Id::from("x"), 3).unwrap_err();
            assert!(e.message.contains(want), "{what}: {e}");
        }
        let mut named = spec("api");
        named.task.networks = vec![NetworkAttachmentConfig {
            target: Id::from("front"),
            aliases: vec![],
        }];
        let tx = create_service_tx(&s, named, &Id::from("a"), 4).unwrap();
        let Op::Put(Object::Service(svc)) = &tx.ops[0] else {
            panic!()
        };
        assert_eq!(svc.spec.task.networks[0].target, Id::from("net1"));
        assert_eq!(
            before.services.len() + 1,
            s.services.len(),
            "only web2 was added"
        );
    }

    #[test]
    fn services_are_found_by_id_name_or_prefix_and_updated_in_sequence() {
        let mut s = ClusterState::default();
        let tx = create_service_tx(&s, spec("web"), &Id::from("abc1"), 1).unwrap();
        apply(&mut s, &tx);
        let tx = create_service_tx(&s, spec("api"), &Id::from("abc2"), 1).unwrap();
        apply(&mut s, &tx);
        assert_eq!(find_service(&s, "web").unwrap().id.as_str(), "abc1");
        assert_eq!(find_service(&s, "abc2").unwrap().spec.name, "api");
        assert!(
            find_service(&s, "abc")
                .unwrap_err()
                .message
                .contains("ambiguous")
        );
        let e = find_service(&s, "nope").unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (Code::NotFound, "no such service: nope")
        );

        let web = find_service(&s, "web").unwrap().clone();
        let mut new = web.spec.clone();
        new.mode = ServiceMode::Replicated { replicas: 3 };
        let stale = update_service_tx(&s, "web", web.meta.version + 7, new.clone(), 2);
        assert_eq!(stale.unwrap_err().code, Code::Conflict);
        let tx = update_service_tx(&s, "web", web.meta.version, new.clone(), 2)
            .unwrap()
            .unwrap();
        apply(&mut s, &tx);
        let web = find_service(&s, "web").unwrap().clone();
        assert_eq!(web.spec.mode, ServiceMode::Replicated { replicas: 3 });
        assert!(web.previous_spec.is_some());
        assert!(
            update_service_tx(&s, "web", web.meta.version, web.spec.clone(), 3)
                .unwrap()
                .is_none(),
            "the same spec changes nothing"
        );
        assert!(scale_service_tx(&s, "web", 3, 3).unwrap().is_none());
        let err = scale_service_tx(&s, "web", 1_000_000_000_000, 3).unwrap_err();
        assert!(err.message.contains("at most 10000 replicas"), "{err}");
        let tx = scale_service_tx(&s, "web", 1, 3).unwrap().unwrap();
        apply(&mut s, &tx);
        assert_eq!(
            find_service(&s, "web").unwrap().spec.mode,
            ServiceMode::Replicated { replicas: 1 }
        );
        let tx = rollback_service_tx(&s, "web", 4).unwrap();
        apply(&mut s, &tx);
        assert_eq!(
            find_service(&s, "web").unwrap().spec.mode,
            ServiceMode::Replicated { replicas: 3 }
        );
        let mut global = spec("g");
        global.mode = ServiceMode::Global;
        let tx = create_service_tx(&s, global, &Id::from("g1"), 5).unwrap();
        apply(&mut s, &tx);
        assert!(
            scale_service_tx(&s, "g", 2, 6)
                .unwrap_err()
                .message
                .contains("replicated mode")
        );
        let tx = remove_service_tx(&s, "web", 7).unwrap();
        apply(&mut s, &tx);
        assert!(find_service(&s, "web").is_err());
        assert_eq!(
            summaries(&s)
                .iter()
                .map(|x| x.service.spec.name.as_str())
                .collect::<Vec<_>>(),
            ["api", "g"]
        );
    }

    #[test]
    fn images_get_docker_default_tag() {
        assert_eq!(normalize_image("busybox"), "busybox:latest");
        assert_eq!(normalize_image("meshd/busybox"), "meshd/busybox:latest");
        assert_eq!(normalize_image("nginx:1.25"), "nginx:1.25");
        assert_eq!(
            normalize_image("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert_eq!(normalize_image("a@sha256:00"), "a@sha256:00");
    }

    #[test]
    fn registry_logins_are_stored_kept_and_never_shown() {
        let login = RegistryAuth {
            server: "127.0.0.1:5000".into(),
            username: "alice".into(),
            password: "s3cret".into(),
        };
        let key = crate::datakey::DataKey::random();
        let sealed = key.seal_value(&login);
        let mut s = ClusterState::default();
        let tx = create_service_tx(&s, spec("web"), &Id::from("w"), 1).unwrap();
        apply(&mut s, &with_registry_auth(tx, Some(&sealed)));
        let stored = &s.services[&Id::from("w")];
        assert_eq!(stored.registry_auth.as_ref(), Some(&sealed));
        assert_eq!(key.open_value(&sealed).unwrap(), login);
        assert!(!serde_json::to_string(&s).unwrap().contains("s3cret"));
        // Replies never carry it.
        assert_eq!(shown(stored).registry_auth, None);
        assert!(
            summaries(&s)
                .iter()
                .all(|r| r.service.registry_auth.is_none())
        );
        let reply = tasks_reply(&s, &["web".into()]).unwrap();
        assert!(reply.services.iter().all(|x| x.registry_auth.is_none()));
        assert!(!format!("{stored:?}").contains("s3cret"));
        // An update without a login keeps the stored one.
        let mut changed = spec("web");
        changed.task.container.image = "meshd/busybox:2".into();
        let version = stored.meta.version;
        let tx = update_service_tx(&s, "web", version, changed, 2)
            .unwrap()
            .unwrap();
        apply(&mut s, &with_registry_auth(tx, None));
        assert_eq!(
            s.services[&Id::from("w")].registry_auth.as_ref(),
            Some(&sealed)
        );
    }
}
