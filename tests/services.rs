//! Services (issue 4) on lab swarms, as real Docker containers of `meshd/busybox`: replicated
//! services spread and converge, scale down leaving history, global services follow the nodes,
//! constraints hold (or leave tasks pending with the reason), drain and node loss move tasks,
//! failed tasks are replaced per the restart policy, bad input changes nothing, `service rm`
//! removes every container, and `service logs` brings lines from workers.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Lab, MESHCTL, eventually, fails, ok, stderr, words};

/// Runs `meshctl ARGS` on n1 (which waits for convergence) and returns its stdout, killing it
/// after `within` (a hung progress display fails the test instead of the suite).
fn ok_within(lab: &Lab, args: &[&str], within: Duration) -> String {
    let mut child = Command::new(MESHCTL)
        .args([
            "lab",
            "exec",
            "--prefix",
            &lab.prefix,
            "n1",
            "--",
            "meshctl",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run meshctl lab exec");
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for meshctl") {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    match status {
        Some(s) if s.success() => out,
        Some(s) => panic!("meshctl {args:?} failed ({s}):\nstdout: {out}\nstderr: {err}"),
        None => panic!(
            "meshctl {args:?} did not finish within {within:?}:\nstdout: {out}\nstderr: {err}"
        ),
    }
}

/// A table as meshctl prints it, as rows of column name to cell (columns are found from the
/// header, whose names are separated by at least two spaces).
fn table(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let h: Vec<char> = header.chars().collect();
    let mut starts = vec![0];
    let mut i = 0;
    while i < h.len() {
        if h[i] == ' ' && h.get(i + 1) == Some(&' ') {
            while i < h.len() && h[i] == ' ' {
                i += 1;
            }
            starts.push(i);
        }
        i += 1;
    }
    let cell = |row: &[char], c: usize| -> String {
        let from = starts[c].min(row.len());
        let to = starts
            .get(c + 1)
            .copied()
            .unwrap_or(row.len())
            .min(row.len());
        row[from..to].iter().collect::<String>().trim().to_owned()
    };
    let names: Vec<String> = (0..starts.len()).map(|c| cell(&h, c)).collect();
    lines
        .map(|l| {
            let row: Vec<char> = l.chars().collect();
            names
                .iter()
                .enumerate()
                .map(|(c, n)| (n.clone(), cell(&row, c)))
                .collect()
        })
        .collect()
}

/// `service ps` rows (all of them, `--no-trunc`).
fn ps(lab: &Lab, service: &str) -> Vec<BTreeMap<String, String>> {
    table(&ok(lab, "n1", &["service", "ps", "--no-trunc", service]))
}

/// The rows of tasks meant to run and running, by node.
fn running_by_node(rows: &[BTreeMap<String, String>]) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for r in rows {
        if r["DESIRED STATE"] == "Running" && r["CURRENT STATE"].starts_with("Running") {
            *by.entry(r["NODE"].clone()).or_default() += 1;
        }
    }
    by
}

/// `service ls` as NAME -> (MODE, REPLICAS).
fn ls(lab: &Lab) -> BTreeMap<String, (String, String)> {
    table(&ok(lab, "n1", &["service", "ls"]))
        .into_iter()
        .map(|r| {
            (
                r["NAME"].clone(),
                (r["MODE"].clone(), r["REPLICAS"].clone()),
            )
        })
        .collect()
}

/// Containers of a service (running or not), from the nodes' engines themselves.
fn containers_of(lab: &Lab, service_id: &str, running_only: bool) -> Vec<String> {
    let label = format!("label=meshd.service={service_id}");
    let mut args = vec![
        "ps",
        "-a",
        "--filter",
        label.as_str(),
        "--format",
        "{{.Names}}",
    ];
    if running_only {
        args.extend(["--filter", "status=running"]);
    }
    lab.docker_all(&args).lines().map(str::to_owned).collect()
}

