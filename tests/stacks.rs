//! Stacks (issue 14, item 2): a compose file with a web tier publishing a port and an api on the
//! stack's default network, and a secret from a file. A file with one error creates nothing and
//! says where; `stack deploy` creates it all; the port answers through every node; the web tier
//! reaches the api by its short service name (`api`); `stack ls/services/ps` show it; a re-deploy
//! with more replicas updates in place; `--prune` removes a service no longer in the file;
//! `stack rm` leaves nothing behind.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::{Lab, eventually, fails, meshctl, ok, stderr, stdout};

const TOKEN: &str = "tok-7f3a-stack";

/// The compose file, with the web tier's replica count.
fn compose(image: &str, web_replicas: u32) -> String {
    format!(
        r#"version: "3.8"
services:
  web:
    image: {image}
    command: ["sh", "-c", "mkdir -p /www && echo web > /www/index.html && exec httpd -f -p 80 -h /www"]
    ports:
      - "8080:80"
    secrets:
      - token
    stop_grace_period: 1s
    deploy:
      replicas: {web_replicas}
  api:
    image: {image}
    build: ./api
    command: ["sh", "-c", "mkdir -p /www && echo api-says-hi > /www/index.html && exec httpd -f -p 80 -h /www"]
    stop_grace_period: 1s
secrets:
  token:
    file: ./token.txt
"#
    )
}

/// A folder of compose files for one test, removed on drop.
struct Files(PathBuf);

