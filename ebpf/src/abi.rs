//! Rust mirrors of `include/mesh_abi.h`. Each struct is `#[repr(C)]`, carries a size assertion,
//! and is listed in [`layout`] so that `tests::layout_matches_c` compares every field's offset
//! and size (and every constant) with what the C compiler produced.
//!
//! Fields typed `[u8; N]` or named `*_be` hold network byte order, as the C `__be*` types do:
//! use `u32::from_be_bytes`/`to_be_bytes` at the edges.

use core::mem::{offset_of, size_of};

/// Maglev ring slots per ring (a prime).
pub const MESH_RING_SIZE: u32 = 16381;
pub const MESH_MAX_RINGS: u32 = 1024;
pub const MESH_MAX_BACKENDS: u32 = 8192;
pub const MESH_MAX_SERVICES: u32 = 1024;
pub const MESH_MAX_PORTS: u32 = 4096;
pub const MESH_MAX_VIPS: u32 = 4096;
pub const MESH_MAX_IFACES: u32 = 4096;
pub const MESH_CT_SIZE: u32 = 262_144;
pub const MESH_FRAG_SIZE: u32 = 8192;
pub const MESH_VXLAN_PORT: u16 = 4789;
pub const MESH_CFG_READY: u32 = 1;
pub const MESH_CFG_XDP: u32 = 2;
pub const MESH_FE_NO_BACKEND: u32 = 1;
pub const MESH_FE_HOST: u32 = 2;
pub const MESH_BE_VALID: u32 = 1;
pub const MESH_BE_LOCAL: u32 = 2;
pub const MESH_IF_BRIDGE: u32 = 1;
pub const MESH_IF_TASK: u32 = 2;
pub const MESH_CT_INGRESS: u8 = 1;
pub const MESH_CT_INGRESS_REPLY: u8 = 2;
pub const MESH_CT_VIP: u8 = 3;
pub const MESH_CT_VIP_REPLY: u8 = 4;
/// On a backend's node: task -> client of another node's published port (no SNAT).
pub const MESH_CT_INGRESS_RETURN: u8 = 5;
pub const MESH_CTF_LOCAL: u32 = 1;
pub const MESH_CTF_HAIRPIN: u32 = 2;
/// Cluster nodes' underlay addresses (`mesh_nodes`).
pub const MESH_MAX_NODES: u32 = 4096;
/// Slots of `mesh_drops`.
pub const MESH_DROP_REASONS: u32 = 4;
/// `mesh_drops` slot: UDP to the node's VXLAN port from an address not in `mesh_nodes`.
pub const MESH_DROP_VXLAN_SOURCE: u32 = 0;
/// `mesh_nodes` is filled: VXLAN is accepted only from its addresses.
pub const MESH_CFG_NODES: u32 = 4;
pub const MESH_NODE_MEMBER: u32 = 1;
/// A published-port TCP flow begun by a SYN whose reply is not seen yet.
pub const MESH_CTF_SYN_ONLY: u32 = 4;
/// A published-port TCP flow that saw a FIN or a RST.
pub const MESH_CTF_CLOSING: u32 = 8;
/// A return entry whose node took the request on a native ingress: replies leave by the
/// underlay to its MAC.
pub const MESH_CTF_NATIVE: u32 = 16;
/// Idle timeout of a SYN-only flow.
pub const MESH_CT_SYN_TIMEOUT_SEC: u32 = 5;
/// Idle timeout of a closing flow.
pub const MESH_CT_CLOSING_TIMEOUT_SEC: u32 = 10;
/// `mesh_drops` slot: a new flow whose conntrack entry could not be written.
pub const MESH_DROP_CT_FULL: u32 = 1;
/// `mesh_drops` slot: a new published-port flow that found no free SNAT port.
pub const MESH_DROP_SNAT_EXHAUSTED: u32 = 2;

/// A packet and byte counter (`struct mesh_counter`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshCounter {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(size_of::<MeshCounter>() == 16);