/// Containers of this lab's nodes, from their engines themselves.
fn lab_containers(lab: &Lab) -> Vec<String> {
    lab.docker_all(&[
        "ps",
        "-a",
        "--format",
        "{{.Names}} {{.Label \"meshd.hostname\"}}",
    ])
    .lines()
    .filter(|l| l.contains(&format!(" {}-", lab.prefix)))
    .map(str::to_owned)
    .collect()
}

fn service_id(lab: &Lab, name: &str) -> String {
    ok(
        lab,
        "n1",
        &["service", "inspect", "--format", "{{.ID}}", name],
    )
    .trim()
    .to_owned()
}

/// A task that stops at once when asked (PID 1 only handles SIGTERM with a trap).
const POLITE: &str =
    "trap 'exit 0' TERM; echo hello from $(hostname); while true; do sleep 1; done";

/// `--replicas 5` on 3 nodes spreads 2/2/1 and converges with Docker's progress display;
/// `service logs` brings every task's lines, workers' included; `scale web=1` shuts four down
/// and they stay as history; bad input is refused with what was wrong and creates nothing;
/// `service rm` removes every container of the service.
#[test]
fn services_replicated_spread_scale_logs_bad_input_and_rm() {
    let started = Instant::now();
    let lab = Lab::up("svcrep", 170, 3, 1);
    let create_line = format!(
        "service create --name web --replicas 5 --update-monitor 2s {}",
        lab.image()
    );
    let create = words(&create_line);
    let out = ok_within(
        &lab,
        &[create, vec!["sh", "-c", POLITE]].concat(),
        Duration::from_mins(1),
    );
    let id = out.lines().next().unwrap_or_default().to_owned();
    assert_eq!(id.len(), 25, "service create prints the id first:\n{out}");
    assert_eq!(service_id(&lab, "web"), id);
    for want in [
        "overall progress: 5 out of 5 tasks",
        &format!("5/5: running   [{}>]", "=".repeat(50)),
        "verify: Waiting 2 seconds to verify that tasks are stable...",
        "verify: Service converged",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    assert_eq!(ls(&lab)["web"], ("replicated".into(), "5/5".into()));
    let spread: Vec<usize> = running_by_node(&ps(&lab, "web")).into_values().collect();
    let mut sorted = spread.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [1, 2, 2], "5 replicas on 3 nodes: {spread:?}");
    assert_eq!(containers_of(&lab, &id, true).len(), 5);

    // Logs come from every node through its agent (n2 and n3 are workers).
    let logs = eventually(Duration::from_secs(10), "a hello from every task", || {
        let text = ok(&lab, "n1", &words("service logs web"));
        let hellos = text
            .lines()
            .filter(|l| l.contains("    | hello from "))
            .count();
        (hellos == 5).then_some(text.clone()).ok_or(text)
    });
    for i in 1..=3 {
        let host = format!("@{}", lab.ns(&format!("n{i}")));
        assert!(logs.contains(&host), "no lines from {host}:\n{logs}");
    }
    let first = logs.lines().next().unwrap();
    let (prefix, _) = first.split_once("    | ").unwrap();
    let (task, node) = prefix.split_once('@').unwrap();
    let parts: Vec<&str> = task.split('.').collect();
    assert!(
        parts.len() == 3 && parts[0] == "web" && parts[2].len() == 12 && !node.is_empty(),
        "Docker's prefix SERVICE.SLOT.TASK@NODE: {first:?}"
    );
    let tail = ok(&lab, "n1", &words("service logs --tail 1 web"));
    assert_eq!(tail.lines().count(), 5, "one line per task: {tail}");

    // Scale down: four tasks shut down, still listed.
    let out = ok_within(&lab, &words("service scale web=1"), Duration::from_mins(1));
    assert!(out.starts_with("web scaled to 1\n"), "{out}");
    assert!(out.contains("overall progress: 1 out of 1 tasks"), "{out}");
    eventually(Duration::from_secs(20), "4 tasks shut down", || {
        let rows = ps(&lab, "web");
        let shut = rows
            .iter()
            .filter(|r| {
                r["DESIRED STATE"] == "Shutdown" && r["CURRENT STATE"].starts_with("Shutdown")
            })
            .count();
        let running = running_by_node(&rows).values().sum::<usize>();
        (rows.len() == 5 && shut == 4 && running == 1)
            .then_some(())
            .ok_or(format!("{rows:#?}"))
    });
    eventually(Duration::from_secs(10), "one container running", || {
        let c = containers_of(&lab, &id, true);
        (c.len() == 1).then_some(()).ok_or(format!("{c:?}"))
    });
    assert_eq!(ls(&lab)["web"].1, "1/1");

    // Bad input changes nothing.
    let ls_before = ok(&lab, "n1", &words("service ls"));
    let containers_before = lab_containers(&lab).len();
    for (line, want) in [
        (
            "service create --name x --constraint node.labels.zone=east meshd/busybox",
            "invalid constraint \"node.labels.zone=east\"",
        ),
        (
            "service create --name x --replicas -1 meshd/busybox",
            "invalid replicas value \"-1\"",
        ),
        (
            "service create --name x -p 80:99999 meshd/busybox",
            "invalid port",
        ),
        (
            "service create --name web meshd/busybox",
            "service web already exists",
        ),
        ("service ps nosuch", "no such service: nosuch"),
        ("service inspect nosuch", "no such service: nosuch"),
        ("service scale nosuch=2", "no such service: nosuch"),
        (
            "service update --replicas 2 nosuch",
            "no such service: nosuch",
        ),
        ("service rm nosuch", "no such service: nosuch"),
        ("service logs nosuch", "no such service: nosuch"),
    ] {
        // The lab's registry image: a bare name would make the node ask Docker Hub for a digest.
        let line = line.replace("meshd/busybox", &lab.image());
        let err = fails(&lab, "n1", &words(&line));
        assert!(err.contains(want), "{line}: {want:?} not in {err:?}");
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        ok(&lab, "n1", &words("service ls")),
        ls_before,
        "bad input changed the services"
    );
    assert_eq!(
        lab_containers(&lab).len(),
        containers_before,
        "bad input made containers"
    );

    // rm removes every container, history included.
    assert_eq!(ok(&lab, "n1", &words("service rm web")), "web\n");
    eventually(Duration::from_secs(20), "no container left", || {
        let c = containers_of(&lab, &id, false);
        c.is_empty().then_some(()).ok_or(format!("{c:?}"))
    });
    assert!(ls(&lab).is_empty());
    eprintln!("services_replicated: {:?}", started.elapsed());
}

