//! Pulls and health checks (issue 13) on lab swarms whose nodes have their own engines and pull
//! from the lab registry.
//!
//! - A task whose container has a health check (`--health-cmd`) takes no traffic until Docker
//!   calls it healthy. One that never turns healthy is never answered through the routing mesh
//!   and is replaced again and again (failed with moby's `dockerexec: unhealthy container`); one
//!   that turns healthy after a while is `starting` until then, and then serves.
//! - `service create` pins the image to the registry's digest; an image only a node's engine has
//!   keeps its tag with docker's warning; an update to a tag the registry lacks is pulled in
//!   `preparing`, rejected with the registry's words, and pauses the update while the other slot
//!   keeps its old task.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Lab, eventually, meshctl, ok, stderr, stdout};

/// The task's web server, answering `GET /` with the container's hostname; `then` runs beside it.
fn httpd(then: &str) -> String {
    format!(
        "mkdir -p /www; hostname | tr -d '\\n' > /www/index.html; ({then}) & exec httpd -f -p 80 -h /www"
    )
}

/// Healthy once `/tmp/healthy` exists: checked every second, unhealthy after two failures past
/// an eight-second start period.
const HEALTH: [&str; 10] = [
    "--health-cmd",
    "test -e /tmp/healthy",
    "--health-interval",
    "1s",
    "--health-timeout",
    "1s",
    "--health-retries",
    "2",
    "--health-start-period",
    "8s",
];

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
    let lab = Lab::up("health", 213, 2, 1);
    let image = lab.image();
    let create = |name: &str, port: &str, then: &str| {
        let script = httpd(then);
        let args = [
            &["service", "create", "-d", "--name", name, "-p", port][..],
            &HEALTH[..],
            &[&image, "sh", "-c", &script],
        ]
        .concat();
        ok(&lab, "n1", &args);
    };

    // Turns healthy after a few seconds: `starting` until then, then running and serving.
    create("slow", "8091:80", "sleep 4; touch /tmp/healthy");
    eventually(Duration::from_mins(1), "slow's task starting", || {
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
    while started.elapsed() < Duration::from_mins(1) {
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
    let answers = ask(&lab, &lab.node_addr(1), 8091, 4);
    assert!(answers.iter().all(|a| !a.starts_with("ERR")), "{answers:?}");

    // Two healthy tasks; one turns unhealthy: it leaves the backends and is replaced while a
    // client loop through the mesh sees no error.
    ok(&lab, "n1", &["service", "scale", "-d", "slow=2"]);
    eventually(Duration::from_mins(1), "slow's two tasks running", || {
        let ps = ok(
            &lab,
            "n1",
            &["service", "ps", "--filter", "desired-state=running", "slow"],
        );
        // Desired and current state both `Running` (a task still `Starting` has one).
        (ps.lines()
            .filter(|l| l.matches(" Running ").count() == 2)
            .count()
            == 2)
            .then_some(())
            .ok_or(ps)
    });
    let before = task_ids(&lab, "slow");
    let sick = lab
        .docker_all(&["ps", "-q", "--filter", "label=meshd.task"])
        .lines()
        .find(|id| {
            lab.docker_out(lab.engine_of(id), &["inspect", "-f", "{{.Name}}", id])
                .contains("/slow.")
        })
        .map(str::to_owned)
        .expect("a container of slow");
    let node = lab.engine_of(&sick);
    let turned = lab.docker(node, &["exec", &sick, "rm", "/tmp/healthy"]);
    assert!(turned.status.success(), "{}", stderr(&turned));
    let started = Instant::now();
    let mut answers = Vec::new();
    while started.elapsed() < Duration::from_secs(20) {
        answers.extend(ask(&lab, &lab.node_addr(1), 8091, 5));
        if task_ids(&lab, "slow").len() > before.len()
            && started.elapsed() > Duration::from_secs(10)
        {
            break;
        }
    }
    let errors: Vec<&String> = answers.iter().filter(|a| a.starts_with("ERR")).collect();
    println!(
        "health: {} requests while a task turned unhealthy, {} errors",
        answers.len(),
        errors.len()
    );
    assert!(errors.is_empty(), "a client saw errors: {errors:?}");
    assert!(
        task_ids(&lab, "slow").len() > before.len(),
        "the unhealthy task was not replaced:\n{}",
        ok(&lab, "n1", &["service", "ps", "--no-trunc", "slow"])
    );
}

#[test]
fn images_are_pinned_pulled_and_a_missing_one_pauses_the_update() {
    let lab = Lab::up("pull", 216, 2, 1);
    let image = format!("{}:latest", lab.image());

    // Pinned to the registry's digest, pulled by the nodes that run it.
    let created = meshctl(
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
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(
        !stderr(&created).contains("could not be accessed"),
        "{}",
        stderr(&created)
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

    // An image only n1's engine has (pulled from the lab registry, tagged there): kept as a tag, with docker's warning on
    // stderr. Constrained to n1, so no other node looks for it.
    let local = format!("meshd/local-only-{}:v1", std::process::id());
    let by_digest = pinned.trim().replace(":latest@", "@");
    let pulled = lab.docker(1, &["pull", &by_digest]);
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    let tagged = lab.docker(1, &["tag", &by_digest, &local]);
    assert!(tagged.status.success(), "{}", stderr(&tagged));
    let hostname = format!("node.hostname=={}", lab.ns("n1"));
    let created = meshctl(
        &lab,
        "n1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "local",
            "--constraint",
            &hostname,
            &local,
            "sleep",
            "600",
        ],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(
        stderr(&created).contains(&format!(
            "image {local} could not be accessed on a registry to record its digest"
        )),
        "{}",
        stderr(&created)
    );

    // An update to a tag the registry does not have: pulled (and retried) in `preparing`,
    // rejected with the registry's words, the update paused after the first slot, the other
    // slot's old task still running.
    let missing = image.replace(":latest", ":nope");
    ok(
        &lab,
        "n1",
        &["service", "update", "-d", "--image", &missing, "web"],
    );
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
        // Before the update starts the service has no UpdateStatus: an error, as docker's.
        let state = stdout(&meshctl(
            &lab,
            "n1",
            &[
                "service",
                "inspect",
                "--format",
                "{{.UpdateStatus.State}}",
                "web",
            ],
        ));
        (state.trim() == "paused").then_some(()).ok_or(state)
    });
    let ps = ok(&lab, "n1", &["service", "ps", "web"]);
    assert!(
        ps.lines()
            .any(|l| l.contains(&format!("{image}@sha256:")) && l.contains("Running")),
        "the old task no longer runs:\n{ps}"
    );

    // The same update with `--update-failure-action rollback`: rolled back to the pinned image.
    ok(
        &lab,
        "n1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "api",
            "--update-failure-action",
            "rollback",
            &image,
            "sleep",
            "600",
        ],
    );
    eventually(Duration::from_mins(1), "api running", || {
        let ps = ok(&lab, "n1", &["service", "ps", "api"]);
        (ps.matches("Running").count() == 2).then_some(()).ok_or(ps)
    });
    ok(
        &lab,
        "n1",
        &["service", "update", "-d", "--image", &missing, "api"],
    );
    eventually(Duration::from_mins(2), "the update rolled back", || {
        // Before the update starts the service has no UpdateStatus: an error, as docker's.
        let state = stdout(&meshctl(
            &lab,
            "n1",
            &[
                "service",
                "inspect",
                "--format",
                "{{.UpdateStatus.State}}",
                "api",
            ],
        ));
        (state.trim() == "rollback_completed")
            .then_some(())
            .ok_or(state)
    });
    let image_now = ok(
        &lab,
        "n1",
        &[
            "service",
            "inspect",
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
            "api",
        ],
    );
    assert!(
        image_now.trim().starts_with(&format!("{image}@sha256:")),
        "not back on the pinned image: {image_now}"
    );
    eventually(Duration::from_mins(1), "api running its old image", || {
        let ps = ok(
            &lab,
            "n1",
            &["service", "ps", "--filter", "desired-state=running", "api"],
        );
        ps.lines()
            .any(|l| l.contains(&format!("{image}@sha256:")) && l.contains(" Running "))
            .then_some(())
            .ok_or(ps)
    });
}
