//! DNS on this node: one `mesh-dns` server, fed from the node's [`NetView`].
//!
//! - [`dns_records`] (pure) says what each network's view answers: for every network with
//!   devices on this node, every service whose tasks attach to it, by name and aliases: its VIP
//!   there (`vip`) or its task addresses (`dnsrr`), `tasks.NAME`, and task names and PTRs. The
//!   tasks are the backends the routing mesh uses: those plumbed here, and those live remote
//!   nodes publish by gossip (as the overlay reaches them), named after the leader's slots.
//! - [`listeners`] (pure): one listener per network with devices here, on the node's address
//!   there (port 53, UDP and TCP): the nameserver of the tasks' resolv.conf.
//! - [`upstreams`] (pure): the node's resolvers, less any inside an overlay range (this node
//!   would route those into its own overlay).
//! - [`spawn`] runs it: the table is rebuilt and swapped in on every change of the view,
//!   listeners follow the networks' devices, upstreams are read from a resolv.conf (meshd's
//!   `--resolv-conf`, `/etc/resolv.conf` by default).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use mesh_api::status::{DnsStatus, Histogram};
use mesh_cluster::Id;
use mesh_cluster::state::EndpointMode;
use mesh_dns::{DnsConfig, DnsServer, NameTable, ServiceRecords, TaskRecord};
use tokio::task::JoinHandle;

use super::view::NetView;
use super::{NodeNetworking, remote_endpoints};

/// The DNS port.
pub const DNS_PORT: u16 = 53;
/// How often listeners that failed are tried again and the resolv.conf is read.
const RETRY_EVERY: Duration = Duration::from_secs(5);
/// How often the counters are handed to the node's networking (`status`, metrics).
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// What one network's view of the table holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkRecords {
    pub network_id: String,
    pub name: String,
    pub subnet: IpNet,
    pub services: Vec<ServiceRecords>,
}

/// Every network view this node serves (pure): see the module's description. Empty outside a
/// swarm.
pub fn dns_records(view: &NetView) -> Vec<NetworkRecords> {
    let Some(me) = &view.node else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (vni, dev) in &view.devices {
        let Some(network) = view.networks.get(&dev.network_id) else {
            continue;
        };
        let subnet = Ipv4Net::new(network.subnet.network(), network.subnet.len)
            .map_or_else(|_| IpNet::from(Ipv4Net::default()), IpNet::from);
        // Remote tasks only as the overlay reaches them (as the mesh uses them).
        let reachable: BTreeSet<(Ipv4Addr, [u8; 6])> = remote_endpoints(view, *vni)
            .into_iter()
            .map(|r| (r.ip, r.mac.octets()))
            .collect();
        let mut services: Vec<ServiceRecords> = Vec::new();
        for svc in view.services.values() {
            let Some(attachment) = svc.networks.iter().find(|a| a.target == dev.network_id) else {
                continue;
            };
            let mut records = match svc.endpoint_mode {
                EndpointMode::Vip => {
                    let Some(vip) = svc.vips.iter().find(|v| v.network_id == dev.network_id) else {
                        continue; // not allocated yet
                    };
                    ServiceRecords::vip(&svc.name, IpAddr::V4(vip.addr))
                }
                EndpointMode::Dnsrr => ServiceRecords::dnsrr(&svc.name),
            };
            for a in &attachment.aliases {
                records = records.alias(a);
            }
            let local = view
                .serving_tasks()
                .filter(|t| t.service_id == svc.id)
                .flat_map(|t| {
                    t.interfaces
                        .iter()
                        .filter(|i| i.network_id == dev.network_id)
                        .map(|i| (t.task_id.clone(), i.addr))
                });
            let remote = view
                .gossip
                .remote_endpoints(me.id.as_str())
                .filter(|(_, e)| {
                    !e.draining
                        && e.service_id == svc.id.as_str()
                        && e.network_id == dev.network_id.as_str()
                        && reachable.contains(&(e.ip, e.mac))
                        && !view.tasks.contains_key(&Id::from(e.task_id.as_str()))
                })
                .map(|(_, e)| (Id::from(e.task_id.as_str()), e.ip));
            let mut tasks: Vec<(Id, Ipv4Addr)> = local.chain(remote).collect();
            tasks.sort();
            tasks.dedup_by(|a, b| a.0 == b.0);
            for (id, addr) in tasks {
                // Named as the leader names it; a task it has not told of yet waits a moment.
                let Some(name) = svc.tasks.iter().find(|t| t.id == id) else {
                    continue;
                };
                let addr = IpAddr::V4(addr);
                records = records.task(if name.slot == 0 {
                    TaskRecord::global(id.as_str(), name.node_id.as_str(), addr)
                } else {
                    TaskRecord::replica(id.as_str(), name.slot, addr)
                });
            }
            services.push(records);
        }
        services.sort_by(|a, b| a.name.cmp(&b.name));
        out.push(NetworkRecords {
            network_id: dev.network_id.to_string(),
            name: network.spec.name.clone(),
            subnet,
            services,
        });
    }
    out.sort_by(|a, b| a.network_id.cmp(&b.network_id));
    out
}

