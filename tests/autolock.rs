//! Autolock (issue 16, item 1): `swarm update --autolock=true` prints an unlock key and every
//! manager wraps its data key with it; a manager that restarts is locked (it serves nothing but
//! `info`, `status` and `swarm unlock`; the others go on serving) until `swarm unlock` gets the
//! right key; a promoted worker fetches the key over mTLS and wraps it too; `unlock-key
//! --rotate` makes every manager wrap again; `--autolock=false` undoes it. And `swarm init
//! --autolock` on a one-node swarm.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::{Lab, eventually, fails, meshctl, ok, stderr, stdout};

const LOCKED: &str = "Swarm is encrypted and needs to be unlocked before it can be used";
const WRONG_KEY: &str = "swarm could not be unlocked: invalid key provided";
const WRAPPED: &str = "wrapped-by-unlock-key ";

/// The `SWMKEY-1-...` in `text`.
fn unlock_key_in(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.starts_with("SWMKEY-1-"))
        .unwrap_or_else(|| panic!("no unlock key in:\n{text}"))
        .to_owned()
}

fn key_file(lab: &Lab, member: &str) -> PathBuf {
    PathBuf::from(lab.path(&format!("{member}/raft/data.key")))
}

/// Waits until `member`'s data key file is wrapped (`true`) or clear (`false`); returns its text.
fn key_file_becomes(lab: &Lab, member: &str, wrapped: bool) -> String {
    let path = key_file(lab, member);
    eventually(
        Duration::from_secs(30),
        &format!("{member}'s data key wrapped: {wrapped}"),
        || {
            let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            (text.starts_with(WRAPPED) == wrapped)
                .then(|| text.clone())
                .ok_or(text)
        },
    )
}

fn restart(lab: &Lab, member: &str) {
    for args in [&["stop", member][..], &["start", member][..]] {
        let out = lab.meshctl_lab(args);
        assert!(out.status.success(), "lab {args:?}: {}", stderr(&out));
    }
}

/// `meshctl swarm unlock` on `member` with `key` on its standard input.
fn unlock(lab: &Lab, member: &str, key: &str) -> std::process::Output {
    lab.exec(
        member,
        &["sh", "-c", &format!("echo '{key}' | meshctl swarm unlock")],
    )
}

/// `docker ARGS` (the host's CLI, API 1.41) against `member`'s Engine API socket, with `input`
/// on its standard input.
fn docker(lab: &Lab, member: &str, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write as _;
    let host = format!(
        "unix://{}",
        lab.path(&format!("{member}/meshd-docker.sock"))
    );
    let mut child = std::process::Command::new("timeout")
        .arg("60")
        .arg("/usr/bin/docker")
        .args(args)
        .env("DOCKER_HOST", host)
        .env_remove("DOCKER_CONTEXT")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run docker");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write docker's stdin");
    child.wait_with_output().expect("docker's output")
}

fn assert_locked(lab: &Lab, member: &str) {
    let err = fails(lab, member, &["service", "ls"]);
    assert!(err.contains(LOCKED), "{member}: {err}");
    let info = ok(lab, member, &["info"]);
    assert!(info.contains("Swarm: locked"), "{member} info: {info}");
    let status = meshctl(lab, member, &["status"]);
    assert!(
        !status.status.success() && stdout(&status).contains("locked"),
        "{member} status: {}",
        stdout(&status)
    );
}

