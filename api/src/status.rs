//! What one node says of its own parts ([`crate::Request::Status`]): `meshctl status` prints it,
//! and `meshd --metrics-addr` turns it into Prometheus metrics. Plain data, filled by the node's
//! daemon from what each part already keeps; [`NodeStatus::checks`] says what is degraded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};

pub use mesh_cluster::Id;
/// The role a node has (re-exported for the metrics, which name no other crate of ours).
pub use mesh_cluster::state::NodeRole;
use serde::{Deserialize, Serialize};

/// One node's parts, as its daemon sees them now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub hostname: String,
    /// None until the node is in a swarm.
    pub node_id: Option<Id>,
    pub role: Option<NodeRole>,
    pub addr: Option<Ipv4Addr>,
    /// Why the node's Docker engine did not answer a ping (None: it did).
    pub engine_error: Option<String>,
    /// The routing mesh (None when this node runs none: not in a swarm, or no networking).
    pub mesh: Option<MeshStatus>,
    pub dns: DnsStatus,
    /// Every other node the leader lists, as this node's gossip sees it.
    pub gossip: Vec<GossipPeer>,
    /// On managers.
    pub raft: Option<RaftStatus>,
    /// On managers: the cluster's tasks by their current state (`running`, `failed`, ...).
    pub tasks: BTreeMap<String, u64>,
    /// An autolocked manager that restarted and waits for `swarm unlock`.
    #[serde(default)]
    pub locked: bool,
}

/// The routing mesh of the node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MeshStatus {
    /// `tc` or `xdp`.
    pub datapath: String,
    /// The programs are loaded and attached to the underlay interface.
    pub loaded: bool,
    /// The last failure of loading, attaching or programming, until the next success.
    pub error: Option<String>,
    /// Interface → the programs attached to it.
    pub interfaces: BTreeMap<String, Vec<String>>,
    /// How full the maps are.
    pub maps: Vec<MapFill>,
    /// Per service: what the node's programs translated.
    pub services: Vec<ServiceSample>,
    /// How long writing a new desired state into the maps took.
    pub programming: Histogram,
    /// Packets the programs dropped, by reason (`vxlan_not_from_node`: VXLAN from an address
    /// that is not a cluster node).
    #[serde(default)]
    pub drops: BTreeMap<String, u64>,
}

/// One map's entries against its size.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapFill {
    pub name: String,
    pub entries: u64,
    pub capacity: u64,
}

/// One service's counters on this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSample {
    pub service_id: Id,
    pub service_name: String,
    pub packets: u64,
    pub bytes: u64,
    /// Flows created.
    pub connections: u64,
    /// `connect()` calls the socket programs translated (they never reach the per-packet path).
    #[serde(default)]
    pub socket_connects: u64,
    /// Unconnected UDP datagrams the socket programs translated.
    #[serde(default)]
    pub socket_datagrams: u64,
}

/// The node's DNS server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DnsStatus {
    /// Network name → the address it answers on.
    pub listeners: BTreeMap<String, SocketAddr>,
    /// Replies written by the server itself (names of the cluster, NXDOMAIN, errors).
    pub answered: u64,
    pub nxdomain: u64,
    pub truncated: u64,
    /// Queries relayed to the node's upstream resolvers.
    pub forwarded: u64,
    /// Relayed queries answered SERVFAIL (no upstream in time).
    pub forward_failed: u64,
    /// Queries not relayed: from outside the cluster's overlays, or over a task's rate.
    #[serde(default)]
    pub forward_refused: u64,
    /// From a query's arrival to its reply.
    pub latency: Histogram,
}

/// What gossip says of another node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerState {
    Alive,
    /// Declared dead by the failure detector.
    Dead,
    /// Neither: not heard from yet, or dead long enough to be forgotten. Down either way.
    #[default]
    Unknown,
}

impl PeerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Dead => "dead",
            Self::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipPeer {
    pub node_id: Id,
    pub hostname: String,
    pub state: PeerState,
}

/// A manager's raft, as openraft's metrics say.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftStatus {
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub members: u64,
}

/// A histogram with fixed bounds (seconds), kept by whoever observes and shipped whole.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Upper bounds, ascending; the implicit last bucket is `+Inf`.
    pub bounds: Vec<f64>,
    /// Observations per bucket (not cumulative), `bounds.len() + 1` of them.
    pub counts: Vec<u64>,
    pub sum: f64,
}

/// Map programming takes from a few microseconds (one port) to seconds (thousands of backends).
const LATENCY_BOUNDS: [f64; 10] = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

impl Default for Histogram {
    fn default() -> Self {
        Self::new(&LATENCY_BOUNDS)
    }
}

