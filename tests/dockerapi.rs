//! Docker's Engine API on each node's meshd (issue 20, item 1): Debian's unmodified `docker` CLI
//! (`/usr/bin/docker`, API 1.41) pointed at a lab node's `meshd-docker.sock` drives the swarm
//! (info, nodes, services with their progress display, scale, rm, overlay networks, secrets,
//! configs, node updates, a stack), reaches the node's engine through the same socket (`ps`, `exec`,
//! `run --rm`), and gets moby's errors (a worker's 503, a 501 for a swarm call meshd does not
//! serve, a 400 naming an unsupported field). Each effect is checked through meshctl too.
//! The same API on TCP with mutual TLS admits only clients with a certificate of its CA.
//! (`docker exec -it` was also tried by hand under `script`, which gives it a terminal.)

use std::process::{Command, Output};
use std::time::Duration;

use crate::support::{Lab, client_get, eventually, ok, stderr, stdout, words};

const DOCKER: &str = "/usr/bin/docker";

/// `docker ARGS` against node `i`'s Engine API socket, killed after 120 s (a hung progress
/// display fails the test, not the suite).
fn docker(lab: &Lab, i: usize, args: &[&str]) -> Output {
    let host = lab.docker_api(i);
    Command::new("timeout")
        .arg("120")
        .arg(DOCKER)
        .args(args)
        .env("DOCKER_HOST", host)
        .env_remove("DOCKER_CONTEXT")
        .output()
        .expect("run docker")
}

/// [`docker`] with `input` on its stdin.
fn docker_with_stdin(lab: &Lab, i: usize, args: &[&str], input: &str) -> Output {
    use std::io::Write as _;
    let host = lab.docker_api(i);
    let mut child = Command::new("timeout")
        .arg("120")
        .arg(DOCKER)
        .args(args)
        .env("DOCKER_HOST", host)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run docker");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write docker's stdin");
    child.wait_with_output().expect("wait for docker")
}

/// Like [`docker`], and it must succeed; its stdout.
fn docker_ok(lab: &Lab, i: usize, args: &[&str]) -> String {
    let out = docker(lab, i, args);
    assert!(
        out.status.success(),
        "docker {args:?} on n{i} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Like [`docker`], and it must fail; its stderr.
fn docker_fails(lab: &Lab, i: usize, args: &[&str]) -> String {
    let out = docker(lab, i, args);
    assert!(
        !out.status.success(),
        "docker {args:?} on n{i} should have failed:\nstdout: {}",
        stdout(&out)
    );
    stderr(&out)
}

/// A service's `Args` as meshctl shows them.
fn args_of(lab: &Lab, service: &str) -> Vec<String> {
    let text = ok(
        lab,
        "n1",
        &["service", "inspect", service, "--format", "json"],
    );
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("meshctl service inspect --format json: {e}\n{text}"));
    let v = if v.is_array() { v[0].clone() } else { v };
    serde_json::from_value(v["Spec"]["TaskTemplate"]["ContainerSpec"]["Args"].clone())
        .unwrap_or_else(|e| panic!("no Args in {v}: {e}"))
}

/// The value after `key:` in `docker info`'s output.
fn info_value(info: &str, key: &str) -> String {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}:")))
        .map_or_else(
            || panic!("no {key:?} in docker info:\n{info}"),
            |v| v.trim().to_owned(),
        )
}

