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
