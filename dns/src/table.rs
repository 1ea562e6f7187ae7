//! The name table: plain data that meshd fills, indexed once so that a lookup is two hash probes.
//!
//! A table holds one view per network (keyed by the network id). A query is answered from the
//! view of the network whose listener received it, so services never leak across networks.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::{DNSClass, RecordType};
use ipnet::IpNet;

/// Default TTL of answers that carry a VIP (and of a VIP's PTR): a VIP lives as long as its
/// service, so clients may cache it as long as Docker lets them (600 s).
pub const DEFAULT_VIP_TTL: u32 = 600;
/// Default TTL of answers that carry task addresses (`dnsrr` names, `tasks.NAME`, task PTR):
/// tasks come and go, so caches must not keep a dead task for long (Docker's 600 s does).
pub const DEFAULT_TASK_TTL: u32 = 5;

/// Longest name in presentation form without the trailing dot (RFC 1035: 255 octets on the wire).
const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// How a service is reached by its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceResolution {
    /// `NAME` resolves to this virtual IP (endpoint mode `vip`).
    Vip(IpAddr),
    /// `NAME` resolves to every task address (endpoint mode `dnsrr`).
    Dnsrr,
}

/// What Docker puts between the service name and the task id in a task's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskSlot {
    /// A replicated service's slot number.
    Replica(u64),
    /// A global service's node id.
    Node(String),
}

/// One task's address on one network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRecord {
    /// The task id (a DNS label: letters, digits, `-`, `_`).
    pub id: String,
    pub slot: TaskSlot,
    pub addr: IpAddr,
}

impl TaskRecord {
    /// A task of a replicated service.
    pub fn replica(id: impl Into<String>, slot: u64, addr: IpAddr) -> Self {
        Self {
            id: id.into(),
            slot: TaskSlot::Replica(slot),
            addr,
        }
    }

    /// A task of a global service, named after its node like Docker does.
    pub fn global(id: impl Into<String>, node_id: impl Into<String>, addr: IpAddr) -> Self {
        Self {
            id: id.into(),
            slot: TaskSlot::Node(node_id.into()),
            addr,
        }
    }
}

/// Everything DNS needs to know about one service on one network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRecords {
    pub name: String,
    /// Further names with the same answers as `name` (network aliases, stack-style names).
    pub aliases: Vec<String>,
    pub endpoint: ServiceResolution,
    /// The tasks that should be resolvable (meshd decides: running, healthy).
    pub tasks: Vec<TaskRecord>,
}

impl ServiceRecords {
    /// A service in endpoint mode `vip`.
    pub fn vip(name: impl Into<String>, vip: IpAddr) -> Self {
        Self {
            name: name.into(),
            aliases: Vec::new(),
            endpoint: ServiceResolution::Vip(vip),
            tasks: Vec::new(),
        }
    }

    /// A service in endpoint mode `dnsrr`.
    pub fn dnsrr(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            aliases: Vec::new(),
            endpoint: ServiceResolution::Dnsrr,
            tasks: Vec::new(),
        }
    }

    #[must_use]
    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        self.aliases.push(alias.into());
        self
    }

    #[must_use]
    pub fn task(mut self, task: TaskRecord) -> Self {
        self.tasks.push(task);
        self
    }
}

/// TTLs of the answers, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ttls {
    pub vip: u32,
    pub tasks: u32,
}

impl Default for Ttls {
    fn default() -> Self {
        Self {
            vip: DEFAULT_VIP_TTL,
            tasks: DEFAULT_TASK_TTL,
        }
    }
}

/// Why a network or service was not added. The builder is left unchanged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableError {
    #[error(
        "{what} {name:?} is not a valid DNS name: {why}; accepted: labels of 1-63 letters, \
         digits, '-' or '_', separated by '.', at most 253 characters"
    )]
    InvalidName {
        what: &'static str,
        name: String,
        why: &'static str,
    },
    #[error("network {0:?} is not in the table; add it with NameTableBuilder::network first")]
    UnknownNetwork(String),
    #[error("network id must not be empty")]
    EmptyNetworkId,
}

/// Builds a [`NameTable`]. Every method validates its whole input before changing anything.
#[derive(Debug, Default)]
pub struct NameTableBuilder {
    ttls: Ttls,
    networks: HashMap<Box<str>, ViewBuilder>,
}