/// The table of `records`, and what could not be added (a name that is no DNS name), each
/// left out alone.
pub fn name_table(records: &[NetworkRecords]) -> (NameTable, Vec<String>) {
    let mut b = NameTable::builder();
    let mut errors = Vec::new();
    for n in records {
        if let Err(e) = b.network(&n.network_id, &n.name, &[n.subnet]) {
            errors.push(format!("network {}: {e}", n.name));
            continue;
        }
        for s in &n.services {
            if let Err(e) = b.service(&n.network_id, s) {
                errors.push(format!("service {} on network {}: {e}", s.name, n.name));
            }
        }
    }
    (b.build(), errors)
}

/// Where the server listens: each network with devices here, on the node's address there.
pub fn listeners(view: &NetView) -> BTreeMap<String, SocketAddr> {
    if view.node.is_none() {
        return BTreeMap::new();
    }
    view.devices
        .values()
        .map(|d| {
            (
                d.network_id.to_string(),
                SocketAddr::new(IpAddr::V4(d.node_addr), DNS_PORT),
            )
        })
        .collect()
}

/// The resolvers names are forwarded to: the node's own, less those inside an overlay range
/// (the node would route them into its own overlay, and none of ours is a resolver).
pub fn upstreams(resolvers: &[SocketAddr], view: &NetView) -> Vec<SocketAddr> {
    resolvers
        .iter()
        .filter(|a| match a.ip() {
            IpAddr::V4(ip) => !view.networks.values().any(|n| n.subnet.contains(ip)),
            IpAddr::V6(_) => true,
        })
        .copied()
        .collect()
}

/// What the server says of itself for `status` and the metrics: its listeners (by network
/// name) and counters.
fn dns_status(
    server: &DnsServer,
    serving: &BTreeMap<String, SocketAddr>,
    view: &NetView,
) -> DnsStatus {
    let stats = server.stats();
    DnsStatus {
        listeners: serving
            .iter()
            .map(|(id, addr)| {
                let name = view
                    .networks
                    .get(&Id::from(id.as_str()))
                    .map_or_else(|| id.clone(), |n| n.spec.name.clone());
                (name, *addr)
            })
            .collect(),
        answered: stats.answered,
        nxdomain: stats.nxdomain,
        truncated: stats.truncated,
        forwarded: stats.forwarded,
        forward_failed: stats.forward_failed,
        forward_refused: stats.forward_refused,
        latency: Histogram {
            bounds: mesh_dns::LATENCY_BOUNDS.to_vec(),
            counts: stats.latency_buckets.to_vec(),
            // Nanoseconds to seconds: f64 keeps them exact far beyond any server's lifetime.
            #[expect(clippy::cast_precision_loss, reason = "a sum of latencies in seconds")]
            sum: stats.latency_sum_nanos as f64 / 1e9,
        },
    }
}

/// Starts the node's DNS server (see the module's description), forwarding to the nameservers
/// of `resolv_conf` (read again every few seconds). Call it inside meshd's tokio runtime, in the
/// node's network namespace (listeners bind there).
pub fn spawn(net: NodeNetworking, resolv_conf: PathBuf) -> JoinHandle<()> {
    tokio::spawn(run(net, resolv_conf))
}