/// Node-wide settings (`struct mesh_config`), the single entry of `mesh_config`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshConfig {
    pub underlay_addr: [u8; 4],
    pub ingress_addr: [u8; 4],
    pub underlay_ifindex: u32,
    pub ingress_bridge_ifindex: u32,
    pub ingress_vni: u32,
    pub underlay_mac: [u8; 6],
    pub bridge_mac: [u8; 6],
    pub flags: u32,
    pub ingress_vxlan_ifindex: u32,
    pub tcp_timeout_ns: u64,
    pub udp_timeout_ns: u64,
}
const _: () = assert!(size_of::<MeshConfig>() == 56);

/// Key of `mesh_ports` (`struct mesh_port_key`): a published (protocol, port).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MeshPortKey {
    pub port: [u8; 2],
    pub proto: u8,
    pub pad: u8,
}
const _: () = assert!(size_of::<MeshPortKey>() == 4);

/// Key of `mesh_vips` (`struct mesh_vip_key`): a VIP on one network.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MeshVipKey {
    pub vni: u32,
    pub addr: [u8; 4],
}
const _: () = assert!(size_of::<MeshVipKey>() == 8);

/// Value of `mesh_ports` and `mesh_vips` (`struct mesh_frontend`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshFrontend {
    pub svc_id: u32,
    pub ring_id: u32,
    pub flags: u32,
}
const _: () = assert!(size_of::<MeshFrontend>() == 12);

/// Value of `mesh_backends` (`struct mesh_backend`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshBackend {
    pub addr: [u8; 4],
    pub vtep: [u8; 4],
    pub port: [u8; 2],
    pub mac: [u8; 6],
    pub flags: u32,
}
const _: () = assert!(size_of::<MeshBackend>() == 20);

/// Value of `mesh_ifaces` (`struct mesh_iface`), keyed by ifindex.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshIface {
    pub vni: u32,
    pub kind: u32,
    pub mac: [u8; 6],
    pub pad: [u8; 2],
}
const _: () = assert!(size_of::<MeshIface>() == 16);

/// Key of `mesh_ct` (`struct mesh_ct_key`): one direction of a flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MeshCtKey {
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub proto: u8,
    pub kind: u8,
    pub pad: [u8; 2],
}
const _: () = assert!(size_of::<MeshCtKey>() == 16);

/// Value of `mesh_ct` (`struct mesh_ct`): the translation of one direction.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshCt {
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub backend_id: u32,
    pub svc_id: u32,
    pub ifindex: u32,
    pub dmac: [u8; 6],
    pub pad: [u8; 2],
    pub flags: u32,
    pub pad2: u32,
    pub last_seen: u64,
}
const _: () = assert!(size_of::<MeshCt>() == 48);

/// Key of `mesh_frags` (`struct mesh_frag_key`): one fragmented datagram, in one direction of a
/// flow; the value is the [`MeshCt`] its first fragment was translated with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MeshFragKey {
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub id: [u8; 2],
    pub proto: u8,
    pub kind: u8,
}
const _: () = assert!(size_of::<MeshFragKey>() == 12);

/// Per-service counters (`struct mesh_svc_stats`), per CPU in `mesh_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshSvcStats {
    pub packets: u64,
    pub bytes: u64,
    pub conns: u64,
}
const _: () = assert!(size_of::<MeshSvcStats>() == 24);

/// Value of `mesh_nodes` (`struct mesh_node`; key: a node's underlay address, network order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshNode {
    pub flags: u32,
}
const _: () = assert!(size_of::<MeshNode>() == 4);

// ---- Native routing (`lib/native.h`) ----

/// Addresses on natively routed networks (`mesh_native`).
pub const MESH_MAX_NATIVE: u32 = 16384;
/// A task on this node: packets for it from the underlay are handed to its veth.
pub const MESH_NATIVE_LOCAL: u32 = 1;
/// A remote address whose node is on-link: a task's packet to it leaves unencapsulated.
pub const MESH_NATIVE_DIRECT: u32 = 2;

