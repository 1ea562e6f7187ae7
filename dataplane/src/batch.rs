//! Writing a run of an array map's slots in one system call (`BPF_MAP_UPDATE_BATCH`, Linux
//! 5.6+). A Maglev ring is 16381 slots; one update per slot made programming a service cost
//! about 7 ms (the bench's scale scenario), most of it in system calls.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use aya::maps::{Map, MapData};

/// `BPF_MAP_UPDATE_BATCH` from `include/uapi/linux/bpf.h`.
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// The map data of an array map.
pub(crate) fn array_data(map: &Map) -> Option<&MapData> {
    match map {
        Map::Array(d) => Some(d),
        _ => None,
    }
}

/// Writes `values` into slots `first..first + values.len()` of the array map `map`.
pub(crate) fn put_array_run(map: &MapData, first: u32, values: &[u32]) -> io::Result<()> {
    let count =
        u32::try_from(values.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let keys: Vec<u32> = (first..first.saturating_add(count)).collect();
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count,
        map_fd: u32::try_from(map.fd().as_fd().as_raw_fd())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        ..BatchAttr::default()
    };
    // SAFETY: attr is a valid bpf_attr prefix for BPF_MAP_UPDATE_BATCH; keys and values hold
    // `count` u32 each (the map's key and value size) and outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_BATCH,
            &raw mut attr,
            std::mem::size_of::<BatchAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if attr.count != count {
        return Err(io::Error::other(format!(
            "wrote {} of {count} slots",
            attr.count
        )));
    }
    Ok(())
}