#[derive(Debug, Default)]
struct ViewBuilder {
    name: String,
    subnets: Vec<IpNet>,
    names: HashMap<Box<str>, NameEntry>,
    ptrs: HashMap<IpAddr, PtrEntry>,
}

impl NameTableBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn ttls(mut self, ttls: Ttls) -> Self {
        self.ttls = ttls;
        self
    }

    /// Adds a network (or updates its name and ranges). `name` ends task PTR names; `subnets` are
    /// the overlay ranges whose reverse names are answered here and never forwarded.
    pub fn network(
        &mut self,
        id: &str,
        name: &str,
        subnets: &[IpNet],
    ) -> Result<&mut Self, TableError> {
        if id.is_empty() {
            return Err(TableError::EmptyNetworkId);
        }
        check_name("network name", name)?;
        let view = self.networks.entry(id.into()).or_default();
        name.clone_into(&mut view.name);
        view.subnets = subnets.iter().map(IpNet::trunc).collect();
        Ok(self)
    }

    /// Adds a service's records to a network added before. Names that several services claim
    /// answer with the union of their addresses; an address claimed twice keeps its first PTR.
    pub fn service(
        &mut self,
        network_id: &str,
        service: &ServiceRecords,
    ) -> Result<&mut Self, TableError> {
        let ttls = self.ttls;
        let view = self
            .networks
            .get_mut(network_id)
            .ok_or_else(|| TableError::UnknownNetwork(network_id.to_owned()))?;

        // Validate everything first.
        check_name("service name", &service.name)?;
        for alias in &service.aliases {
            check_name("alias", alias)?;
            check_name("alias", &format!("tasks.{alias}"))?;
        }
        check_name("service name", &format!("tasks.{}", service.name))?;
        let task_names = service
            .tasks
            .iter()
            .map(|task| {
                check_label("task id", &task.id)?;
                let slot = match &task.slot {
                    TaskSlot::Replica(n) => n.to_string(),
                    TaskSlot::Node(node) => {
                        check_label("node id", node)?;
                        node.clone()
                    }
                };
                let short = format!("{}.{slot}.{}", service.name, task.id);
                let full = format!("{short}.{}", view.name);
                check_name("task name", &full)?;
                Ok((short, full))
            })
            .collect::<Result<Vec<_>, TableError>>()?;

        let task_addrs: Vec<IpAddr> = service.tasks.iter().map(|t| t.addr).collect();
        let (own_addrs, own_ttl) = match service.endpoint {
            ServiceResolution::Vip(vip) => (vec![vip], ttls.vip),
            ServiceResolution::Dnsrr => (task_addrs.clone(), ttls.tasks),
        };
        for name in std::iter::once(&service.name).chain(&service.aliases) {
            view.add_name(name, &own_addrs, own_ttl);
            view.add_name(&format!("tasks.{name}"), &task_addrs, ttls.tasks);
        }
        if let ServiceResolution::Vip(vip) = service.endpoint {
            view.add_ptr(vip, &service.name, ttls.vip);
        }
        for (task, (short, full)) in service.tasks.iter().zip(&task_names) {
            // The PTR target resolves forward too, like a Docker container name does.
            view.add_name(short, &[task.addr], ttls.tasks);
            view.add_name(full, &[task.addr], ttls.tasks);
            view.add_ptr(task.addr, full, ttls.tasks);
        }
        Ok(self)
    }

    pub fn build(self) -> NameTable {
        let mut internal_ranges = Vec::new();
        let mut known_addrs = HashSet::new();
        let networks = self
            .networks
            .into_iter()
            .map(|(id, mut view)| {
                internal_ranges.extend(view.subnets.iter().copied());
                known_addrs.extend(view.ptrs.keys().copied());
                for entry in view.names.values_mut() {
                    entry.finish();
                }
                let view = NetworkView {
                    names: view.names,
                    ptrs: view.ptrs,
                };
                (id, view)
            })
            .collect();
        internal_ranges.sort_unstable();
        internal_ranges.dedup();
        NameTable {
            networks,
            internal_ranges,
            known_addrs,
        }
    }
}

impl ViewBuilder {
    fn add_name(&mut self, name: &str, addrs: &[IpAddr], ttl: u32) {
        let entry = self
            .names
            .entry(name.to_ascii_lowercase().into())
            .or_insert_with(|| NameEntry {
                v4: Vec::new(),
                v6: Vec::new(),
                ttl,
            });
        entry.ttl = entry.ttl.min(ttl);
        for addr in addrs {
            match addr {
                IpAddr::V4(a) => entry.v4.push(*a),
                IpAddr::V6(a) => entry.v6.push(*a),
            }
        }
    }