/// The nameservers of `resolv_conf`; none if it cannot be read (forwarded names get SERVFAIL
/// until it can).
fn system_resolvers(resolv_conf: &Path) -> Vec<SocketAddr> {
    mesh_dns::upstreams_from_file(resolv_conf).unwrap_or_default()
}

async fn run(net: NodeNetworking, resolv_conf: PathBuf) {
    let mut rx = net.subscribe();
    let mut resolvers = system_resolvers(&resolv_conf);
    let first = upstreams(&resolvers, &rx.borrow());
    let server = DnsServer::new(
        DnsConfig {
            upstreams: first.clone(),
            ..DnsConfig::default()
        },
        NameTable::default(),
    );
    let mut served_upstreams = first;
    let mut records: Option<Vec<NetworkRecords>> = None;
    let mut serving: BTreeMap<String, SocketAddr> = BTreeMap::new();
    let mut warned: BTreeSet<String> = BTreeSet::new();
    let mut tick = tokio::time::interval(RETRY_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut report = tokio::time::interval(REPORT_EVERY);
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let ticked = tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    server.shutdown().await;
                    return;
                }
                false
            }
            _ = tick.tick() => true,
            _ = report.tick() => {
                net.set_dns_status(dns_status(&server, &serving, &rx.borrow()));
                continue;
            }
        };
        let view = rx.borrow_and_update().clone();

        // The table first, so that a new listener answers at once.
        let now = dns_records(&view);
        if records.as_ref() != Some(&now) {
            let (table, errors) = name_table(&now);
            for e in errors {
                if warned.insert(e.clone()) {
                    tracing::warn!("DNS: {e}; left out");
                }
            }
            server.set_table(table);
            records = Some(now);
        }

        let want = listeners(&view);
        let stale: Vec<String> = serving
            .iter()
            .filter(|(id, addr)| want.get(*id) != Some(addr))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            server.remove_listener(&id).await;
            serving.remove(&id);
        }
        for (id, addr) in want {
            if serving.contains_key(&id) {
                continue;
            }
            match server.add_listener(&id, addr) {
                Ok(_) => {
                    serving.insert(id, addr);
                }
                Err(e) => {
                    // The bridge's address may not be up yet: tried again on the next change.
                    let msg = e.to_string();
                    if warned.insert(msg.clone()) {
                        tracing::warn!("DNS: {msg}; trying again");
                    }
                }
            }
        }

        if ticked {
            resolvers = system_resolvers(&resolv_conf);
        }
        let up = upstreams(&resolvers, &view);
        if up != served_upstreams {
            tracing::info!(upstreams = ?up, "DNS upstreams");
            server.set_upstreams(up.clone());
            served_upstreams = up;
        }
    }
}

#[cfg(test)]
mod tests {
    use mesh_cluster::state::{Meta, Network, NetworkAttachmentConfig, NetworkSpec, VirtualIp};
    use mesh_dns::{ServiceResolution, TaskSlot};
    use mesh_gossip::TaskEndpoint as GossipEndpoint;
    use mesh_overlay::Mac;

    use super::*;
    use crate::net::fixtures;
    use crate::net::view::{LocalInterface, LocalNetwork, LocalTask, SelfNode};
    use mesh_api::{NodeNet, ServiceNet, ServiceTaskName};

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn network(id: &str, vni: u32, subnet: &str) -> Network {
        Network {
            id: Id::from(id),
            meta: Meta::default(),
            spec: NetworkSpec {
                name: format!("{id}-net"),
                ..NetworkSpec::default()
            },
            subnet: subnet.parse().unwrap(),
            vni,
        }
    }

