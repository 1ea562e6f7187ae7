//! The lab's images, built once on the host's dockerd `FROM scratch` (no registry outside the lab
//! is reachable) and pushed to the lab registry, from which the nodes pull them:
//! - `meshd/busybox`, the test image: Debian's `busybox-static` (sh, httpd, nc, nslookup, wget,
//!   ...) and our `udp-echo` (busybox-static has no UDP server: no `udpsvd`, no `nc -u`);
//! - `meshd/registry`: Debian's `docker-registry` with its `ldd` closure and a config serving
//!   plain HTTP on :5000 from `/var/lib/registry`, as Docker's `registry` image does;
//! - `meshd/redis`: the lab's database, Debian's `redis-server` with its `ldd` closure and
//!   busybox (a shell to read a password from `/run/secrets`), data in the `/data` volume with
//!   the append-only file on, listening on 6379, as Docker's `redis` image does.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

pub const TEST_IMAGE: &str = "meshd/busybox";
pub const REGISTRY_IMAGE: &str = "meshd/registry";
pub const DATABASE_IMAGE: &str = "meshd/redis";
/// Every lab image: its name on the host's dockerd, and the short name
/// [`crate::LabPlan::image`] gives it in the lab registry.
pub const LAB_IMAGES: [(&str, &str); 3] = [
    (TEST_IMAGE, "busybox"),
    (REGISTRY_IMAGE, "registry"),
    (DATABASE_IMAGE, "redis"),
];
/// Debian's Redis (package redis-server).
const REDIS_BINARY: &str = "/usr/bin/redis-server";
const BUSYBOX: &str = "/bin/busybox";
/// The images' label `meshd.image`: an image with another (older) one is built again.
const IMAGE_VERSION: &str = "2";
/// `udp-echo PORT`: answers each datagram with `<hostname> <datagram>` (built by build.rs).
const UDP_ECHO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/udp-echo"));
/// Where `meshd/registry` keeps its config, as in Docker's `registry` image.
const REGISTRY_CONFIG: &str = "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n  delete:\n    enabled: true\nhttp:\n  addr: :5000\n";

/// A lab image exported once as an OCI layout (its layers compressed), ready to push to any
/// lab's registry as is: pushing from dockerd itself would compress them again at every `up`.
pub struct ExportedImage {
    /// The short name ([`crate::LabPlan::image`]).
    pub name: &'static str,
    pub layout: PathBuf,
}

/// Builds one image's context in the folder given.
type BuildFn = fn(&Path) -> Result<()>;

/// Builds every lab image the host's dockerd lacks (or has in an older version), and exports
/// each one not yet exported under `<state root>/.images/`.
pub fn ensure_images() -> Result<Vec<ExportedImage>> {
    let version = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .context("running docker: run ./scripts/deps.sh (it installs and starts docker)")?;
    if !version.status.success() {
        bail!(
            "dockerd is not answering on /var/run/docker.sock: run ./scripts/deps.sh (it starts it)"
        );
    }
    let builds: [BuildFn; LAB_IMAGES.len()] = [build_busybox, build_registry, build_redis];
    let mut exported = Vec::new();
    for ((image, name), build) in LAB_IMAGES.into_iter().zip(builds) {
        let id = if let Some(id) = current_id(image)? {
            id
        } else {
            with_context_dir(image, build)?;
            current_id(image)?.with_context(|| format!("{image} was built but is not there"))?
        };
        exported.push(ExportedImage {
            name,
            layout: export(image, name, &id)?,
        });
    }
    Ok(exported)
}

/// The id of `image` on the host's dockerd when it is there in the current version.
fn current_id(image: &str) -> Result<Option<String>> {
    let out = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{index .Config.Labels \"meshd.image\"}} {{.Id}}",
            image,
        ])
        .output()
        .context("running docker: run ./scripts/deps.sh (it installs and starts docker)")?;
    if !out.status.success() {
        return Ok(None);
    }
    Ok(current_id_of(&String::from_utf8_lossy(&out.stdout)))
}