    fn add_ptr(&mut self, addr: IpAddr, target: &str, ttl: u32) {
        self.ptrs.entry(addr).or_insert_with(|| PtrEntry {
            target: target.into(),
            wire: to_wire(target).into(),
            ttl,
        });
    }
}

/// The indexed, immutable table the server answers from. Swap a new one in to update.
#[derive(Debug, Default)]
pub struct NameTable {
    networks: HashMap<Box<str>, NetworkView>,
    /// Every network's ranges: reverse names inside them are ours, never forwarded.
    internal_ranges: Vec<IpNet>,
    /// Every address with a PTR on any network (a VIP may lie outside its network's range).
    known_addrs: HashSet<IpAddr>,
}

#[derive(Debug, Default)]
struct NetworkView {
    names: HashMap<Box<str>, NameEntry>,
    ptrs: HashMap<IpAddr, PtrEntry>,
}

#[derive(Debug)]
struct NameEntry {
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
    ttl: u32,
}

impl NameEntry {
    fn finish(&mut self) {
        self.v4.sort_unstable();
        self.v4.dedup();
        self.v6.sort_unstable();
        self.v6.dedup();
        self.v4.shrink_to_fit();
        self.v6.shrink_to_fit();
    }
}

#[derive(Debug)]
struct PtrEntry {
    target: Box<str>,
    /// `target` in wire form (length-prefixed labels, root label last), ready to copy.
    wire: Box<[u8]>,
    ttl: u32,
}

/// The answer decided for one question: what to send, without the wire encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup<'t> {
    /// A/AAAA (or ANY) records for an internal name. Never empty: no records is `NoData`.
    Addresses(Addresses<'t>),
    /// The PTR record of a VIP or a task address.
    Ptr(PtrAnswer<'t>),
    /// The name is internal but has no records of this type: NOERROR without answers.
    NoData,
    /// The name is internal-looking (or an internal reverse name) and unknown.
    NxDomain,
    /// Not ours: relay to the upstream resolvers.
    Forward,
    /// An internal name asked in a class other than IN.
    Refused,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addresses<'t> {
    pub v4: &'t [Ipv4Addr],
    pub v6: &'t [Ipv6Addr],
    pub ttl: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PtrAnswer<'t> {
    /// The target name, without trailing dot.
    pub target: &'t str,
    pub ttl: u32,
    pub(crate) wire: &'t [u8],
}

impl NameTable {
    pub fn builder() -> NameTableBuilder {
        NameTableBuilder::new()
    }

    /// Is `addr` inside one of the cluster's overlays (a task's or a node's address there)?
    pub fn is_cluster_address(&self, addr: IpAddr) -> bool {
        self.internal_ranges.iter().any(|r| r.contains(&addr))
    }

    /// The network ids the table has views for.
    pub fn networks(&self) -> impl Iterator<Item = &str> {
        self.networks.keys().map(AsRef::as_ref)
    }

    /// Decides the answer to `qname`/`qtype`/`qclass` asked on `network_id`'s listener.
    ///
    /// `qname` is matched case-insensitively, with or without a trailing dot, and exactly: no
    /// search domain is stripped. A network the table does not know is an empty view.
    pub fn lookup(
        &self,
        network_id: &str,
        qname: &str,
        qtype: RecordType,
        qclass: DNSClass,
    ) -> Lookup<'_> {
        let decision = self.lookup_in(network_id, qname, qtype);
        if qclass == DNSClass::IN || decision == Lookup::Forward {
            decision
        } else {
            Lookup::Refused
        }
    }

    fn lookup_in(&self, network_id: &str, qname: &str, qtype: RecordType) -> Lookup<'_> {
        let qname = qname.strip_suffix('.').unwrap_or(qname);
        if qname.is_empty() || qname.len() > MAX_NAME_LEN {
            return Lookup::Forward;
        }
        let mut buf = [0u8; MAX_NAME_LEN];
        let lower = &mut buf[..qname.len()];
        lower.copy_from_slice(qname.as_bytes());
        lower.make_ascii_lowercase();
        // Lowercasing ASCII bytes of a &str keeps it UTF-8.
        let Ok(name) = std::str::from_utf8(lower) else {
            return Lookup::Forward;
        };

        let view = self.networks.get(network_id);
        if let Some(entry) = view.and_then(|v| v.names.get(name)) {
            let (v4, v6): (&[Ipv4Addr], &[Ipv6Addr]) = match qtype {
                RecordType::A => (&entry.v4, &[]),
                RecordType::AAAA => (&[], &entry.v6),
                RecordType::ANY => (&entry.v4, &entry.v6),
                _ => (&[], &[]),
            };
            if v4.is_empty() && v6.is_empty() {
                return Lookup::NoData;
            }
            return Lookup::Addresses(Addresses {
                v4,
                v6,
                ttl: entry.ttl,
            });
        }

        if let Some(addr) = parse_reverse(name) {
            if let Some(ptr) = view.and_then(|v| v.ptrs.get(&addr)) {
                return if matches!(qtype, RecordType::PTR | RecordType::ANY) {
                    Lookup::Ptr(PtrAnswer {
                        target: &ptr.target,
                        ttl: ptr.ttl,
                        wire: &ptr.wire,
                    })
                } else {
                    Lookup::NoData
                };
            }
            if self.known_addrs.contains(&addr)
                || self.internal_ranges.iter().any(|r| r.contains(&addr))
            {
                return Lookup::NxDomain;
            }
            return Lookup::Forward;
        }

        if is_internal_looking(name) {
            Lookup::NxDomain
        } else {
            Lookup::Forward
        }
    }
}