/// Value of `mesh_native` (`struct mesh_native`; key: an address on a natively routed network,
/// network order): where that address is.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshNative {
    pub vni: u32,
    /// A local task: the host side of its veth.
    pub ifindex: u32,
    /// A remote address: its node's underlay address (network order).
    pub node: [u8; 4],
    pub mac: [u8; 6],
    pub gw_mac: [u8; 6],
    pub flags: u32,
}
const _: () = assert!(size_of::<MeshNative>() == 28);

/// Key of `mesh_ingress_tasks` (`struct mesh_mac_key`; value: the host side of the task's veth):
/// a local task's MAC on the ingress network.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct MeshMacKey {
    pub mac: [u8; 6],
    pub pad: [u8; 2],
}
const _: () = assert!(size_of::<MeshMacKey>() == 8);

/// Marks the mirrors as plain old data for aya's typed maps.
#[cfg(feature = "aya")]
macro_rules! pod {
    ($($t:ty),*) => {$(
        // SAFETY: `#[repr(C)]`, only integer fields, no implicit padding (checked against the C
        // layout by `layout_matches_c`), so every bit pattern is a valid value.
        #[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
        unsafe impl aya::Pod for $t {}
    )*};
}
#[cfg(feature = "aya")]
pod!(
    MeshCounter,
    MeshConfig,
    MeshPortKey,
    MeshVipKey,
    MeshFrontend,
    MeshBackend,
    MeshIface,
    MeshCtKey,
    MeshCt,
    MeshFragKey,
    MeshSvcStats,
    MeshNode,
    MeshNative,
    MeshMacKey
);

// ---- Socket-level balancing (`sock_lb.c`) ----

/// Reverse entries of the socket programs (`sock_lb_rev`).
pub const MESH_SOCK_REV_SIZE: u32 = 65536;
/// Task network namespaces whose sockets reach VIPs (`sock_lb_netns`).
pub const MESH_SOCK_MAX_NETNS: u32 = 4096;
/// Networks looked up per task namespace.
pub const MESH_SOCK_MAX_NETS: u32 = 8;
pub const MESH_SOCK_READY: u32 = 1;

/// Settings of the socket programs (`struct mesh_sock_config`), the entry of `sock_lb_config`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshSockConfig {
    pub netns_cookie: u64,
    pub flags: u32,
    pub pad: u32,
}
const _: () = assert!(size_of::<MeshSockConfig>() == 16);

/// Value of `sock_lb_netns` (`struct mesh_sock_netns`): a task namespace's networks.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshSockNetns {
    pub vnis: [u32; MESH_SOCK_MAX_NETS as usize],
    pub count: u32,
    pub pad: u32,
}
const _: () = assert!(size_of::<MeshSockNetns>() == 40);

/// Key of `sock_lb_rev` (`struct mesh_sock_rev_key`): a socket and the backend it was sent to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MeshSockRevKey {
    pub cookie: u64,
    pub addr: [u8; 4],
    pub port: [u8; 2],
    pub pad: [u8; 2],
}
const _: () = assert!(size_of::<MeshSockRevKey>() == 16);

/// Value of `sock_lb_rev` (`struct mesh_sock_rev`): the address the application dialled.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshSockRev {
    pub addr: [u8; 4],
    pub port: [u8; 2],
    pub pad: [u8; 2],
}
const _: () = assert!(size_of::<MeshSockRev>() == 8);

/// Per-service counters of the socket path (`struct mesh_sock_stats`), per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshSockStats {
    pub connects: u64,
    pub sendmsgs: u64,
}
const _: () = assert!(size_of::<MeshSockStats>() == 16);

#[cfg(feature = "aya")]
pod!(
    MeshSockConfig,
    MeshSockNetns,
    MeshSockRevKey,
    MeshSockRev,
    MeshSockStats
);

// ---- Egress (`lib/egress.h`) ----

