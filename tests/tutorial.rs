//! The tutorials' stack (issue 14's acceptance), with the lab's images: a web tier publishing
//! 8080 (busybox httpd running a CGI program from a config), an application tier that writes the
//! data, and the database (`meshd/redis`) with a named volume; one overlay network; the database
//! password a secret from a file, read by both sides from `/run/secrets`. A request through every
//! node reaches the web tier, which fetches the data from the database by its service name; the
//! database's task killed, the data survive (the volume); a re-deploy with a new image tag and
//! more replicas rolls through with no failed request in a client loop; `stack rm` leaves
//! nothing.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::{Lab, MESHCTL, eventually, ok, stderr, stdout};

const PASSWORD: &str = "pw-91c2-tutorial";
const GREETING: &str = "hello-from-the-database";

/// The web tier's CGI program: asks the database (by its service name) for the greeting.
const CGI: &str = "#!/bin/sh\necho 'Content-Type: text/plain'\necho\npw=$(cat /run/secrets/db_password)\nprintf 'AUTH %s\\r\\nGET greeting\\r\\nQUIT\\r\\n' \"$pw\" | nc db 6379 | tr -d '\\r' | sed -n 3p\n";

fn compose(image: &str, db_image: &str, node: &str, web_replicas: u32) -> String {
    format!(
        r#"version: "3.8"
services:
  web:
    image: {image}
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
    ports:
      - "8080:80"
    networks: [back]
    secrets: [db_password]
    configs:
      - source: app_cgi
        target: /www/cgi-bin/app
        mode: 0555
    healthcheck:
      test: ["CMD-SHELL", "printf 'GET / HTTP/1.0\r\n\r\n' | nc 127.0.0.1 80 | grep -q HTTP"]
      interval: 1s
      timeout: 2s
      retries: 3
    stop_grace_period: 2s
    deploy:
      replicas: {web_replicas}
      update_config:
        parallelism: 1
        delay: 1s
        order: start-first
  app:
    image: {image}
    command: ["sh", "-c", "while sleep 1; do printf 'AUTH %s\r\nSET greeting {GREETING}\r\nQUIT\r\n' \"$$(cat /run/secrets/db_password)\" | nc db 6379 | grep -q OK && break; done; exec sleep 1d"]
    networks: [back]
    secrets: [db_password]
    stop_grace_period: 1s
  db:
    image: {db_image}
    command: ["sh", "-c", "exec redis-server --requirepass \"$$(cat /run/secrets/db_password)\" --appendonly yes --dir /data --bind 0.0.0.0 --protected-mode no"]
    networks: [back]
    volumes:
      - dbdata:/data
    secrets: [db_password]
    stop_grace_period: 1s
    deploy:
      placement:
        constraints: ["node.hostname == {node}"]
networks:
  back:
    driver: overlay
volumes:
  dbdata:
secrets:
  db_password:
    file: ./db_password.txt
configs:
  app_cgi:
    file: ./app.cgi
"#
    )
}

/// The compose folder, removed on drop.
struct Files(PathBuf);

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One request from lab `prefix`'s client through `addr`: the body, or `ERR` with curl's exit
/// code, its message and how long it took.
fn ask(prefix: &str, addr: &str) -> String {
    let url = format!("http://{addr}:8080/cgi-bin/app");
    let started = Instant::now();
    let out = Command::new(MESHCTL)
        .args(["lab", "exec", "--prefix", prefix, "client", "--"])
        .args(["curl", "-sS", "-m", "3", "-f", &url])
        .output()
        .expect("run meshctl lab exec");
    if out.status.success() {
        stdout(&out).trim().to_owned()
    } else {
        format!(
            "ERR {:?} after {:?}: {}",
            out.status.code(),
            started.elapsed(),
            stderr(&out).trim()
        )
    }
}

fn converged(lab: &Lab, stack: &str, want: &[(&str, &str)]) -> Result<(), String> {
    let services = ok(lab, "n1", &["stack", "services", stack]);
    let ok_all = want.iter().all(|(name, replicas)| {
        services.lines().any(|l| {
            l.contains(&format!("{stack}_{name} ")) && l.contains(&format!(" {replicas} "))
        })
    });
    if ok_all { Ok(()) } else { Err(services) }
}

