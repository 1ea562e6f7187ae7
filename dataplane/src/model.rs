//! The desired state the agent hands to [`crate::Mesh::apply`]: plain data (no aya types), built
//! by the control plane from cluster state and the endpoint table.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Transport protocol of a published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        })
    }
}

/// How a port is published (Swarm's `mode=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PublishMode {
    /// Every node answers and forwards to a task anywhere.
    Ingress,
    /// Only nodes running a task answer, each to its own tasks.
    Host,
}

/// A published port of a service.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PublishedPort {
    pub protocol: Protocol,
    /// The port every node answers on.
    pub published: u16,
    /// The port the tasks listen on.
    pub target: u16,
    pub mode: PublishMode,
}

/// A service's VIP on one network (`vip` endpoint mode; `dnsrr` services have none).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Vip {
    pub vni: u32,
    pub addr: Ipv4Addr,
}

/// A task's address and MAC on one network.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskAddress {
    pub vni: u32,
    pub addr: Ipv4Addr,
    pub mac: [u8; 6],
}

/// A running (and healthy) task of a service.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    /// The underlay (advertised) address of the task's node: its VTEP.
    pub node_addr: Ipv4Addr,
    /// Whether the task runs on this node.
    pub local: bool,
    /// Its addresses, one per network; published ports use the one on the ingress network.
    pub endpoints: Vec<TaskAddress>,
    /// Being withdrawn before it stops: it takes no new flow (it is in no ring) and keeps the
    /// flows it has (its backend stays, so their conntrack entries stay valid) until it is gone
    /// from the desired state, when they are swept.
    #[serde(default)]
    pub draining: bool,
}

/// One service as the data plane needs it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Service {
    /// The service's id (counters are reported under it).
    pub id: String,
    pub ports: Vec<PublishedPort>,
    pub vips: Vec<Vip>,
    pub tasks: Vec<Task>,
}

/// Everything the node's maps should hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredMesh {
    pub services: Vec<Service>,
}
