//! The network API as a manager serves it: `network create | ls | inspect | rm`.
//!
//! As for services, each write is a pure function of the state it reads (`*_tx`) that checks
//! everything first (name, driver, subnet against every other network and the nodes' underlay
//! addresses, driver options) and returns the transaction or the error, so that bad input
//! changes nothing. `network create` stores the network with its VNI and subnet already
//! allocated (`mesh_cluster::alloc::new_network`); the allocator then gives every node an address
//! on it. `network rm` is refused while a service or a running task uses the network, and for
//! `ingress` (the routing mesh's network).

use std::collections::BTreeMap;

use mesh_cluster::Id;
use mesh_cluster::alloc::{check_network_removal, new_network};
use mesh_cluster::spec::limits::check_labels;
use mesh_cluster::state::{ClusterState, Kind, Millis, Network, NetworkSpec, Object, Op, Tx};

use mesh_api::{ApiError, NetworkReply, Reply, Request, now_millis};
use mesh_cluster::net::{DOCKER_MTU_OPTION, MAX_MTU, MIN_MTU, MTU_OPTION, ROUTING_OPTION, Routing};

use crate::lookup::find_network;
use crate::manager::Manager;

/// Docker's option for an overlay whose VXLAN traffic is encrypted (`--opt encrypted`).
const ENCRYPTED_OPTION: &str = "encrypted";

/// Checks and normalises the driver options: the MTU (`mtu` or Docker's
/// `com.docker.network.driver.mtu`), a whole number from [`MIN_MTU`] to [`MAX_MTU`], and the
/// routing (`native` or `vxlan`, `default_routing` when not given: always stored, so that a
/// later change of the cluster default does not move existing networks); `encrypted` is refused
/// with why.
fn check_options(
    options: &BTreeMap<String, String>,
    default_routing: Routing,
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    let mut routing = default_routing;
    for (k, v) in options {
        if k == ROUTING_OPTION {
            routing = v.parse().map_err(|e: String| {
                ApiError::invalid(format!("invalid network option {k}={v:?}: {e}"))
            })?;
            continue;
        }
        if k == ENCRYPTED_OPTION {
            return Err(ApiError::invalid(
                "encrypted overlays are not supported: they need IPsec ESP (the kernel's xfrm) or WireGuard on every node, and the kernels meshd runs on here have neither; create the network without --opt encrypted (docs/networking.md says how encryption will work)",
            ));
        }
        if k != MTU_OPTION && k != DOCKER_MTU_OPTION {
            return Err(ApiError::invalid(format!(
                "unknown network option {k:?}: the overlay driver accepts only {MTU_OPTION} (or {DOCKER_MTU_OPTION}) and {ROUTING_OPTION}"
            )));
        }
        let mtu: u32 = v
            .trim()
            .parse()
            .ok()
            .filter(|m| (MIN_MTU..=MAX_MTU).contains(m))
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "invalid network option {k}={v:?}: expected an MTU from {MIN_MTU} to {MAX_MTU}"
                ))
            })?;
        if out.insert(MTU_OPTION.to_owned(), mtu.to_string()).is_some() {
            return Err(ApiError::invalid(format!(
                "the MTU is given twice ({MTU_OPTION} and {DOCKER_MTU_OPTION}); give one"
            )));
        }
    }
    out.insert(ROUTING_OPTION.to_owned(), routing.as_str().to_owned());
    Ok(out)
}

/// `network create`: the new network `id`, checked whole, with its VNI and subnet.
pub fn create_network_tx(
    state: &ClusterState,
    mut spec: NetworkSpec,
    id: &Id,
    now: Millis,
) -> Result<Tx, ApiError> {
    if spec.ingress {
        return Err(ApiError::invalid(
            "the ingress network is made by swarm init; create overlay networks without --ingress",
        ));
    }
    let default_routing = state
        .cluster
        .as_ref()
        .map(|c| c.default_routing)
        .unwrap_or_default();
    spec.options = check_options(&spec.options, default_routing)?;
    if let Some(k) = spec.labels.keys().find(|k| k.trim().is_empty()) {
        return Err(ApiError::invalid(format!(
            "invalid label {k:?}: expected key=value"
        )));
    }
    check_labels("network", &spec.labels).map_err(|e| ApiError::invalid(e.to_string()))?;
    let network =
        new_network(state, spec, id.clone()).map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(Tx {
        at: now,
        ops: vec![Op::Put(Object::Network(network))],
    })
}

