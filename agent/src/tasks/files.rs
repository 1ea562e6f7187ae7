//! A task's secrets and configs on its node: written to a tmpfs (never to the node's disk), one
//! folder per task, each file with the owner and mode the service asked for, and shown read-only
//! inside the container by a bind mount at its target. The folder goes when the task's
//! container does.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use mesh_api::{BlobKind, TaskFile};
use mesh_cluster::spec::container_path;
use mesh_cluster::state::FileReference;
use mesh_engine::BindMount;

/// `statfs`'s magic for tmpfs.
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Where a node keeps its tasks' files.
#[derive(Clone, Debug)]
pub struct TaskFiles {
    root: PathBuf,
}

impl TaskFiles {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// Makes the root a tmpfs unless it already is one (a lab node's state is): secrets never
    /// reach a disk. Idempotent.
    fn ensure_tmpfs(&self) -> Result<(), String> {
        fs::create_dir_all(&self.root)
            .and_then(|()| fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700)))
            .map_err(|e| format!("making {}: {e}", self.root.display()))?;
        if is_tmpfs(&self.root)? {
            return Ok(());
        }
        nix::mount::mount(
            Some("tmpfs"),
            &self.root,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID
                | nix::mount::MsFlags::MS_NODEV
                | nix::mount::MsFlags::MS_NOEXEC,
            Some("mode=0700,size=64m"),
        )
        .map_err(|e| format!("mounting a tmpfs on {}: {e}", self.root.display()))
    }

    /// Writes `task`'s files and returns the bind mounts that show them, or why the task cannot
    /// have them (a reference the leader sent no data for, a write that failed).
    pub fn write(
        &self,
        task: &str,
        refs: (&[FileReference], &[FileReference]),
        files: &[TaskFile],
    ) -> Result<Vec<BindMount>, String> {
        let (secrets, configs) = refs;
        if secrets.is_empty() && configs.is_empty() {
            return Ok(Vec::new());
        }
        self.ensure_tmpfs()?;
        let dir = self.root.join(task);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).map_err(|e| format!("making {}: {e}", dir.display()))?;
        let wanted = secrets
            .iter()
            .map(|r| (BlobKind::Secret, r))
            .chain(configs.iter().map(|r| (BlobKind::Config, r)));
        let mut binds = Vec::new();
        for (i, (kind, r)) in wanted.enumerate() {
            let Some(f) = files.iter().find(|f| {
                f.kind == kind && f.reference.id == r.id && f.reference.target == r.target
            }) else {
                return Err(format!(
                    "{} {} is not available to this node (removed, or the managers cannot open it)",
                    kind.as_str(),
                    r.name
                ));
            };
            let host = dir.join(format!("{}-{i}", kind.as_str()));
            write_file(&host, &f.data.0, r)?;
            binds.push(BindMount {
                host,
                container: container_path(kind == BlobKind::Secret, &r.target),
            });
        }
        Ok(binds)
    }

    /// Removes `task`'s files (its container is gone).
    pub fn remove(&self, task: &str) {
        let dir = self.root.join(task);
        if dir.exists()
            && let Err(e) = fs::remove_dir_all(&dir)
        {
            tracing::warn!("removing {}: {e}", dir.display());
        }
    }
}

fn write_file(path: &Path, data: &[u8], r: &FileReference) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("writing {}: {e}", path.display());
    fs::write(path, data).map_err(fail)?;
    let id = |s: &str| s.parse::<u32>().unwrap_or(0);
    std::os::unix::fs::chown(path, Some(id(&r.uid)), Some(id(&r.gid))).map_err(fail)?;
    fs::set_permissions(path, fs::Permissions::from_mode(r.mode)).map_err(fail)
}

fn is_tmpfs(path: &Path) -> Result<bool, String> {
    let st =
        nix::sys::statfs::statfs(path).map_err(|e| format!("statfs {}: {e}", path.display()))?;
    Ok(st.filesystem_type().0 == TMPFS_MAGIC)
}

#[cfg(test)]
mod tests {
    use mesh_api::BlobData;
    use mesh_cluster::Id;

    use super::*;

    fn reference(id: &str, target: &str, mode: u32) -> FileReference {
        FileReference {
            id: Id::from(id),
            name: id.into(),
            target: target.into(),
            uid: "0".into(),
            gid: "0".into(),
            mode,
        }
    }

    #[test]
    fn files_land_on_a_tmpfs_with_their_modes_and_go_with_the_task() {
        // /dev/shm is a tmpfs: the files need no mount of their own there.
        let shm = tempfile::tempdir_in("/dev/shm").unwrap();
        let files = TaskFiles::new(shm.path().join("task-files"));
        let s = reference("s1", "db", 0o400);
        let c = reference("c1", "/etc/site.conf", 0o444);
        let data = vec![
            TaskFile {
                kind: BlobKind::Secret,
                reference: s.clone(),
                data: BlobData(b"pw".to_vec()),
            },
            TaskFile {
                kind: BlobKind::Config,
                reference: c.clone(),
                data: BlobData(b"conf".to_vec()),
            },
        ];
        let binds = files
            .write(
                "t1",
                (std::slice::from_ref(&s), std::slice::from_ref(&c)),
                &data,
            )
            .unwrap();
        let paths: Vec<&str> = binds.iter().map(|b| b.container.as_str()).collect();
        assert_eq!(paths, ["/run/secrets/db", "/etc/site.conf"]);
        assert_eq!(fs::read(&binds[0].host).unwrap(), b"pw");
        let mode = fs::metadata(&binds[0].host).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o400);
        assert!(is_tmpfs(&binds[0].host).unwrap());
        // A reference without data refuses the task.
        let e = files
            .write("t2", (&[reference("s9", "x", 0o444)], &[]), &data)
            .unwrap_err();
        assert!(e.contains("secret s9 is not available"), "{e}");
        files.remove("t1");
        assert!(!binds[0].host.exists());
    }
}
