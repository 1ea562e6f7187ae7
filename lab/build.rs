//! Builds `udp-echo` (`udp_echo.c`), the UDP server of the lab's test image, as a static
//! executable: the image is FROM scratch, and Debian's busybox-static has no UDP server.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "udp_echo.c";
    println!("cargo:rerun-if-changed={src}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("udp-echo");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let status = Command::new(&cc)
        .args(["-static", "-Os", "-s", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg(src)
        .status()
        .unwrap_or_else(|e| panic!("running {cc} to build {src}: {e}"));
    assert!(
        status.success(),
        "{cc} failed to build {src} statically (it needs libc6-dev's libc.a)"
    );
}