impl Files {
    fn new(lab: &Lab) -> Self {
        let dir = std::env::temp_dir().join(format!("{}-stack", lab.prefix));
        std::fs::create_dir_all(&dir).expect("make the compose folder");
        std::fs::write(dir.join("token.txt"), TOKEN).expect("write the secret file");
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write a compose file");
        path.display().to_string()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The running containers of a service on every engine: (engine, name).
fn containers(lab: &Lab, service_id: &str) -> Vec<(usize, String)> {
    let label = format!("label=meshd.service={service_id}");
    (1..=lab.nodes)
        .flat_map(|i| {
            lab.docker_out(i, &["ps", "--filter", &label, "--format", "{{.Names}}"])
                .lines()
                .map(|c| (i, c.to_owned()))
                .collect::<Vec<_>>()
        })
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

/// Nothing of stack `st` in services, networks or secrets.
fn nothing_of_the_stack(lab: &Lab) -> Result<(), String> {
    let seen = [
        ok(lab, "n1", &["service", "ls"]),
        ok(lab, "n1", &["network", "ls"]),
        ok(lab, "n1", &["secret", "ls"]),
    ]
    .join("");
    if seen.contains("st_") {
        Err(seen)
    } else {
        Ok(())
    }
}

#[test]
fn stacks_deploy_reach_by_name_update_in_place_and_rm() {
    let lab = Lab::up("stacks", 217, 2, 1);
    let files = Files::new(&lab);
    let image = lab.image();

    // One error (the replica count): nothing is created and the place is named.
    let bad = files.write(
        "bad.yml",
        &compose(&image, 2).replace("replicas: 2", "replicas: two"),
    );
    let err = fails(&lab, "n1", &["stack", "deploy", "-c", &bad, "st"]);
    assert!(
        err.contains("bad.yml, line 12")
            && err.contains("service \"web\", key \"deploy.replicas\""),
        "{err}"
    );
    nothing_of_the_stack(&lab).expect("a bad compose file creates nothing");

    let good = files.write("compose.yml", &compose(&image, 2));
    let out = meshctl(&lab, "n1", &["stack", "deploy", "-c", &good, "st"]);
    assert!(out.status.success(), "stack deploy: {}", stderr(&out));
    let printed = stdout(&out);
    for line in [
        "Creating network st_default",
        "Creating secret st_token",
        "Creating service st_api",
        "Creating service st_web",
    ] {
        assert!(printed.contains(line), "{line:?} in:\n{printed}");
    }
    assert!(
        stderr(&out).contains("Ignoring unsupported options: build"),
        "{}",
        stderr(&out)
    );
    let secrets = ok(&lab, "n1", &["secret", "ls"]);
    assert!(secrets.contains("st_token"), "{secrets}");

    // The routing mesh: every node answers on the published port.
    for i in 1..=lab.nodes {
        let url = format!("http://{}:8080/", lab.node_addr(i));
        eventually(
            Duration::from_secs(90),
            &format!("web through {url}"),
            || {
                let out = lab.exec("client", &["curl", "-sf", "-m", "2", &url]);
                let body = stdout(&out).trim().to_owned();
                (body == "web").then_some(()).ok_or(body)
            },
        );
    }

    // The web tier reaches the api by its short name on the stack's default network.
    let web_id = service_id(&lab, "st_web");
    let api_id = service_id(&lab, "st_api");
    let (engine, web_task) = containers(&lab, &web_id)
        .into_iter()
        .next()
        .expect("a running web task");
    // (`nc`: the lab busybox's `wget` crashes, by name or address alike.)
    let get = r"printf 'GET / HTTP/1.0\r\n\r\n' | nc api 80";
    eventually(
        Duration::from_mins(1),
        "http://api/ from a web task",
        || {
            let out = lab.docker(engine, &["exec", &web_task, "sh", "-c", get]);
            let body = stdout(&out);
            body.contains("api-says-hi")
                .then_some(())
                .ok_or(format!("{body} {}", stderr(&out)))
        },
    );
    // The stack's secret (from a file) reaches the task that uses it.
    let secret = lab.docker(engine, &["exec", &web_task, "cat", "/run/secrets/token"]);
    assert!(secret.status.success(), "{}", stderr(&secret));
    assert_eq!(stdout(&secret), TOKEN);

    let ls = ok(&lab, "n1", &["stack", "ls"]);
    assert!(
        ls.starts_with("NAME")
            && ls.contains("SERVICES")
            && ls.lines().any(|l| l.split_whitespace().eq(["st", "2"])),
        "{ls}"
    );
    eventually(
        Duration::from_mins(1),
        "stack services shows 2/2 and 1/1",
        || {
            let services = ok(&lab, "n1", &["stack", "services", "st"]);
            let web = services
                .lines()
                .any(|l| l.contains("st_web") && l.contains("2/2") && l.contains("*:8080->80/tcp"));
            let api = services
                .lines()
                .any(|l| l.contains("st_api") && l.contains("1/1"));
            (web && api).then_some(()).ok_or(services)
        },
    );
    let ps = ok(&lab, "n1", &["stack", "ps", "st"]);
    assert!(
        ps.starts_with("ID")
            && ps.contains("st_web.1")
            && ps.contains("st_web.2")
            && ps.contains("st_api.1"),
        "{ps}"
    );

    // A re-deploy with 3 web replicas updates the same service in place; the unchanged api keeps
    // its task.
    let api_tasks = ok(&lab, "n1", &["service", "ps", "-q", "st_api"]);
    let bigger = files.write("compose.yml", &compose(&image, 3));
    let out = ok(&lab, "n1", &["stack", "deploy", "-c", &bigger, "st"]);
    assert!(
        out.contains(&format!("Updating service st_web (id: {web_id})"))
            && out.contains("Updating service st_api")
            && !out.contains("Creating"),
        "{out}"
    );
    assert_eq!(service_id(&lab, "st_web"), web_id);
    eventually(Duration::from_mins(1), "st_web at 3/3", || {
        let services = ok(&lab, "n1", &["stack", "services", "st"]);
        services
            .lines()
            .any(|l| l.contains("st_web") && l.contains("3/3"))
            .then_some(())
            .ok_or(services)
    });
    assert_eq!(
        ok(&lab, "n1", &["service", "ps", "-q", "st_api"]),
        api_tasks
    );

    // --prune: a file without the api removes it; without --prune it would stay.
    let web_only = compose(&image, 3);
    let web_only = &web_only[..web_only.find("  api:").expect("the api")];
    let secrets = "secrets:\n  token:\n    file: ./token.txt\n";
    let pruned = files.write("web.yml", &format!("{web_only}{secrets}"));
    let out = ok(
        &lab,
        "n1",
        &["stack", "deploy", "--prune", "-c", &pruned, "st"],
    );
    assert!(out.contains("Removing service st_api"), "{out}");
    let services = ok(&lab, "n1", &["stack", "services", "st"]);
    assert!(
        services.contains("st_web") && !services.contains("st_api"),
        "{services}"
    );

    let out = ok(&lab, "n1", &["stack", "rm", "st"]);
    for line in [
        "Removing service st_web",
        "Removing network st_default",
        "Removing secret st_token",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }
    eventually(
        Duration::from_mins(1),
        "nothing of the stack is left",
        || {
            nothing_of_the_stack(&lab)?;
            let all: String = [&web_id, &api_id]
                .iter()
                .map(|id| {
                    lab.docker_all(&[
                        "ps",
                        "-a",
                        "--filter",
                        &format!("label=meshd.service={id}"),
                        "-q",
                    ])
                })
                .collect();
            all.trim().is_empty().then_some(()).ok_or(all)
        },
    );
    let err = fails(&lab, "n1", &["stack", "services", "st"]);
    assert!(err.contains("Nothing found in stack: st"), "{err}");
}
