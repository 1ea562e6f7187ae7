//! Secrets and configs (issue 14, item 1) on a lab of three managers: create from a file and
//! from standard input, `ls`, `inspect` (a config's data shown, a secret's never), a second
//! manager reading a config (it fetches the cluster's data key from another manager over mTLS),
//! bad input refused with nothing created, `rm`; and no manager's state holds the data, the CA
//! key or the join token secrets in the clear.

use std::path::Path;

use crate::support::{Lab, fails, ok};

const SECRET: &str = "s3cr3t-pw-4c1d";
const CONFIG: &str = "listen-80-conf-9e2b";
const LOGIN_PASSWORD: &str = "registry-pw-7d1q";

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if kind.is_file()
            && std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
        {
            found.push(path.display().to_string());
        }
    }
    found
}

#[test]
fn secrets_and_configs_are_sealed_and_never_shown() {
    let lab = Lab::up("secrets", 142, 3, 3);
    let created = lab.exec(
        "n1",
        &[
            "sh",
            "-c",
            &format!("printf {SECRET} | meshctl secret create --label env=dev db_password -"),
        ],
    );
    assert!(
        created.status.success(),
        "secret create: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let id = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    assert_eq!(id.len(), 25, "an id: {id:?}");

    let file = std::env::temp_dir().join(format!("{}-site.conf", lab.prefix));
    std::fs::write(&file, CONFIG).expect("write the config file");
    let path = file.display().to_string();
    let config_id = ok(&lab, "n1", &["config", "create", "site", &path]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(config_id.trim().len(), 25, "{config_id}");

    let ls = ok(&lab, "n2", &["secret", "ls"]);
    assert!(
        ls.starts_with("ID ") && ls.contains(&id) && ls.contains("db_password"),
        "{ls}"
    );
    for member in ["n1", "n2", "n3"] {
        let json = ok(&lab, member, &["secret", "inspect", "db_password"]);
        assert!(
            json.contains("\"Name\": \"db_password\"") && json.contains("\"env\": \"dev\""),
            "{json}"
        );
        let pretty = ok(&lab, member, &["secret", "inspect", "--pretty", &id]);
        for text in [&json, &pretty] {
            assert!(
                !text.contains(SECRET) && !text.contains("Data"),
                "{member}: {text}"
            );
        }
    }
    // n2 and n3 hold no data key yet: they fetch it from the manager that made it.
    for member in ["n2", "n3"] {
        let pretty = ok(&lab, member, &["config", "inspect", "--pretty", "site"]);
        assert!(
            pretty.contains(&format!("Data:\n{CONFIG}")),
            "{member}: {pretty}"
        );
    }
    let data = ok(
        &lab,
        "n3",
        &["config", "inspect", "--format", "{{.Spec.Data}}", "site"],
    );
    assert_eq!(data.trim(), "bGlzdGVuLTgwLWNvbmYtOWUyYg==");

    // Bad input: refused by name, nothing created.
    for (args, want) in [
        (
            vec!["secret", "create", "bad!", "/etc/hostname"],
            "invalid name",
        ),
        (
            vec!["secret", "create", "db_password", "/etc/hostname"],
            "secret db_password already exists",
        ),
        (
            vec!["config", "create", "empty", "/dev/null"],
            "larger than 0",
        ),
        (
            vec!["secret", "create", "x", "/nonexistent"],
            "/nonexistent",
        ),
        (vec!["secret", "inspect", "nope"], "no such secret: nope"),
        (vec!["config", "rm", "nope"], "no such config: nope"),
    ] {
        let err = fails(&lab, "n1", &args);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert_eq!(ok(&lab, "n1", &["secret", "ls", "-q"]).trim(), id);
    assert_eq!(
        ok(&lab, "n1", &["config", "ls", "--format", "{{.Name}}"]).trim(),
        "site"
    );

    // A registry login (`--with-registry-auth`) is kept sealed too, and its task still runs.
    let docker_config = std::env::temp_dir().join(format!("{}-docker", lab.prefix));
    std::fs::create_dir_all(&docker_config).expect("a docker config directory");
    let registry = format!("198.18.{}.5:5000", lab.subnet_octet);
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("alice:{LOGIN_PASSWORD}"),
    );
    std::fs::write(
        docker_config.join("config.json"),
        format!(r#"{{"auths": {{"{registry}": {{"auth": "{auth}"}}}}}}"#),
    )
    .expect("write config.json");
    let config_env = format!("DOCKER_CONFIG={}", docker_config.display());
    let image = lab.image();
    let created = lab.exec(
        "n1",
        &[
            "env",
            &config_env,
            "meshctl",
            "service",
            "create",
            "-d",
            "--with-registry-auth",
            "--name",
            "authed",
            &image,
            "sleep",
            "1d",
        ],
    );
    let _ = std::fs::remove_dir_all(&docker_config);
    let said = String::from_utf8_lossy(&created.stderr);
    assert!(
        created.status.success() && !said.contains("--with-registry-auth:"),
        "service create --with-registry-auth (the login must be found and sent): {said}"
    );
    crate::support::eventually(
        std::time::Duration::from_mins(1),
        "the task of a service with a login runs",
        || {
            let ps = ok(&lab, "n2", &["service", "ps", "authed"]);
            ps.contains("Running").then_some(()).ok_or(ps)
        },
    );

    // No manager's state (raft log, snapshots, key files) holds any of these values in the
    // clear; the scan does see the managers' raft stores and data keys.
    let state = Path::new("/var/lib/meshd-lab").join(&lab.prefix);
    for i in 1..=3 {
        let raft = state.join(format!("n{i}")).join("raft");
        for file in ["raft.redb", "data.key"] {
            assert!(raft.join(file).is_file(), "no {file} in {}", raft.display());
        }
    }
    for needle in [SECRET, CONFIG, LOGIN_PASSWORD] {
        let found = files_containing(&state, needle.as_bytes());
        assert!(found.is_empty(), "{needle} in the clear in {found:?}");
    }
    // Nor the CA's private key (no PEM private key in any raft store: the scan sees the nodes'
    // own key files, so it would see one) nor the join tokens' secrets.
    let pem = b"PRIVATE KEY-----";
    assert!(
        !files_containing(&state.join("n1").join("certs"), pem).is_empty(),
        "the scan finds a PEM private key where there is one"
    );
    let mut token_secrets = Vec::new();
    for role in ["worker", "manager"] {
        let token = ok(&lab, "n2", &["swarm", "join-token", "-q", role]);
        let secret = token
            .trim()
            .rsplit('-')
            .next()
            .unwrap_or_default()
            .to_owned();
        assert_eq!(secret.len(), 25, "{token}");
        token_secrets.push(secret);
    }
    for i in 1..=3 {
        let raft = state.join(format!("n{i}")).join("raft");
        let found = files_containing(&raft, pem);
        assert!(found.is_empty(), "a private key in the clear in {found:?}");
        for secret in &token_secrets {
            let found = files_containing(&raft, secret.as_bytes());
            assert!(found.is_empty(), "a token secret in the clear in {found:?}");
        }
    }
    let found = files_containing(&state, token_secrets[0].as_bytes());
    assert!(found.is_empty(), "the worker token's secret in {found:?}");

    assert_eq!(
        ok(&lab, "n2", &["secret", "rm", "db_password"]).trim(),
        "db_password"
    );
    assert_eq!(
        ok(&lab, "n1", &["config", "rm", &config_id.trim()[..6]]).trim(),
        &config_id.trim()[..6]
    );
    assert!(ok(&lab, "n1", &["secret", "ls", "-q"]).trim().is_empty());
    assert!(ok(&lab, "n3", &["config", "ls", "-q"]).trim().is_empty());
}

/// `service create --secret/--config`: the task sees the data read-only at `/run/secrets/NAME`
/// and at the targets asked for, with their owner and mode, on a tmpfs; `secret rm` is refused
/// while the service uses it; `service update --secret-rm` takes it away (a new task without it).
#[test]
fn secrets_and_configs_reach_their_tasks_read_only() {
    let lab = Lab::up("sectask", 144, 2, 1);
    let created = lab.exec(
        "n1",
        &[
            "sh",
            "-c",
            &format!("printf {SECRET} | meshctl secret create db_password -"),
        ],
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let file = std::env::temp_dir().join(format!("{}-site.conf", lab.prefix));
    std::fs::write(&file, CONFIG).expect("write the config file");
    ok(
        &lab,
        "n1",
        &["config", "create", "site", &file.display().to_string()],
    );
    let _ = std::fs::remove_file(&file);
    let image = lab.image();
    ok(
        &lab,
        "n1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--secret",
            "db_password",
            "--secret",
            "source=db_password,target=/etc/pw,uid=1000,gid=1001,mode=0400",
            "--config",
            "source=site,target=/etc/site.conf",
            &image,
            "sleep",
            "3600",
        ],
    );
    let container =
        crate::support::eventually(std::time::Duration::from_mins(1), "web's task runs", || {
            let ids = lab.docker_all(&["ps", "-q", "--filter", "label=meshd.task"]);
            ids.split_whitespace()
                .next()
                .map(str::to_owned)
                .ok_or_else(|| ok(&lab, "n1", &["service", "ps", "--no-trunc", "web"]))
        });
    let node = lab.engine_of(&container);
    let exec = |cmd: &str| lab.docker_out(node, &["exec", &container, "sh", "-c", cmd]);
    assert_eq!(exec("cat /run/secrets/db_password"), SECRET);
    assert_eq!(exec("cat /etc/pw"), SECRET);
    assert_eq!(exec("cat /etc/site.conf"), CONFIG);
    assert_eq!(exec("stat -c '%u %g %a' /etc/pw").trim(), "1000 1001 400");
    assert_eq!(exec("stat -c '%a' /run/secrets/db_password").trim(), "444");
    let write = lab.docker(
        node,
        &[
            "exec",
            &container,
            "sh",
            "-c",
            "echo x > /run/secrets/db_password",
        ],
    );
    assert!(!write.status.success(), "a secret must be read-only");
    let mounts = exec("grep -E ' /run/secrets/db_password | /etc/site.conf ' /proc/mounts");
    assert_eq!(mounts.lines().count(), 2, "{mounts}");
    assert!(
        mounts
            .lines()
            .all(|l| l.contains(" tmpfs ") && l.contains(" ro,")),
        "secrets and configs come from a tmpfs, read-only: {mounts}"
    );

    let refused = fails(&lab, "n1", &["secret", "rm", "db_password"]);
    assert!(
        refused.contains("secret 'db_password' is in use by the following service: web"),
        "{refused}"
    );
    let missing = fails(
        &lab,
        "n1",
        &[
            "service", "create", "--name", "x", "--secret", "nope", &image,
        ],
    );
    assert!(missing.contains("secret not found: nope"), "{missing}");

    ok(
        &lab,
        "n1",
        &[
            "service",
            "update",
            "-d",
            "--secret-rm",
            "db_password",
            "--config-rm",
            "site",
            "web",
        ],
    );
    ok(&lab, "n1", &["service", "rm", "web"]);
    crate::support::eventually(
        std::time::Duration::from_mins(1),
        "secret rm once web is gone",
        || {
            let out = crate::support::meshctl(&lab, "n1", &["secret", "rm", "db_password"]);
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        },
    );
}