#[test]
fn tutorial_stack_serves_from_the_database_survives_and_rolls() {
    let lab = Lab::up("tutorial", 145, 3, 1);
    let dir = std::env::temp_dir().join(format!("{}-tutorial", lab.prefix));
    std::fs::create_dir_all(&dir).expect("make the compose folder");
    let _files = Files(dir.clone());
    std::fs::write(dir.join("db_password.txt"), PASSWORD).unwrap();
    std::fs::write(dir.join("app.cgi"), CGI).unwrap();
    let db_node = lab.ns("n3");
    let file = dir.join("compose.yml");
    let deploy = |image: &str, replicas: u32| {
        std::fs::write(
            &file,
            compose(image, &lab.image_named("redis"), &db_node, replicas),
        )
        .unwrap();
        ok(
            &lab,
            "n1",
            &["stack", "deploy", "-c", &file.display().to_string(), "tut"],
        )
    };
    let printed = deploy(&lab.image(), 2);
    assert!(printed.contains("Creating service tut_db"), "{printed}");

    eventually(Duration::from_mins(2), "the stack converges", || {
        converged(
            &lab,
            "tut",
            &[("web", "2/2"), ("app", "1/1"), ("db", "1/1")],
        )
    });
    for i in 1..=3 {
        let addr = lab.node_addr(i);
        eventually(
            Duration::from_mins(1),
            &format!("the greeting through n{i}"),
            || {
                let body = ask(&lab.prefix, &addr);
                (body == GREETING).then_some(()).ok_or(body)
            },
        );
    }
    // The password never shows, and is in no state file in the clear.
    let inspect = ok(&lab, "n1", &["secret", "inspect", "tut_db_password"]);
    assert!(!inspect.contains(PASSWORD), "{inspect}");

    // The database's task dies; the new one (same node, same volume) still has the data.
    let db_container = lab
        .docker_out(3, &["ps", "-q", "--filter", "label=meshd.task"])
        .lines()
        .find(|id| {
            lab.docker_out(3, &["inspect", "-f", "{{.Name}}", id])
                .contains("/tut_db.")
        })
        .map(str::to_owned)
        .expect("the database's container on n3");
    let killed = lab.docker(3, &["kill", &db_container]);
    assert!(killed.status.success(), "{}", stderr(&killed));
    eventually(
        Duration::from_mins(1),
        "the data after the database's restart",
        || {
            let now = lab.docker_out(3, &["ps", "-q", "--filter", "label=meshd.task"]);
            if now.contains(&db_container[..12]) {
                return Err("the killed container still runs".into());
            }
            let body = ask(&lab.prefix, &lab.node_addr(1));
            (body == GREETING).then_some(()).ok_or(body)
        },
    );

    // A new tag of the image in the lab registry, and a re-deploy with it and 3 web replicas,
    // while a client asks through every node: no request fails.
    let registry = lab.image().replace("/meshd/busybox", "");
    let v2 = format!("{}:v2", lab.image());
    let copied = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.ns("reg")))
        .args(["skopeo", "copy", "-q", "--dest-cert-dir"])
        .arg(format!("/var/lib/meshd-lab/{}/ca", lab.prefix))
        .arg("docker-daemon:meshd/busybox:latest")
        .arg(format!("docker://{registry}/meshd/busybox:v2"))
        .output()
        .expect("run skopeo");
    assert!(copied.status.success(), "skopeo: {}", stderr(&copied));
    let stop = Arc::new(AtomicBool::new(false));
    let failures = {
        let (stop, prefix, addrs) = (
            stop.clone(),
            lab.prefix.clone(),
            (1..=3).map(|i| lab.node_addr(i)).collect::<Vec<_>>(),
        );
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            let mut asked = 0;
            while !stop.load(Ordering::Relaxed) {
                for a in &addrs {
                    let body = ask(&prefix, a);
                    asked += 1;
                    if body != GREETING {
                        let at = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .unwrap_or_default();
                        failures.push(format!("{a} at {:.3}: {body}", at.as_secs_f64()));
                    }
                }
            }
            (asked, failures)
        })
    };
    let printed = deploy(&v2, 3);
    assert!(printed.contains("Updating service tut_web"), "{printed}");
    eventually(
        Duration::from_mins(2),
        "web runs v2 with 3 replicas",
        || {
            converged(&lab, "tut", &[("web", "3/3")])?;
            let ps = ok(
                &lab,
                "n1",
                &[
                    "service",
                    "ps",
                    "--filter",
                    "desired-state=running",
                    "tut_web",
                ],
            );
            let on_v2 = ps
                .lines()
                .filter(|l| l.contains(":v2@sha256:") && l.contains(" Running "))
                .count();
            (on_v2 == 3).then_some(()).ok_or(ps)
        },
    );
    stop.store(true, Ordering::Relaxed);
    let (asked, failures) = failures.join().expect("the client loop");
    println!(
        "tutorial: {asked} requests during the rolling update, {} failed",
        failures.len()
    );
    assert!(
        asked > 0 && failures.is_empty(),
        "failed requests: {failures:?}"
    );

    let removed = ok(&lab, "n1", &["stack", "rm", "tut"]);
    assert!(removed.contains("Removing service tut_web"), "{removed}");
    eventually(Duration::from_mins(1), "nothing of the stack left", || {
        let left = [
            ok(&lab, "n1", &["service", "ls", "-q"]),
            ok(&lab, "n1", &["secret", "ls", "-q"]),
            ok(&lab, "n1", &["config", "ls", "-q"]),
            lab.docker_all(&["ps", "-aq", "--filter", "label=meshd.task"]),
        ];
        let networks = ok(&lab, "n1", &["network", "ls"]);
        if left.iter().all(|s| s.trim().is_empty()) && !networks.contains("tut_back") {
            Ok(())
        } else {
            Err(format!("{left:?} {networks}"))
        }
    });
}
