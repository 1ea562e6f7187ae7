//! The seed's registry tutorial on a lab with an engine per node (issue 13's acceptance): a
//! `registry` service publishing 5000 with a named volume; an image pushed to it from outside
//! the cluster through a node's address:5000 (the mesh carries it to the task); a global service
//! running that image, which every node's engine pulls from its own `127.0.0.1:5000` (the
//! socket-level mesh); the registry's task killed, and its replacement still serving the image
//! from the volume.

use std::time::Duration;

use crate::support::{Lab, eventually, ok, stderr, stdout, words};

/// `skopeo ARGS` in the client's namespace: the push of the tutorial, from outside the cluster,
/// with the image the lab built on the host's dockerd.
fn skopeo(lab: &Lab, args: &[&str]) -> Result<String, String> {
    let mut cmd = vec!["skopeo"];
    cmd.extend_from_slice(args);
    let out = lab.exec("client", &cmd);
    if out.status.success() {
        Ok(stdout(&out))
    } else {
        Err(format!("skopeo {args:?}: {}", stderr(&out)))
    }
}

/// `ID NODE` of the service's tasks that run.
fn running(lab: &Lab, service: &str) -> Vec<(String, String)> {
    ok(
        lab,
        "n1",
        &[
            "service",
            "ps",
            "--no-trunc",
            "--filter",
            "desired-state=running",
            service,
        ],
    )
    .lines()
    .skip(1)
    .filter_map(|l| {
        // ID NAME IMAGE NODE DESIRED CURRENT...: the current state is the sixth word.
        let w = words(l);
        (w.get(5) == Some(&"Running")).then(|| (w[0].to_owned(), w[3].to_owned()))
    })
    .collect()
}

#[test]
fn registry_tutorial_pushes_through_the_mesh_and_every_node_pulls() {
    let lab = Lab::up("registry", 143, 3, 1);
    let n1 = lab.ns("n1");
    ok(
        &lab,
        "n1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "registry",
            "-p",
            "5000:5000",
            // A local volume lives on one node: its replacement task must land there too.
            "--constraint",
            &format!("node.hostname=={n1}"),
            "--mount",
            "type=volume,source=registry,target=/var/lib/registry",
            &lab.image_named("registry"),
        ],
    );
    // Through n2, which runs no registry task.
    let via = format!("{}:5000", lab.node_addr(2));
    eventually(
        Duration::from_mins(1),
        "the registry answers through n2",
        || {
            skopeo(
                &lab,
                &[
                    "list-tags",
                    "--tls-verify=false",
                    &format!("docker://{via}/app"),
                ],
            )
            .map(|_| ())
            .or_else(|e| {
                // An empty registry answers a tag list of an unknown name with 404 (or
                // NAME_UNKNOWN): either way, it answered through the mesh.
                if e.contains("NAME_UNKNOWN") || e.contains("name unknown") || e.contains("404") {
                    Ok(())
                } else {
                    Err(e)
                }
            })
        },
    );
    skopeo(
        &lab,
        &[
            "copy",
            "-q",
            "--dest-tls-verify=false",
            "docker-daemon:meshd/busybox:latest",
            &format!("docker://{via}/app:v1"),
        ],
    )
    .expect("push through the mesh");

    // Every node's engine pulls it from its own 127.0.0.1:5000, as in the tutorial.
    ok(
        &lab,
        "n1",
        &[
            &words("service create -d --name app --mode global")[..],
            &["127.0.0.1:5000/app:v1", "sleep", "3600"],
        ]
        .concat(),
    );
    eventually(
        Duration::from_mins(2),
        "app runs on the three nodes",
        || {
            if running(&lab, "app").len() == 3 {
                Ok(())
            } else {
                Err(ok(&lab, "n1", &["service", "ps", "--no-trunc", "app"]))
            }
        },
    );
    for i in 1..=3 {
        let out = lab.docker(i, &["image", "ls", "--format", "{{.Repository}}"]);
        let images = stdout(&out);
        assert!(
            images.lines().any(|r| r == "127.0.0.1:5000/app"),
            "n{i} did not pull the image: {images} {}",
            stderr(&out)
        );
    }

    // The registry's task dies; the new one (same node, same volume) still has the image.
    let before = running(&lab, "registry");
    assert_eq!(before.len(), 1, "{before:?}");
    let container = lab
        .docker_out(1, &["ps", "-q", "--filter", "label=meshd.task"])
        .lines()
        .find(|id| {
            lab.docker_out(1, &["inspect", "-f", "{{.Name}}", id])
                .contains("/registry.")
        })
        .map(str::to_owned)
        .expect("the registry's container on n1");
    let killed = lab.docker(1, &["kill", &container]);
    assert!(killed.status.success(), "docker kill: {}", stderr(&killed));
    eventually(
        Duration::from_mins(1),
        "a new registry task serves the pushed image",
        || {
            let now = running(&lab, "registry");
            if now.is_empty() || now == before {
                return Err(format!("registry tasks: {now:?}"));
            }
            skopeo(
                &lab,
                &[
                    "inspect",
                    "--tls-verify=false",
                    &format!("docker://{via}/app:v1"),
                ],
            )
            .map(|_| ())
        },
    );
}
