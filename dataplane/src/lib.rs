//! `mesh-dataplane`: meshd's eBPF data path in user space. It loads and attaches the programs of
//! `mesh-ebpf` with aya and keeps their maps as typed tables (services, backends, Maglev rings,
//! conntrack, counters). With `mesh-overlay` it is the only crate that touches the kernel's
//! networking; it alone touches aya.
//!
//! The agent builds a [`DesiredMesh`] (plain data) and calls [`Mesh::apply`]; the pure core
//! ([`plan`]) turns it into map operations, [`Mesh`] carries them out.

mod batch;
pub mod maglev;
mod maps;
pub mod mesh;
pub mod model;
pub mod native;
pub mod netdev;
pub mod plan;
pub mod probe;
mod programs;
pub mod socklb;

#[cfg(test)]
mod packet_tests;

pub use maglev::MaglevRing;
pub use mesh::{
    ApplyReport, Datapath, FlowEntry, FlowKind, Mesh, MeshOptions, ServiceCounters, Timeouts,
};
pub use model::{
    DesiredMesh, Protocol, PublishMode, PublishedPort, Service, Task, TaskAddress, Vip,
};
pub use native::{NativeAddr, NativePlace};
pub use plan::PlanError;
pub use socklb::{PinnedTotals, SockLb, SocketCounters};