impl Histogram {
    pub fn new(bounds: &[f64]) -> Self {
        Self {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    pub fn observe(&mut self, seconds: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.sum += seconds;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(upper bound, cumulative count)` per bucket, `+Inf` last: Prometheus' buckets.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        self.bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(&self.counts)
            .map(|(b, c)| {
                total += c;
                (b, total)
            })
            .collect()
    }
}

/// One line of `meshctl status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub item: String,
    pub ok: bool,
    pub detail: String,
    /// About this node's own parts (what `/healthz` answers for), not its view of others.
    pub local: bool,
}

fn check(item: &str, ok: bool, detail: String, local: bool) -> Check {
    Check {
        item: item.to_owned(),
        ok,
        detail,
        local,
    }
}

impl NodeStatus {
    /// Every item `meshctl status` prints, each OK or degraded (pure).
    pub fn checks(&self) -> Vec<Check> {
        let mut out = Vec::new();
        out.push(match &self.engine_error {
            None => check("Engine", true, "reachable".into(), true),
            Some(e) => check("Engine", false, format!("unreachable: {e}"), true),
        });
        let Some(id) = &self.node_id else {
            out.push(check("Swarm", true, "not in a swarm".into(), true));
            return out;
        };
        let role = match self.role {
            Some(NodeRole::Manager) => "manager",
            _ => "worker",
        };
        if self.locked {
            let detail = format!("locked: node {id} ({role}) waits for `meshctl swarm unlock`");
            out.push(check("Swarm", false, detail, true));
            return out;
        }
        out.push(check("Swarm", true, format!("node {id} ({role})"), true));
        out.push(self.mesh_check());
        out.extend(self.mesh.iter().flat_map(|m| {
            m.maps.iter().map(|f| {
                check(
                    "Map",
                    f.entries < f.capacity,
                    format!("{} {}/{}", f.name, f.entries, f.capacity),
                    true,
                )
            })
        }));
        out.extend(self.mesh.iter().filter(|m| !m.drops.is_empty()).map(|m| {
            let counts: Vec<String> = m.drops.iter().map(|(r, n)| format!("{r}={n}")).collect();
            // Dropping what is not the cluster's is the job: informative, never degraded.
            check("Drops", true, counts.join(", "), true)
        }));
        out.push(self.gossip_check());
        let listeners: Vec<String> = self
            .dns
            .listeners
            .iter()
            .map(|(net, addr)| format!("{net}={addr}"))
            .collect();
        out.push(check(
            "DNS",
            true,
            if listeners.is_empty() {
                "no listener (no local network yet)".into()
            } else {
                format!("listening: {}", listeners.join(", "))
            },
            true,
        ));
        if let Some(r) = &self.raft {
            let detail = format!(
                "{} term {} leader {} applied {}",
                r.role,
                r.term,
                r.leader.map_or_else(|| "none".into(), |l| l.to_string()),
                r.applied_index
            );
            out.push(check("Raft", r.leader.is_some(), detail, true));
        }
        out
    }

    fn mesh_check(&self) -> Check {
        let Some(m) = &self.mesh else {
            return check("Datapath", false, "routing mesh not running".into(), true);
        };
        let mut detail = format!(
            "{} ({})",
            m.datapath,
            if m.loaded { "loaded" } else { "not loaded" }
        );
        for (iface, progs) in &m.interfaces {
            let _ = write!(detail, "; {iface}: {}", progs.join(","));
        }
        if let Some(e) = &m.error {
            let _ = write!(detail, "; error: {e}");
        }
        check("Datapath", m.loaded && m.error.is_none(), detail, true)
    }

    fn gossip_check(&self) -> Check {
        let alive = self
            .gossip
            .iter()
            .filter(|p| p.state == PeerState::Alive)
            .count();
        let down: Vec<String> = self
            .gossip
            .iter()
            .filter(|p| p.state != PeerState::Alive)
            .map(|p| format!("{} {}", p.hostname, p.state.as_str()))
            .collect();
        let mut detail = format!("{alive}/{} peers alive", self.gossip.len());
        if !down.is_empty() {
            let _ = write!(detail, "; down: {}", down.join(", "));
        }
        check("Gossip", down.is_empty(), detail, false)
    }

    /// Anything degraded?
    pub fn degraded(&self) -> bool {
        self.checks().iter().any(|c| !c.ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(3.0);
        assert_eq!(h.count(), 3);
        assert_eq!(h.cumulative(), vec![(0.1, 1), (1.0, 2), (f64::INFINITY, 3)]);
        assert!((h.sum - 3.55).abs() < 1e-9);
    }

    #[test]
    fn a_peer_down_degrades_but_not_locally() {
        let mut s = NodeStatus {
            hostname: "n1".into(),
            node_id: Some(Id::from("a")),
            mesh: Some(MeshStatus {
                datapath: "tc".into(),
                loaded: true,
                ..MeshStatus::default()
            }),
            gossip: vec![GossipPeer {
                node_id: Id::from("b"),
                hostname: "n2".into(),
                state: PeerState::Alive,
            }],
            ..NodeStatus::default()
        };
        assert!(!s.degraded());
        s.gossip[0].state = PeerState::Dead;
        assert!(s.degraded());
        let bad: Vec<Check> = s.checks().into_iter().filter(|c| !c.ok).collect();
        assert_eq!(bad.len(), 1);
        assert!(!bad[0].local);
        assert!(bad[0].detail.contains("n2 dead"), "{}", bad[0].detail);
    }

    #[test]
    fn outside_a_swarm_only_the_engine_counts() {
        let s = NodeStatus {
            engine_error: Some("no socket".into()),
            ..NodeStatus::default()
        };
        let checks = s.checks();
        assert_eq!(checks.len(), 2);
        assert!(s.degraded());
    }
}
