//! The lab's layout as pure data: names, addresses and paths derived from a prefix, a subnet and a
//! node count. Nothing here touches the machine.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The range set aside for benchmarking networks (RFC 2544); every lab lives inside it.
pub const UNDERLAY_RANGE: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 18, 0, 0), 15);

/// Where labs keep their state (one folder per prefix).
pub const STATE_ROOT: &str = "/var/lib/meshd-lab";

/// The registry's host number in the lab's /24: below the nodes (`.11` up) and apart from the
/// client (`.2`), so it stays put whatever the node count.
const REGISTRY_HOST: usize = 5;
/// The registry's port, as Docker's own registry image listens.
pub const REGISTRY_PORT: u16 = 5000;

/// What a lab is made of: a switch namespace, a client namespace and N node namespaces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabPlan {
    pub prefix: String,
    /// The underlay: a /24 inside 198.18.0.0/15, given by its network address.
    pub subnet: Ipv4Addr,
    pub nodes: usize,
    pub managers: usize,
}

/// Why a lab cannot be built as asked.
#[derive(Debug, PartialEq, Eq)]
pub struct PlanError(String);

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for PlanError {}

/// One namespace of the lab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Member {
    Node(usize),
    Client,
}

impl LabPlan {
    pub fn new(
        prefix: &str,
        subnet: &str,
        nodes: usize,
        managers: usize,
    ) -> Result<Self, PlanError> {
        let valid_prefix = prefix.len() <= 16
            && prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid_prefix {
            return Err(PlanError(format!(
                "invalid lab prefix {prefix:?}: use 1 to 16 characters of a-z, 0-9 and '-', starting with a letter"
            )));
        }
        let subnet = parse_subnet(subnet)?;
        if !(1..=200).contains(&nodes) {
            return Err(PlanError(format!(
                "invalid --nodes {nodes}: a lab has 1 to 200 nodes"
            )));
        }
        if managers == 0 || managers > nodes || managers.is_multiple_of(2) {
            return Err(PlanError(format!(
                "invalid --managers {managers}: use an odd number (1, 3, 5, ...) no larger than --nodes ({nodes})"
            )));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            subnet,
            nodes,
            managers,
        })
    }

    pub fn switch_ns(&self) -> String {
        format!("{}-sw", self.prefix)
    }
    pub fn client_ns(&self) -> String {
        format!("{}-client", self.prefix)
    }
    /// Node `i` counts from 1, as `mesh-n1`.
    pub fn node_ns(&self, i: usize) -> String {
        format!("{}-n{i}", self.prefix)
    }
    pub fn node_addr(&self, i: usize) -> Ipv4Addr {
        self.host(10 + i)
    }
    pub fn client_addr(&self) -> Ipv4Addr {
        self.host(2)
    }
    /// The namespace of the lab's registry, hung off the switch like a node.
    pub fn registry_ns(&self) -> String {
        format!("{}-reg", self.prefix)
    }
    pub fn registry_addr(&self) -> Ipv4Addr {
        self.host(REGISTRY_HOST)
    }
    /// `198.18.X.5:5000`: the registry as image references and `certs.d` name it.
    pub fn registry_host(&self) -> String {
        format!("{}:{REGISTRY_PORT}", self.registry_addr())
    }
    /// The reference nodes pull a lab image by: `image("busybox")` is
    /// `198.18.X.5:5000/meshd/busybox`.
    pub fn image(&self, name: &str) -> String {
        format!("{}/meshd/{name}", self.registry_host())
    }
    /// Extra client-side addresses, for baselines that need a second hop (the bench).
    pub fn host(&self, n: usize) -> Ipv4Addr {
        let [a, b, c, _] = self.subnet.octets();
        Ipv4Addr::new(a, b, c, n as u8)
    }
    pub fn is_manager(&self, i: usize) -> bool {
        i <= self.managers
    }
    pub fn node_indexes(&self) -> impl Iterator<Item = usize> + use<> {
        1..=self.nodes
    }

    pub fn state_dir(&self) -> PathBuf {
        state_dir(&self.prefix)
    }
    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.state_dir().join(format!("n{i}"))
    }
    pub fn node_socket(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("meshd.sock")
    }
    /// Where node `i`'s meshd serves Docker's Engine API (`meshd --docker-api-socket`).
    pub fn docker_api_socket(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("meshd-docker.sock")
    }
    pub fn node_log(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("meshd.log")
    }

    /// Node `i`'s own dockerd: its data root, exec root, pid file, log and `/etc/docker` live
    /// under `engine_dir`, its socket next to meshd's.
    pub fn engine_dir(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("docker")
    }
    pub fn engine_socket(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("docker.sock")
    }
    /// `unix:///...`, as `meshd --engine` and `docker -H` take it.
    pub fn engine_host(&self, i: usize) -> String {
        format!("unix://{}", self.engine_socket(i).display())
    }
    pub fn engine_pid_file(&self, i: usize) -> PathBuf {
        self.engine_dir(i).join("dockerd.pid")
    }
    pub fn engine_log(&self, i: usize) -> PathBuf {
        self.engine_dir(i).join("dockerd.log")
    }
    /// Bound over `/etc/docker` in the engine's own mount namespace: where it reads registry CAs.
    pub fn engine_etc(&self, i: usize) -> PathBuf {
        self.engine_dir(i).join("etc")
    }

    /// The lab CA that signs the registry's certificate; every node engine trusts it.
    pub fn ca_cert(&self) -> PathBuf {
        self.state_dir().join("ca/ca.crt")
    }
    /// The registry's folder: its config, certificate, key, storage and log.
    pub fn registry_dir(&self) -> PathBuf {
        self.state_dir().join("registry")
    }
    pub fn registry_log(&self) -> PathBuf {
        self.registry_dir().join("registry.log")
    }

    /// Resolves `n2`, `mesh-n2`, `client` or `mesh-client` to a member of this lab.
    pub fn member(&self, name: &str) -> Result<Member, PlanError> {
        let short = name
            .strip_prefix(&self.prefix)
            .and_then(|s| s.strip_prefix('-'))
            .unwrap_or(name);
        if short == "client" {
            return Ok(Member::Client);
        }
        if let Some(i) = short
            .strip_prefix('n')
            .and_then(|n| n.parse::<usize>().ok())
            && (1..=self.nodes).contains(&i)
        {
            return Ok(Member::Node(i));
        }
        Err(PlanError(format!(
            "no lab member {name:?}: use client or n1..n{} (or {}-client, {}-n1, ...)",
            self.nodes, self.prefix, self.prefix
        )))
    }

    pub fn member_ns(&self, m: &Member) -> String {
        match m {
            Member::Node(i) => self.node_ns(*i),
            Member::Client => self.client_ns(),
        }
    }

    /// Is `ns` one of the namespaces a lab with this prefix creates?
    pub fn owns_namespace(prefix: &str, ns: &str) -> bool {
        ns.strip_prefix(prefix)
            .and_then(|s| s.strip_prefix('-'))
            .is_some_and(|s| {
                s == "sw"
                    || s == "client"
                    || s == "reg"
                    || s.strip_prefix('n')
                        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
            })
    }
}

