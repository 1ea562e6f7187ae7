//! meshctl prints what docker prints (issue 20, item 2) on a lab of a manager and a worker:
//! Go templates for `--format`, docker's `--filter` (a bad one prints nothing), `node ps`,
//! `node inspect self`, `version`, `info`'s `Swarm:` section, and a usage error's exit 125.

use std::time::Duration;

use crate::support::{Lab, eventually, fails, meshctl, ok, stderr, stdout, words};

/// The lines of `text`, sorted (the order of a list is not what these checks are about).
fn sorted_lines(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text.lines().map(str::to_owned).collect();
    v.sort();
    v
}

#[test]
fn meshctl_formats_and_filters_as_docker() {
    let lab = Lab::up("format", 222, 2, 1);
    let image = lab.image();
    ok(
        &lab,
        "n1",
        &words(&format!(
            "service create -d --name web --replicas 2 --label tier=front {image} httpd -f -p 80 -h /"
        )),
    );
    ok(
        &lab,
        "n1",
        &words(&format!(
            "service create -d --name db --mode global --label tier=back {image} httpd -f -p 80 -h /"
        )),
    );

    // `--format` is a Go template over docker's fields.
    eventually(Duration::from_mins(2), "both services converged", || {
        let out = ok(
            &lab,
            "n1",
            &["service", "ls", "--format", "{{.Name}} {{.Replicas}}"],
        );
        (sorted_lines(&out) == ["db 2/2", "web 2/2"])
            .then_some(())
            .ok_or(out)
    });
    let table = ok(
        &lab,
        "n1",
        &["service", "ls", "--format", "table {{.Name}}\\t{{.Mode}}"],
    );
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "NAME      MODE", "{table}");
    assert_eq!(
        sorted_lines(&lines[1..].join("\n")),
        ["db        global", "web       replicated"]
    );
    let json = ok(
        &lab,
        "n1",
        &["service", "ls", "--format", "json", "--filter", "name=web"],
    );
    let row: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON row");
    assert_eq!(row["Name"], "web", "{json}");
    assert_eq!(row["Mode"], "replicated", "{json}");

    // `--filter` as docker's: name by prefix, labels, mode; a bad one prints nothing.
    let only = |args: &[&str]| {
        let mut a = vec!["service", "ls", "--format", "{{.Name}}"];
        a.extend_from_slice(args);
        sorted_lines(&ok(&lab, "n1", &a))
    };
    assert_eq!(only(&["--filter", "name=web"]), ["web"]);
    assert_eq!(only(&["--filter", "label=tier=back"]), ["db"]);
    assert_eq!(
        only(&["-f", "mode=global", "-f", "mode=replicated"]),
        ["db", "web"]
    );
    assert!(only(&["--filter", "name=nope"]).is_empty());
    for (filter, want) in [
        ("mode=sideways", "Invalid filter: 'mode'='sideways'"),
        ("colour=red", "Invalid filter 'colour'"),
    ] {
        let out = meshctl(&lab, "n1", &["service", "ls", "--filter", filter]);
        assert_eq!(out.status.code(), Some(1), "{filter}");
        assert!(
            stdout(&out).is_empty(),
            "{filter}: printed {}",
            stdout(&out)
        );
        assert_eq!(
            stderr(&out).trim(),
            format!("Error response from daemon: {want}")
        );
    }

    // Inspect templates run on docker's JSON.
    assert_eq!(
        ok(
            &lab,
            "n1",
            &[
                "service",
                "inspect",
                "--format",
                "{{.Spec.Name}} {{json .Spec.Mode}}",
                "web"
            ]
        )
        .trim(),
        r#"web {"Replicated":{"Replicas":2}}"#
    );
    let manager = ok(
        &lab,
        "n1",
        &[
            "node",
            "inspect",
            "self",
            "--format",
            "{{.Description.Hostname}}",
        ],
    );
    let manager = manager.trim().to_owned();
    assert_eq!(
        ok(
            &lab,
            "n1",
            &[
                "node",
                "ls",
                "--filter",
                "role=manager",
                "--format",
                "{{.Hostname}} {{.Self}}"
            ]
        )
        .trim(),
        format!("{manager} true")
    );
    let worker = ok(
        &lab,
        "n1",
        &[
            "node",
            "ls",
            "-f",
            "role=worker",
            "--format",
            "{{.Hostname}}",
        ],
    );
    let worker = worker.trim().to_owned();
    assert_ne!(worker, manager);

    // `node ps`: this node's tasks by default, another's by name; each task of db runs on one.
    for (args, host) in [
        (vec!["node", "ps"], &manager),
        (vec!["node", "ps", &worker], &worker),
    ] {
        let mut a = args.clone();
        a.extend_from_slice(&[
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Node}} {{.Name}}",
        ]);
        let out = ok(&lab, "n1", &a);
        let rows = sorted_lines(&out);
        assert!(
            rows.iter().all(|r| r.starts_with(&format!("{host} "))),
            "{args:?}: {out}"
        );
        assert!(rows.iter().any(|r| r.contains(" db.")), "{args:?}: {out}");
    }
    let ps = ok(&lab, "n1", &["node", "ps"]);
    assert!(ps.starts_with("ID "), "{ps}");
    assert!(
        words(ps.lines().next().unwrap_or_default()).contains(&"DESIRED"),
        "{ps}"
    );

    // `version` and `info`.
    let version = ok(&lab, "n1", &["version"]);
    assert!(version.starts_with("Client:\n Version:"), "{version}");
    assert!(
        version.contains("\nServer:\n Engine:\n  Version:"),
        "{version}"
    );
    let info = ok(&lab, "n1", &["info"]);
    for want in [
        " Swarm: active\n",
        "  Is Manager: true\n",
        "  Managers: 1\n",
        "  Nodes: 2\n",
    ] {
        assert!(info.contains(want), "{want:?} missing from:\n{info}");
    }
    let on_worker = ok(
        &lab,
        "n2",
        &[
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
        ],
    );
    assert_eq!(on_worker.trim(), "active false");

    // A usage error: docker's exit code and pointer to the help, nothing done.
    let out = meshctl(&lab, "n1", &["service", "rm", "--bogus", "web"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).ends_with("See 'meshctl service rm --help'.\n"),
        "{}",
        stderr(&out)
    );
    let err = fails(&lab, "n1", &["service", "ls", "--filter", "name"]);
    assert!(
        err.contains("bad format of filter (expected name=value)"),
        "{err}"
    );
    assert_eq!(only(&["--filter", "name=web"]), ["web"]);
}
