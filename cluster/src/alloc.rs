//! The allocator: VNIs and subnets for networks, every node's address on every network, task
//! addresses, service VIPs and published ports. [`allocate`] is the control loop's core (state
//! in, a [`Tx`] filling what is missing out); the `check_*` functions are the API's checks before
//! it stores anything, so that bad input is refused whole and at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use crate::Id;
use crate::state::{
    ClusterState, EndpointMode, Ipv4Cidr, Millis, Network, NetworkSpec, Object, Op, PortConfig,
    Protocol, PublishMode, Service, Task, TaskNetwork, TaskState, Tx, VirtualIp,
};

/// Where overlay subnets come from when the cluster does not say.
pub const DEFAULT_POOL: Ipv4Cidr = Ipv4Cidr {
    addr: Ipv4Addr::new(10, 0, 0, 0),
    len: 8,
};
pub const DEFAULT_SUBNET_LEN: u8 = 24;
/// The routing mesh's network, kept out of the pool for other networks.
pub const INGRESS_SUBNET: Ipv4Cidr = Ipv4Cidr {
    addr: Ipv4Addr::new(10, 255, 0, 0),
    len: 16,
};
pub const INGRESS_VNI: u32 = 4096;
pub const FIRST_VNI: u32 = 4097;
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// Published ports chosen for `-p TARGET` (ingress mode), as Swarm's.
pub const DYNAMIC_PORTS: RangeInclusive<u16> = 30000..=32767;

/// Why something could not be allocated or is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error(
        "invalid network name {0:?}: expected letters, digits, '_', '.' or '-', starting with a \
         letter or digit"
    )]
    NetworkName(String),
    #[error("network name {0:?} is already in use")]
    NetworkNameTaken(String),
    #[error("unsupported network driver {0:?}: only overlay exists")]
    Driver(String),
    #[error("an ingress network already exists ({0}); there can be only one")]
    SecondIngress(String),
    #[error("invalid subnet {0}")]
    Subnet(String),
    #[error("subnet {subnet} overlaps network {network} ({other})")]
    SubnetOverlap {
        subnet: Ipv4Cidr,
        network: String,
        other: Ipv4Cidr,
    },
    #[error("no free /{len} subnet left in the address pool {pool}")]
    PoolExhausted { pool: Ipv4Cidr, len: u8 },
    #[error("no free VXLAN network identifier left ({FIRST_VNI}-{MAX_VNI})")]
    VniExhausted,
    #[error("network {network} ({subnet}) has no free address left")]
    AddressesExhausted { network: String, subnet: Ipv4Cidr },
    #[error("network {0} does not exist")]
    UnknownNetwork(Id),
    #[error("network {network} is in use by {user}")]
    NetworkInUse { network: String, user: String },
    #[error("port {port}/{protocol} is already in use by service {service} ({id}) as {how}")]
    PortInUse {
        port: u16,
        protocol: &'static str,
        service: String,
        id: Id,
        how: &'static str,
    },
    #[error("no free published port left in 30000-32767 for {0}")]
    PortsExhausted(&'static str),
}

/// The MAC Docker derives from an IPv4 address: `02:42:a:b:c:d`.
pub fn mac_for(addr: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = addr.octets();
    [0x02, 0x42, a, b, c, d]
}

fn pool(state: &ClusterState) -> (Ipv4Cidr, u8) {
    state
        .cluster
        .as_ref()
        .map_or((DEFAULT_POOL, DEFAULT_SUBNET_LEN), |c| {
            (c.default_pool, c.subnet_len)
        })
}

/// The subnet a network holds or asked for (unallocated networks with a user subnet hold it too).
fn held_subnet(n: &Network) -> Option<Ipv4Cidr> {
    if n.is_allocated() {
        Some(n.subnet)
    } else {
        n.spec.subnet
    }
}

fn valid_network_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Checks a `network create` before anything is stored: name, driver, one ingress, and a user
/// subnet that is well formed, overlaps no other network and holds no node's underlay address.
pub fn check_network(state: &ClusterState, spec: &NetworkSpec) -> Result<(), AllocError> {
    if !valid_network_name(&spec.name) {
        return Err(AllocError::NetworkName(spec.name.clone()));
    }
    if state
        .id_by_name(crate::state::Kind::Network, &spec.name)
        .is_some()
    {
        return Err(AllocError::NetworkNameTaken(spec.name.clone()));
    }
    if !spec.driver.is_empty() && spec.driver != "overlay" {
        return Err(AllocError::Driver(spec.driver.clone()));
    }
    if spec.ingress
        && let Some(other) = state.networks.values().find(|n| n.spec.ingress)
    {
        return Err(AllocError::SecondIngress(other.spec.name.clone()));
    }
    if let Some(subnet) = spec.subnet {
        check_subnet(state, subnet)?;
    }
    Ok(())
}

