//! Pure planning: the kernel's state as read (links, FDB and neighbour entries) and what is
//! wanted go in; the steps that make the one equal to the other come out, after every check
//! that can refuse the request. Nothing here does I/O; [`crate::Overlay`] reads and executes.
//!
//! One file per concern: `links` is the kernel's state as the plans see it, `network` a
//! network's bridge and VXLAN device, `endpoints` the static entries for remote tasks,
//! `task` a task's veths, addresses and route, and `undo` runs a task's steps undoably.

mod endpoints;
mod links;
mod network;
mod routes;
mod task;
mod undo;

#[cfg(test)]
mod fixtures;

pub use endpoints::{EndpointOp, EndpointTables, desired_tables, plan_endpoints};
pub use links::{LinkKind, LinkState, PortFlags, VXLAN_PORT_FLAGS, VxlanConfig};
pub use network::{
    NetworkState, NetworkStep, networks_from_links, plan_network, plan_remove_network,
};
pub use routes::{
    Ipv4Route, NATIVE_ROUTE_PROTOCOL, NativeRoute, NextHop, native_route_changes, next_hop,
};
pub use task::{TaskObserved, TaskStep, plan_task, plan_unplumb};
pub use undo::run_undoable;