/// A single label (`web`) or `tasks.<label>`: names only the cluster can know.
fn is_internal_looking(name: &str) -> bool {
    match name.split_once('.') {
        None => true,
        Some((first, rest)) => first == "tasks" && !rest.contains('.'),
    }
}

/// Parses a complete reverse name (`4.3.2.1.in-addr.arpa`, 32 nibbles `.ip6.arpa`), lowercase.
pub(crate) fn parse_reverse(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let mut octets = [0u8; 4];
        let mut labels = rest.split('.');
        for octet in octets.iter_mut().rev() {
            let label = labels.next()?;
            if label.is_empty() || label.len() > 3 || (label.len() > 1 && label.starts_with('0')) {
                return None;
            }
            *octet = label.parse().ok()?;
        }
        return labels.next().is_none().then(|| IpAddr::from(octets));
    }
    if let Some(rest) = name.strip_suffix(".ip6.arpa") {
        let mut value: u128 = 0;
        let mut count = 0;
        for (i, label) in rest.split('.').enumerate() {
            let &[nibble] = label.as_bytes() else {
                return None;
            };
            let digit = char::from(nibble).to_digit(16)?;
            value |= u128::from(digit) << (4 * i);
            count += 1;
        }
        return (count == 32).then(|| IpAddr::from(Ipv6Addr::from(value)));
    }
    None
}

fn check_label(what: &'static str, label: &str) -> Result<(), TableError> {
    let invalid = |why| TableError::InvalidName {
        what,
        name: label.to_owned(),
        why,
    };
    if label.is_empty() {
        return Err(invalid("empty label"));
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(invalid("a label is longer than 63 characters"));
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid(
            "a label has a character other than a letter, digit, '-' or '_'",
        ));
    }
    Ok(())
}

fn check_name(what: &'static str, name: &str) -> Result<(), TableError> {
    if name.len() > MAX_NAME_LEN {
        return Err(TableError::InvalidName {
            what,
            name: name.to_owned(),
            why: "longer than 253 characters",
        });
    }
    for label in name.split('.') {
        check_label(what, label).map_err(|e| match e {
            TableError::InvalidName { why, .. } => TableError::InvalidName {
                what,
                name: name.to_owned(),
                why,
            },
            other => other,
        })?;
    }
    Ok(())
}