    fn service(id: &str, mode: EndpointMode, nets: &[(&str, &[&str])]) -> ServiceNet {
        ServiceNet {
            id: Id::from(id),
            name: id.into(),
            endpoint_mode: mode,
            ports: Vec::new(),
            vips: if mode == EndpointMode::Vip {
                vec![VirtualIp {
                    network_id: Id::from("front"),
                    addr: ip("10.0.1.100"),
                }]
            } else {
                Vec::new()
            },
            networks: nets
                .iter()
                .map(|(n, aliases)| NetworkAttachmentConfig {
                    target: Id::from(*n),
                    aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
                })
                .collect(),
            tasks: ["t1", "t2", "t3"]
                .iter()
                .enumerate()
                .map(|(i, t)| ServiceTaskName {
                    id: Id::from(format!("{id}{t}").as_str()),
                    slot: i as u64 + 1,
                    node_id: Id::from("n1"),
                })
                .collect(),
        }
    }

    /// A remote task of `service` on `front`.
    fn gossip_ep(task: &str, service: &str, addr: &str) -> GossipEndpoint {
        fixtures::gossip_ep(task, service, "front", 4097, addr)
    }

    /// n1 has devices for `front` (10.0.1.0/24); web has a local task (webt1) and a remote one
    /// on n2 (webt2); n3 is dead with webt3.
    fn view() -> NetView {
        let mut v = NetView {
            node: Some(SelfNode {
                id: Id::from("n1"),
                cluster_id: Id::from("c"),
                hostname: "n1".into(),
                addr: ip("198.18.0.11"),
            }),
            ..NetView::default()
        };
        for n in [
            network("front", 4097, "10.0.1.0/24"),
            network("back", 4098, "10.0.2.0/24"),
            network("ingress", 4096, "10.255.0.0/16"),
        ] {
            v.networks.insert(n.id.clone(), n);
        }
        v.nodes.insert(
            Id::from("n2"),
            NodeNet {
                id: Id::from("n2"),
                hostname: "n2".into(),
                addr: Some(ip("198.18.0.12")),
                attachments: [(Id::from("front"), ip("10.0.1.2"))].into(),
            },
        );
        v.devices.insert(
            4097,
            LocalNetwork {
                network_id: Id::from("front"),
                vni: 4097,
                node_addr: ip("10.0.1.1"),
                prefix_len: 24,
                mtu: 1450,
                bridge: "mbr4097".into(),
                vxlan: "mvx4097".into(),
            },
        );
        v.tasks.insert(
            Id::from("webt1"),
            LocalTask {
                task_id: Id::from("webt1"),
                service_id: Id::from("web"),
                container_id: "c".into(),
                netns_cookie: None,
                interfaces: vec![LocalInterface {
                    network_id: Id::from("front"),
                    vni: 4097,
                    host_ifname: "mvwebt10".into(),
                    ifname: "eth0".into(),
                    addr: ip("10.0.1.11"),
                    prefix_len: 24,
                    mac: Mac::from_ipv4(ip("10.0.1.11")),
                }],
            },
        );
        let mut g = fixtures::live_nodes(&[("n1", "198.18.0.11"), ("n2", "198.18.0.12")]);
        g.endpoints.insert(
            "n2".into(),
            vec![
                gossip_ep("webt2", "web", "10.0.1.12"),
                gossip_ep("rrt1", "rr", "10.0.1.21"),
                gossip_ep("rrt2", "rr", "10.0.1.22"),
            ],
        );
        // n3 is dead: its endpoints are not in `endpoints` (only live nodes are).
        g.dead.insert("n3".into());
        v.gossip = g;
        v.services.insert(
            Id::from("web"),
            service("web", EndpointMode::Vip, &[("front", &["www"])]),
        );
        v.services.insert(
            Id::from("rr"),
            service("rr", EndpointMode::Dnsrr, &[("front", &[])]),
        );
        v.services.insert(
            Id::from("db"),
            service("db", EndpointMode::Dnsrr, &[("back", &[])]),
        );
        v
    }

    fn addrs(s: &ServiceRecords) -> Vec<(String, String)> {
        s.tasks
            .iter()
            .map(|t| {
                let slot = match &t.slot {
                    TaskSlot::Replica(n) => n.to_string(),
                    TaskSlot::Node(n) => n.clone(),
                };
                (format!("{}.{slot}", t.id), t.addr.to_string())
            })
            .collect()
    }

