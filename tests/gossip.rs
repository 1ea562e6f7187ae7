//! The gossip crate (issue 5, deliverable 4) on a 3-node lab: membership, the endpoint table,
//! cluster isolation, failure detection of a killed node, and its rejoin after a restart.
//!
//! meshd itself gossips on 7946 in every lab node (`tests/networks.rs` checks what it does with
//! it); this test runs its own `mesh_gossip::Gossip` per node beside it, on [`PORT`], each on a
//! thread that entered the node's network namespace (so its UDP socket lives there) with its own
//! tokio runtime, so that it can kill and restart them at will. The detection time is measured
//! and printed: run
//! `cargo test -p mesh-cli --test e2e --no-run`, then `<printed binary> gossip --nocapture`.
//! Nothing here asserts a speed; [`LIMIT`] only ends a hung test.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mesh_gossip::{
    Gossip, GossipConfig, GossipKey, GossipKeyring, GossipView, NodeInfo, TaskEndpoint,
};
use mesh_overlay::netns::NetNs;
use tokio::sync::{mpsc, watch};

use crate::support::{Lab, stderr, stdout};

const CLUSTER: &str = "gossip-e2e";
/// Not meshd's 7946, which its own gossip holds in every lab node.
const PORT: u16 = 7947;
/// Only there to end a hung test, not a speed requirement.
const LIMIT: Duration = Duration::from_secs(10);

/// The lab's gossip keys: nodes hold key 7, the forger another one under the same id.
fn keyring(byte: u8) -> GossipKeyring {
    GossipKeyring::new(vec![GossipKey {
        id: 1,
        key: [byte; 32],
    }])
    .expect("a keyring")
}

enum Cmd {
    SetEndpoints(Vec<TaskEndpoint>, std_mpsc::Sender<Result<(), String>>),
    SetSeeds(Vec<SocketAddr>),
    Timeouts(std_mpsc::Sender<BTreeMap<String, Duration>>),
    Rejected(std_mpsc::Sender<u64>),
}

/// One gossip instance inside a lab namespace. Dropping it kills it: its runtime goes away with
/// its socket, without a goodbye (as a crashed meshd would).
struct NsGossip {
    name: String,
    view: watch::Receiver<GossipView>,
    cmds: Option<mpsc::UnboundedSender<Cmd>>,
    thread: Option<JoinHandle<()>>,
}

type Ready = Result<(watch::Receiver<GossipView>, mpsc::UnboundedSender<Cmd>), String>;