fn check_subnet(state: &ClusterState, subnet: Ipv4Cidr) -> Result<(), AllocError> {
    if subnet.addr != subnet.network() {
        return Err(AllocError::Subnet(format!(
            "{subnet}: host bits are set (did you mean {}/{}?)",
            subnet.network(),
            subnet.len
        )));
    }
    if !(8..=29).contains(&subnet.len) {
        return Err(AllocError::Subnet(format!(
            "{subnet}: expected a prefix length from /8 to /29"
        )));
    }
    if let Some(n) = state
        .networks
        .values()
        .find(|n| held_subnet(n).is_some_and(|s| s.overlaps(subnet)))
    {
        return Err(AllocError::SubnetOverlap {
            subnet,
            network: n.spec.name.clone(),
            other: held_subnet(n).unwrap_or(subnet),
        });
    }
    if let Some((node, addr)) = state.nodes.values().find_map(|n| {
        n.status
            .addr
            .filter(|a| subnet.contains(*a))
            .map(|a| (n, a))
    }) {
        return Err(AllocError::Subnet(format!(
            "{subnet}: it holds node {}'s underlay address {addr}",
            node.description.hostname
        )));
    }
    Ok(())
}

/// The first free `/len` of `pool` overlapping none of `taken` (nor the ingress range).
fn free_subnet(pool: Ipv4Cidr, len: u8, taken: &[Ipv4Cidr]) -> Result<Ipv4Cidr, AllocError> {
    let exhausted = AllocError::PoolExhausted { pool, len };
    if len < pool.len || len > 30 {
        return Err(exhausted);
    }
    let step = 1u64 << (32 - u32::from(len));
    let start = u64::from(u32::from(pool.network()));
    let end = start + pool.size();
    let mut at = start;
    while at < end {
        let candidate = Ipv4Cidr {
            addr: Ipv4Addr::from(at as u32),
            len,
        };
        let blocker = taken
            .iter()
            .chain(std::iter::once(&INGRESS_SUBNET))
            .find(|t| t.overlaps(candidate));
        match blocker {
            None => return Ok(candidate),
            // Jump past whatever is in the way (it may be larger than a step).
            Some(b) => {
                let past = u64::from(u32::from(b.network())) + b.size();
                at = past.max(at + step).div_ceil(step) * step;
            }
        }
    }
    Err(exhausted)
}

fn free_vni(state: &ClusterState, taken_now: &BTreeSet<u32>) -> Result<u32, AllocError> {
    let used: BTreeSet<u32> = state.networks.values().map(|n| n.vni).collect();
    (FIRST_VNI..=MAX_VNI)
        .find(|v| !used.contains(v) && !taken_now.contains(v))
        .ok_or(AllocError::VniExhausted)
}

fn allocate_network(
    state: &ClusterState,
    mut network: Network,
    subnets_now: &[Ipv4Cidr],
    vnis_now: &BTreeSet<u32>,
) -> Result<Network, AllocError> {
    let (pool, len) = pool(state);
    let taken: Vec<Ipv4Cidr> = state
        .networks
        .values()
        .filter(|n| n.id != network.id)
        .filter_map(held_subnet)
        .chain(subnets_now.iter().copied())
        .collect();
    network.subnet = match (network.spec.subnet, network.spec.ingress) {
        (Some(s), _) => s,
        (None, true) => INGRESS_SUBNET,
        (None, false) => free_subnet(pool, len, &taken)?,
    };
    network.vni = if network.spec.ingress {
        INGRESS_VNI
    } else {
        free_vni(state, vnis_now)?
    };
    Ok(network)
}

/// A complete network for `network create`: checked, with its subnet and VNI allocated. The
/// API stores it as it is; nothing is stored when this fails.
pub fn new_network(state: &ClusterState, spec: NetworkSpec, id: Id) -> Result<Network, AllocError> {
    check_network(state, &spec)?;
    let mut spec = spec;
    if spec.driver.is_empty() {
        spec.driver = "overlay".into();
    }
    let network = Network {
        id,
        meta: crate::state::Meta::default(),
        spec,
        subnet: Ipv4Cidr {
            addr: Ipv4Addr::UNSPECIFIED,
            len: 0,
        },
        vni: 0,
    };
    allocate_network(state, network, &[], &BTreeSet::new())
}

/// Refuses `network rm` while a service or a live task uses the network.
pub fn check_network_removal(state: &ClusterState, network: &Id) -> Result<(), AllocError> {
    let Some(net) = state.networks.get(network) else {
        return Err(AllocError::UnknownNetwork(network.clone()));
    };
    let in_use = |user: String| AllocError::NetworkInUse {
        network: net.spec.name.clone(),
        user,
    };
    for s in state.services.values() {
        if s.spec.task.networks.iter().any(|a| &a.target == network)
            || (net.spec.ingress && publishes(s))
        {
            return Err(in_use(format!("service {}", s.spec.name)));
        }
    }
    if let Some(t) = state.tasks.values().find(|t| {
        !t.status.state.is_terminal() && t.networks.iter().any(|n| &n.network_id == network)
    }) {
        return Err(in_use(format!("task {}", t.id)));
    }
    Ok(())
}