/// A global service runs one task per node, and one more on a node that joins.
#[test]
fn services_global_runs_on_every_node_and_on_joiners() {
    let started = Instant::now();
    let lab = Lab::up("svcglob", 171, 4, 1);
    let n4 = lab.ns("n4");
    ok(&lab, "n4", &words("swarm leave"));
    ok(&lab, "n1", &words(&format!("node rm --force {n4}")));
    let create_line = format!(
        "service create -d --name agent --mode global {}",
        lab.image()
    );
    let create = words(&create_line);
    ok(&lab, "n1", &[create, vec!["sh", "-c", POLITE]].concat());
    eventually(
        Duration::from_secs(20),
        "one task on each of 3 nodes",
        || {
            let by = running_by_node(&ps(&lab, "agent"));
            (by.len() == 3 && by.values().all(|n| *n == 1) && !by.contains_key(&n4))
                .then_some(())
                .ok_or(format!("{by:?}"))
        },
    );
    assert_eq!(ls(&lab)["agent"], ("global".into(), "3/3".into()));

    let token = ok(&lab, "n1", &words("swarm join-token -q worker"));
    let manager = format!("{}:2377", lab.node_addr(1));
    ok(
        &lab,
        "n4",
        &words(&format!("swarm join --token {} {manager}", token.trim())),
    );
    eventually(
        Duration::from_secs(30),
        "a fourth task on the new node",
        || {
            let by = running_by_node(&ps(&lab, "agent"));
            (by.len() == 4 && by.get(&n4) == Some(&1))
                .then_some(())
                .ok_or(format!("{by:?}"))
        },
    );
    assert_eq!(ls(&lab)["agent"].1, "4/4");
    eprintln!("services_global: {:?}", started.elapsed());
}

