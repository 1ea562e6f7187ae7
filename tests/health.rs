//! Health checks (issue 13) on a lab swarm: a task whose container has a health check (here the
//! image's `HEALTHCHECK`) takes no traffic until Docker calls it healthy. One that never turns
//! healthy is never answered through the routing mesh and is replaced again and again (failed
//! with moby's `dockerexec: unhealthy container`); one that turns healthy after a while is
//! `starting` until then, and then serves.
//!
//! The lab's nodes share the host's dockerd here, so the image is built there, locally (the
//! classic builder, `FROM meshd/busybox`), and removed at the end; the service is created with
//! `--no-resolve-image` so that no registry is asked for a digest.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Lab, eventually, ok, stdout};

/// Healthy once `/tmp/healthy` exists; checked every second, unhealthy after two failures past
/// an eight-second start period.
const DOCKERFILE: &str = "FROM meshd/busybox\n\
    HEALTHCHECK --interval=1s --timeout=1s --retries=2 --start-period=8s CMD test -e /tmp/healthy\n";

/// The task's web server, answering `GET /` with the container's hostname; `then` runs beside it.
fn httpd(then: &str) -> String {
    format!(
        "mkdir -p /www; hostname | tr -d '\\n' > /www/index.html; ({then}) & exec httpd -f -p 80 -h /www"
    )
}

/// One fresh HTTP connection per line: the body, or `ERR <exception>`.
const CLIENT: &str = r#"
import socket, sys
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(count):
    try:
        s = socket.create_connection((host, port), timeout=2)
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            data += b
        body = data.split(b"\r\n\r\n", 1)[1].decode().strip() if b"\r\n\r\n" in data else ""
        print(body or "ERR empty")
        s.close()
    except Exception as e:
        print("ERR", type(e).__name__)
"#;

/// The locally built image with a `HEALTHCHECK`, removed when dropped (after the lab, which is
/// declared after it, has removed its containers).
struct HealthImage(String);

impl HealthImage {
    fn build() -> Self {
        let name = format!("meshd/e2e-health-{}", std::process::id());
        let ctx = std::env::temp_dir().join(format!("mesh-e2e-health-{}", std::process::id()));
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
        let out = Command::new("docker")
            .env("DOCKER_BUILDKIT", "0")
            .args(["build", "-q", "-t", &name])
            .arg(&ctx)
            .output()
            .expect("run docker build");
        let _ = std::fs::remove_dir_all(&ctx);
        assert!(
            out.status.success(),
            "docker build {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(name)
    }
}

impl Drop for HealthImage {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["image", "rm", "-f", &self.0])
            .output();
    }
}

/// `count` GETs from the lab's client to `addr:port`.
fn ask(lab: &Lab, addr: &str, port: u16, count: usize) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.ns("client"), "python3", "-c", CLIENT])
        .args([addr, &port.to_string(), &count.to_string()])
        .output()
        .expect("run the client");
    stdout(&out).lines().map(str::to_owned).collect()
}

/// The ids of every task of `service` (history included).
fn task_ids(lab: &Lab, service: &str) -> BTreeSet<String> {
    ok(lab, "n1", &["service", "ps", "-q", "--no-trunc", service])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn health_checks_gate_the_mesh_and_replace_unhealthy_tasks() {
    let image = HealthImage::build();
    let lab = Lab::up("health", 213, 2, 1);
    let create = |name: &str, port: &str, then: &str| {
        ok(
            &lab,
            "n1",
            &[
                "service",
                "create",
                "-d",
                "--no-resolve-image",
                "--name",
                name,
                "-p",
                port,
                &image.0,
                "sh",
                "-c",
                &httpd(then),
            ],
        );
    };

    // Turns healthy after a few seconds: `starting` until then, then running and serving.
    create("slow", "8091:80", "sleep 4; touch /tmp/healthy");
    eventually(Duration::from_secs(30), "slow's task starting", || {
        let ps = ok(&lab, "n1", &["service", "ps", "slow"]);
        ps.contains("Starting").then_some(()).ok_or(ps)
    });
    let served = eventually(Duration::from_mins(1), "slow serving through n2", || {
        let answers = ask(&lab, &lab.node_addr(2), 8091, 4);
        let ps = ok(&lab, "n1", &["service", "ps", "slow"]);
        if answers.iter().all(|a| !a.starts_with("ERR")) && ps.contains("Running") {
            Ok(answers)
        } else {
            Err(format!("{answers:?}\n{ps}"))
        }
    });
    println!("health: slow serves {served:?}");

    // Never healthy: no answer through the mesh, ever, and its tasks are replaced.
    create("sick", "8090:80", "true");
    let started = Instant::now();
    let mut asked = 0;
    while started.elapsed() < Duration::from_secs(40) {
        let answers = ask(&lab, &lab.node_addr(1), 8090, 2);
        assert!(
            answers.iter().all(|a| a.starts_with("ERR")),
            "an unhealthy task answered through the mesh: {answers:?}"
        );
        asked += answers.len();
        if task_ids(&lab, "sick").len() >= 2 && started.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    let ids = task_ids(&lab, "sick");
    let ps = ok(&lab, "n1", &["service", "ps", "--no-trunc", "sick"]);
    assert!(ids.len() >= 2, "sick's task was not replaced:\n{ps}");
    assert!(
        ps.contains("dockerexec: unhealthy container"),
        "no health error in service ps:\n{ps}"
    );
    println!(
        "health: sick has {} tasks, {asked} requests unanswered\n{ps}",
        ids.len()
    );

    // The healthy one still serves.
    assert!(
        ask(&lab, &lab.node_addr(1), 8091, 4)
            .iter()
            .all(|a| !a.starts_with("ERR"))
    );
    drop(lab);
}

/// Debian's `docker-registry` on the host's loopback (plain HTTP, which dockerd allows for
/// 127.0.0.0/8), storage in a temporary directory; killed and removed when dropped. The lab's
/// nodes share the host's dockerd, so they pull from it.
struct LoopbackRegistry {
    child: std::process::Child,
    dir: std::path::PathBuf,
    addr: String,
}

impl LoopbackRegistry {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let dir = std::env::temp_dir().join(format!("mesh-e2e-registry-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry (./scripts/deps.sh)");
        let me = Self { child, dir, addr };
        eventually(Duration::from_secs(30), "the registry listening", || {
            std::net::TcpStream::connect(&me.addr)
                .map(drop)
                .map_err(|e| e.to_string())
        });
        me
    }

    /// Copies the host's `meshd/busybox` into the registry as `NAME`; returns `ADDR/NAME`.
    fn push_busybox(&self, name: &str) -> String {
        let target = format!("{}/{name}", self.addr);
        let out = Command::new("skopeo")
            .args([
                "copy",
                "--dest-tls-verify=false",
                "docker-daemon:meshd/busybox:latest",
            ])
            .arg(format!("docker://{target}"))
            .output()
            .expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo copy to {target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        target
    }
}

impl Drop for LoopbackRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        // What the nodes pulled from it: by tag and by digest (never by image id, which the
        // host's meshd/busybox shares).
        let out = Command::new("docker")
            .args([
                "images",
                "--digests",
                "--format",
                "{{.Repository}} {{.Tag}} {{.Digest}}",
            ])
            .output();
        let Ok(out) = out else { return };
        for line in stdout(&out).lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            let [repo, tag, digest] = w[..] else { continue };
            if !repo.starts_with(&self.addr) {
                continue;
            }
            for r in [format!("{repo}:{tag}"), format!("{repo}@{digest}")] {
                if !r.contains("<none>") {
                    let _ = Command::new("docker").args(["image", "rm", &r]).output();
                }
            }
        }
    }
}

