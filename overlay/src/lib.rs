//! `mesh-overlay`: the overlay's devices through netlink (rtnetlink): VXLAN devices and bridges,
//! veth pairs moved into containers' namespaces, addresses and routes, static FDB and neighbour
//! entries. It alone touches netlink.

pub mod netns;
