//! Rust mirrors of `include/mesh_abi.h`. Each struct is `#[repr(C)]`, carries a size assertion,
//! and is listed in [`layout`] so that `tests::layout_matches_c` compares every field's offset
//! and size with what the C compiler produced.

use core::mem::{offset_of, size_of};

/// A packet and byte counter (`struct mesh_counter`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshCounter {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(size_of::<MeshCounter>() == 16);

/// Marks the mirrors as plain old data for aya's typed maps.
macro_rules! pod {
    ($($t:ty),*) => {$(
        // SAFETY: `#[repr(C)]`, only integer fields, no implicit padding (checked against the C
        // layout by `layout_matches_c`), so every bit pattern is a valid value.
        #[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
        unsafe impl aya::Pod for $t {}
    )*};
}
pod!(MeshCounter);

/// One line of the layout table: C struct name, field name (`-` for the whole struct), offset, size.
pub type LayoutRow = (&'static str, &'static str, usize, usize);

macro_rules! layout {
    ($($c:literal => $t:ty { $($cf:literal : $f:ident),* $(,)? })*) => {
        vec![$(
            ($c, "-", 0, size_of::<$t>()),
            $(($c, $cf, offset_of!($t, $f), size_of_field(|s: &$t| &s.$f)),)*
        )*]
    };
}

fn size_of_field<T, F>(_: impl Fn(&T) -> &F) -> usize {
    size_of::<F>()
}

/// Every mirrored struct and field, in the order `abi/layout.c` prints them.
pub fn layout() -> Vec<LayoutRow> {
    layout! {
        "mesh_counter" => MeshCounter { "packets": packets, "bytes": bytes }
    }
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