/// Constraints on labels and roles hold; an unsatisfiable one leaves its task pending with the
/// reason in `service ps`; draining a node moves every task off it; a restarted meshd adopts its
/// running containers instead of starting others.
#[test]
fn services_constraints_hold_and_drain_moves_tasks() {
    let started = Instant::now();
    let lab = Lab::up("svccons", 172, 3, 1);
    let (n1, n2, n3) = (lab.ns("n1"), lab.ns("n2"), lab.ns("n3"));
    ok(
        &lab,
        "n1",
        &words(&format!("node update --label-add zone=east {n2}")),
    );
    let img = lab.image();
    let create = |flags: &str| {
        let line = format!("service create -d --stop-grace-period 1s {flags} {img} sleep 100000");
        ok(&lab, "n1", &words(&line));
    };
    create("--name east --replicas 2 --constraint node.labels.zone==east");
    create("--name mgr --replicas 2 --constraint node.role==manager");
    create("--name mars --constraint node.labels.zone==mars");
    create("--name spread --replicas 3");
    eventually(
        Duration::from_secs(20),
        "constrained tasks where they belong",
        || {
            let east = running_by_node(&ps(&lab, "east"));
            let mgr = running_by_node(&ps(&lab, "mgr"));
            let spread = running_by_node(&ps(&lab, "spread"));
            (east == BTreeMap::from([(n2.clone(), 2)])
                && mgr == BTreeMap::from([(n1.clone(), 2)])
                && spread.len() == 3)
                .then_some(())
                .ok_or(format!("east {east:?} mgr {mgr:?} spread {spread:?}"))
        },
    );
    let mars = ps(&lab, "mars");
    assert_eq!(mars.len(), 1, "{mars:#?}");
    assert!(mars[0]["CURRENT STATE"].starts_with("Pending"), "{mars:#?}");
    assert_eq!(mars[0]["NODE"], "");
    assert_eq!(
        mars[0]["ERROR"],
        "\"no suitable node (scheduling constraints not satisfied on 3 nodes)\""
    );
    assert_eq!(ls(&lab)["mars"].1, "0/1");

    ok(
        &lab,
        "n1",
        &words(&format!("node update --availability drain {n3}")),
    );
    eventually(
        Duration::from_secs(30),
        "nothing left on the drained node",
        || {
            let spread = ps(&lab, "spread");
            let by = running_by_node(&spread);
            let on_n3 = format!("label=meshd.hostname={n3}");
            let running_on_n3 =
                lab.docker_on(&n3, &["ps", "--filter", &on_n3, "--format", "{{.Names}}"]);
            let history_on_n3 = spread.iter().any(|r| {
                r["NODE"] == n3
                    && r["NAME"].starts_with("\\_ ")
                    && r["CURRENT STATE"].starts_with("Shutdown")
            });
            (by.values().sum::<usize>() == 3
                && !by.contains_key(&n3)
                && running_on_n3.trim().is_empty()
                && history_on_n3)
                .then_some(())
                .ok_or(format!("{spread:#?}\nrunning on n3: {running_on_n3}"))
        },
    );
    assert_eq!(
        running_by_node(&ps(&lab, "east")),
        BTreeMap::from([(n2.clone(), 2)])
    );

    // A restarted meshd adopts its running containers: same tasks, same containers, no new ones.
    let east_containers = || {
        let mut c = lab
            .docker_on(
                &n2,
                &[
                    "ps",
                    "-a",
                    "--filter",
                    &format!("label=meshd.hostname={n2}"),
                    "--format",
                    "{{.ID}} {{.Status}}",
                ],
            )
            .lines()
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>();
        c.sort();
        c
    };
    let before = east_containers();
    let tasks_before: Vec<String> = ps(&lab, "east").iter().map(|r| r["ID"].clone()).collect();
    lab_ok(&lab, "restart n2");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        east_containers(),
        before,
        "the restarted agent changed its containers"
    );
    let rows = ps(&lab, "east");
    assert_eq!(
        rows.iter().map(|r| r["ID"].clone()).collect::<Vec<_>>(),
        tasks_before
    );
    assert!(
        rows.iter()
            .all(|r| r["CURRENT STATE"].starts_with("Running")),
        "{rows:#?}"
    );
    eprintln!("services_constraints: {:?}", started.elapsed());
}

