//! Overlay networks: what a user declares and what the allocator gave them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::Id;
use crate::state::{Ipv4Cidr, Meta};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    pub name: String,
    /// Only "overlay" exists.
    pub driver: String,
    /// Asked for by the user; the allocator fills [`Network::subnet`] either way.
    pub subnet: Option<Ipv4Cidr>,
    pub attachable: bool,
    /// The routing mesh's network (`ingress`), made by `swarm init`.
    pub ingress: bool,
    pub labels: BTreeMap<String, String>,
    /// Driver options (`mtu`).
    pub options: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub id: Id,
    pub meta: Meta,
    pub spec: NetworkSpec,
    pub subnet: Ipv4Cidr,
    /// The VXLAN network identifier (ingress 4096, others from 4097); 0 until the allocator has
    /// given the network its VNI and subnet.
    pub vni: u32,
}

impl Network {
    /// Has the allocator filled `subnet` and `vni`?
    pub fn is_allocated(&self) -> bool {
        self.vni != 0
    }
}