#[test]
fn an_autolocked_manager_restarts_locked_and_serves_after_unlock() {
    let lab = Lab::up("alock", 226, 4, 3);
    let err = fails(&lab, "n1", &["swarm", "unlock-key"]);
    assert!(err.contains("no unlock key is set"), "{err}");
    let err = fails(&lab, "n1", &["swarm", "unlock-key", "--rotate"]);
    assert!(err.contains("autolock is not turned on"), "{err}");
    let err = fails(&lab, "n1", &["swarm", "unlock"]);
    assert!(err.contains("swarm is not locked"), "{err}");

    let updated = ok(&lab, "n1", &["swarm", "update", "--autolock=true"]);
    assert!(
        updated.starts_with("Swarm updated.\n")
            && updated.contains("run the `meshctl swarm unlock`"),
        "{updated}"
    );
    let key = unlock_key_in(&updated);
    assert_eq!(ok(&lab, "n2", &["swarm", "unlock-key", "-q"]).trim(), key);
    // Turning it on again shows no new key and keeps the old one.
    let again = ok(&lab, "n2", &["swarm", "update", "--autolock"]);
    assert_eq!(again, "Swarm updated.\n");
    assert!(ok(&lab, "n3", &["swarm", "unlock-key"]).contains(&key));
    for member in ["n1", "n2", "n3"] {
        key_file_becomes(&lab, member, true);
    }
    // A worker holds no data key; promoted, it fetches it over mTLS and wraps it too. The
    // docker CLI sees the lock and unlocks through meshd's Engine API.
    assert!(!key_file(&lab, "n4").exists());
    ok(&lab, "n1", &["node", "promote", &lab.ns("n4")]);
    key_file_becomes(&lab, "n4", true);
    restart(&lab, "n4");
    assert_locked(&lab, "n4");
    let state = docker(
        &lab,
        "n4",
        &["info", "--format", "{{.Swarm.LocalNodeState}}"],
        "",
    );
    assert_eq!(stdout(&state).trim(), "locked", "{}", stderr(&state));
    let shown = docker(&lab, "n1", &["swarm", "unlock-key", "-q"], "");
    assert_eq!(stdout(&shown).trim(), key, "{}", stderr(&shown));
    let out = docker(&lab, "n4", &["swarm", "unlock"], &format!("{key}\n"));
    assert!(
        out.status.success(),
        "docker swarm unlock on n4: {}",
        stderr(&out)
    );
    eventually(Duration::from_secs(30), "n4 serving after unlock", || {
        let out = meshctl(&lab, "n4", &["node", "ls"]);
        out.status.success().then_some(()).ok_or(stderr(&out))
    });

    // n3 restarts locked; n1 and n2 go on serving.
    restart(&lab, "n3");
    assert_locked(&lab, "n3");
    let image = lab.image();
    ok(
        &lab,
        "n1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "meanwhile",
            &image,
            "sleep",
            "1d",
        ],
    );
    assert!(ok(&lab, "n2", &["service", "ls"]).contains("meanwhile"));

    // A wrong or malformed key leaves it locked.
    let wrong = format!("SWMKEY-1-{}", "A".repeat(43));
    let out = unlock(&lab, "n3", &wrong);
    assert!(
        !out.status.success() && stderr(&out).contains(WRONG_KEY),
        "{}",
        stderr(&out)
    );
    let out = unlock(&lab, "n3", "SWMKEY-1-short");
    assert!(
        !out.status.success() && stderr(&out).contains("invalid unlock key"),
        "{}",
        stderr(&out)
    );
    assert_locked(&lab, "n3");
    let out = unlock(&lab, "n3", &key);
    assert!(out.status.success(), "unlock: {}", stderr(&out));
    eventually(Duration::from_secs(30), "n3 serving after unlock", || {
        let out = meshctl(&lab, "n3", &["service", "ls"]);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        (out.status.success() && text.contains("meanwhile"))
            .then_some(())
            .ok_or(text)
    });
    let err = fails(&lab, "n3", &["swarm", "unlock"]);
    assert!(err.contains("swarm is not locked"), "{err}");

    // Rotation: every manager wraps again; a restarted one needs the new key.
    let before = std::fs::read_to_string(key_file(&lab, "n2")).expect("n2's data key");
    let rotated = ok(&lab, "n3", &["swarm", "unlock-key", "--rotate"]);
    assert!(
        rotated.starts_with("Successfully rotated manager unlock key.\n\n"),
        "{rotated}"
    );
    let new_key = unlock_key_in(&rotated);
    assert_ne!(new_key, key);
    eventually(
        Duration::from_secs(30),
        "n2 wrapping with the new key",
        || {
            let now = std::fs::read_to_string(key_file(&lab, "n2")).map_err(|e| e.to_string())?;
            (now != before && now.starts_with(WRAPPED))
                .then_some(())
                .ok_or(now)
        },
    );
    restart(&lab, "n2");
    assert_locked(&lab, "n2");
    let out = unlock(&lab, "n2", &key);
    assert!(stderr(&out).contains(WRONG_KEY), "{}", stderr(&out));
    let out = unlock(&lab, "n2", &new_key);
    assert!(out.status.success(), "unlock: {}", stderr(&out));
    eventually(Duration::from_secs(30), "n2 serving after unlock", || {
        let out = meshctl(&lab, "n2", &["node", "ls"]);
        out.status.success().then_some(()).ok_or(stderr(&out))
    });

    // Off: the files are clear again and a restarted manager serves at once.
    assert_eq!(
        ok(&lab, "n1", &["swarm", "update", "--autolock=false"]),
        "Swarm updated.\n"
    );
    for member in ["n1", "n2", "n3", "n4"] {
        let text = key_file_becomes(&lab, member, false);
        assert_eq!(text.trim().len(), 64, "{member}: {text}");
    }
    restart(&lab, "n3");
    eventually(
        Duration::from_secs(30),
        "n3 serving after a restart",
        || {
            let out = meshctl(&lab, "n3", &["service", "ls"]);
            out.status.success().then_some(()).ok_or(stderr(&out))
        },
    );
    let err = fails(&lab, "n1", &["swarm", "unlock-key"]);
    assert!(err.contains("no unlock key is set"), "{err}");
}

#[test]
fn swarm_init_autolock_locks_the_first_manager_from_the_start() {
    let lab = Lab::up_with("alinit", 227, 1, 1, &["--no-swarm"]);
    let addr = lab.node_addr(1);
    let init = ok(
        &lab,
        "n1",
        &["swarm", "init", "--autolock", "--advertise-addr", &addr],
    );
    assert!(
        init.starts_with("Swarm initialized: current node (")
            && init.contains("meshctl swarm join --token MSHTKN-1-")
            && init.contains("Please remember to store this key in a password manager"),
        "{init}"
    );
    let key = unlock_key_in(&init);
    assert!(
        std::fs::read_to_string(key_file(&lab, "n1"))
            .expect("n1's data key")
            .starts_with(WRAPPED)
    );
    restart(&lab, "n1");
    assert_locked(&lab, "n1");
    let err = fails(&lab, "n1", &["swarm", "leave"]);
    assert!(err.contains("--force"), "{err}");
    let out = unlock(&lab, "n1", &key);
    assert!(out.status.success(), "unlock: {}", stderr(&out));
    eventually(Duration::from_secs(30), "n1 serving after unlock", || {
        let out = meshctl(&lab, "n1", &["node", "ls"]);
        out.status.success().then_some(()).ok_or(stderr(&out))
    });
    assert_eq!(ok(&lab, "n1", &["swarm", "unlock-key", "-q"]).trim(), key);
}
