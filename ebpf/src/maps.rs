//! The Rust mirror of `lib/maps.h` (and of `probe.c`'s one map): every map declared once, with
//! its name, kind, key and value types and size. Pure data, so that crates without aya can name
//! the maps too; `mesh-dataplane` opens them typed from these declarations, and its tests check
//! them against the maps the compiled objects really declare.

use core::mem::size_of;

use crate::abi::{
    MESH_CT_SIZE, MESH_DROP_REASONS, MESH_FRAG_SIZE, MESH_MAX_BACKENDS, MESH_MAX_IFACES,
    MESH_MAX_NODES, MESH_MAX_PORTS, MESH_MAX_RINGS, MESH_MAX_SERVICES, MESH_MAX_VIPS,
    MESH_RING_SIZE, MeshBackend, MeshConfig, MeshCounter, MeshCt, MeshCtKey, MeshFragKey,
    MeshFrontend, MeshIface, MeshNode, MeshPortKey, MeshSvcStats, MeshVipKey,
};
use crate::abi::{MESH_MAX_NATIVE, MeshNative};
use crate::abi::{
    MESH_SOCK_MAX_NETNS, MESH_SOCK_REV_SIZE, MeshSockConfig, MeshSockNetns, MeshSockRev,
    MeshSockRevKey, MeshSockStats,
};

/// A kind of BPF map, as a type (so that a map's accessor has the right shape at compile time).
pub trait MapKind {
    /// `BPF_MAP_TYPE_*` of `linux/bpf.h`.
    const BPF_MAP_TYPE: u32;
}

