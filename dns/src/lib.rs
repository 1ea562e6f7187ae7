//! mesh-dns: the DNS server every node runs on its address of each overlay network. It answers
//! service names (`NAME`, `tasks.NAME`, aliases) and PTR records from a [`NameTable`] that meshd
//! rebuilds and swaps in as services and tasks change, answers NXDOMAIN itself for unknown
//! internal-looking names, and relays every other query to the node's upstream resolvers.
//! Internal names, their AAAA and their reverse names never leave the node. See docs/dns.md.

#[cfg(test)]
mod fuzz_tests;
mod server;
mod table;
mod upstream;
mod wire;

pub use server::{
    DEFAULT_MAX_UDP_PAYLOAD, DnsConfig, DnsError, DnsServer, DnsStats, LATENCY_BOUNDS,
};
pub use table::{
    Addresses, DEFAULT_TASK_TTL, DEFAULT_VIP_TTL, Lookup, NameTable, NameTableBuilder, PtrAnswer,
    ServiceRecords, ServiceResolution, TableError, TaskRecord, TaskSlot, Ttls,
};
pub use upstream::{RESOLV_CONF, parse_resolv_conf, upstreams_from_file};