/// Does the service publish a port? Its tasks then get an `ingress` address: the routing mesh
/// delivers published ports (ingress mode anywhere, host mode on the task's own node) to that
/// address through the node's ingress bridge.
fn publishes(s: &Service) -> bool {
    !s.spec.endpoint.ports.is_empty()
}

/// Refuses a published port that another service already uses: an ingress port is taken on every
/// node, so it conflicts with any other use of the same port and protocol; two host-mode uses may
/// coexist (the scheduler keeps them on different nodes). `service` is the service being updated.
pub fn check_ports(
    state: &ClusterState,
    service: Option<&Id>,
    spec: &crate::state::ServiceSpec,
) -> Result<(), AllocError> {
    for p in spec.endpoint.ports.iter().filter(|p| p.published_port != 0) {
        for other in state.services.values().filter(|s| Some(&s.id) != service) {
            let theirs = other
                .endpoint
                .ports
                .iter()
                .chain(other.spec.endpoint.ports.iter());
            for q in theirs {
                let clash = q.published_port == p.published_port
                    && q.protocol == p.protocol
                    && (p.publish_mode == PublishMode::Ingress
                        || q.publish_mode == PublishMode::Ingress);
                if clash {
                    return Err(AllocError::PortInUse {
                        port: p.published_port,
                        protocol: p.protocol.as_str(),
                        service: other.spec.name.clone(),
                        id: other.id.clone(),
                        how: match q.publish_mode {
                            PublishMode::Ingress => "an ingress port",
                            PublishMode::Host => "a host-mode port",
                        },
                    });
                }
            }
        }
    }
    Ok(())
}

/// What one allocator pass produced: the changes, and what it could not do (each also left in
/// the object it concerns where there is a place for it, such as a task's `status.err`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Allocation {
    pub tx: Tx,
    pub errors: Vec<AllocError>,
}

/// Free addresses of one network, lowest first.
struct AddressPool {
    name: String,
    subnet: Ipv4Cidr,
    used: BTreeSet<u32>,
    /// Nothing is freed during a pass, so the lowest free address never moves backwards.
    next: u32,
}

impl AddressPool {
    fn new(n: &Network) -> Self {
        Self {
            name: n.spec.name.clone(),
            subnet: n.subnet,
            used: BTreeSet::new(),
            next: u32::from(n.subnet.network()) + 1,
        }
    }

    /// Marks `addr` used; false when it is outside the subnet or already held.
    fn claim(&mut self, addr: Ipv4Addr) -> bool {
        let a = u32::from(addr);
        let net = u32::from(self.subnet.network());
        let broadcast = net + (self.subnet.size() - 1) as u32;
        self.subnet.contains(addr) && a != net && a != broadcast && self.used.insert(a)
    }

    fn take(&mut self) -> Result<Ipv4Addr, AllocError> {
        let broadcast = u32::from(self.subnet.network()) + (self.subnet.size() - 1) as u32;
        while self.next < broadcast {
            let a = self.next;
            self.next += 1;
            if self.used.insert(a) {
                return Ok(Ipv4Addr::from(a));
            }
        }
        Err(AllocError::AddressesExhausted {
            network: self.name.clone(),
            subnet: self.subnet,
        })
    }
}

/// The networks a service's tasks attach to: its own, in order, then `ingress` when it publishes
/// ports (either mode).
pub fn service_networks(state: &ClusterState, service: &Service) -> Vec<Id> {
    let mut ids: Vec<Id> = service
        .spec
        .task
        .networks
        .iter()
        .map(|a| a.target.clone())
        .collect();
    if publishes(service)
        && let Some(ingress) = state.networks.values().find(|n| n.spec.ingress)
        && !ids.contains(&ingress.id)
    {
        ids.push(ingress.id.clone());
    }
    ids
}

/// One allocator pass: fills every missing VNI and subnet, node address, service port and VIP,
/// and the addresses of new tasks (which then become `pending` for the scheduler). Idempotent:
/// a second pass over the result changes nothing.
pub fn allocate(state: &ClusterState, now: Millis) -> Allocation {
    let mut out = Allocation {
        tx: Tx {
            at: now,
            ops: Vec::new(),
        },
        errors: Vec::new(),
    };
    let networks = allocate_networks(state, &mut out);
    let mut pools: BTreeMap<Id, AddressPool> = networks
        .values()
        .map(|n| (n.id.clone(), AddressPool::new(n)))
        .collect();
    let held = Held::claim(state, &mut pools);
    allocate_nodes(state, &networks, &held, &mut pools, &mut out);
    allocate_services(state, &held, &mut pools, &mut out);
    allocate_tasks(state, now, &held, &mut pools, &mut out);
    out
}

/// Every network, with a VNI and subnet given to those that had none.
fn allocate_networks(state: &ClusterState, out: &mut Allocation) -> BTreeMap<Id, Network> {
    let mut networks: BTreeMap<Id, Network> = BTreeMap::new();
    let (mut subnets_now, mut vnis_now) = (Vec::new(), BTreeSet::new());
    for n in state.networks.values() {
        if n.is_allocated() {
            networks.insert(n.id.clone(), n.clone());
            continue;
        }
        match allocate_network(state, n.clone(), &subnets_now, &vnis_now) {
            Ok(done) => {
                subnets_now.push(done.subnet);
                vnis_now.insert(done.vni);
                out.tx.ops.push(Op::Put(Object::Network(done.clone())));
                networks.insert(done.id.clone(), done);
            }
            Err(e) => out.errors.push(e),
        }
    }
    networks
}

