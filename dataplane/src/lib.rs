//! `mesh-dataplane`: meshd's eBPF data path in user space. It loads and attaches the programs of
//! `mesh-ebpf` with aya and keeps their maps as typed tables (services, backends, Maglev rings,
//! conntrack, counters). With `mesh-overlay` it is the only crate that touches the kernel's
//! networking; it alone touches aya.

pub mod probe;