/// A task whose command exits 1 is replaced per the restart policy (two restarts, then no more),
/// every attempt visible as history; a node whose meshd dies has its tasks moved once it is
/// marked Down, and stops their containers when it comes back; killing a worker's meshd and its
/// containers moves its tasks elsewhere too.
#[test]
fn services_failed_tasks_are_replaced_and_lost_nodes_rescheduled() {
    let started = Instant::now();
    let lab = Lab::up("svcfail", 173, 3, 1);
    let create_line = format!(
        "service create -d --name crash --restart-delay 500ms --restart-max-attempts 2 {}",
        lab.image()
    );
    let create = words(&create_line);
    ok(
        &lab,
        "n1",
        &[create, vec!["sh", "-c", "sleep 1; exit 1"]].concat(),
    );
    let rows = eventually(Duration::from_secs(30), "three failed attempts", || {
        let rows = ps(&lab, "crash");
        let failed = rows
            .iter()
            .filter(|r| {
                r["CURRENT STATE"].starts_with("Failed")
                    && r["ERROR"] == "\"task: non-zero exit (1)\""
                    && r["DESIRED STATE"] == "Shutdown"
            })
            .count();
        (rows.len() == 3 && failed == 3)
            .then_some(rows.clone())
            .ok_or(format!("{rows:#?}"))
    });
    assert_eq!(rows[0]["NAME"], "crash.1");
    assert_eq!(rows[1]["NAME"], "\\_ crash.1");
    assert_eq!(rows[2]["NAME"], "\\_ crash.1");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        ps(&lab, "crash").len(),
        3,
        "no restart past --restart-max-attempts"
    );
    assert_eq!(ls(&lab)["crash"].1, "0/1");

    let (n2, n3) = (lab.ns("n2"), lab.ns("n3"));
    let keep = format!(
        "service create -d --name keep --replicas 3 --stop-grace-period 1s {} sleep 100000",
        lab.image()
    );
    ok(&lab, "n1", &words(&keep));
    let rows = eventually(Duration::from_secs(20), "one task per node", || {
        let rows = ps(&lab, "keep");
        let by = running_by_node(&rows);
        (by.len() == 3)
            .then_some(rows.clone())
            .ok_or(format!("{by:?}"))
    });

    // n2's meshd dies, its container lives on: once n2 is Down its task runs elsewhere, and
    // when n2 comes back its agent stops the container of the task that moved away.
    let on_n2 = rows.iter().find(|r| r["NODE"] == n2).unwrap()["ID"].clone();
    lab_ok(&lab, "stop --kill n2");
    eventually(
        Duration::from_secs(30),
        "n2's task running elsewhere",
        || {
            let rows = ps(&lab, "keep");
            let by = running_by_node(&rows);
            (by.values().sum::<usize>() == 3 && !by.contains_key(&n2))
                .then_some(())
                .ok_or(format!("{rows:#?}"))
        },
    );
    let task_filter = format!("label=meshd.task={on_n2}");
    let running = || lab.docker_on(&n2, &["ps", "-q", "--filter", &task_filter]);
    assert!(
        !running().trim().is_empty(),
        "the container ran on while meshd was dead"
    );
    lab_ok(&lab, "start n2");
    eventually(
        Duration::from_secs(20),
        "n2 stopped the moved task's container",
        || {
            let r = running();
            r.trim().is_empty().then_some(()).ok_or(r)
        },
    );

    // n3's meshd and containers die: its task moves once n3 is Down.
    let rows = eventually(Duration::from_secs(20), "a task on n3", || {
        let rows = ps(&lab, "keep");
        running_by_node(&rows)
            .contains_key(&n3)
            .then_some(rows.clone())
            .ok_or(format!("{rows:#?}"))
    });
    let on_n3 = rows
        .iter()
        .find(|r| r["NODE"] == n3 && r["DESIRED STATE"] == "Running")
        .unwrap()["ID"]
        .clone();
    lab_ok(&lab, "stop --kill n3");
    let ids = lab.docker_on(
        &n3,
        &[
            "ps",
            "-aq",
            "--filter",
            &format!("label=meshd.hostname={n3}"),
        ],
    );
    let mut rm = vec!["rm", "-f"];
    rm.extend(ids.split_whitespace());
    assert!(rm.len() > 2, "n3 ran containers");
    lab.docker_on(&n3, &rm);
    let killed = Instant::now();
    eventually(
        Duration::from_secs(30),
        "n3's task running elsewhere",
        || {
            let rows = ps(&lab, "keep");
            let by = running_by_node(&rows);
            let orphaned = rows
                .iter()
                .any(|r| r["ID"] == on_n3 && r["CURRENT STATE"].starts_with("Orphaned"));
            (by.values().sum::<usize>() == 3 && !by.contains_key(&n3) && orphaned)
                .then_some(())
                .ok_or(format!("{rows:#?}"))
        },
    );
    eprintln!("rescheduled {:?} after the kill", killed.elapsed());
    let nodes = table(&ok(&lab, "n1", &words("node ls")));
    let n3_row = nodes.iter().find(|r| r["HOSTNAME"] == n3).unwrap();
    assert_eq!(n3_row["STATUS"], "Down");
    assert_eq!(ls(&lab)["keep"].1, "3/3");
    eprintln!("services_failures: {:?}", started.elapsed());
}

