//! `mesh-ebpf`: the kernel half of meshd. The programs are C (`ebpf/*.c`, compiled by `build.rs`
//! with clang for the BPF target); this crate carries their object bytes and the `#[repr(C)]`
//! mirrors of `include/mesh_abi.h`, checked field by field against the C layout.
#![deny(unsafe_code)] // one exception: the `aya::Pod` impls of the ABI mirrors

pub mod abi;

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

/// The C layout of every ABI struct, as printed by `abi/layout.c` at build time.
pub const ABI_LAYOUT: &str = include_str!(concat!(env!("OUT_DIR"), "/abi_layout.txt"));