/// Which addresses already held (by owner and network) are kept: each is claimed in its pool,
/// first come first kept; one outside the subnet or held twice is not.
struct Held<'s> {
    nodes: HashMap<(&'s Id, &'s Id), bool>,
    vips: HashMap<(&'s Id, &'s Id), bool>,
    tasks: HashMap<(&'s Id, &'s Id), bool>,
}

impl<'s> Held<'s> {
    fn claim(state: &'s ClusterState, pools: &mut BTreeMap<Id, AddressPool>) -> Self {
        let mut kept = |net: &Id, addr: Ipv4Addr| pools.get_mut(net).is_some_and(|p| p.claim(addr));
        let mut nodes = HashMap::new();
        for node in state.nodes.values() {
            for (net, addr) in &node.attachments {
                nodes.insert((&node.id, net), kept(net, *addr));
            }
        }
        let mut vips = HashMap::new();
        for s in state.services.values() {
            for v in &s.endpoint.virtual_ips {
                vips.insert((&s.id, &v.network_id), kept(&v.network_id, v.addr));
            }
        }
        let mut tasks = HashMap::new();
        for t in state
            .tasks
            .values()
            .filter(|t| !t.status.state.is_terminal())
        {
            for n in &t.networks {
                tasks.insert((&t.id, &n.network_id), kept(&n.network_id, n.addr));
            }
        }
        Self { nodes, vips, tasks }
    }
}

/// The next free address of network `net`.
fn take(pools: &mut BTreeMap<Id, AddressPool>, net: &Id) -> Result<Ipv4Addr, AllocError> {
    pools.get_mut(net).map_or_else(
        || Err(AllocError::UnknownNetwork(net.clone())),
        AddressPool::take,
    )
}

/// Nodes: one address on every network.
fn allocate_nodes(
    state: &ClusterState,
    networks: &BTreeMap<Id, Network>,
    held: &Held<'_>,
    pools: &mut BTreeMap<Id, AddressPool>,
    out: &mut Allocation,
) {
    for node in state.nodes.values() {
        let mut attachments = BTreeMap::new();
        for net in networks.keys() {
            let addr = match node.attachments.get(net) {
                Some(a) if held.nodes.get(&(&node.id, net)) == Some(&true) => Ok(*a),
                _ => take(pools, net),
            };
            match addr {
                Ok(a) => {
                    attachments.insert(net.clone(), a);
                }
                Err(e) => out.errors.push(e),
            }
        }
        if attachments != node.attachments {
            let mut node = node.clone();
            node.attachments = attachments;
            out.tx.ops.push(Op::Put(Object::Node(node)));
        }
    }
}

/// Services: published ports and VIPs.
fn allocate_services(
    state: &ClusterState,
    held: &Held<'_>,
    pools: &mut BTreeMap<Id, AddressPool>,
    out: &mut Allocation,
) {
    let mut ports_held = published_ports(state);
    let mut next_dynamic: HashMap<Protocol, u16> = HashMap::new();
    for s in state.services.values() {
        let ports = match allocate_ports(state, s, &mut ports_held, &mut next_dynamic) {
            Ok(p) => p,
            Err(e) => {
                out.errors.push(e);
                s.endpoint.ports.clone()
            }
        };
        let mut vips = Vec::new();
        if s.spec.endpoint.mode == EndpointMode::Vip {
            for net in service_networks(state, s) {
                let old = s.endpoint.virtual_ips.iter().find(|v| v.network_id == net);
                let addr = match old {
                    Some(v) if held.vips.get(&(&s.id, &net)) == Some(&true) => Ok(v.addr),
                    _ => take(pools, &net),
                };
                match addr {
                    Ok(addr) => vips.push(VirtualIp {
                        network_id: net,
                        addr,
                    }),
                    Err(e) => out.errors.push(e),
                }
            }
        }
        if ports != s.endpoint.ports || vips != s.endpoint.virtual_ips {
            let mut s = s.clone();
            s.endpoint.ports = ports;
            s.endpoint.virtual_ips = vips;
            out.tx.ops.push(Op::Put(Object::Service(s)));
        }
    }
}

/// The ingress ports in use and by whom. Ports already given out win over ports asked for (a
/// conflicting request is refused by [`allocate_ports`]).
fn published_ports(state: &ClusterState) -> HashMap<(Protocol, u16), &Id> {
    let mut ports_held: HashMap<(Protocol, u16), &Id> = HashMap::new();
    let given = state
        .services
        .values()
        .flat_map(|s| s.endpoint.ports.iter().map(move |p| (s, p)));
    let asked = state
        .services
        .values()
        .flat_map(|s| s.spec.endpoint.ports.iter().map(move |p| (s, p)));
    for (s, p) in given.chain(asked) {
        if p.publish_mode == PublishMode::Ingress && p.published_port != 0 {
            ports_held
                .entry((p.protocol, p.published_port))
                .or_insert(&s.id);
        }
    }
    ports_held
}

