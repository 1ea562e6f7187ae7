//! Interface index and MAC address by name, in the calling thread's network namespace. Through
//! ioctls on a socket (not `/sys/class/net`, which shows the namespace `/sys` was mounted in:
//! meshd enters a node's namespace with `setns` and keeps the host's `/sys`).

use std::ffi::CString;
use std::io;

fn c_name(name: &str) -> io::Result<CString> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {name:?}: 1 to 15 bytes expected"),
        ));
    }
    CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {name:?} contains a NUL byte"),
        )
    })
}

/// The ifindex of `name`.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = c_name(name)?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("interface {name}: {e}")));
    }
    Ok(idx)
}

/// The hardware (MAC) address of `name`.
pub fn mac(name: &str) -> io::Result<[u8; 6]> {
    let c = c_name(name)?;
    // SAFETY: plain socket(2) call; the result is checked and owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(c.as_bytes()) {
        *dst = (*src).cast_signed();
    }
    // SAFETY: SIOCGIFHWADDR reads ifr_name and writes ifr_hwaddr inside `req`, which lives
    // across the call; the socket is open.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SIOCGIFHWADDR,
            &raw mut req,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("interface {name}: {e}")));
    }
    // SAFETY: SIOCGIFHWADDR succeeded, so the union holds `ifru_hwaddr`.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut out = [0_u8; 6];
    for (o, b) in out.iter_mut().zip(sa.sa_data.iter()) {
        *o = (*b).cast_unsigned();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_has_index_and_zero_mac() {
        assert!(super::ifindex("lo").unwrap() >= 1);
        assert_eq!(super::mac("lo").unwrap(), [0; 6]);
        let e = super::ifindex("mt-no-such-if").unwrap_err();
        assert!(e.to_string().contains("mt-no-such-if"), "{e}");
    }
}
