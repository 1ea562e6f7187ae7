//! Files only root reads: meshd's state directories are 0700 and every file it writes in them
//! 0600 (issue 16, "at rest"). Directories and files that exist with wider modes (an older meshd,
//! a restored backup) are tightened, never widened.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The mode of meshd's state directories.
pub const DIR_MODE: u32 = 0o700;
/// The mode of every file meshd writes under its data directory.
pub const FILE_MODE: u32 = 0o600;

/// Sets `path`'s permission bits to `mode` unless they already are.
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.permissions().mode() & 0o7777 != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Creates `dir` (and missing parents) and makes it 0700.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    set_mode(dir, DIR_MODE)
}

/// Makes the existing file `path` 0600.
pub fn private_file(path: &Path) -> io::Result<()> {
    set_mode(path, FILE_MODE)
}

/// Writes `data` to `path` atomically (a temporary file renamed over it), created 0600.
pub fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    private_file(&tmp)?;
    fs::rename(&tmp, path)
}

/// Makes `dir` and every directory under it 0700 and every other entry 0600 (symbolic links
/// are left alone and not followed).
pub fn tighten_tree(dir: &Path) -> io::Result<()> {
    private_dir(dir)?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            continue;
        }
        if kind.is_dir() {
            tighten_tree(&entry.path())?;
        } else {
            private_file(&entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn directories_are_0700_and_files_0600() {
        let tmp = std::env::temp_dir().join(format!("mesh-private-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let data = tmp.join("data");
        private_dir(&data.join("raft")).unwrap();
        assert_eq!(mode(&data.join("raft")), 0o700);
        // Written files are 0600, and replace what was there.
        let f = data.join("swarm.json");
        write_private(&f, b"one").unwrap();
        write_private(&f, b"two").unwrap();
        assert_eq!(fs::read_to_string(&f).unwrap(), "two");
        assert_eq!(mode(&f), 0o600);
        // Wider modes are tightened, the whole tree down.
        fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(data.join("certs")).unwrap();
        fs::set_permissions(data.join("certs"), fs::Permissions::from_mode(0o777)).unwrap();
        fs::write(data.join("certs/ca.pem"), "x").unwrap();
        fs::set_permissions(data.join("certs/ca.pem"), fs::Permissions::from_mode(0o644)).unwrap();
        let outside = tmp.join("outside");
        fs::write(&outside, "x").unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, data.join("link")).unwrap();
        tighten_tree(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("certs")), 0o700);
        assert_eq!(mode(&data.join("certs/ca.pem")), 0o600);
        // The link's target is not touched.
        assert_eq!(mode(&outside), 0o644);
        // A mode already right stays (and a narrower one is not widened by private_file).
        private_file(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        fs::remove_dir_all(&tmp).unwrap();
    }
}