#[test]
fn the_docker_cli_drives_the_swarm_and_reaches_the_engine_through_meshd() {
    let lab = Lab::up("dapi", 220, 3, 1);
    let image = lab.image();

    // docker info: the swarm block as a manager's dockerd shows it, the engine's own fields.
    let info = docker_ok(&lab, 1, &["info"]);
    assert_eq!(info_value(&info, "Swarm"), "active", "{info}");
    assert_eq!(info_value(&info, "Is Manager"), "true", "{info}");
    assert_eq!(info_value(&info, "Managers"), "1", "{info}");
    assert_eq!(info_value(&info, "Nodes"), "3", "{info}");
    let all = ok(&lab, "n1", &["node", "ls", "--format", "json"]);
    let me = all
        .lines()
        .find(|l| l.contains(&format!("\"{}-n1\"", lab.prefix)))
        .unwrap_or_else(|| panic!("no n1 in meshctl node ls:\n{all}"));
    assert!(me.contains(&info_value(&info, "NodeID")), "{info}\n{me}");
    assert!(info.contains("Kernel Version"), "{info}");

    // docker node ls: every node, this one starred, the leader marked.
    let nodes = docker_ok(&lab, 1, &["node", "ls"]);
    let meshctl_nodes = ok(&lab, "n1", &["node", "ls", "-q"]);
    for id in meshctl_nodes.split_whitespace() {
        assert!(
            nodes.contains(id),
            "{id} missing from docker node ls:\n{nodes}"
        );
    }
    let n1 = nodes
        .lines()
        .find(|l| l.contains(&format!("{}-n1", lab.prefix)))
        .unwrap_or_else(|| panic!("no n1 in:\n{nodes}"));
    assert!(
        n1.contains('*') && n1.contains("Leader") && n1.contains("Ready"),
        "{nodes}"
    );
    assert_eq!(nodes.lines().count(), 4, "{nodes}");

    // The swarm's service events, from before the service exists to after it is gone.
    let events = EventsWatch::start(&lab, 1, &["events", "--filter", "type=service"]);

    // service create, with the CLI's progress display (it polls services and tasks).
    let script = "mkdir -p /www && hostname > /www/index.html && httpd -f -p 80 -h /www";
    let created = docker_ok(
        &lab,
        1,
        &[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "3",
            "-p",
            "8080:80",
            &image,
            "sh",
            "-c",
            script,
        ],
    );
    assert!(
        created.lines().next().is_some_and(|l| l.len() == 25),
        "{created}"
    );
    let listed = ok(&lab, "n1", &["service", "ls"]);
    let web = listed
        .lines()
        .find(|l| l.contains("web"))
        .unwrap_or_default();
    assert!(
        web.contains("3/3") && web.contains("*:8080->80/tcp"),
        "{listed}"
    );

    // service ls / ps / inspect --pretty through the socket.
    let ls = docker_ok(&lab, 1, &["service", "ls"]);
    let row = ls.lines().find(|l| l.contains(" web ")).unwrap_or_default();
    assert!(
        row.contains("replicated") && row.contains("3/3") && row.contains("*:8080->80/tcp"),
        "{ls}"
    );
    let ps = docker_ok(&lab, 1, &["service", "ps", "web"]);
    let running: Vec<&str> = ps
        .lines()
        .skip(1)
        .filter(|l| l.contains("Running"))
        .collect();
    assert_eq!(running.len(), 3, "{ps}");
    for slot in ["web.1", "web.2", "web.3"] {
        assert!(ps.contains(slot), "{slot} missing:\n{ps}");
    }
    let pretty = docker_ok(&lab, 1, &["service", "inspect", "--pretty", "web"]);
    assert!(pretty.contains("Name:\t\tweb"), "{pretty}");
    assert!(pretty.contains("Replicas:\t3"), "{pretty}");
    assert!(pretty.contains("PublishedPort = 8080"), "{pretty}");

    // The published port answers through every node.
    for i in 1..=3 {
        let addr = lab.node_addr(i);
        eventually(
            Duration::from_secs(30),
            "the published port answers",
            || {
                let body = client_get(&lab, &addr, 8080);
                if body.is_empty() || body.starts_with("ERR") {
                    Err(format!("{addr}:8080: {body}"))
                } else {
                    Ok(())
                }
            },
        );
    }

    // The engine through the same socket: docker ps shows n1's task containers, exec runs in
    // one, run --rm pulls from the lab registry and runs.
    let containers = docker_ok(&lab, 1, &["ps", "--format", "{{.ID}} {{.Names}}"]);
    let engine_view = lab.docker_out(1, &["ps", "--format", "{{.ID}} {{.Names}}"]);
    assert_eq!(containers, engine_view);
    if let Some(line) = containers.lines().find(|l| l.contains(" web.")) {
        let id = words(line)[0];
        let hostname = docker_ok(&lab, 1, &["exec", id, "cat", "/etc/hostname"]);
        let want = lab.docker_out(1, &["inspect", "-f", "{{.Config.Hostname}}", id]);
        assert_eq!(hostname.trim(), want.trim());
        // The hijacked stream carries stdin too.
        let out = docker_with_stdin(&lab, 1, &["exec", "-i", id, "sh"], "echo from-stdin\n");
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out).trim(), "from-stdin");
    } else {
        // The scheduler spreads 3 replicas over 3 nodes: n1 has one.
        panic!("no web task on n1:\n{containers}");
    }
    let said = docker_ok(&lab, 1, &["run", "--rm", &image, "echo", "through-meshd"]);
    assert_eq!(said.trim(), "through-meshd");

    // scale, checked through meshctl.
    docker_ok(&lab, 1, &["service", "scale", "web=2"]);
    let listed = ok(&lab, "n1", &["service", "ls"]);
    assert!(
        listed
            .lines()
            .any(|l| l.contains("web") && l.contains("2/2")),
        "{listed}"
    );

    // update --args (one argument with spaces, as docker splits it) and rollback, each seen
    // by meshctl.
    let v2 = "echo v2 > /www/index.html; httpd -f -p 80 -h /www";
    docker_ok(
        &lab,
        1,
        &[
            "service",
            "update",
            "--args",
            &format!("sh -c '{v2}'"),
            "web",
        ],
    );
    assert_eq!(args_of(&lab, "web"), ["sh", "-c", v2]);
    eventually(Duration::from_secs(30), "the updated tasks answer", || {
        let body = client_get(&lab, &lab.node_addr(2), 8080);
        if body == "v2" { Ok(()) } else { Err(body) }
    });
    docker_ok(&lab, 1, &["service", "rollback", "web"]);
    assert_eq!(args_of(&lab, "web"), ["sh", "-c", script]);

    // The join tokens, as meshctl shows them.
    for role in ["worker", "manager"] {
        let token = docker_ok(&lab, 1, &["swarm", "join-token", "-q", role]);
        assert_eq!(
            token.trim(),
            ok(&lab, "n1", &["swarm", "join-token", "-q", role]).trim()
        );
    }

    // A worker's socket: manager-only calls get Swarm's 503 message.
    let e = docker_fails(&lab, 2, &["node", "ls"]);
    assert!(e.contains("This node is not a swarm manager"), "{e}");
    let worker_info = docker_ok(&lab, 2, &["info"]);
    assert_eq!(
        info_value(&worker_info, "Is Manager"),
        "false",
        "{worker_info}"
    );

    // service rm, checked through meshctl.
    docker_ok(&lab, 1, &["service", "rm", "web"]);
    let listed = ok(&lab, "n1", &["service", "ls"]);
    assert!(!listed.contains("web"), "{listed}");
    assert_eq!(docker_ok(&lab, 1, &["service", "ls", "-q"]).trim(), "");

    // Created, updated (scale) and removed, as `docker events` prints them.
    std::thread::sleep(Duration::from_secs(2));
    let seen = events.stop();
    for action in ["service create", "service update", "service remove"] {
        assert!(
            seen.lines()
                .any(|l| l.contains(action) && l.contains("(name=web)")),
            "{action} missing from docker events:\n{seen}"
        );
    }
}