/// Presentation form (validated: no escapes, no empty labels) to wire form.
fn to_wire(name: &str) -> Vec<u8> {
    let mut wire = Vec::with_capacity(name.len() + 2);
    for label in name.split('.') {
        wire.push(label.len() as u8);
        wire.extend_from_slice(label.as_bytes());
    }
    wire.push(0);
    wire
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sample() -> NameTable {
        let mut b = NameTable::builder();
        b.network("n1", "front", &["10.0.1.0/24".parse().unwrap()])
            .unwrap();
        b.network("n2", "back", &["10.0.2.0/24".parse().unwrap()])
            .unwrap();
        b.service(
            "n1",
            &ServiceRecords::vip("web", v4("10.0.1.2"))
                .alias("www")
                .task(TaskRecord::replica("t1", 1, v4("10.0.1.10")))
                .task(TaskRecord::replica("t2", 2, v4("10.0.1.11"))),
        )
        .unwrap();
        b.service(
            "n1",
            &ServiceRecords::dnsrr("db")
                .task(TaskRecord::replica("d1", 1, v4("10.0.1.20")))
                .task(TaskRecord::global("d2", "node7", v4("10.0.1.21"))),
        )
        .unwrap();
        b.service(
            "n2",
            &ServiceRecords::vip("api", v4("10.0.2.2")).task(TaskRecord::replica(
                "a1",
                1,
                v4("10.0.2.10"),
            )),
        )
        .unwrap();
        b.build()
    }

    fn a<'t>(t: &'t NameTable, net: &str, name: &str) -> Lookup<'t> {
        t.lookup(net, name, RecordType::A, DNSClass::IN)
    }

    fn addrs(l: Lookup<'_>) -> Vec<IpAddr> {
        match l {
            Lookup::Addresses(a) => {
                a.v4.iter()
                    .map(|x| IpAddr::V4(*x))
                    .chain(a.v6.iter().map(|x| IpAddr::V6(*x)))
                    .collect()
            }
            other => panic!("expected addresses, got {other:?}"),
        }
    }

    #[test]
    fn vip_name_gives_the_vip_and_tasks_name_gives_tasks() {
        let t = sample();
        assert_eq!(addrs(a(&t, "n1", "web")), vec![v4("10.0.1.2")]);
        assert_eq!(
            addrs(a(&t, "n1", "tasks.web")),
            vec![v4("10.0.1.10"), v4("10.0.1.11")]
        );
        let Lookup::Addresses(web) = t.lookup("n1", "web", RecordType::A, DNSClass::IN) else {
            panic!()
        };
        assert_eq!(web.ttl, DEFAULT_VIP_TTL);
        let Lookup::Addresses(tasks) = t.lookup("n1", "tasks.web", RecordType::A, DNSClass::IN)
        else {
            panic!()
        };
        assert_eq!(tasks.ttl, DEFAULT_TASK_TTL);
    }

    #[test]
    fn dnsrr_name_gives_every_task() {
        let t = sample();
        assert_eq!(
            addrs(a(&t, "n1", "db")),
            vec![v4("10.0.1.20"), v4("10.0.1.21")]
        );
        assert_eq!(
            addrs(a(&t, "n1", "tasks.db")),
            vec![v4("10.0.1.20"), v4("10.0.1.21")]
        );
    }

    #[test]
    fn names_are_case_insensitive_with_or_without_trailing_dot() {
        let t = sample();
        for name in ["WEB", "Web.", "web.", "TASKS.Web."] {
            assert!(
                matches!(
                    t.lookup("n1", name, RecordType::A, DNSClass::IN),
                    Lookup::Addresses(_)
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn aliases_answer_like_the_name() {
        let t = sample();
        assert_eq!(addrs(a(&t, "n1", "www")), vec![v4("10.0.1.2")]);
        assert_eq!(addrs(a(&t, "n1", "tasks.www")).len(), 2);
    }

    #[test]
    fn views_are_per_network() {
        let t = sample();
        assert_eq!(
            t.lookup("n2", "web", RecordType::A, DNSClass::IN),
            Lookup::NxDomain
        );
        assert_eq!(addrs(a(&t, "n2", "api")), vec![v4("10.0.2.2")]);
        assert_eq!(
            t.lookup("n1", "api", RecordType::A, DNSClass::IN),
            Lookup::NxDomain
        );
        // A listener whose network is not (yet) in the table: empty view, same rules.
        assert_eq!(
            t.lookup("nope", "web", RecordType::A, DNSClass::IN),
            Lookup::NxDomain
        );
        assert_eq!(
            t.lookup("nope", "example.com", RecordType::A, DNSClass::IN),
            Lookup::Forward
        );
    }

    #[test]
    fn known_name_without_records_of_the_type_is_nodata() {
        let t = sample();
        for qtype in [
            RecordType::AAAA,
            RecordType::MX,
            RecordType::TXT,
            RecordType::SRV,
            RecordType::PTR,
        ] {
            assert_eq!(
                t.lookup("n1", "web", qtype, DNSClass::IN),
                Lookup::NoData,
                "{qtype}"
            );
            assert_eq!(
                t.lookup("n1", "tasks.db", qtype, DNSClass::IN),
                Lookup::NoData,
                "{qtype}"
            );
        }
        assert_eq!(
            addrs(t.lookup("n1", "web", RecordType::ANY, DNSClass::IN)),
            vec![v4("10.0.1.2")]
        );
    }

    #[test]
    fn unknown_internal_looking_names_are_nxdomain_in_every_type() {
        let t = sample();
        for name in ["nosuch", "tasks.nosuch", "NOSUCH.", "localhost"] {
            for qtype in [RecordType::A, RecordType::AAAA, RecordType::MX] {
                assert_eq!(
                    t.lookup("n1", name, qtype, DNSClass::IN),
                    Lookup::NxDomain,
                    "{name} {qtype}"
                );
            }
        }
    }

    #[test]
    fn everything_else_is_forwarded() {
        let t = sample();
        for name in [
            "example.com",
            "web.example.com",
            "tasks.web.example.com",
            "a.b.c",
            ".",
            "",
        ] {
            assert_eq!(
                t.lookup("n1", name, RecordType::A, DNSClass::IN),
                Lookup::Forward,
                "{name:?}"
            );
        }
    }

    #[test]
    fn other_classes_are_refused_for_internal_names_only() {
        let t = sample();
        assert_eq!(
            t.lookup("n1", "web", RecordType::A, DNSClass::CH),
            Lookup::Refused
        );
        assert_eq!(
            t.lookup("n1", "nosuch", RecordType::A, DNSClass::CH),
            Lookup::Refused
        );
        assert_eq!(
            t.lookup("n1", "version.bind", RecordType::TXT, DNSClass::CH),
            Lookup::Forward
        );
    }

    #[test]
    fn ptr_of_vip_is_the_service_and_ptr_of_task_is_its_docker_name() {
        let t = sample();
        let Lookup::Ptr(p) = t.lookup("n1", "2.1.0.10.in-addr.arpa", RecordType::PTR, DNSClass::IN)
        else {
            panic!()
        };
        assert_eq!((p.target, p.ttl), ("web", DEFAULT_VIP_TTL));
        assert_eq!(p.wire, b"\x03web\x00");
        let Lookup::Ptr(p) = t.lookup(
            "n1",
            "10.1.0.10.IN-ADDR.ARPA.",
            RecordType::PTR,
            DNSClass::IN,
        ) else {
            panic!()
        };
        assert_eq!(p.target, "web.1.t1.front");
        let Lookup::Ptr(p) = t.lookup(
            "n1",
            "21.1.0.10.in-addr.arpa",
            RecordType::PTR,
            DNSClass::IN,
        ) else {
            panic!()
        };
        assert_eq!(p.target, "db.node7.d2.front");
        // The PTR target resolves forward to the same address.
        assert_eq!(addrs(a(&t, "n1", "web.1.t1.front")), vec![v4("10.0.1.10")]);
        assert_eq!(addrs(a(&t, "n1", "web.1.t1")), vec![v4("10.0.1.10")]);
    }

    #[test]
    fn reverse_names_inside_known_ranges_never_go_upstream() {
        let t = sample();
        // Unused address in a known range.
        assert_eq!(
            t.lookup(
                "n1",
                "99.1.0.10.in-addr.arpa",
                RecordType::PTR,
                DNSClass::IN
            ),
            Lookup::NxDomain
        );
        // Another network's range, from n1: still ours, still not forwarded.
        assert_eq!(
            t.lookup(
                "n1",
                "10.2.0.10.in-addr.arpa",
                RecordType::PTR,
                DNSClass::IN
            ),
            Lookup::NxDomain
        );
        // Known address, other type.
        assert_eq!(
            t.lookup("n1", "2.1.0.10.in-addr.arpa", RecordType::A, DNSClass::IN),
            Lookup::NoData
        );
        // Outside every range: forwarded, as are partial reverse names.
        assert_eq!(
            t.lookup(
                "n1",
                "1.0.18.198.in-addr.arpa",
                RecordType::PTR,
                DNSClass::IN
            ),
            Lookup::Forward
        );
        assert_eq!(
            t.lookup("n1", "1.0.10.in-addr.arpa", RecordType::PTR, DNSClass::IN),
            Lookup::Forward
        );
    }

    #[test]
    fn ipv6_addresses_answer_aaaa_and_ip6_arpa() {
        let mut b = NameTable::builder();
        b.network("n", "net6", &["fd00:1::/64".parse().unwrap()])
            .unwrap();
        let vip: IpAddr = "fd00:1::2".parse().unwrap();
        b.service("n", &ServiceRecords::vip("six", vip)).unwrap();
        let t = b.build();
        assert_eq!(
            t.lookup("n", "six", RecordType::A, DNSClass::IN),
            Lookup::NoData
        );
        assert_eq!(
            addrs(t.lookup("n", "six", RecordType::AAAA, DNSClass::IN)),
            vec![vip]
        );
        let rev = "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa";
        let Lookup::Ptr(p) = t.lookup("n", rev, RecordType::PTR, DNSClass::IN) else {
            panic!()
        };
        assert_eq!(p.target, "six");
    }

    #[test]
    fn a_name_claimed_twice_answers_the_union() {
        let mut b = NameTable::builder();
        b.network("n", "net", &[]).unwrap();
        b.service(
            "n",
            &ServiceRecords::vip("a", v4("10.0.0.2")).alias("shared"),
        )
        .unwrap();
        b.service(
            "n",
            &ServiceRecords::vip("b", v4("10.0.0.3")).alias("shared"),
        )
        .unwrap();
        let t = b.build();
        assert_eq!(
            addrs(t.lookup("n", "shared", RecordType::A, DNSClass::IN)),
            vec![v4("10.0.0.2"), v4("10.0.0.3")]
        );
    }

    #[test]
    fn service_without_tasks_still_exists() {
        let mut b = NameTable::builder();
        b.network("n", "net", &[]).unwrap();
        b.service("n", &ServiceRecords::dnsrr("empty")).unwrap();
        let t = b.build();
        assert_eq!(
            t.lookup("n", "empty", RecordType::A, DNSClass::IN),
            Lookup::NoData
        );
        assert_eq!(
            t.lookup("n", "tasks.empty", RecordType::A, DNSClass::IN),
            Lookup::NoData
        );
    }

    #[test]
    fn bad_input_is_refused_and_changes_nothing() {
        let mut b = NameTable::builder();
        b.network("n", "net", &[]).unwrap();
        let err = b
            .service("n", &ServiceRecords::vip("bad name", v4("10.0.0.2")))
            .unwrap_err();
        assert!(err.to_string().contains("\"bad name\""), "{err}");
        assert!(err.to_string().contains("accepted"), "{err}");
        let bad_task = ServiceRecords::vip("ok", v4("10.0.0.2")).task(TaskRecord::replica(
            "t.1",
            1,
            v4("10.0.0.9"),
        ));
        assert!(matches!(
            b.service("n", &bad_task),
            Err(TableError::InvalidName {
                what: "task id",
                ..
            })
        ));
        assert_eq!(
            b.service("missing", &ServiceRecords::dnsrr("x"))
                .unwrap_err(),
            TableError::UnknownNetwork("missing".into())
        );
        assert!(b.network("", "net", &[]).is_err());
        assert!(b.network("m", "", &[]).is_err());
        let long = "a".repeat(64);
        assert!(b.service("n", &ServiceRecords::dnsrr(long)).is_err());
        let t = b.build();
        // Nothing of the refused services got in.
        assert_eq!(
            t.lookup("n", "ok", RecordType::A, DNSClass::IN),
            Lookup::NxDomain
        );
        assert_eq!(
            t.lookup("n", "10.0.0.10.in-addr.arpa", RecordType::PTR, DNSClass::IN),
            Lookup::Forward
        );
    }

    #[test]
    fn reverse_parser_takes_only_complete_canonical_names() {
        assert_eq!(parse_reverse("4.3.2.1.in-addr.arpa"), Some(v4("1.2.3.4")));
        assert_eq!(parse_reverse("04.3.2.1.in-addr.arpa"), None);
        assert_eq!(parse_reverse("256.3.2.1.in-addr.arpa"), None);
        assert_eq!(parse_reverse("5.4.3.2.1.in-addr.arpa"), None);
        assert_eq!(parse_reverse("3.2.1.in-addr.arpa"), None);
        assert_eq!(parse_reverse("in-addr.arpa"), None);
        assert_eq!(parse_reverse("1.0.ip6.arpa"), None);
    }
}
