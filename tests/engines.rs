//! One Docker engine per lab node, and the lab registry (issue 13): each node's tasks are
//! containers of its own engine, pulled from the registry; the host's dockerd holds none; `lab
//! down` leaves no engine, namespace or state behind, also after an `up` killed half-way.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Lab, MESHCTL, eventually, host, ok, stdout, words};

fn namespaces_of(prefix: &str) -> Vec<String> {
    host("ip", &["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(str::to_owned)
        .collect()
}

/// Processes (not zombies) whose command line names the lab's state folder: meshds, dockerds,
/// containerds, shims, the registry.
fn processes_of(prefix: &str) -> Vec<String> {
    host("ps", &["-eo", "pid,stat,args"])
        .lines()
        .filter(|l| {
            l.contains(&format!("/meshd-lab/{prefix}/"))
                && !l.split_whitespace().nth(1).unwrap_or("").starts_with('Z')
        })
        .map(str::to_owned)
        .collect()
}

fn state_dir(prefix: &str) -> String {
    format!("/var/lib/meshd-lab/{prefix}")
}

/// The host dockerd's containers of a lab node (by the label meshd puts on every task).
fn host_containers(hostname: &str) -> String {
    host(
        "docker",
        &[
            "ps",
            "-aq",
            "--filter",
            &format!("label=meshd.hostname={hostname}"),
        ],
    )
}

fn assert_nothing_left(prefix: &str) {
    assert!(
        namespaces_of(prefix).is_empty(),
        "namespaces left: {:?}",
        namespaces_of(prefix)
    );
    assert!(
        processes_of(prefix).is_empty(),
        "processes left: {:?}",
        processes_of(prefix)
    );
    assert!(
        !Path::new(&state_dir(prefix)).exists(),
        "state left in {}",
        state_dir(prefix)
    );
}

/// Two nodes, a service of two replicas spread over them: each node's engine runs its own task
/// container, pulled from the lab registry; the host's dockerd runs none of them. The lab's
/// `meshd/registry` image runs and serves.
#[test]
fn engines_are_per_node_and_pull_from_the_lab_registry() {
    let lab = Lab::up("engines", 140, 2, 1);
    let ls = stdout(&lab.meshctl_lab(&["ls"]));
    for want in [
        lab.engine(1),
        lab.engine(2),
        lab.image(),
        lab.image_named("registry"),
        format!("198.18.{}.5:5000", lab.subnet_octet),
    ] {
        assert!(ls.contains(&want), "lab ls lacks {want}:\n{ls}");
    }

    // Each engine runs in its node's network namespace.
    for i in 1..=2 {
        let pid_file = format!("{}/n{i}/docker/dockerd.pid", state_dir(&lab.prefix));
        let pid = std::fs::read_to_string(&pid_file).expect("a node engine's pid file");
        let engine_net = std::fs::metadata(format!("/proc/{}/ns/net", pid.trim()))
            .expect("the engine's network namespace")
            .ino();
        let node_net = std::fs::metadata(format!("/run/netns/{}", lab.ns(&format!("n{i}"))))
            .expect("the node's namespace")
            .ino();
        assert_eq!(
            engine_net, node_net,
            "n{i}'s dockerd is not in its namespace"
        );
    }

    let create = format!(
        "service create -d --name web --replicas 2 --stop-grace-period 1s {} sleep 100000",
        lab.image()
    );
    ok(&lab, "n1", &words(&create));
    let filter = "label=meshd.task";
    let per_node: Vec<String> = eventually(
        Duration::from_mins(1),
        "one running task container in each node's engine",
        || {
            let c: Vec<String> = (1..=2)
                .map(|i| lab.docker_out(i, &["ps", "-q", "--filter", filter]))
                .collect();
            c.iter()
                .all(|ids| ids.split_whitespace().count() == 1)
                .then(|| c.clone())
                .ok_or(format!("{c:?}"))
        },
    );
    assert_ne!(
        per_node[0], per_node[1],
        "two engines list the same container"
    );
    for i in 1..=2 {
        let hostname = lab.ns(&format!("n{i}"));
        let labelled = lab.docker_out(
            i,
            &[
                "ps",
                "-q",
                "--filter",
                &format!("label=meshd.hostname={hostname}"),
            ],
        );
        assert_eq!(
            labelled,
            per_node[i - 1],
            "n{i}'s engine runs another node's task"
        );
        assert!(
            host_containers(&hostname).trim().is_empty(),
            "the host's dockerd holds a task of {hostname}"
        );
        // The image came from the lab registry, under its registry reference.
        let images = lab.docker_out(i, &["image", "ls", "--format", "{{.Repository}}"]);
        assert!(
            images.lines().any(|r| r == lab.image()),
            "n{i}'s engine has no {}: {images}",
            lab.image()
        );
    }

    // `meshd/registry`, pulled from the lab registry, serves the registry API in its node's
    // namespace (`lab down` removes the container with the engine's others).
    let run = lab.docker(
        2,
        &[
            "run",
            "-d",
            "--network",
            "host",
            "--name",
            "reg",
            &lab.image_named("registry"),
        ],
    );
    assert!(
        run.status.success(),
        "docker run meshd/registry: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let catalog = format!("http://{}:5000/v2/_catalog", lab.node_addr(2));
    eventually(
        Duration::from_secs(20),
        "meshd/registry answering on n2",
        || {
            let out = stdout(&lab.exec("client", &["curl", "-s", "-m", "2", &catalog]));
            out.contains("\"repositories\"").then_some(()).ok_or(out)
        },
    );

    let prefix = lab.prefix.clone();
    drop(lab);
    assert_nothing_left(&prefix);
    assert!(host_containers(&format!("{prefix}-n1")).trim().is_empty());
}

/// `lab up` killed once the node engines run: `lab down` finds them by their command line and
/// stops them, and removes everything else.
#[test]
fn engines_of_a_killed_up_are_removed_by_down() {
    let prefix = Lab::prefix_for("engkill");
    let mut child = Command::new(MESHCTL)
        .args([
            "lab",
            "up",
            "--nodes",
            "2",
            "--prefix",
            &prefix,
            "--subnet",
            "198.18.141.0/24",
        ])
        .spawn()
        .expect("spawn lab up");
    // Kill it as soon as both engines answer (their sockets exist), before the meshds run.
    let sockets = [1, 2].map(|i| format!("{}/n{i}/docker.sock", state_dir(&prefix)));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sockets.iter().all(|s| Path::new(s).exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().ok();
    child.wait().ok();
    let engines = processes_of(&prefix)
        .iter()
        .filter(|l| l.contains("dockerd"))
        .count();
    let out = Command::new(MESHCTL)
        .args(["lab", "down", "--prefix", &prefix])
        .output()
        .expect("run lab down");
    assert!(
        out.status.success(),
        "lab down: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_nothing_left(&prefix);
    assert_eq!(engines, 2, "both engines were running when up was killed");
}