/// New tasks: an address on each network, then pending for the scheduler.
fn allocate_tasks(
    state: &ClusterState,
    now: Millis,
    held: &Held<'_>,
    pools: &mut BTreeMap<Id, AddressPool>,
    out: &mut Allocation,
) {
    for t in state.tasks.values() {
        if t.status.state != TaskState::New || t.desired_state > TaskState::Running {
            continue;
        }
        let Some(service) = state.services.get(&t.service_id) else {
            continue;
        };
        let mut task = t.clone();
        match task_addresses(state, service, t, held, pools) {
            Ok(networks) => {
                task.networks = networks;
                task.status.state = TaskState::Pending;
                task.status.message = "pending task scheduling".into();
                task.status.err.clear();
                task.status.timestamp = now;
            }
            Err(e) => {
                // Addresses taken for this task stay claimed until the next pass; keep none.
                task.status.err = e.to_string();
                if task.status.err != t.status.err {
                    task.status.timestamp = now;
                }
                out.errors.push(e);
            }
        }
        if &task != t {
            out.tx.ops.push(Op::Put(Object::Task(task)));
        }
    }
}

/// Task `t`'s address on each of its networks (and `ingress` when its service publishes ports):
/// the one it holds when kept, else a new one; the first failure ends it.
fn task_addresses(
    state: &ClusterState,
    service: &Service,
    t: &Task,
    held: &Held<'_>,
    pools: &mut BTreeMap<Id, AddressPool>,
) -> Result<Vec<TaskNetwork>, AllocError> {
    let mut wanted: Vec<Id> = t.spec.networks.iter().map(|a| a.target.clone()).collect();
    if publishes(service)
        && let Some(ingress) = state.networks.values().find(|n| n.spec.ingress)
        && !wanted.contains(&ingress.id)
    {
        wanted.push(ingress.id.clone());
    }
    let mut networks = Vec::new();
    for net in &wanted {
        let old = t.networks.iter().find(|n| &n.network_id == net);
        let addr = match old {
            Some(n) if held.tasks.get(&(&t.id, net)) == Some(&true) => n.addr,
            _ => take(pools, net)?,
        };
        networks.push(TaskNetwork {
            network_id: net.clone(),
            addr,
            mac: mac_for(addr),
        });
    }
    Ok(networks)
}