/// `mesh_overlay_nets` is filled: tasks may reach addresses outside the cluster.
pub const MESH_CFG_EGRESS: u32 = 0x100;
/// Overlay subnets (`mesh_overlay_nets`).
pub const MESH_MAX_OVERLAY_NETS: u32 = 4096;
/// Egress conntrack entries (`mesh_egress_ct`, both directions count).
pub const MESH_EGRESS_CT_SIZE: u32 = 65536;
/// The first source port (and ICMP echo id) of egress flows; they run to 65535.
pub const MESH_EGRESS_PORT_LOW: u16 = 61000;
pub const MESH_CT_EGRESS: u8 = 0x10;
pub const MESH_CT_EGRESS_REPLY: u8 = 0x11;
pub const MESH_CT_EGRESS_INBOUND: u8 = 0x12;

/// Key of `mesh_overlay_nets` (`struct mesh_net_key`; value: the network's VNI): a subnet,
/// its address masked, network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct MeshNetKey {
    pub prefixlen: u32,
    pub addr: [u8; 4],
}
const _: () = assert!(size_of::<MeshNetKey>() == 8);
#[cfg(feature = "aya")]
pod!(MeshNetKey);

/// One line of the layout table: C struct name, field name (`-` for the whole struct), offset, size.
/// Constants appear as `("const", NAME, 0, value)`.
pub type LayoutRow = (&'static str, &'static str, usize, usize);

macro_rules! layout {
    ($($c:literal => $t:ty { $($cf:literal : $f:ident),* $(,)? })*) => {
        vec![$(
            ($c, "-", 0, size_of::<$t>()),
            $(($c, $cf, offset_of!($t, $f), size_of_field(|s: &$t| &s.$f)),)*
        )*]
    };
}

macro_rules! consts {
    ($($name:ident),* $(,)?) => {
        vec![$(("const", stringify!($name), 0, $name as usize)),*]
    };
}

fn size_of_field<T, F>(_: impl Fn(&T) -> &F) -> usize {
    size_of::<F>()
}