/// The map kinds the mesh uses.
pub mod kind {
    /// `BPF_MAP_TYPE_HASH`.
    pub struct Hash;
    /// `BPF_MAP_TYPE_ARRAY`.
    pub struct Array;
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`.
    pub struct PerCpuArray;
    /// `BPF_MAP_TYPE_LRU_HASH`.
    pub struct LruHash;
}

impl MapKind for kind::Hash {
    const BPF_MAP_TYPE: u32 = 1;
}
impl MapKind for kind::Array {
    const BPF_MAP_TYPE: u32 = 2;
}
impl MapKind for kind::PerCpuArray {
    const BPF_MAP_TYPE: u32 = 6;
}
impl MapKind for kind::LruHash {
    const BPF_MAP_TYPE: u32 = 9;
}

/// One map of a BPF object, declared by a unit struct implementing this trait.
pub trait MeshMap {
    /// The map's name in the object (and its pin's name).
    const NAME: &'static str;
    const MAX_ENTRIES: u32;
    type Kind: MapKind;
    type Key;
    type Value;
}

/// A map's declaration as plain values, for comparing with what an object declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSpec {
    pub name: &'static str,
    /// `BPF_MAP_TYPE_*`.
    pub map_type: u32,
    pub key_size: usize,
    /// For per-CPU maps, the size of one CPU's value (as in the object).
    pub value_size: usize,
    pub max_entries: u32,
}

impl MapSpec {
    pub const fn of<M: MeshMap>() -> Self {
        Self {
            name: M::NAME,
            map_type: <M::Kind as MapKind>::BPF_MAP_TYPE,
            key_size: size_of::<M::Key>(),
            value_size: size_of::<M::Value>(),
            max_entries: M::MAX_ENTRIES,
        }
    }
}

/// Declares each map as a unit struct implementing [`MeshMap`], and lists their specs in `$table`.
macro_rules! maps {
    ($(#[$table_doc:meta])* $table:ident {
        $($(#[$doc:meta])* $ty:ident = $name:literal: $kind:ident<$key:ty, $value:ty>[$max:expr];)*
    }) => {
        $(
            $(#[$doc])*
            pub struct $ty;
            impl MeshMap for $ty {
                const NAME: &'static str = $name;
                const MAX_ENTRIES: u32 = $max;
                type Kind = kind::$kind;
                type Key = $key;
                type Value = $value;
            }
        )*
        $(#[$table_doc])*
        pub const $table: &[MapSpec] = &[$(MapSpec::of::<$ty>()),*];
    };
}

maps! {
    /// Every map of `lib/maps.h`, shared (pinned by name) by `xdp_mesh.o` and `tc_lb.o`.
    MESH_MAPS {
        /// `mesh_config`: the node-wide settings, in entry 0.
        Config = "mesh_config": Array<u32, MeshConfig>[1];
        /// `mesh_ports`: published ports' frontends.
        Ports = "mesh_ports": Hash<MeshPortKey, MeshFrontend>[MESH_MAX_PORTS];
        /// `mesh_vips`: VIPs' frontends.
        Vips = "mesh_vips": Hash<MeshVipKey, MeshFrontend>[MESH_MAX_VIPS];
        /// `mesh_rings`: the Maglev rings, ring `r` at slots `r * MESH_RING_SIZE..`, each slot a
        /// backend id.
        Rings = "mesh_rings": Array<u32, u32>[MESH_MAX_RINGS * MESH_RING_SIZE];
        /// `mesh_backends`: backends by id.
        Backends = "mesh_backends": Array<u32, MeshBackend>[MESH_MAX_BACKENDS];
        /// `mesh_ifaces`: the interfaces served, by ifindex.
        Ifaces = "mesh_ifaces": Hash<u32, MeshIface>[MESH_MAX_IFACES];
        /// `mesh_ct`: conntrack, one entry per direction of a flow.
        Conntrack = "mesh_ct": LruHash<MeshCtKey, MeshCt>[MESH_CT_SIZE];
        /// `mesh_frags`: the translation of each fragmented datagram's first fragment, for the
        /// rest (no L4 header) to follow.
        Frags = "mesh_frags": LruHash<MeshFragKey, MeshCt>[MESH_FRAG_SIZE];
        /// `mesh_stats`: per-service counters by counter slot, per CPU.
        Stats = "mesh_stats": PerCpuArray<u32, MeshSvcStats>[MESH_MAX_SERVICES];
        /// `mesh_overlay_nets`: every overlay network's subnet (value: its VNI), where a task's
        /// packet is never source-NATed to the outside.
        OverlayNets = "mesh_overlay_nets": Hash<crate::abi::MeshNetKey, u32>[crate::abi::MESH_MAX_OVERLAY_NETS];
        /// `mesh_egress_ct`: egress conntrack (`MESH_CT_EGRESS*` keys), one entry per direction.
        EgressConntrack = "mesh_egress_ct": LruHash<MeshCtKey, MeshCt>[crate::abi::MESH_EGRESS_CT_SIZE];
        /// `mesh_nodes`: the cluster's nodes by underlay address (network order), the only
        /// sources VXLAN is accepted from once `MESH_CFG_NODES` is set.
        Nodes = "mesh_nodes": Hash<[u8; 4], MeshNode>[MESH_MAX_NODES];
        /// `mesh_drops`: packets dropped, by reason (`MESH_DROP_*`), per CPU.
        Drops = "mesh_drops": PerCpuArray<u32, MeshCounter>[MESH_DROP_REASONS];
        /// `mesh_native`: addresses on natively routed networks (network order), where each is.
        Native = "mesh_native": Hash<[u8; 4], MeshNative>[MESH_MAX_NATIVE];
        /// `mesh_ingress_tasks`: local tasks' veths (host side) by their MAC on the ingress
        /// network, where `tc_bridge_in` hands their frames from the ingress VXLAN device.
        IngressTasks = "mesh_ingress_tasks": Hash<crate::abi::MeshMacKey, u32>[MESH_MAX_IFACES];
        /// `mesh_node_macs`: the cluster's other nodes (underlay address, network order) by
        /// their underlay MAC, the only senders of a client's packet to a local task on a
        /// natively routed ingress.
        NodeMacs = "mesh_node_macs": Hash<crate::abi::MeshMacKey, [u8; 4]>[MESH_MAX_NODES];
    }
}

maps! {
    /// The map of `probe.c`.
    PROBE_MAPS {
        /// `probe_counters`: packets and bytes per IP protocol, per CPU.
        ProbeCounters = "probe_counters": PerCpuArray<u32, MeshCounter>[256];
    }
}

// ---- Socket-level balancing (`sock_lb.c`) ----

maps! {
    /// The maps `sock_lb.c` declares itself (it also shares every map of [`MESH_MAPS`], through
    /// their pins, with the tc and XDP programs).
    SOCK_LB_MAPS {
        /// `sock_lb_config`: the node's network namespace, in entry 0.
        SockConfig = "sock_lb_config": Array<u32, MeshSockConfig>[1];
        /// `sock_lb_netns`: task network namespaces (by netns cookie) and their networks.
        SockNetns = "sock_lb_netns": Hash<u64, MeshSockNetns>[MESH_SOCK_MAX_NETNS];
        /// `sock_lb_rev`: (socket cookie, backend) → the address the application dialled.
        SockRev = "sock_lb_rev": LruHash<MeshSockRevKey, MeshSockRev>[MESH_SOCK_REV_SIZE];
        /// `sock_lb_stats`: per-service translations by counter slot, per CPU.
        SockStats = "sock_lb_stats": PerCpuArray<u32, MeshSockStats>[MESH_MAX_SERVICES];
    }
}