/// The service's ports with every ingress `published=0` filled: kept from its last allocation
/// when it had one for the same target and protocol, else the next free dynamic port.
fn allocate_ports<'a>(
    state: &ClusterState,
    s: &'a Service,
    held: &mut HashMap<(Protocol, u16), &'a Id>,
    next: &mut HashMap<Protocol, u16>,
) -> Result<Vec<PortConfig>, AllocError> {
    let mut ports = Vec::with_capacity(s.spec.endpoint.ports.len());
    for p in &s.spec.endpoint.ports {
        let mut p = p.clone();
        if p.publish_mode == PublishMode::Ingress && p.published_port != 0 {
            if let Some(owner) = held.get(&(p.protocol, p.published_port))
                && *owner != &s.id
            {
                let other = &state.services[*owner];
                return Err(AllocError::PortInUse {
                    port: p.published_port,
                    protocol: p.protocol.as_str(),
                    service: other.spec.name.clone(),
                    id: other.id.clone(),
                    how: "an ingress port",
                });
            }
        } else if p.publish_mode == PublishMode::Ingress {
            let previous = s.endpoint.ports.iter().find(|q| {
                q.publish_mode == PublishMode::Ingress
                    && q.protocol == p.protocol
                    && q.target_port == p.target_port
                    && DYNAMIC_PORTS.contains(&q.published_port)
                    && held.get(&(q.protocol, q.published_port)) == Some(&&s.id)
                    && !ports.iter().any(|r: &PortConfig| {
                        r.protocol == q.protocol && r.published_port == q.published_port
                    })
            });
            p.published_port = if let Some(q) = previous {
                q.published_port
            } else {
                let from = next.entry(p.protocol).or_insert(*DYNAMIC_PORTS.start());
                let port = (*from..=*DYNAMIC_PORTS.end())
                    .find(|port| !held.contains_key(&(p.protocol, *port)))
                    .ok_or(AllocError::PortsExhausted(p.protocol.as_str()))?;
                *from = port;
                held.insert((p.protocol, port), &s.id);
                port
            };
        }
        ports.push(p);
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse_port;
    use crate::state::{
        Meta, NetworkAttachmentConfig, Node, NodeDescription, NodeStatus, ServiceSpec, Task,
        TaskStatus,
    };

    fn net_spec(name: &str, subnet: Option<&str>) -> NetworkSpec {
        NetworkSpec {
            name: name.into(),
            driver: "overlay".into(),
            subnet: subnet.map(|s| s.parse().unwrap()),
            ..NetworkSpec::default()
        }
    }

    fn add_network(s: &mut ClusterState, id: &str, spec: NetworkSpec) -> Network {
        let n = new_network(s, spec, Id::from(id)).unwrap();
        s.networks.insert(n.id.clone(), n.clone());
        n
    }

    fn node(id: &str, addr: &str) -> Node {
        Node {
            id: Id::from(id),
            meta: Meta::default(),
            spec: crate::state::NodeSpec::default(),
            description: NodeDescription {
                hostname: id.into(),
                ..NodeDescription::default()
            },
            status: NodeStatus {
                addr: Some(addr.parse().unwrap()),
                ..NodeStatus::default()
            },
            manager_status: None,
            attachments: BTreeMap::new(),
        }
    }

    fn service(id: &str, ports: &[&str], networks: &[&str]) -> Service {
        let mut spec = ServiceSpec {
            name: format!("svc-{id}"),
            ..ServiceSpec::default()
        };
        spec.task.container.image = "busybox".into();
        spec.endpoint.ports = ports.iter().map(|p| parse_port(p).unwrap()).collect();
        spec.task.networks = networks
            .iter()
            .map(|n| NetworkAttachmentConfig {
                target: Id::from(*n),
                aliases: vec![],
            })
            .collect();
        Service {
            id: Id::from(id),
            meta: Meta::default(),
            spec,
            previous_spec: None,
            endpoint: crate::state::Endpoint::default(),
            update_status: None,
            stack: None,
            registry_auth: None,
        }
    }

    fn task(id: &str, service: &Service, state: TaskState) -> Task {
        Task {
            id: Id::from(id),
            meta: Meta::default(),
            service_id: service.id.clone(),
            slot: 1,
            node_id: None,
            spec: service.spec.task.clone(),
            spec_version: 0,
            desired_state: TaskState::Running,
            status: TaskStatus {
                state,
                ..TaskStatus::default()
            },
            networks: vec![],
            start_at: 0,
            restart_history: vec![],
            endpoint: crate::state::EndpointSpec::default(),
        }
    }

    /// Applies a pass the way raft would, and checks that a second pass changes nothing.
    fn settle(s: &mut ClusterState, now: Millis) -> Allocation {
        let a = allocate(s, now);
        s.apply(&a.tx, now).unwrap();
        let again = allocate(s, now + 1);
        assert!(
            again.tx.ops.is_empty(),
            "second pass changed {:?}",
            again.tx.ops
        );
        a
    }

    #[test]
    #[expect(clippy::many_single_char_names, reason = "networks named a to e")]
    fn networks_get_subnets_and_vnis() {
        let mut s = ClusterState::default();
        let ingress = add_network(
            &mut s,
            "i",
            NetworkSpec {
                ingress: true,
                ..net_spec("ingress", None)
            },
        );
        assert_eq!((ingress.subnet, ingress.vni), (INGRESS_SUBNET, INGRESS_VNI));
        let a = add_network(&mut s, "a", net_spec("a", None));
        let b = add_network(&mut s, "b", net_spec("b", Some("10.0.1.0/24")));
        let c = add_network(&mut s, "c", net_spec("c", None));
        assert_eq!(a.subnet.to_string(), "10.0.0.0/24");
        assert_eq!(b.subnet.to_string(), "10.0.1.0/24");
        assert_eq!(
            c.subnet.to_string(),
            "10.0.2.0/24",
            "skips the user's subnet"
        );
        assert_eq!((a.vni, b.vni, c.vni), (4097, 4098, 4099));
        // A removed network's VNI and subnet are reused.
        s.networks.remove(&Id::from("b"));
        let d = add_network(&mut s, "d", net_spec("d", None));
        assert_eq!(
            (d.subnet.to_string().as_str(), d.vni),
            ("10.0.1.0/24", 4098)
        );
        // A large user subnet is skipped over whole.
        let mut s = ClusterState::default();
        add_network(&mut s, "big", net_spec("big", Some("10.0.0.0/16")));
        let e = add_network(&mut s, "e", net_spec("e", None));
        assert_eq!(e.subnet.to_string(), "10.1.0.0/24");
    }

    #[test]
    fn bad_networks_are_refused_with_reasons() {
        let mut s = ClusterState::default();
        s.nodes.insert(Id::from("n1"), node("n1", "198.18.0.2"));
        add_network(&mut s, "a", net_spec("front", Some("10.0.9.0/24")));
        let rows: &[(NetworkSpec, &str)] = &[
            (
                net_spec("back", Some("10.0.9.128/25")),
                "overlaps network front (10.0.9.0/24)",
            ),
            (
                net_spec("back", Some("10.0.0.0/8")),
                "overlaps network front",
            ),
            (net_spec("front", None), "already in use"),
            (net_spec("-x", None), "invalid network name"),
            (
                net_spec("back", Some("10.0.10.1/24")),
                "did you mean 10.0.10.0/24",
            ),
            (net_spec("back", Some("10.0.10.0/30")), "/8 to /29"),
            (
                net_spec("back", Some("198.18.0.0/24")),
                "n1's underlay address 198.18.0.2",
            ),
            (
                NetworkSpec {
                    driver: "bridge".into(),
                    ..net_spec("back", None)
                },
                "only overlay",
            ),
        ];
        for (spec, want) in rows {
            let err = check_network(&s, spec).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        // The pool runs out: a /22 pool holds four /24s.
        let pool: Ipv4Cidr = "10.1.0.0/22".parse().unwrap();
        let mut taken = Vec::new();
        for _ in 0..4 {
            taken.push(free_subnet(pool, 24, &taken).unwrap());
        }
        assert_eq!(taken[3].to_string(), "10.1.3.0/24");
        let err = free_subnet(pool, 24, &taken).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no free /24 subnet left in the address pool 10.1.0.0/22"
        );
    }

    #[test]
    fn nodes_services_and_tasks_get_addresses() {
        let mut s = ClusterState::default();
        add_network(
            &mut s,
            "ing",
            NetworkSpec {
                ingress: true,
                ..net_spec("ingress", None)
            },
        );
        add_network(&mut s, "front", net_spec("front", None));
        for n in ["n1", "n2"] {
            s.nodes.insert(Id::from(n), node(n, "198.18.0.2"));
        }
        let web = service("web", &["8080:80", "81"], &["front"]);
        let dns = {
            let mut d = service("dns", &[], &["front"]);
            d.spec.endpoint.mode = EndpointMode::Dnsrr;
            d
        };
        s.services.insert(web.id.clone(), web.clone());
        s.services.insert(dns.id.clone(), dns.clone());
        s.tasks
            .insert(Id::from("t1"), task("t1", &web, TaskState::New));
        s.tasks
            .insert(Id::from("t2"), task("t2", &dns, TaskState::New));
        let a = settle(&mut s, 10);
        assert!(a.errors.is_empty(), "{:?}", a.errors);

        let n1 = &s.nodes[&Id::from("n1")];
        assert_eq!(n1.attachments[&Id::from("front")].to_string(), "10.0.0.1");
        assert_eq!(n1.attachments[&Id::from("ing")].to_string(), "10.255.0.1");
        let web = s.services[&Id::from("web")].clone();
        let published: Vec<u16> = web
            .endpoint
            .ports
            .iter()
            .map(|p| p.published_port)
            .collect();
        assert_eq!(published, [8080, 30000]);
        let vips: Vec<String> = web
            .endpoint
            .virtual_ips
            .iter()
            .map(|v| format!("{}={}", v.network_id, v.addr))
            .collect();
        assert_eq!(vips, ["front=10.0.0.3", "ing=10.255.0.3"]);
        assert!(s.services[&Id::from("dns")].endpoint.virtual_ips.is_empty());
        let t1 = &s.tasks[&Id::from("t1")];
        assert_eq!(t1.status.state, TaskState::Pending);
        let addrs: Vec<String> = t1.networks.iter().map(|n| n.addr.to_string()).collect();
        assert_eq!(addrs.len(), 2, "front and ingress");
        assert_eq!(t1.networks[0].mac, mac_for(t1.networks[0].addr));
        assert_eq!(mac_for("10.0.0.5".parse().unwrap()), [2, 0x42, 10, 0, 0, 5]);
        let t2 = s.tasks[&Id::from("t2")].clone();
        assert_eq!(t2.networks.len(), 1, "no ingress without published ports");
        // Host-mode ports are delivered through the ingress bridge too: the task needs an
        // ingress address as well.
        let host = service("host", &["published=9000,target=80,mode=host"], &["front"]);
        s.services.insert(host.id.clone(), host.clone());
        s.tasks
            .insert(Id::from("th"), task("th", &host, TaskState::New));
        settle(&mut s, 15);
        let th = &s.tasks[&Id::from("th")];
        assert_eq!(
            th.networks
                .iter()
                .map(|n| n.network_id.as_str())
                .collect::<Vec<_>>(),
            ["front", "ing"],
            "a host-mode task gets an ingress address"
        );

        // A terminal task frees its address; a live one never loses it.
        let mut done = s.tasks[&Id::from("t1")].clone();
        let freed = done.networks[0].addr;
        done.status.state = TaskState::Failed;
        s.tasks.insert(done.id.clone(), done);
        s.tasks
            .insert(Id::from("t3"), task("t3", &web, TaskState::New));
        settle(&mut s, 20);
        assert_eq!(s.tasks[&Id::from("t3")].networks[0].addr, freed);
        assert_eq!(
            s.tasks[&Id::from("t2")].networks[0].addr,
            t2.networks[0].addr,
            "kept"
        );
        // A new network reaches every node at once.
        add_network(&mut s, "back", net_spec("back", None));
        settle(&mut s, 30);
        assert!(s.nodes.values().all(|n| n.attachments.len() == 3));
    }

    #[test]
    fn dynamic_ports_are_kept_and_unique() {
        let mut s = ClusterState::default();
        add_network(
            &mut s,
            "ing",
            NetworkSpec {
                ingress: true,
                ..net_spec("ingress", None)
            },
        );
        for id in ["a", "b"] {
            let svc = service(id, &["80", "80/udp"], &[]);
            s.services.insert(svc.id.clone(), svc);
        }
        settle(&mut s, 1);
        let ports = |s: &ClusterState, id: &str| -> Vec<String> {
            s.services[&Id::from(id)]
                .endpoint
                .ports
                .iter()
                .map(|p| format!("{}/{}", p.published_port, p.protocol.as_str()))
                .collect()
        };
        assert_eq!(ports(&s, "a"), ["30000/tcp", "30000/udp"]);
        assert_eq!(ports(&s, "b"), ["30001/tcp", "30001/udp"]);
        // An update adding a port keeps the ones already given.
        let mut a = s.services[&Id::from("a")].clone();
        a.spec.endpoint.ports.insert(0, parse_port("90").unwrap());
        s.services.insert(a.id.clone(), a);
        settle(&mut s, 2);
        assert_eq!(ports(&s, "a"), ["30002/tcp", "30000/tcp", "30000/udp"]);
    }

    #[test]
    fn port_conflicts_name_the_other_service() {
        let mut s = ClusterState::default();
        let web = service(
            "web1",
            &["8080:80", "published=9000,target=90,mode=host"],
            &[],
        );
        s.services.insert(web.id.clone(), web);
        let check = |ports: &[&str]| {
            let spec = service("new", ports, &[]).spec;
            check_ports(&s, None, &spec).map_err(|e| e.to_string())
        };
        assert_eq!(
            check(&["8080:81"]),
            Err(
                "port 8080/tcp is already in use by service svc-web1 (web1) as an ingress port"
                    .into()
            )
        );
        assert!(check(&["8080:81/udp"]).is_ok(), "other protocol");
        assert!(
            check(&["published=9000,target=1,mode=host"]).is_ok(),
            "host and host"
        );
        assert!(check(&["9000:1"]).unwrap_err().contains("a host-mode port"));
        assert!(check(&["published=8080,target=1,mode=host"]).is_err());
        // The service itself may keep its ports on update.
        let own = s.services[&Id::from("web1")].spec.clone();
        assert!(check_ports(&s, Some(&Id::from("web1")), &own).is_ok());
    }

    #[test]
    fn network_removal_waits_for_users() {
        let mut s = ClusterState::default();
        add_network(&mut s, "front", net_spec("front", None));
        let web = service("web", &[], &["front"]);
        s.services.insert(web.id.clone(), web.clone());
        let err = check_network_removal(&s, &Id::from("front")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "network front is in use by service svc-web"
        );
        s.tasks
            .insert(Id::from("t1"), task("t1", &web, TaskState::New));
        settle(&mut s, 1);
        s.services.clear();
        assert!(
            check_network_removal(&s, &Id::from("front"))
                .unwrap_err()
                .to_string()
                .contains("task t1")
        );
        s.tasks.clear();
        assert_eq!(check_network_removal(&s, &Id::from("front")), Ok(()));
        assert!(check_network_removal(&s, &Id::from("nope")).is_err());
    }

    #[test]
    fn exhausted_networks_leave_tasks_new_with_the_reason() {
        let mut s = ClusterState::default();
        add_network(&mut s, "tiny", net_spec("tiny", Some("10.9.0.0/29")));
        let web = service("web", &[], &["tiny"]);
        s.services.insert(web.id.clone(), web.clone());
        for i in 0..8 {
            let id = format!("t{i}");
            s.tasks
                .insert(Id::from(id.as_str()), task(&id, &web, TaskState::New));
        }
        let a = settle(&mut s, 1);
        // A /29 has six hosts, and the service's VIP holds one.
        let pending = s
            .tasks
            .values()
            .filter(|t| t.status.state == TaskState::Pending)
            .count();
        assert_eq!(pending, 5);
        let stuck: Vec<&Task> = s
            .tasks
            .values()
            .filter(|t| t.status.state == TaskState::New)
            .collect();
        assert_eq!(stuck.len(), 3);
        assert!(
            stuck[0]
                .status
                .err
                .contains("network tiny (10.9.0.0/29) has no free address left")
        );
        assert!(!a.errors.is_empty());
    }

    #[test]
    fn a_port_given_out_wins_over_a_later_request() {
        let mut s = ClusterState::default();
        let mut old = service("zz-old", &["8080:80"], &[]);
        old.endpoint.ports = old.spec.endpoint.ports.clone();
        s.services.insert(old.id.clone(), old);
        let new = service("aa-new", &["8080:80"], &[]);
        s.services.insert(new.id.clone(), new);
        let a = allocate(&s, 1);
        assert_eq!(a.errors.len(), 1);
        assert!(
            a.errors[0].to_string().contains("svc-zz-old"),
            "{}",
            a.errors[0]
        );
        assert!(
            a.tx.ops.is_empty(),
            "the newcomer gets nothing: {:?}",
            a.tx.ops
        );
    }
}
