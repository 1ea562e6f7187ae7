//! `mesh-ebpf`: the kernel half of meshd. The programs are C (`ebpf/*.c`, compiled by `build.rs`
//! with clang for the BPF target); this crate carries their object bytes and the `#[repr(C)]`
//! mirrors of `include/mesh_abi.h`, checked field by field against the C layout.
//!
//! aya is optional (feature `aya`, for the `aya::Pod` impls of the mirrors): a crate that only
//! needs the object bytes, such as `meshctl`'s lab, does not link it.
#![deny(unsafe_code)] // one exception: the `aya::Pod` impls of the ABI mirrors

pub mod abi;
pub mod maps;

/// A BPF object file, 8-byte aligned as the ELF parser wants it.
#[repr(C, align(8))]
pub struct Object<B: ?Sized>(pub B);

macro_rules! object {
    ($name:literal) => {
        &Object(*include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".o")))
    };
}

/// `probe.c`: counts packets per IP protocol; the self-check of the C-to-aya path.
pub static PROBE: &Object<[u8]> = object!("probe");

/// `xdp_mesh.c`: the routing mesh at XDP on the underlay interface (program `xdp_mesh`).
pub static XDP_MESH: &Object<[u8]> = object!("xdp_mesh");

/// `tc_lb.c`: the routing mesh's tc programs (`tc_underlay_in`, `tc_bridge_in`, `tc_task_in`,
/// `tc_task_out`).
pub static TC_LB: &Object<[u8]> = object!("tc_lb");

/// `sock_lb.c`: socket-level balancing, cgroup programs (`sock_connect4`, `sock_sendmsg4`,
/// `sock_recvmsg4`, `sock_getpeername4`).
pub static SOCK_LB: &Object<[u8]> = object!("sock_lb");

/// The C layout of every ABI struct, as printed by `abi/layout.c` at build time.
pub const ABI_LAYOUT: &str = include_str!(concat!(env!("OUT_DIR"), "/abi_layout.txt"));