    /// Each network with devices here gets its view: the services attached to it, a `vip`
    /// service by its VIP there, a `dnsrr` one with no VIP, every live task by its slot,
    /// aliases kept. A network without devices here, and a dead node's tasks, are absent.
    #[test]
    fn records_per_network() {
        let r = dns_records(&view());
        assert_eq!(r.len(), 1, "only front has devices here: {r:?}");
        let front = &r[0];
        assert_eq!(
            (front.network_id.as_str(), front.name.as_str()),
            ("front", "front-net")
        );
        assert_eq!(front.subnet.to_string(), "10.0.1.0/24");
        let names: Vec<&str> = front.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["rr", "web"]);
        let rr = &front.services[0];
        assert_eq!(rr.endpoint, ServiceResolution::Dnsrr);
        assert_eq!(
            addrs(rr),
            [
                ("rrt1.1".to_owned(), "10.0.1.21".to_owned()),
                ("rrt2.2".to_owned(), "10.0.1.22".to_owned())
            ]
        );
        let web = &front.services[1];
        assert_eq!(
            web.endpoint,
            ServiceResolution::Vip(IpAddr::V4(ip("10.0.1.100")))
        );
        assert_eq!(web.aliases, ["www"]);
        assert_eq!(
            addrs(web),
            [
                ("webt1.1".to_owned(), "10.0.1.11".to_owned()),
                ("webt2.2".to_owned(), "10.0.1.12".to_owned())
            ]
        );
        // The table answers the names.
        let (table, errors) = name_table(&r);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(table.networks().collect::<Vec<_>>(), ["front"]);
    }

    /// A task the leader has not named yet waits; a global task is named after its node.
    #[test]
    fn task_names_follow_the_leader() {
        let mut v = view();
        let web = v.services.get_mut(&Id::from("web")).unwrap();
        web.tasks.retain(|t| t.id.as_str() != "webt2");
        web.tasks[0].slot = 0;
        let r = dns_records(&v);
        let web = r[0].services.iter().find(|s| s.name == "web").unwrap();
        assert_eq!(
            web.tasks,
            [TaskRecord::global(
                "webt1",
                "n1",
                IpAddr::V4(ip("10.0.1.11"))
            )]
        );
    }

    /// Tasks being withdrawn (draining), here or on another node, are out of DNS.
    #[test]
    fn draining_tasks_are_not_answered() {
        let mut v = view();
        v.leaving.insert(Id::from("webt1"));
        for ep in v.gossip.endpoints.get_mut("n2").unwrap() {
            ep.draining = ep.task_id == "rrt1";
        }
        let r = dns_records(&v);
        let names: Vec<(String, String)> = r[0].services.iter().flat_map(addrs).collect();
        assert_eq!(
            names,
            [
                ("rrt2.2".to_owned(), "10.0.1.22".to_owned()),
                ("webt2.2".to_owned(), "10.0.1.12".to_owned())
            ]
        );
    }

    /// Outside a swarm: nothing served.
    #[test]
    fn nothing_outside_a_swarm() {
        let mut v = view();
        v.node = None;
        assert!(dns_records(&v).is_empty());
        assert!(listeners(&v).is_empty());
    }

    /// One listener per network with devices, on the node's address, port 53.
    #[test]
    fn listeners_on_node_addresses() {
        let l = listeners(&view());
        assert_eq!(
            l,
            BTreeMap::from([("front".to_owned(), "10.0.1.1:53".parse().unwrap())])
        );
    }

    /// Resolvers inside an overlay range are dropped (the lab's host resolver 10.255.255.53 is
    /// inside ingress's 10.255.0.0/16); others are kept in order.
    #[test]
    fn upstreams_outside_the_overlay() {
        let resolvers: Vec<SocketAddr> = ["10.255.255.53:53", "192.0.2.1:53", "127.0.0.53:53"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(
            upstreams(&resolvers, &view()),
            [
                "192.0.2.1:53".parse::<SocketAddr>().unwrap(),
                "127.0.0.53:53".parse().unwrap()
            ]
        );
    }
}
