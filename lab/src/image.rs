//! The test image `meshd/busybox`: no registry is reachable here, so the lab builds it
//! `FROM scratch` out of Debian's `busybox-static` (sh, httpd, nc, nslookup, wget, ...) and our
//! `udp-echo` (busybox-static has no UDP server: no `udpsvd`, no `nc -u`).

use std::fs;
use std::os::unix::fs::symlink;
use std::process::Command;

use anyhow::{Context, Result, bail};

pub const TEST_IMAGE: &str = "meshd/busybox";
const BUSYBOX: &str = "/bin/busybox";
/// The image's label `meshd.image`: an image with another (older) one is built again.
const IMAGE_VERSION: &str = "2";
/// `udp-echo PORT`: answers each datagram with `<hostname> <datagram>` (built by build.rs).
const UDP_ECHO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/udp-echo"));

/// Builds `meshd/busybox` unless dockerd already has it.
pub fn ensure_test_image() -> Result<()> {
    let present = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{index .Config.Labels \"meshd.image\"}}",
            TEST_IMAGE,
        ])
        .output()
        .context("running docker: run ./scripts/deps.sh (it installs and starts docker)")?;
    if present.status.success() && String::from_utf8_lossy(&present.stdout).trim() == IMAGE_VERSION
    {
        return Ok(());
    }
    let version = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()?;
    if !version.status.success() {
        bail!(
            "dockerd is not answering on /var/run/docker.sock: run ./scripts/deps.sh (it starts it)"
        );
    }
    let busybox_static = fs::read(BUSYBOX).is_ok_and(|b| is_static(&b));
    if !busybox_static {
        bail!("{BUSYBOX} is missing or not static: install busybox-static (./scripts/deps.sh)");
    }

    let ctx = std::env::temp_dir().join(format!("meshd-image-{}", std::process::id()));
    let _ = fs::remove_dir_all(&ctx);
    let result = build(&ctx);
    let _ = fs::remove_dir_all(&ctx);
    result
}

fn build(ctx: &std::path::Path) -> Result<()> {
    let root = ctx.join("rootfs");
    for d in ["bin", "etc", "tmp", "www", "run", "var/www"] {
        fs::create_dir_all(root.join(d))?;
    }
    fs::copy(BUSYBOX, root.join("bin/busybox"))?;
    {
        use std::os::unix::fs::PermissionsExt;
        let echo = root.join("bin/udp-echo");
        fs::write(&echo, UDP_ECHO)?;
        fs::set_permissions(&echo, fs::Permissions::from_mode(0o755))?;
    }
    let list = Command::new(BUSYBOX).arg("--list").output()?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            symlink("busybox", root.join("bin").join(applet))?;
        }
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n")?;
    fs::write(root.join("etc/group"), "root:x:0:\n")?;
    fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM scratch\nCOPY rootfs /\nENV PATH=/bin\nLABEL meshd.image={IMAGE_VERSION}\nCMD [\"sh\"]\n"
        ),
    )?;
    // The classic builder: Debian's docker.io has no buildx, and FROM scratch needs nothing more.
    let out = Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", TEST_IMAGE])
        .arg(ctx)
        .output()?;
    if !out.status.success() {
        bail!(
            "docker build of {TEST_IMAGE} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// An ELF that names no dynamic loader needs no loader: it runs in an empty image.
fn is_static(elf: &[u8]) -> bool {
    elf.starts_with(b"\x7fELF") && !elf.windows(20).any(|w| w == b"/lib64/ld-linux-x86-")
}