/// `meshctl lab ARGS` (this lab's), which must succeed.
fn lab_ok(lab: &Lab, line: &str) {
    let out = lab.meshctl_lab(&words(line));
    assert!(out.status.success(), "lab {line}: {}", stderr(&out));
}

/// `service update --args` splits its value as a shell does (docker's `ShlexOpt`): a quoted
/// `sh -c` script stays one word, so the new tasks run it and the rolling update completes.
#[test]
fn services_update_args_are_split_as_a_shell_does() {
    let lab = Lab::up("svcargs", 174, 1, 1);
    ok(
        &lab,
        "n1",
        &words(&format!(
            "service create -d --name web -p 8080:80 {} httpd -f -p 80 -h /www",
            lab.image()
        )),
    );
    let script = "sh -c 'echo v2 > /index.html; httpd -f -p 80 -h /'";
    let out = ok(&lab, "n1", &["service", "update", "--args", script, "web"]);
    assert!(out.contains("verify: Service converged"), "{out}");
    let url = format!("http://{}:8080/", lab.node_addr(1));
    eventually(
        Duration::from_secs(30),
        "the updated task answers v2",
        || {
            let out = lab.exec("client", &["curl", "-sf", "-m", "1", &url]);
            let body = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            (body == "v2").then_some(()).ok_or(body)
        },
    );
    let err = fails(
        &lab,
        "n1",
        &["service", "update", "--args", "sh -c 'echo", "web"],
    );
    assert!(
        err.contains("--args") && err.contains("not closed"),
        "{err}"
    );
}