/// A `docker events` running in the background, killed on [`EventsWatch::stop`] or drop.
struct EventsWatch(Option<std::process::Child>);

impl EventsWatch {
    fn start(lab: &Lab, i: usize, args: &[&str]) -> Self {
        let host = lab.docker_api(i);
        let child = Command::new(DOCKER)
            .args(args)
            .env("DOCKER_HOST", host)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run docker events");
        Self(Some(child))
    }

    /// Kills it and returns what it printed.
    fn stop(mut self) -> String {
        let mut child = self.0.take().expect("a running docker events");
        let _ = child.kill();
        let out = child.wait_with_output().expect("wait for docker events");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for EventsWatch {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A folder with a compose file and its secret's file, removed on drop.
struct StackFiles(std::path::PathBuf);

impl StackFiles {
    fn new(lab: &Lab) -> Self {
        let dir = std::env::temp_dir().join(format!("{}-compose", lab.prefix));
        std::fs::create_dir_all(&dir).expect("make the compose folder");
        std::fs::write(dir.join("token.txt"), "tok").expect("write the secret file");
        let image = lab.image();
        let compose = format!(
            r#"version: "3.8"
services:
  web:
    image: {image}
    command: ["sh", "-c", "mkdir -p /www && echo web > /www/index.html && exec httpd -f -p 80 -h /www"]
    ports:
      - "8081:80"
    secrets:
      - token
    stop_grace_period: 1s
    deploy:
      replicas: 2
  api:
    image: {image}
    command: ["sh", "-c", "mkdir -p /www && echo api > /www/index.html && exec httpd -f -p 80 -h /www"]
    stop_grace_period: 1s
secrets:
  token:
    file: ./token.txt
"#
        );
        std::fs::write(dir.join("compose.yml"), compose).expect("write the compose file");
        Self(dir)
    }
}

impl Drop for StackFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `docker stack deploy/ls/services/ps/rm` and `service update --image` on `lab`.
fn the_docker_cli_deploys_a_stack(lab: &Lab) {
    let files = StackFiles::new(lab);
    let compose = files.0.join("compose.yml").display().to_string();

    // docker stack deploy runs on the client: networks, secrets and services with the stack's
    // labels, through the socket; meshctl sees the stack.
    let out = docker_ok(lab, 1, &["stack", "deploy", "-c", &compose, "shop"]);
    for line in [
        "Creating network shop_default",
        "Creating secret shop_token",
        "Creating service shop_web",
    ] {
        assert!(out.contains(line), "{line}:\n{out}");
    }
    let stacks = ok(lab, "n1", &["stack", "ls"]);
    assert!(
        stacks.lines().any(|l| words(l) == ["shop", "2"]),
        "{stacks}"
    );
    let ls = docker_ok(lab, 1, &["stack", "ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("shop ") && l.contains('2')),
        "{ls}"
    );
    let services = docker_ok(lab, 1, &["stack", "services", "shop"]);
    assert!(
        services.contains("shop_web") && services.contains("shop_api"),
        "{services}"
    );
    eventually(Duration::from_mins(1), "the stack's tasks run", || {
        let ps = docker_ok(lab, 1, &["stack", "ps", "shop"]);
        let running = ps
            .lines()
            .filter(|l| l.contains("Running   ") && l.contains("Running "))
            .count();
        if running == 3 { Ok(()) } else { Err(ps) }
    });
    eventually(Duration::from_secs(30), "the stack's port answers", || {
        let body = client_get(lab, &lab.node_addr(2), 8081);
        if body == "web" { Ok(()) } else { Err(body) }
    });

    // update --image, checked through meshctl.
    docker_ok(
        lab,
        1,
        &[
            "service",
            "update",
            "--image",
            &lab.image_named("redis"),
            "shop_api",
        ],
    );
    let api = ok(
        lab,
        "n1",
        &["service", "inspect", "shop_api", "--format", "json"],
    );
    assert!(api.contains("meshd/redis"), "{api}");

    // stack rm removes the services and the secret; the network goes once its tasks are gone
    // (meshd refuses to remove a network a live task still has an address on).
    let _ = docker(lab, 1, &["stack", "rm", "shop"]);
    assert!(!ok(lab, "n1", &["service", "ls"]).contains("shop_"));
    assert!(!ok(lab, "n1", &["secret", "ls"]).contains("shop_token"));
    eventually(Duration::from_secs(30), "the stack's network goes", || {
        let _ = docker(lab, 1, &["stack", "rm", "shop"]);
        let nets = ok(lab, "n1", &["network", "ls"]);
        if nets.contains("shop_default") {
            Err(nets)
        } else {
            Ok(())
        }
    });
}

/// Makes a test CA, a server certificate for `sans` and a client certificate (docker's
/// `DOCKER_CERT_PATH` names: `ca.pem`, `cert.pem`, `key.pem`) with openssl.
const MAKE_CERTS: &str = r#"set -e
cd "$1"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca-key.pem -out ca.pem -days 2 -subj /CN=meshd-test-ca
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server-key.pem -out server.csr -subj /CN=meshd-node
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$2" > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out server-cert.pem -days 2 -extfile server.ext
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out client.csr -subj /CN=client
printf 'extendedKeyUsage=clientAuth\n' > client.ext
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out cert.pem -days 2 -extfile client.ext
"#;

/// A folder of TLS files for one test, removed on drop.
struct TlsFiles(std::path::PathBuf);

impl TlsFiles {
    fn new(name: &str, sans: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{}-tls", Lab::prefix_for(name)));
        std::fs::create_dir_all(&dir).expect("make the TLS folder");
        let files = Self(dir);
        let out = Command::new("sh")
            .args(["-c", MAKE_CERTS, "make-certs"])
            .arg(&files.0)
            .arg(sans)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "making certificates: {}",
            stderr(&out)
        );
        files
    }

    fn path(&self, file: &str) -> String {
        self.0.join(file).display().to_string()
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn networks_secrets_configs_nodes_stacks_and_errors_through_the_docker_cli() {
    // Every node also serves the API on TCP with mutual TLS, as dockerd --tlsverify.
    let tls = TlsFiles::new("dapiobj", "IP:198.18.221.11,IP:198.18.221.12");
    let (ca, cert, key) = (
        tls.path("ca.pem"),
        tls.path("server-cert.pem"),
        tls.path("server-key.pem"),
    );
    let lab = Lab::up_with(
        "dapiobj",
        221,
        2,
        1,
        &[
            "--",
            "--docker-api-tcp",
            "0.0.0.0:2376",
            "--docker-api-tlscacert",
            &ca,
            "--docker-api-tlscert",
            &cert,
            "--docker-api-tlskey",
            &key,
        ],
    );

    // From the lab's client: with a certificate of the CA, docker works (a hijacked exec too);
    // without one, the handshake is refused.
    let client_docker = |args: &[&str], with_cert: bool| {
        let mut cmd = vec![
            "env".to_owned(),
            format!("DOCKER_HOST=tcp://{}:2376", lab.node_addr(1)),
        ];
        if with_cert {
            cmd.push("DOCKER_TLS_VERIFY=1".into());
            cmd.push(format!("DOCKER_CERT_PATH={}", tls.0.display()));
            cmd.push(DOCKER.into());
        } else {
            cmd.extend([
                DOCKER.into(),
                "--tlsverify".into(),
                "--tlscacert".into(),
                ca.clone(),
            ]);
        }
        cmd.extend(args.iter().map(|a| (*a).to_owned()));
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        lab.exec("client", &cmd)
    };
    let out = client_docker(&["node", "ls"], true);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 3, "{}", stdout(&out));
    let out = client_docker(&["run", "--rm", &lab.image(), "echo", "over-tls"], true);
    assert_eq!(stdout(&out).trim(), "over-tls", "{}", stderr(&out));
    let out = client_docker(&["node", "ls"], false);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("certificate required"),
        "{}",
        stderr(&out)
    );
    let image = lab.image();
    let n2 = format!("{}-n2", lab.prefix);

    // node update: drain and a label, seen by meshctl; back to active.
    docker_ok(
        &lab,
        1,
        &[
            "node",
            "update",
            "--availability",
            "drain",
            "--label-add",
            "zone=a",
            &n2,
        ],
    );
    let spec = ok(&lab, "n1", &["node", "inspect", &n2, "--format", "json"]);
    assert!(
        spec.contains("\"drain\"") && spec.contains("\"zone\""),
        "{spec}"
    );
    let pretty = docker_ok(&lab, 1, &["node", "inspect", "--pretty", &n2]);
    assert!(
        pretty.contains("Drain") && pretty.contains("zone=a"),
        "{pretty}"
    );
    docker_ok(
        &lab,
        1,
        &[
            "node",
            "update",
            "--availability",
            "active",
            "--label-rm",
            "zone",
            &n2,
        ],
    );
    let spec = ok(&lab, "n1", &["node", "inspect", &n2, "--format", "json"]);
    assert!(
        spec.contains("\"active\"") && !spec.contains("\"zone\""),
        "{spec}"
    );

    // An overlay network, a secret and a config, each seen by meshctl.
    let net = docker_ok(
        &lab,
        1,
        &[
            "network",
            "create",
            "-d",
            "overlay",
            "--subnet",
            "10.77.0.0/24",
            "front",
        ],
    );
    assert_eq!(net.trim().len(), 25, "{net}");
    let nets = ok(&lab, "n1", &["network", "ls"]);
    assert!(nets.contains("front"), "{nets}");
    let ls = docker_ok(&lab, 1, &["network", "ls", "--filter", "driver=overlay"]);
    assert!(ls.contains("front") && ls.contains("swarm"), "{ls}");
    let subnet = docker_ok(
        &lab,
        1,
        &[
            "network",
            "inspect",
            "-f",
            "{{(index .IPAM.Config 0).Subnet}}",
            "front",
        ],
    );
    assert_eq!(subnet.trim(), "10.77.0.0/24");
    let secret = Command::new("sh")
        .args(["-c", &format!(
            "printf hunter2 | DOCKER_HOST=unix:///var/lib/meshd-lab/{}/n1/meshd-docker.sock {DOCKER} secret create db - && printf k=v | DOCKER_HOST=unix:///var/lib/meshd-lab/{}/n1/meshd-docker.sock {DOCKER} config create app -",
            lab.prefix, lab.prefix
        )])
        .output()
        .expect("run docker secret create");
    assert!(secret.status.success(), "{}", stderr(&secret));
    assert!(ok(&lab, "n1", &["secret", "ls"]).contains("db"));
    assert!(ok(&lab, "n1", &["config", "ls"]).contains("app"));
    let pretty = docker_ok(&lab, 1, &["config", "inspect", "--pretty", "app"]);
    assert!(pretty.contains("k=v"), "{pretty}");

    // A service on the network with the secret; its logs come back with docker's context.
    docker_ok(
        &lab,
        1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "talk",
            "--network",
            "front",
            "--secret",
            "db",
            &image,
            "sh",
            "-c",
            "echo said-$(cat /run/secrets/db); sleep 600",
        ],
    );
    eventually(Duration::from_mins(1), "the service's log line", || {
        let out = docker(&lab, 1, &["service", "logs", "talk"]);
        let text = stdout(&out);
        if text.contains("said-hunter2") && text.contains("talk.1.") {
            Ok(())
        } else {
            Err(format!("stdout: {text}\nstderr: {}", stderr(&out)))
        }
    });
    // A task's own logs.
    let task = docker_ok(&lab, 1, &["service", "ps", "-q", "--no-trunc", "talk"]);
    let task = task.lines().next().unwrap_or_default().trim().to_owned();
    let text = docker_ok(&lab, 1, &["service", "logs", &task]);
    assert!(text.contains("said-hunter2"), "{text}");
    docker_ok(&lab, 1, &["service", "rm", "talk"]);

    // Bad input: a field meshd does not carry is refused by name, and nothing is created.
    let e = docker_fails(
        &lab,
        1,
        &[
            "service", "create", "--detach", "--name", "tty", "--tty", &image,
        ],
    );
    assert!(e.contains("TaskTemplate.ContainerSpec.TTY"), "{e}");
    assert!(!ok(&lab, "n1", &["service", "ls"]).contains("tty"));
    // The manager's own validation, as meshctl gets it.
    let e = docker_fails(
        &lab,
        1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "bad_name!",
            &image,
        ],
    );
    assert!(!e.is_empty());
    assert!(ok(&lab, "n1", &["service", "ls", "-q"]).trim().is_empty());
    // A swarm call outside the subset: 501 naming it.
    let e = docker_fails(&lab, 1, &["swarm", "update", "--autolock=true"]);
    assert!(
        e.contains("/swarm/update") && e.contains("meshd does not serve"),
        "{e}"
    );
    // Autolock is off: no unlock key, in Swarm's words.
    let e = docker_fails(&lab, 1, &["swarm", "unlock-key"]);
    assert!(e.contains("no unlock key is set"), "{e}");
    // Not found, as moby.
    let e = docker_fails(&lab, 1, &["service", "inspect", "nosuch"]);
    assert!(
        e.to_lowercase().contains("no such service") || e.contains("not found"),
        "{e}"
    );

    // The network is in use until the service's task is gone.
    eventually(Duration::from_secs(30), "network rm", || {
        let out = docker(&lab, 1, &["network", "rm", "front"]);
        if out.status.success() {
            Ok(())
        } else {
            Err(stderr(&out))
        }
    });
    assert!(!ok(&lab, "n1", &["network", "ls"]).contains("front"));

    the_docker_cli_deploys_a_stack(&lab);
}