/// `<meshd.image label> sha256:<hex>` -> the hex, when the label is [`IMAGE_VERSION`].
fn current_id_of(inspect: &str) -> Option<String> {
    let (version, id) = inspect.trim().split_once(' ')?;
    let hex = id.strip_prefix("sha256:")?;
    (version == IMAGE_VERSION && hex.len() >= 12).then(|| hex.to_owned())
}

/// Exports `image` (id `id`) to `<state root>/.images/<name>-<id prefix>` unless it is there,
/// and removes older exports of it.
fn export(image: &str, name: &str, id: &str) -> Result<PathBuf> {
    let cache = Path::new(crate::STATE_ROOT).join(".images");
    let dir_name = format!("{name}-{}", &id[..12]);
    let dir = cache.join(&dir_name);
    if dir.join("index.json").exists() {
        return Ok(dir);
    }
    fs::create_dir_all(&cache)?;
    let tmp = cache.join(format!(".{dir_name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let out = Command::new("skopeo")
        .args(["copy", "-q"])
        .arg(format!("docker-daemon:{image}:latest"))
        .arg(format!("oci:{}:latest", tmp.display()))
        .output()
        .context("running skopeo (./scripts/deps.sh installs it)")?;
    if !out.status.success() {
        let _ = fs::remove_dir_all(&tmp);
        bail!(
            "exporting {image} with skopeo failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    for old in fs::read_dir(&cache)?.flatten() {
        let old_name = old.file_name();
        let old_name = old_name.to_string_lossy();
        if old_name.starts_with(&format!("{name}-")) && old_name != dir_name {
            let _ = fs::remove_dir_all(old.path());
        }
    }
    // Another `up` may have exported it meanwhile: then its copy stays, and ours goes.
    if fs::rename(&tmp, &dir).is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    Ok(dir)
}

/// Runs `build` in a fresh build context folder, removed afterwards.
fn with_context_dir(image: &str, build: BuildFn) -> Result<()> {
    let ctx = std::env::temp_dir().join(format!(
        "meshd-image-{}-{}",
        image.replace('/', "-"),
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&ctx);
    let result = build(&ctx);
    let _ = fs::remove_dir_all(&ctx);
    result
}

fn build_busybox(ctx: &Path) -> Result<()> {
    let busybox_static = fs::read(BUSYBOX).is_ok_and(|b| is_static(&b));
    if !busybox_static {
        bail!("{BUSYBOX} is missing or not static: install busybox-static (./scripts/deps.sh)");
    }
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
    docker_build(
        ctx,
        TEST_IMAGE,
        &format!(
            "FROM scratch\nCOPY rootfs /\nENV PATH=/bin\nLABEL meshd.image={IMAGE_VERSION}\nCMD [\"sh\"]\n"
        ),
    )
}

/// Copies `binary` and the libraries `ldd` says it loads into `root`, at the same paths.
fn copy_with_libraries(root: &Path, binary: &str, package: &str) -> Result<()> {
    let ldd = Command::new("ldd")
        .arg(binary)
        .output()
        .with_context(|| format!("running ldd {binary} (install {package}: ./scripts/deps.sh)"))?;
    if !ldd.status.success() {
        bail!(
            "ldd {binary} failed (install {package}: ./scripts/deps.sh): {}",
            String::from_utf8_lossy(&ldd.stderr).trim()
        );
    }
    let mut files = vec![PathBuf::from(binary)];
    files.extend(ldd_closure(&String::from_utf8_lossy(&ldd.stdout)));
    for file in &files {
        let to = root.join(file.strip_prefix("/").unwrap_or(file));
        fs::create_dir_all(to.parent().context("a file in /")?)?;
        // `copy` follows symlinks: the image gets the library itself under the name asked for.
        fs::copy(file, &to).with_context(|| format!("copying {}", file.display()))?;
    }
    Ok(())
}

fn build_registry(ctx: &Path) -> Result<()> {
    let binary = crate::registry::REGISTRY_BINARY;
    let root = ctx.join("rootfs");
    copy_with_libraries(&root, binary, "docker-registry")?;
    for d in ["etc/docker/registry", "var/lib/registry", "tmp"] {
        fs::create_dir_all(root.join(d))?;
    }
    fs::write(root.join("etc/docker/registry/config.yml"), REGISTRY_CONFIG)?;
    docker_build(
        ctx,
        REGISTRY_IMAGE,
        &format!(
            "FROM scratch\nCOPY rootfs /\nLABEL meshd.image={IMAGE_VERSION}\nVOLUME [\"/var/lib/registry\"]\nEXPOSE 5000\nENTRYPOINT [\"{binary}\"]\nCMD [\"serve\", \"/etc/docker/registry/config.yml\"]\n"
        ),
    )
}

/// `meshd/redis`: `redis-server` with its libraries, busybox for a shell, `/data` a volume.
fn build_redis(ctx: &Path) -> Result<()> {
    let root = ctx.join("rootfs");
    copy_with_libraries(&root, REDIS_BINARY, "redis-server")?;
    for d in ["bin", "data", "tmp", "etc"] {
        fs::create_dir_all(root.join(d))?;
    }
    fs::copy(BUSYBOX, root.join("bin/busybox"))?;
    for applet in ["sh", "cat", "ls", "nc"] {
        symlink("busybox", root.join("bin").join(applet))?;
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n")?;
    fs::write(root.join("etc/group"), "root:x:0:\n")?;
    docker_build(
        ctx,
        DATABASE_IMAGE,
        &format!(
            "FROM scratch\nCOPY rootfs /\nENV PATH=/bin:/usr/bin\nLABEL meshd.image={IMAGE_VERSION}\nVOLUME [\"/data\"]\nWORKDIR /data\nEXPOSE 6379\nCMD [\"{REDIS_BINARY}\", \"--bind\", \"0.0.0.0\", \"--protected-mode\", \"no\", \"--appendonly\", \"yes\", \"--dir\", \"/data\"]\n"
        ),
    )
}

fn docker_build(ctx: &Path, image: &str, dockerfile: &str) -> Result<()> {
    fs::write(ctx.join("Dockerfile"), dockerfile)?;
    // The classic builder: Debian's docker.io has no buildx, and FROM scratch needs nothing more.
    let out = Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", image])
        .arg(ctx)
        .output()?;
    if !out.status.success() {
        bail!(
            "docker build of {image} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The files `ldd` says a binary loads: `libc.so.6 => /lib/.../libc.so.6 (0x..)` and the loader
/// `/lib64/ld-linux-x86-64.so.2 (0x..)`; the kernel's vDSO is no file.
fn ldd_closure(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = l.split_once("=>").map_or(l, |(_, to)| to.trim());
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// An ELF that names no dynamic loader needs no loader: it runs in an empty image.
fn is_static(elf: &[u8]) -> bool {
    elf.starts_with(b"\x7fELF") && !elf.windows(20).any(|w| w == b"/lib64/ld-linux-x86-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ldd_closure_is_the_libraries_and_the_loader() {
        let out = "\tlinux-vdso.so.1 (0x00007f350da2c000)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f350d839000)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f350da2e000)\n";
        assert_eq!(
            ldd_closure(out),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert!(ldd_closure("\tnot a dynamic executable\n").is_empty());
    }

    #[test]
    fn only_an_image_of_the_current_version_counts() {
        let hex = "ab".repeat(32);
        assert_eq!(
            current_id_of(&format!("{IMAGE_VERSION} sha256:{hex}\n")),
            Some(hex.clone())
        );
        assert_eq!(current_id_of(&format!("1 sha256:{hex}")), None);
        assert_eq!(current_id_of(&format!(" sha256:{hex}")), None);
        assert_eq!(current_id_of(""), None);
    }

    #[test]
    fn the_registry_image_config_listens_on_5000_with_storage_in_the_volume() {
        let config = REGISTRY_CONFIG;
        assert!(config.contains("addr: :5000\n"), "{config}");
        assert!(
            config.contains("rootdirectory: /var/lib/registry\n"),
            "{config}"
        );
    }
}
