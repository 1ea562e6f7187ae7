//! Mounts and health checks, from `meshctl` flags through the managers and the agent to the
//! task's container on the node's engine (issue 13, items 4 and 5, the spec half).

use std::process::Command;
use std::time::Duration;

use crate::support::{Lab, eventually, fails, host, ok};

/// The image the tasks run: the lab's busybox, which today's lab nodes share on the host's
/// dockerd (with an engine per node: `lab.image()`).
fn image(_lab: &Lab) -> String {
    "meshd/busybox".to_owned()
}

/// `docker ARGS` on the engine of the lab's one node: the host's dockerd, which today's lab
/// nodes share (with an engine per node: `lab.docker_out(1, args)`).
fn node_docker(_lab: &Lab, args: &[&str]) -> String {
    host("docker", args)
}

/// Removes a named volume when dropped; declared before the lab, so it goes after the lab's
/// containers.
struct VolumeGuard(String);

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f", &self.0])
            .output();
    }
}

/// The running container of `service`'s task, when there is exactly one.
fn running_container(lab: &Lab, service: &str) -> Result<String, String> {
    let id = ok(
        lab,
        "n1",
        &["service", "inspect", "--format", "{{.ID}}", service],
    );
    let label = format!("label=meshd.service={}", id.trim());
    let ids = node_docker(
        lab,
        &[
            "ps",
            "--filter",
            &label,
            "--filter",
            "status=running",
            "--format",
            "{{.ID}}",
        ],
    );
    match ids.split_whitespace().collect::<Vec<_>>()[..] {
        [one] => Ok(one.to_owned()),
        ref other => Err(format!("running containers of {service}: {other:?}")),
    }
}

fn inspect_container(lab: &Lab, container: &str, format: &str) -> String {
    node_docker(lab, &["inspect", "-f", format, container])
        .trim()
        .to_owned()
}

/// A bad `--mount` or health flag is refused with the accepted forms and makes nothing; a
/// service with a named volume, a tmpfs and a health check runs a container that has them all
/// (the volume made by the node's engine, the check reported `healthy` by Docker); `inspect`
/// shows them as Docker does; `update --mount-rm` and `--no-healthcheck` replace the task with
/// one without them, and a bad `--mount-add` changes nothing.
#[test]
fn mounts_and_health_checks_reach_the_task_container() {
    let volume = format!("{}-data", Lab::prefix_for("specs"));
    let _volume = VolumeGuard(volume.clone());
    let lab = Lab::up("specs", 214, 1, 1);
    let image = image(&lab);

    let err = fails(
        &lab,
        "n1",
        &[
            "service",
            "create",
            "--name",
            "bad",
            "--mount",
            "type=bind,source=data,target=/data",
            &image,
        ],
    );
    assert!(
        err.contains("absolute source path") && err.contains("type=volume|bind|tmpfs"),
        "{err}"
    );
    let err = fails(
        &lab,
        "n1",
        &[
            "service",
            "create",
            "--name",
            "bad",
            "--no-healthcheck",
            "--health-cmd",
            "true",
            &image,
        ],
    );
    assert!(err.contains("conflicts with --health-*"), "{err}");
    assert_eq!(ok(&lab, "n1", &["service", "ls", "-q"]).trim(), "");

    let mount = format!("type=volume,source={volume},target=/data,volume-label=made-by=specs");
    ok(
        &lab,
        "n1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--mount",
            &mount,
            "--mount",
            "type=tmpfs,target=/cache,tmpfs-size=1m",
            "--health-cmd",
            "test -f /tmp/ready",
            "--health-interval",
            "200ms",
            "--health-retries",
            "2",
            &image,
            "sh",
            "-c",
            "echo kept > /data/f; touch /tmp/ready; trap 'exit 0' TERM; while true; do sleep 1; done",
        ],
    );
    let container = eventually(Duration::from_mins(1), "web's task healthy", || {
        let c = running_container(&lab, "web")?;
        let health = inspect_container(&lab, &c, "{{.State.Health.Status}}");
        (health == "healthy")
            .then_some(c)
            .ok_or(format!("health {health:?}"))
    });
    let mounts = inspect_container(&lab, &container, "{{json .HostConfig.Mounts}}");
    assert!(
        mounts.contains(&format!("\"Source\":\"{volume}\""))
            && mounts.contains("\"Target\":\"/cache\"")
            && mounts.contains("\"Type\":\"tmpfs\""),
        "{mounts}"
    );
    assert_eq!(
        node_docker(
            &lab,
            &[
                "volume",
                "inspect",
                "-f",
                "{{index .Labels \"made-by\"}}",
                &volume
            ]
        )
        .trim(),
        "specs",
        "the node's engine made the volume with its labels"
    );
    let pretty = ok(&lab, "n1", &["service", "inspect", "--pretty", "web"]);
    for want in [
        format!(
            "Mounts:\n  Target = /data\n   Source = {volume}\n   ReadOnly = false\n   Type = volume\n"
        ),
        " Healthcheck:\n  Interval = 200ms\n  Retries = 2\n".to_owned(),
        "   Test = test -f /tmp/ready\n".to_owned(),
    ] {
        assert!(pretty.contains(&want), "{want:?} missing from:\n{pretty}");
    }
    let health = ok(
        &lab,
        "n1",
        &[
            "service",
            "inspect",
            "--format",
            "{{json .Spec.TaskTemplate.ContainerSpec.Healthcheck}}",
            "web",
        ],
    );
    assert_eq!(
        health.trim(),
        r#"{"Test":["CMD-SHELL","test -f /tmp/ready"],"Interval":200000000,"Retries":2}"#
    );

    let version = |lab: &Lab| {
        ok(
            lab,
            "n1",
            &[
                "service",
                "inspect",
                "--format",
                "{{.Version.Index}}",
                "web",
            ],
        )
    };
    let before = version(&lab);
    let err = fails(
        &lab,
        "n1",
        &[
            "service",
            "update",
            "-d",
            "--mount-add",
            "type=tmpfs,source=x,target=/t",
            "web",
        ],
    );
    assert!(err.contains("takes no source"), "{err}");
    assert_eq!(version(&lab), before, "a refused update changes nothing");

    ok(
        &lab,
        "n1",
        &[
            "service",
            "update",
            "-d",
            "--mount-rm",
            "/cache",
            "--no-healthcheck",
            "web",
        ],
    );
    let replaced = eventually(Duration::from_mins(1), "web's task replaced", || {
        let c = running_container(&lab, "web")?;
        (c != container)
            .then_some(c)
            .ok_or("the old task still runs".into())
    });
    let mounts = inspect_container(&lab, &replaced, "{{json .HostConfig.Mounts}}");
    assert!(
        mounts.contains(&volume) && !mounts.contains("/cache"),
        "{mounts}"
    );
    assert_eq!(
        inspect_container(&lab, &replaced, "{{json .Config.Healthcheck.Test}}"),
        r#"["NONE"]"#
    );
    // The volume kept what the first task wrote.
    let out = node_docker(&lab, &["exec", &replaced, "cat", "/data/f"]);
    assert_eq!(out.trim(), "kept");
}
