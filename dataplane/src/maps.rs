//! The maps of a loaded object, opened typed from their one declaration in
//! [`mesh_ebpf::maps`]: callers name a map by its type (`maps::Ports`), never by a string, and
//! get aya's handle of its kind with its key and value types.

use anyhow::anyhow;
use aya::Ebpf;
use aya::Pod;
use aya::maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray};
use mesh_ebpf::maps::{MapKind, MeshMap, kind};

/// The aya handle of each map kind.
pub(crate) trait AyaKind: MapKind {
    type Handle<T, K: Pod, V: Pod>;
}

impl AyaKind for kind::Hash {
    type Handle<T, K: Pod, V: Pod> = HashMap<T, K, V>;
}
impl AyaKind for kind::LruHash {
    type Handle<T, K: Pod, V: Pod> = HashMap<T, K, V>;
}
// Arrays are indexed by `u32`, the key type of their declaration.
impl AyaKind for kind::Array {
    type Handle<T, K: Pod, V: Pod> = Array<T, V>;
}
impl AyaKind for kind::PerCpuArray {
    type Handle<T, K: Pod, V: Pod> = PerCpuArray<T, V>;
}

/// The aya handle of map `M` over map data `T` (`&MapData` or `&mut MapData`).
pub(crate) type Handle<M, T> =
    <<M as MeshMap>::Kind as AyaKind>::Handle<T, <M as MeshMap>::Key, <M as MeshMap>::Value>;

/// Map `M` of `ebpf`, writable.
pub(crate) fn open_mut<'a, M>(ebpf: &'a mut Ebpf) -> anyhow::Result<Handle<M, &'a mut MapData>>
where
    M: MeshMap<Kind: AyaKind, Key: Pod, Value: Pod>,
    Handle<M, &'a mut MapData>: TryFrom<&'a mut Map, Error = MapError>,
{
    let map = ebpf
        .map_mut(M::NAME)
        .ok_or_else(|| anyhow!("map {} missing from the object", M::NAME))?;
    Ok(Handle::<M, _>::try_from(map)?)
}

/// Map `M` of `ebpf`, read-only.
pub(crate) fn open<'a, M>(ebpf: &'a Ebpf) -> anyhow::Result<Handle<M, &'a MapData>>
where
    M: MeshMap<Kind: AyaKind, Key: Pod, Value: Pod>,
    Handle<M, &'a MapData>: TryFrom<&'a Map, Error = MapError>,
{
    let map = ebpf
        .map(M::NAME)
        .ok_or_else(|| anyhow!("map {} missing from the object", M::NAME))?;
    Ok(Handle::<M, _>::try_from(map)?)
}

#[cfg(test)]
mod tests {
    //! The declarations against the compiled objects. The object, parsed as the loader parses it
    //! (aya-obj reads the BTF map definitions, no root needed), is the most faithful witness: it
    //! holds the sizes and entry counts clang computed (`MESH_MAX_RINGS * MESH_RING_SIZE` needs
    //! no evaluating by hand, as parsing `maps.h` would), and every map in it is seen, including
    //! one added to the C side only.

    use mesh_ebpf::maps::{MESH_MAPS, MapSpec, PROBE_MAPS, SOCK_LB_MAPS};

    fn maps_of(object: &[u8]) -> Vec<MapSpec> {
        let obj = aya_obj::Object::parse(object).expect("parse BPF object");
        let mut specs: Vec<MapSpec> = obj
            .maps
            .iter()
            // Sections the loader turns into maps of its own (`.rodata`, `.bss`) are not ours.
            .filter(|(name, _)| !name.starts_with('.'))
            .map(|(name, m)| MapSpec {
                name: declared_name(name),
                map_type: m.map_type(),
                key_size: m.key_size() as usize,
                value_size: m.value_size() as usize,
                max_entries: m.max_entries(),
            })
            .collect();
        specs.sort_by_key(|s| s.name);
        specs
    }

    /// The declared name equal to `name`, or `name` leaked when none is (so it shows in the diff).
    fn declared_name(name: &str) -> &'static str {
        MESH_MAPS
            .iter()
            .chain(PROBE_MAPS)
            .chain(SOCK_LB_MAPS)
            .map(|s| s.name)
            .find(|n| *n == name)
            .unwrap_or_else(|| name.to_owned().leak())
    }

    fn sorted(specs: &[MapSpec]) -> Vec<MapSpec> {
        let mut v = specs.to_vec();
        v.sort_by_key(|s| s.name);
        v
    }

    #[test]
    fn mesh_maps_match_both_objects() {
        for (object, name) in [
            (&mesh_ebpf::TC_LB.0, "tc_lb.o"),
            (&mesh_ebpf::XDP_MESH.0, "xdp_mesh.o"),
        ] {
            assert_eq!(
                maps_of(object),
                sorted(MESH_MAPS),
                "{name} (left) and mesh_ebpf::maps::MESH_MAPS disagree"
            );
        }
    }

    #[test]
    fn probe_maps_match_the_object() {
        assert_eq!(
            maps_of(&mesh_ebpf::PROBE.0),
            sorted(PROBE_MAPS),
            "probe.o (left) and mesh_ebpf::maps::PROBE_MAPS disagree"
        );
    }

    /// `sock_lb.o` declares its own maps and shares every map of the mesh (by pin).
    #[test]
    fn sock_lb_maps_match_the_object() {
        let mut want = MESH_MAPS.to_vec();
        want.extend_from_slice(SOCK_LB_MAPS);
        assert_eq!(
            maps_of(&mesh_ebpf::SOCK_LB.0),
            sorted(&want),
            "sock_lb.o (left) and MESH_MAPS + SOCK_LB_MAPS disagree"
        );
    }
}