pub fn state_dir(prefix: &str) -> PathBuf {
    PathBuf::from(STATE_ROOT).join(prefix)
}

fn parse_subnet(s: &str) -> Result<Ipv4Addr, PlanError> {
    let bad = || {
        PlanError(format!(
            "invalid lab subnet {s:?}: give a /24 inside 198.18.0.0/15, such as 198.18.0.0/24"
        ))
    };
    let (addr, len) = s.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    if len != "24" || addr.octets()[3] != 0 {
        return Err(bad());
    }
    let (range, range_len) = UNDERLAY_RANGE;
    let mask = u32::MAX << (32 - range_len);
    if u32::from(addr) & mask != u32::from(range) {
        return Err(bad());
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses_follow_the_prefix() {
        let p = LabPlan::new("mesh", "198.18.0.0/24", 3, 1).unwrap();
        assert_eq!(p.node_ns(2), "mesh-n2");
        assert_eq!(p.client_ns(), "mesh-client");
        assert_eq!(p.node_addr(3), Ipv4Addr::new(198, 18, 0, 13));
        assert_eq!(p.client_addr(), Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(p.member("mesh-n3"), Ok(Member::Node(3)));
        assert_eq!(p.member("n1"), Ok(Member::Node(1)));
        assert_eq!(p.member("client"), Ok(Member::Client));
        assert!(p.member("n4").is_err());
    }

    #[test]
    fn the_registry_sits_at_dot_5_and_names_the_lab_images() {
        let p = LabPlan::new("mesh", "198.18.7.0/24", 3, 1).unwrap();
        assert_eq!(p.registry_ns(), "mesh-reg");
        assert_eq!(p.registry_addr(), Ipv4Addr::new(198, 18, 7, 5));
        assert_eq!(p.registry_host(), "198.18.7.5:5000");
        assert_eq!(p.image("busybox"), "198.18.7.5:5000/meshd/busybox");
        // Even the largest lab's nodes (.11 up) and the client (.2) stay clear of it.
        let big = LabPlan::new("mesh", "198.18.7.0/24", 200, 1).unwrap();
        assert!(
            big.node_indexes()
                .all(|i| big.node_addr(i) != big.registry_addr())
        );
        assert_ne!(p.client_addr(), p.registry_addr());
    }

    #[test]
    fn each_node_engine_lives_under_its_node_folder() {
        let p = LabPlan::new("mesh", "198.18.0.0/24", 2, 1).unwrap();
        assert_eq!(
            p.engine_host(2),
            "unix:///var/lib/meshd-lab/mesh/n2/docker.sock"
        );
        assert!(p.engine_pid_file(1).starts_with(p.node_dir(1)));
        assert!(p.engine_etc(1).starts_with(p.engine_dir(1)));
        assert_ne!(p.engine_dir(1), p.engine_dir(2));
    }

    #[test]
    fn bad_plans_are_refused_with_what_is_accepted() {
        let e = LabPlan::new("mesh", "10.0.0.0/24", 3, 1).unwrap_err();
        assert!(e.0.contains("198.18.0.0/15"), "{e}");
        assert!(LabPlan::new("mesh", "198.20.0.0/24", 3, 1).is_err());
        assert!(LabPlan::new("mesh", "198.19.7.0/24", 3, 1).is_ok());
        assert!(LabPlan::new("Mesh", "198.18.0.0/24", 3, 1).is_err());
        assert!(LabPlan::new("mesh", "198.18.0.0/24", 3, 2).is_err());
        assert!(LabPlan::new("mesh", "198.18.0.0/24", 3, 5).is_err());
        assert!(LabPlan::new("mesh", "198.18.0.0/24", 0, 1).is_err());
    }

    #[test]
    fn namespace_ownership_is_exact() {
        assert!(LabPlan::owns_namespace("mesh", "mesh-n12"));
        assert!(LabPlan::owns_namespace("mesh", "mesh-sw"));
        assert!(LabPlan::owns_namespace("mesh", "mesh-reg"));
        assert!(!LabPlan::owns_namespace("mesh", "mesh-t1-n1"));
        assert!(!LabPlan::owns_namespace("mesh", "meshy-n1"));
        assert!(!LabPlan::owns_namespace("mesh", "mesh-n"));
    }
}