#[test]
fn images_are_pinned_pulled_and_a_missing_one_pauses_the_update() {
    let registry = LoopbackRegistry::start();
    let image = registry.push_busybox("e2e/pulled:v1");
    let lab = Lab::up("pull", 214, 2, 1);

    // Pinned to the registry's digest, pulled by the node that runs it.
    let created = crate::support::meshctl(
        &lab,
        "n1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--replicas",
            "2",
            "--update-failure-action",
            "pause",
            &image,
            "sleep",
            "600",
        ],
    );
    assert!(
        created.status.success(),
        "{}",
        crate::support::stderr(&created)
    );
    assert!(
        !crate::support::stderr(&created).contains("could not be accessed"),
        "{}",
        crate::support::stderr(&created)
    );
    let pinned = ok(
        &lab,
        "n1",
        &[
            "service",
            "inspect",
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
            "web",
        ],
    );
    assert!(
        pinned.trim().starts_with(&format!("{image}@sha256:")),
        "not pinned: {pinned}"
    );
    eventually(Duration::from_mins(1), "web's two tasks running", || {
        let ps = ok(&lab, "n1", &["service", "ps", "web"]);
        (ps.matches("Running").count() == 4).then_some(()).ok_or(ps)
    });

    // An image built on the node only: kept as a tag, with docker's warning on stderr.
    let local = crate::support::meshctl(
        &lab,
        "n1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "local",
            "meshd/busybox",
            "sleep",
            "600",
        ],
    );
    assert!(local.status.success(), "{}", crate::support::stderr(&local));
    assert!(
        crate::support::stderr(&local).contains(
            "image meshd/busybox:latest could not be accessed on a registry to record its digest"
        ),
        "{}",
        crate::support::stderr(&local)
    );

    // An update to a tag the registry does not have: rejected with the registry's words, the
    // update paused after the first slot, the other slot's old task still running.
    let missing = image.replace(":v1", ":nope");
    ok(
        &lab,
        "n1",
        &["service", "update", "-d", "--image", &missing, "web"],
    );
    // The pull (and its retries) happen in `preparing`, as Swarm shows it.
    eventually(Duration::from_secs(30), "the new task preparing", || {
        let ps = ok(&lab, "n1", &["service", "ps", "web"]);
        ps.contains("Preparing").then_some(()).ok_or(ps)
    });
    let ps = eventually(
        Duration::from_mins(1),
        "the pull error in service ps",
        || {
            let ps = ok(&lab, "n1", &["service", "ps", "--no-trunc", "web"]);
            (ps.contains("Rejected") && ps.contains("manifest unknown"))
                .then_some(ps.clone())
                .ok_or(ps)
        },
    );
    println!("pull: {ps}");
    eventually(Duration::from_secs(30), "the update paused", || {
        let state = ok(
            &lab,
            "n1",
            &[
                "service",
                "inspect",
                "--format",
                "{{.UpdateStatus.State}}",
                "web",
            ],
        );
        (state.trim() == "paused").then_some(()).ok_or(state)
    });
    let ps = ok(&lab, "n1", &["service", "ps", "web"]);
    assert!(
        ps.lines()
            .any(|l| l.contains("e2e/pulled:v1") && l.contains("Running")),
        "the old task no longer runs:\n{ps}"
    );
    drop(lab);
}
