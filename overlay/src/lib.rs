//! `mesh-overlay`: the overlay's devices through netlink (rtnetlink): VXLAN devices and bridges,
//! veth pairs moved into containers' namespaces, addresses and routes, static FDB and neighbour
//! entries. It alone touches netlink.
//!
//! Per node and network, a bridge `mbr<vni>` holds the node's address and a VXLAN device
//! `mvx<vni>` (UDP 4789, learning off, ARP proxy) as a port; each task has one veth per network.
//! Remote tasks are static FDB and neighbour entries written from the endpoint table, so nothing
//! is flooded or learned across nodes. Decisions are pure functions in [`plan`] (kernel state and
//! wishes in, steps out); [`Overlay`] reads the kernel and carries the steps out.

mod error;
mod kernel;
pub mod model;

/// Network namespaces, from [`mesh_netns`] (kept here so `mesh_overlay::netns::NetNs` stays).
pub mod netns {
    pub use mesh_netns::*;
}
pub mod plan;

pub use error::OverlayError;
pub use kernel::Overlay;
pub use mesh_netns::NetNs;
pub use model::{
    Mac, NetworkDevices, RemoteEndpoint, TaskInterface, bridge_name, overlay_mtu, task_host_ifname,
    vxlan_name,
};
pub use plan::{EndpointOp, NetworkState, NetworkStep, TaskStep};