/// `network rm`: refused for `ingress` and while a service or a running task uses it.
pub fn remove_network_tx(state: &ClusterState, query: &str, now: Millis) -> Result<Tx, ApiError> {
    let n = find_network(state, query)?;
    if n.spec.ingress {
        return Err(ApiError::invalid(format!(
            "{} is the routing mesh's ingress network and cannot be removed",
            n.spec.name
        )));
    }
    check_network_removal(state, &n.id).map_err(|e| ApiError::precondition(e.to_string()))?;
    Ok(Tx {
        at: now,
        ops: vec![Op::Delete {
            kind: Kind::Network,
            id: n.id.clone(),
            version: n.meta.version,
        }],
    })
}

/// `network ls`, by name.
pub fn list_networks(state: &ClusterState) -> Vec<Network> {
    let mut list: Vec<Network> = state.networks.values().cloned().collect();
    list.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    list
}

/// The network requests of the cluster API (writes arrive here on the leader).
pub struct NetworkApi<'m> {
    pub(crate) m: &'m Manager,
}

impl NetworkApi<'_> {
    /// The network requests of the cluster API (writes arrive here on the leader).
    pub async fn serve(&self, req: Request) -> Result<Reply, ApiError> {
        match req {
            Request::NetworkCreate { spec } => {
                let id = Id::random();
                self.m
                    .with_retries(|s| {
                        create_network_tx(s, spec.clone(), &id, now_millis()).map(Some)
                    })
                    .await?;
                tracing::info!(network = %spec.name, %id, "network created");
                Ok(Reply::NetworkCreated { id })
            }
            Request::NetworkList => {
                let view = self.m.read().await?;
                Ok(Reply::Networks(list_networks(&view.applied.state)))
            }
            Request::NetworkInspect { network } => {
                let view = self.m.read().await?;
                let state = &view.applied.state;
                let n = find_network(state, &network)?;
                let gateway = state
                    .nodes
                    .get(self.m.node_id())
                    .and_then(|me| me.attachments.get(&n.id))
                    .copied();
                Ok(Reply::Network(Box::new(NetworkReply {
                    network: n.clone(),
                    gateway,
                })))
            }
            Request::NetworkRemove { network } => {
                let reply = self
                    .m
                    .with_retries(|s| remove_network_tx(s, &network, now_millis()).map(Some))
                    .await?;
                tracing::info!(%network, "network removed");
                Ok(reply)
            }
            other => Err(ApiError::internal(format!(
                "{} is not a network request",
                other.name()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use mesh_cluster::state::{Meta, NetworkAttachmentConfig, NodeStatus, ServiceSpec, TaskState};

    use super::*;
    use mesh_api::Code;

    fn spec(name: &str) -> NetworkSpec {
        NetworkSpec {
            name: name.into(),
            driver: "overlay".into(),
            ..NetworkSpec::default()
        }
    }

    fn apply(state: &mut ClusterState, tx: &Tx) {
        let index = state
            .networks
            .values()
            .map(|n| n.meta.version)
            .chain(state.services.values().map(|s| s.meta.version))
            .max()
            .unwrap_or(0)
            + 1;
        state.apply(tx, index).unwrap();
    }

    fn with_ingress() -> ClusterState {
        let mut s = ClusterState::default();
        let subnet = "10.255.0.0/16".parse().unwrap();
        s.networks.insert(
            Id::from("ing"),
            Network {
                id: Id::from("ing"),
                meta: Meta {
                    version: 1,
                    ..Meta::default()
                },
                spec: NetworkSpec {
                    ingress: true,
                    subnet: Some(subnet),
                    ..spec("ingress")
                },
                subnet,
                vni: 4096,
            },
        );
        let mut node = crate::handlers::services::tests::node("n1", "node1");
        node.status = NodeStatus {
            addr: Some("198.18.5.11".parse().unwrap()),
            ..node.status
        };
        s.nodes.insert(node.id.clone(), node);
        s
    }

    /// Networks get a VNI and a /24 of the pool (or the subnet asked for), options are checked
    /// and normalised, and every kind of bad input is refused with what was wrong.
    #[test]
    fn creates_allocate_and_refuse_bad_input_whole() {
        let mut s = with_ingress();
        let tx = create_network_tx(&s, spec("front"), &Id::from("f1"), 1).unwrap();
        apply(&mut s, &tx);
        let front = &s.networks[&Id::from("f1")];
        assert_eq!(
            (front.vni, front.subnet.to_string()),
            (4097, "10.0.0.0/24".into())
        );
        let mut back = spec("back");
        back.subnet = Some("10.9.8.0/24".parse().unwrap());
        back.attachable = true;
        back.options.insert(DOCKER_MTU_OPTION.into(), "1400".into());
        let tx = create_network_tx(&s, back, &Id::from("b1"), 2).unwrap();
        apply(&mut s, &tx);
        let back = &s.networks[&Id::from("b1")];
        assert_eq!(
            (back.vni, back.subnet.to_string()),
            (4098, "10.9.8.0/24".into())
        );
        assert_eq!(mesh_cluster::net::network_mtu(back), Some(1400));
        assert_eq!(
            back.spec.options.keys().collect::<Vec<_>>(),
            ["mtu", "routing"]
        );
        assert_eq!(
            mesh_cluster::net::network_routing(back),
            Routing::Vxlan,
            "VXLAN when neither the option nor a cluster default says otherwise"
        );

        let before = s.clone();
        let with = |f: fn(&mut NetworkSpec)| {
            let mut x = spec("other");
            f(&mut x);
            x
        };
        for (what, bad, want) in [
            (
                "overlap",
                with(|x| x.subnet = Some("10.9.0.0/16".parse().unwrap())),
                "overlaps network back (10.9.8.0/24)",
            ),
            (
                "ingress range",
                with(|x| x.subnet = Some("10.255.3.0/24".parse().unwrap())),
                "overlaps network ingress",
            ),
            (
                "host bits",
                with(|x| x.subnet = Some("10.7.7.1/24".parse().unwrap())),
                "host bits are set",
            ),
            (
                "underlay",
                with(|x| x.subnet = Some("198.18.5.0/24".parse().unwrap())),
                "underlay address 198.18.5.11",
            ),
            ("name taken", spec("front"), "already in use"),
            ("bad name", spec("-x"), "invalid network name"),
            (
                "driver",
                with(|x| x.driver = "bridge".into()),
                "only overlay exists",
            ),
            (
                "option",
                with(|x| drop(x.options.insert("foo".into(), String::new()))),
                "unknown network option \"foo\"",
            ),
            (
                "encrypted",
                with(|x| drop(x.options.insert("encrypted".into(), String::new()))),
                "encrypted overlays are not supported: they need IPsec ESP",
            ),
            (
                "mtu",
                with(|x| drop(x.options.insert("mtu".into(), "100".into()))),
                "expected an MTU from 576 to 8950",
            ),
            (
                "two mtus",
                with(|x| {
                    x.options.insert("mtu".into(), "1400".into());
                    x.options.insert(DOCKER_MTU_OPTION.into(), "1400".into());
                }),
                "given twice",
            ),
            ("ingress", with(|x| x.ingress = true), "made by swarm init"),
            (
                "routing",
                with(|x| drop(x.options.insert("routing".into(), "geneve".into()))),
                "invalid network option routing=\"geneve\": invalid routing \"geneve\": expected native or vxlan",
            ),
        ] {
            let e = create_network_tx(&s, bad, &Id::from("x"), 3).unwrap_err();
            assert!(e.message.contains(want), "{what}: {e}");
        }
        assert_eq!(s, before);
    }

    /// `--opt routing` wins over the cluster default; without it the network takes the default,
    /// stored on the network so that it stays what it was made with.
    #[test]
    fn routing_is_the_option_or_the_cluster_default() {
        use mesh_cluster::net::network_routing;
        let mut s = with_ingress();
        let key = crate::datakey::DataKey::random();
        s.cluster = crate::handlers::swarm::tests::bootstrapped(&key, None).cluster;
        s.cluster.as_mut().unwrap().default_routing = Routing::Native;
        let tx = create_network_tx(&s, spec("front"), &Id::from("f1"), 1).unwrap();
        apply(&mut s, &tx);
        let mut back = spec("back");
        back.options.insert("routing".into(), "vxlan".into());
        let tx = create_network_tx(&s, back, &Id::from("b1"), 2).unwrap();
        apply(&mut s, &tx);
        assert_eq!(
            network_routing(&s.networks[&Id::from("f1")]),
            Routing::Native
        );
        assert_eq!(
            network_routing(&s.networks[&Id::from("b1")]),
            Routing::Vxlan
        );
    }

    #[test]
    fn networks_are_found_by_id_name_or_prefix() {
        let mut s = with_ingress();
        for (id, name) in [("abc1", "front"), ("abc2", "back")] {
            let tx = create_network_tx(&s, spec(name), &Id::from(id), 1).unwrap();
            apply(&mut s, &tx);
        }
        assert_eq!(find_network(&s, "front").unwrap().id.as_str(), "abc1");
        assert_eq!(find_network(&s, "abc2").unwrap().spec.name, "back");
        assert!(
            find_network(&s, "abc")
                .unwrap_err()
                .message
                .contains("ambiguous")
        );
        let e = find_network(&s, "nope").unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (Code::NotFound, "network nope not found")
        );
        let names: Vec<String> = list_networks(&s).into_iter().map(|n| n.spec.name).collect();
        assert_eq!(names, ["back", "front", "ingress"]);
    }

    /// `network rm` names the service that uses the network, refuses ingress, and removes an
    /// unused network.
    #[test]
    fn removal_is_refused_while_in_use() {
        let mut s = with_ingress();
        let tx = create_network_tx(&s, spec("front"), &Id::from("f1"), 1).unwrap();
        apply(&mut s, &tx);
        let mut svc = ServiceSpec {
            name: "web".into(),
            ..ServiceSpec::default()
        };
        svc.task.container.image = "meshd/busybox".into();
        svc.task.networks = vec![NetworkAttachmentConfig {
            target: Id::from("front"),
            aliases: vec![],
        }];
        let tx = crate::handlers::services::create_service_tx(&s, svc, &Id::from("w1"), 2).unwrap();
        apply(&mut s, &tx);
        let e = remove_network_tx(&s, "front", 3).unwrap_err();
        assert_eq!(e.code, Code::FailedPrecondition);
        assert!(e.message.contains("in use by service web"), "{e}");
        let e = remove_network_tx(&s, "ingress", 3).unwrap_err();
        assert!(e.message.contains("cannot be removed"), "{e}");
        assert!(
            remove_network_tx(&s, "nope", 3)
                .unwrap_err()
                .message
                .contains("not found")
        );

        s.services.clear();
        let mut task = crate::dispatcher::tests::task(
            "t1",
            Some("n1"),
            TaskState::Running,
            TaskState::Running,
        );
        task.networks = vec![mesh_cluster::state::TaskNetwork {
            network_id: Id::from("f1"),
            addr: "10.0.0.5".parse().unwrap(),
            mac: [2, 0x42, 10, 0, 0, 5],
        }];
        s.tasks.insert(task.id.clone(), task);
        let e = remove_network_tx(&s, "front", 3).unwrap_err();
        assert!(e.message.contains("in use by task t1"), "{e}");
        s.tasks.clear();
        let tx = remove_network_tx(&s, "f1", 3).unwrap();
        apply(&mut s, &tx);
        assert!(!s.networks.contains_key(&Id::from("f1")));
    }
}