/// Every mirrored struct, field and constant, in the order `abi/layout.c` prints them.
pub fn layout() -> Vec<LayoutRow> {
    let mut rows = layout! {
        "mesh_counter" => MeshCounter { "packets": packets, "bytes": bytes }
        "mesh_config" => MeshConfig {
            "underlay_addr": underlay_addr, "ingress_addr": ingress_addr,
            "underlay_ifindex": underlay_ifindex, "ingress_bridge_ifindex": ingress_bridge_ifindex,
            "ingress_vni": ingress_vni, "underlay_mac": underlay_mac, "bridge_mac": bridge_mac,
            "flags": flags, "ingress_vxlan_ifindex": ingress_vxlan_ifindex, "tcp_timeout_ns": tcp_timeout_ns,
            "udp_timeout_ns": udp_timeout_ns,
        }
        "mesh_port_key" => MeshPortKey { "port": port, "proto": proto, "pad": pad }
        "mesh_vip_key" => MeshVipKey { "vni": vni, "addr": addr }
        "mesh_frontend" => MeshFrontend { "svc_id": svc_id, "ring_id": ring_id, "flags": flags }
        "mesh_backend" => MeshBackend {
            "addr": addr, "vtep": vtep, "port": port, "mac": mac, "flags": flags,
        }
        "mesh_iface" => MeshIface { "vni": vni, "kind": kind, "mac": mac, "pad": pad }
        "mesh_ct_key" => MeshCtKey {
            "saddr": saddr, "daddr": daddr, "sport": sport, "dport": dport, "proto": proto,
            "kind": kind, "pad": pad,
        }
        "mesh_ct" => MeshCt {
            "saddr": saddr, "daddr": daddr, "sport": sport, "dport": dport,
            "backend_id": backend_id, "svc_id": svc_id, "ifindex": ifindex, "dmac": dmac,
            "pad": pad, "flags": flags, "pad2": pad2, "last_seen": last_seen,
        }
        "mesh_frag_key" => MeshFragKey {
            "saddr": saddr, "daddr": daddr, "id": id, "proto": proto, "kind": kind,
        }
        "mesh_svc_stats" => MeshSvcStats { "packets": packets, "bytes": bytes, "conns": conns }
        "mesh_node" => MeshNode { "flags": flags }
    };
    rows.extend(consts!(
        MESH_RING_SIZE,
        MESH_MAX_RINGS,
        MESH_MAX_BACKENDS,
        MESH_MAX_SERVICES,
        MESH_MAX_PORTS,
        MESH_MAX_VIPS,
        MESH_MAX_IFACES,
        MESH_CT_SIZE,
        MESH_FRAG_SIZE,
        MESH_VXLAN_PORT,
        MESH_CFG_READY,
        MESH_CFG_XDP,
        MESH_FE_NO_BACKEND,
        MESH_FE_HOST,
        MESH_BE_VALID,
        MESH_BE_LOCAL,
        MESH_IF_BRIDGE,
        MESH_IF_TASK,
        MESH_CT_INGRESS,
        MESH_CT_INGRESS_REPLY,
        MESH_CT_VIP,
        MESH_CT_VIP_REPLY,
        MESH_CT_INGRESS_RETURN,
        MESH_CTF_LOCAL,
        MESH_CTF_HAIRPIN,
        MESH_MAX_NODES,
        MESH_DROP_REASONS,
        MESH_DROP_VXLAN_SOURCE,
        MESH_CFG_NODES,
        MESH_NODE_MEMBER,
        MESH_CTF_SYN_ONLY,
        MESH_CTF_CLOSING,
        MESH_CTF_NATIVE,
        MESH_CT_SYN_TIMEOUT_SEC,
        MESH_CT_CLOSING_TIMEOUT_SEC,
        MESH_DROP_CT_FULL,
        MESH_DROP_SNAT_EXHAUSTED,
    ));
    // Egress.
    rows.extend(layout! {
        "mesh_net_key" => MeshNetKey { "prefixlen": prefixlen, "addr": addr }
    });
    rows.extend(consts!(
        MESH_CFG_EGRESS,
        MESH_MAX_OVERLAY_NETS,
        MESH_EGRESS_CT_SIZE,
        MESH_EGRESS_PORT_LOW,
        MESH_CT_EGRESS,
        MESH_CT_EGRESS_REPLY,
        MESH_CT_EGRESS_INBOUND,
    ));
    // Socket-level balancing.
    rows.extend(layout! {
        "mesh_sock_config" => MeshSockConfig { "netns_cookie": netns_cookie, "flags": flags, "pad": pad }
        "mesh_sock_netns" => MeshSockNetns { "vnis": vnis, "count": count, "pad": pad }
        "mesh_sock_rev_key" => MeshSockRevKey {
            "cookie": cookie, "addr": addr, "port": port, "pad": pad,
        }
        "mesh_sock_rev" => MeshSockRev { "addr": addr, "port": port, "pad": pad }
        "mesh_sock_stats" => MeshSockStats { "connects": connects, "sendmsgs": sendmsgs }
    });
    rows.extend(consts!(
        MESH_SOCK_REV_SIZE,
        MESH_SOCK_MAX_NETNS,
        MESH_SOCK_MAX_NETS,
        MESH_SOCK_READY,
    ));
    // Native routing.
    rows.extend(layout! {
        "mesh_native" => MeshNative {
            "vni": vni, "ifindex": ifindex, "node": node, "mac": mac, "gw_mac": gw_mac,
            "flags": flags,
        }
    });
    rows.extend(consts!(
        MESH_MAX_NATIVE,
        MESH_NATIVE_LOCAL,
        MESH_NATIVE_DIRECT
    ));
    // Delivery into local tasks' veths.
    rows.extend(layout! {
        "mesh_mac_key" => MeshMacKey { "mac": mac, "pad": pad }
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_c() {
        let c: Vec<(String, String, usize, usize)> = crate::ABI_LAYOUT
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (
                    f[0].into(),
                    f[1].into(),
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                )
            })
            .collect();
        let rust: Vec<(String, String, usize, usize)> = layout()
            .into_iter()
            .map(|(s, f, o, n)| (s.into(), f.into(), o, n))
            .collect();
        assert_eq!(
            c, rust,
            "mesh_abi.h and ebpf/src/abi.rs disagree (C on the left)"
        );
    }
}