impl NsGossip {
    fn start(ns_name: &str, config: GossipConfig) -> Self {
        let ns = NetNs::open(ns_name).unwrap_or_else(|e| panic!("open {ns_name}: {e}"));
        let name = config.node_id.clone();
        let (ready_tx, ready_rx) = std_mpsc::channel::<Ready>();
        let thread = std::thread::spawn(move || {
            // setns on this thread only: the runtime built below, and every socket it opens,
            // stay in the node's namespace.
            if let Err(e) = ns.enter_process() {
                let _ = ready_tx.send(Err(format!("enter {}: {e}", ns.path().display())));
                return;
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build a tokio runtime");
            runtime.block_on(async move {
                let gossip = match Gossip::start(config).await {
                    Ok(g) => g,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let (tx, mut rx) = mpsc::unbounded_channel();
                let _ = ready_tx.send(Ok((gossip.view(), tx)));
                while let Some(cmd) = rx.recv().await {
                    match cmd {
                        Cmd::SetEndpoints(eps, reply) => {
                            let _ = reply
                                .send(gossip.set_endpoints(&eps).await.map_err(|e| e.to_string()));
                        }
                        Cmd::SetSeeds(seeds) => gossip.set_seeds(seeds),
                        Cmd::Rejected(reply) => {
                            let _ = reply.send(gossip.rejected_datagrams());
                        }
                        Cmd::Timeouts(reply) => {
                            let _ = reply.send(gossip.detection_timeouts().await);
                        }
                    }
                }
                // The command channel closed: the test kills this node.
                drop(gossip);
            });
        });
        let (view, cmds) = ready_rx
            .recv()
            .unwrap_or_else(|_| panic!("gossip {name} in {ns_name}: its thread died starting"))
            .unwrap_or_else(|e| panic!("gossip {name} in {ns_name} did not start: {e}"));
        Self {
            name,
            view,
            cmds: Some(cmds),
            thread: Some(thread),
        }
    }

    fn send(&self, cmd: Cmd) {
        self.cmds
            .as_ref()
            .expect("running")
            .send(cmd)
            .unwrap_or_else(|_| panic!("gossip {} stopped", self.name));
    }

    fn set_endpoints(&self, eps: &[TaskEndpoint]) {
        let (tx, rx) = std_mpsc::channel();
        self.send(Cmd::SetEndpoints(eps.to_vec(), tx));
        rx.recv()
            .expect("reply")
            .unwrap_or_else(|e| panic!("{}: set_endpoints {eps:?}: {e}", self.name));
    }

    fn set_seeds(&self, seeds: Vec<SocketAddr>) {
        self.send(Cmd::SetSeeds(seeds));
    }

    /// Datagrams this node dropped because they did not open under its keys.
    fn rejected(&self) -> u64 {
        let (tx, rx) = std_mpsc::channel();
        self.send(Cmd::Rejected(tx));
        rx.recv().expect("reply")
    }

    fn timeouts(&self) -> BTreeMap<String, Duration> {
        let (tx, rx) = std_mpsc::channel();
        self.send(Cmd::Timeouts(tx));
        rx.recv().expect("reply")
    }

    /// Waits until this node's view satisfies `pred`; returns that view and when it was seen.
    fn wait(&self, what: &str, pred: impl Fn(&GossipView) -> bool) -> (GossipView, Instant) {
        let deadline = Instant::now() + LIMIT;
        loop {
            {
                let view = self.view.borrow();
                if pred(&view) {
                    return (view.clone(), Instant::now());
                }
                assert!(
                    Instant::now() < deadline,
                    "{}: no view where {what} within {LIMIT:?}; last view: {:#?}",
                    self.name,
                    *view
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for NsGossip {
    fn drop(&mut self) {
        drop(self.cmds.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn ep(task: &str, network: &str, vni: u32, last: u8) -> TaskEndpoint {
    TaskEndpoint {
        task_id: task.into(),
        service_id: "svc0gossip".into(),
        network_id: network.into(),
        vni,
        ip: Ipv4Addr::new(10, 0, 7, last),
        mac: [0x02, 0x42, 10, 0, 7, last],
        draining: false,
    }
}

fn tasks_of(view: &GossipView, node: &str) -> Vec<String> {
    view.endpoints
        .get(node)
        .map(|eps| {
            eps.iter()
                .map(|e| format!("{}@{}", e.task_id, e.network_id))
                .collect()
        })
        .unwrap_or_default()
}

fn set_link(lab: &Lab, member: &str, state: &str) {
    let out = lab.exec(member, &["ip", "link", "set", "eth0", state]);
    assert!(
        out.status.success(),
        "ip link set eth0 {state} in {member}: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// Membership, endpoints, isolation, then three rounds of: kill n3 (its gossip stops and its
/// eth0 goes down), n1 and n2 drop it and its endpoints (time printed), n3 restarts with the
/// same node id and new endpoints and is taken back (round 1's n3 was up for a few seconds,
/// later ones for about two).
#[test]
fn gossip_spreads_endpoints_detects_a_killed_node_and_takes_it_back() {
    let lab = Lab::up("gsp", 160, 3, 1);
    let ip = |i: usize| -> IpAddr { lab.node_addr(i).parse().expect("node address") };
    let gossip_addr = |i: usize| SocketAddr::new(ip(i), PORT);
    let config = |i: usize, seeds: Vec<SocketAddr>| {
        let mut c = GossipConfig::new(
            format!("n{i}"),
            CLUSTER,
            gossip_addr(i),
            NodeInfo {
                addr: ip(i),
                hostname: lab.ns(&format!("n{i}")),
            },
        );
        c.seeds = seeds;
        c.keyring.set(keyring(7));
        c
    };
    let start = |i: usize, seeds: Vec<SocketAddr>| {
        NsGossip::start(&lab.ns(&format!("n{i}")), config(i, seeds))
    };

    // n1 knows nobody, n2 is seeded with n1, n3 learns of peers later (as a manager tells it).
    let n1 = start(1, vec![]);
    let n2 = start(2, vec![gossip_addr(1)]);
    let mut n3 = start(3, vec![]);
    n3.set_seeds(vec![gossip_addr(2)]);
    let all = ["n1", "n2", "n3"];
    for node in [&n1, &n2, &n3] {
        let (view, _) = node.wait("n1, n2 and n3 are live", |v| {
            all.iter().all(|n| v.live.contains_key(*n))
        });
        for (i, n) in all.iter().enumerate() {
            assert_eq!(view.live[*n].addr, ip(i + 1), "{}: {view:#?}", node.name);
        }
        assert!(view.dead.is_empty(), "{}: {view:#?}", node.name);
    }

    // Endpoints spread; a task on two networks is two endpoints.
    n1.set_endpoints(&[ep("t1a", "neta", 4097, 11), ep("t1a", "netb", 4098, 11)]);
    n2.set_endpoints(&[ep("t2a", "neta", 4097, 21)]);
    n3.set_endpoints(&[ep("t3a", "neta", 4097, 31)]);
    for node in [&n1, &n2, &n3] {
        node.wait("every endpoint is known", |v| {
            tasks_of(v, "n1") == ["t1a@neta", "t1a@netb"]
                && tasks_of(v, "n2") == ["t2a@neta"]
                && tasks_of(v, "n3") == ["t3a@neta"]
        });
    }
    // A change replaces n2's set: t2a goes, t2b and t2c come.
    let changed = Instant::now();
    n2.set_endpoints(&[ep("t2b", "neta", 4097, 22), ep("t2c", "neta", 4097, 23)]);
    for node in [&n1, &n3] {
        let (_, seen) = node.wait("n2's endpoints changed", |v| {
            tasks_of(v, "n2") == ["t2b@neta", "t2c@neta"]
        });
        eprintln!(
            "gossip: {} saw n2's endpoint change after {:?}",
            node.name,
            seen - changed
        );
    }

    // A forger in the client namespace knows the cluster id (it is in every node's
    // certificate) but not the gossip key: seeded with n1 and n2, it announces an endpoint and
    // itself. Its datagrams do not open: it never enters, adds no endpoint, and sees nobody.
    let client_ip: IpAddr = format!("198.18.{}.2", lab.subnet_octet)
        .parse()
        .expect("client address");
    let mut forged_config = GossipConfig::new(
        "x1",
        CLUSTER,
        SocketAddr::new(client_ip, PORT),
        NodeInfo {
            addr: client_ip,
            hostname: lab.ns("client"),
        },
    );
    forged_config.seeds = vec![gossip_addr(1), gossip_addr(2)];
    forged_config.keyring.set(keyring(9));
    let rejected_before = n1.rejected() + n2.rejected();
    let foreign = NsGossip::start(&lab.ns("client"), forged_config);
    foreign.set_endpoints(&[ep("forged", "neta", 4097, 99)]);
    std::thread::sleep(Duration::from_secs(2));
    for node in [&n1, &n2, &n3] {
        let view = node.view.borrow();
        assert!(
            !view.live.contains_key("x1") && !view.dead.contains("x1"),
            "{}: a node without the gossip key got in: {:#?}",
            node.name,
            *view
        );
        assert!(
            view.endpoints
                .values()
                .flatten()
                .all(|e| e.task_id != "forged"),
            "{}: a forged endpoint was taken: {:#?}",
            node.name,
            *view
        );
    }
    let foreign_view = foreign.view.borrow().clone();
    assert_eq!(
        foreign_view.live.keys().collect::<Vec<_>>(),
        ["x1"],
        "the forger sees the cluster: {foreign_view:#?}"
    );
    // The forger's datagrams did reach n1 and n2, and were refused there.
    let rejected = n1.rejected() + n2.rejected() - rejected_before;
    assert!(rejected > 0, "no forged datagram reached the seeds");
    eprintln!("gossip: {rejected} forged datagrams refused by n1 and n2");
    drop(foreign);

    // Three rounds: kill n3, measure, restart it with new endpoints.
    let mut measured = Vec::new();
    for round in 1..=3 {
        let timeouts = n1.timeouts();
        let killed = Instant::now();
        drop(n3);
        set_link(&lab, "n3", "down");
        for node in [&n1, &n2] {
            let (_, seen) = node.wait("n3 is dead and its endpoints gone", |v| {
                v.dead.contains("n3")
                    && !v.live.contains_key("n3")
                    && !v.endpoints.contains_key("n3")
                    && v.remote_endpoints(&node.name)
                        .all(|(info, _)| info.addr != ip(3))
            });
            let took = seen - killed;
            eprintln!(
                "gossip: round {round}: {} declared n3 dead and dropped its endpoints {took:?} \
                 after the kill (n1's detection timeouts just before: {timeouts:?})",
                node.name
            );
            measured.push(took);
        }
        // Both survivors still see each other.
        for node in [&n1, &n2] {
            let view = node.view.borrow();
            assert!(
                view.live.contains_key("n1") && view.live.contains_key("n2"),
                "{}: {:#?}",
                node.name,
                *view
            );
        }

        set_link(&lab, "n3", "up");
        n3 = start(3, vec![gossip_addr(1)]);
        let fresh = format!("t3r{round}");
        n3.set_endpoints(&[ep(&fresh, "neta", 4097, 40 + round)]);
        let expected = [format!("{fresh}@neta")];
        for node in [&n1, &n2, &n3] {
            let (view, _) = node.wait("n3 is back with its new endpoints only", |v| {
                all.iter().all(|n| v.live.contains_key(*n)) && tasks_of(v, "n3") == expected
            });
            assert!(view.dead.is_empty(), "{}: {view:#?}", node.name);
            assert_eq!(
                tasks_of(&view, "n2"),
                ["t2b@neta", "t2c@neta"],
                "{}",
                node.name
            );
        }
        // Let the failure detectors sample the new incarnation before the next kill (a node
        // killed within a second of its start is detected later: few samples of its heartbeat).
        std::thread::sleep(Duration::from_secs(2));
    }
    measured.sort();
    eprintln!(
        "gossip: detection of a killed node over {} observations: min {:?}, median {:?}, max {:?}",
        measured.len(),
        measured[0],
        measured[measured.len() / 2],
        measured[measured.len() - 1]
    );
    drop((n1, n2, n3));
}
