//! Compose files as users write them (the tutorials' `WordPress` and Portainer stacks, the
//! compose-spec's examples), each planned and checked; errors and where they are; and the
//! parse → print → parse round trip.

use std::collections::BTreeMap;

use mesh_cluster::state::{
    EndpointMode, FailureAction, MountKind, Protocol, PublishMode, RestartCondition, ServiceMode,
    ServiceSpec, UpdateOrder,
};

use super::*;

const WORDPRESS: &str = r#"
version: "3.8"
services:
  db:
    image: mysql:5.7
    volumes:
      - db_data:/var/lib/mysql
    environment:
      MYSQL_ROOT_PASSWORD_FILE: /run/secrets/db_root_password
      MYSQL_DATABASE: wordpress
    secrets:
      - db_root_password
    deploy:
      placement:
        constraints: [node.role == manager]
  wordpress:
    image: wordpress:${WP_TAG:-latest}
    depends_on: [db]
    build: .
    ports:
      - "8000:80"
    environment:
      - WORDPRESS_DB_HOST=db:3306
      - WORDPRESS_DB_PASSWORD_FILE=/run/secrets/db_root_password
    secrets:
      - source: db_root_password
        target: wp_password
        mode: 0440
    deploy:
      replicas: 3
      update_config:
        parallelism: 1
        delay: 10s
        failure_action: rollback
        order: start-first
      restart_policy:
        condition: on-failure
        max_attempts: 3
      resources:
        limits: {cpus: '0.5', memory: 128M}
        reservations: {memory: 64M}
secrets:
  db_root_password:
    file: ./db_root_password.txt
volumes:
  db_data:
"#;

const PORTAINER: &str = r"
version: '3.2'
services:
  agent:
    image: portainer/agent
    volumes:
      - /var/run/docker.sock:/var/run/docker.sock
      - /var/lib/docker/volumes:/var/lib/docker/volumes
    networks:
      - agent_network
    deploy:
      mode: global
      placement:
        constraints: [node.platform.os == linux]
  portainer:
    image: portainer/portainer
    command: -H tcp://tasks.agent:9001 --tlsskipverify
    ports:
      - target: 9000
        published: 9000
        protocol: tcp
        mode: ingress
    volumes:
      - type: volume
        source: portainer_data
        target: /data
    networks:
      agent_network:
        aliases: [ui]
    deploy:
      mode: replicated
      replicas: 1
      endpoint_mode: dnsrr
      placement:
        constraints: [node.role == manager]
        preferences:
          - spread: node.labels.zone
        max_replicas_per_node: 1
networks:
  agent_network:
    driver: overlay
    attachable: true
volumes:
  portainer_data:
";

fn env() -> Environment {
    [("HOME".to_owned(), "/root".to_owned())]
        .into_iter()
        .collect()
}

fn reader(files: &BTreeMap<String, Vec<u8>>) -> impl Fn(&str) -> Result<Vec<u8>, String> + '_ {
    |path| {
        files
            .get(path)
            .cloned()
            .ok_or_else(|| "no such file".to_owned())
    }
}

fn plan_of(text: &str, files: &[(&str, &str)]) -> Result<(StackPlan, Vec<String>), ComposeError> {
    let files: BTreeMap<String, Vec<u8>> = files
        .iter()
        .map(|(p, d)| ((*p).to_owned(), d.as_bytes().to_vec()))
        .collect();
    let read = reader(&files);
    let env = env();
    let src = Sources {
        working_dir: "/srv/app",
        env: &env,
        read: &read,
    };
    load_and_plan(&[("compose.yml".into(), text.into())], "wp", &src)
}

fn service<'a>(plan: &'a StackPlan, name: &str) -> &'a ServiceSpec {
    plan.services
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no {name}: {plan:#?}"))
}

#[test]
fn the_wordpress_tutorial_plans_as_docker_deploys_it() {
    let (plan, warnings) =
        plan_of(WORDPRESS, &[("/srv/app/db_root_password.txt", "hunter2\n")]).unwrap();
    assert_eq!(
        warnings,
        ["Ignoring unsupported options: build, depends_on"]
    );
    assert_eq!(plan.networks.len(), 1);
    assert_eq!(plan.networks[0].name, "wp_default");
    assert_eq!(plan.networks[0].labels[STACK_LABEL], "wp");
    assert_eq!(plan.secrets.len(), 1);
    assert_eq!(plan.secrets[0].name, "wp_db_root_password");
    assert_eq!(plan.secrets[0].data, b"hunter2\n");

    let db = service(&plan, "wp_db");
    assert_eq!(db.labels[STACK_LABEL], "wp");
    let m = &db.task.container.mounts[0];
    assert_eq!(
        (m.kind, m.source.as_str(), m.target.as_str()),
        (MountKind::Volume, "wp_db_data", "/var/lib/mysql")
    );
    assert_eq!(db.task.container.secrets[0].name, "wp_db_root_password");
    assert_eq!(db.task.container.secrets[0].target, "db_root_password");
    assert_eq!(db.task.placement.constraints, ["node.role == manager"]);
    assert_eq!(db.task.networks[0].target.as_str(), "wp_default");
    assert_eq!(db.task.networks[0].aliases, ["db"]);

    let wp = service(&plan, "wp_wordpress");
    assert_eq!(wp.task.container.image, "wordpress:latest");
    assert_eq!(wp.mode, ServiceMode::Replicated { replicas: 3 });
    assert_eq!(wp.endpoint.ports[0].published_port, 8000);
    assert_eq!(wp.endpoint.ports[0].target_port, 80);
    assert!(
        wp.task
            .container
            .env
            .contains(&"WORDPRESS_DB_HOST=db:3306".to_owned())
    );
    let secret = &wp.task.container.secrets[0];
    assert_eq!(
        (secret.target.as_str(), secret.mode),
        ("wp_password", 0o440)
    );
    assert_eq!(wp.update.delay_ms, 10_000);
    assert_eq!(wp.update.failure_action, FailureAction::Rollback);
    assert_eq!(wp.update.order, UpdateOrder::StartFirst);
    assert_eq!(wp.task.restart.condition, RestartCondition::OnFailure);
    assert_eq!(wp.task.restart.max_attempts, 3);
    assert_eq!(wp.task.resources.limits.nano_cpus, 500_000_000);
    assert_eq!(wp.task.resources.limits.memory_bytes, 128 << 20);
    assert_eq!(wp.task.resources.reservations.memory_bytes, 64 << 20);
}

#[test]
fn the_portainer_tutorial_plans_with_its_global_agent_and_attachable_network() {
    let (plan, warnings) = plan_of(PORTAINER, &[]).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        plan.networks.len(),
        1,
        "the default network is unused: {:?}",
        plan.networks
    );
    assert_eq!(plan.networks[0].name, "wp_agent_network");
    assert!(plan.networks[0].attachable);
    let agent = service(&plan, "wp_agent");
    assert_eq!(agent.mode, ServiceMode::Global);
    assert_eq!(agent.task.container.mounts[0].kind, MountKind::Bind);
    assert_eq!(
        agent.task.container.mounts[0].source,
        "/var/run/docker.sock"
    );
    let ui = service(&plan, "wp_portainer");
    assert_eq!(
        ui.task.container.args,
        ["-H", "tcp://tasks.agent:9001", "--tlsskipverify"]
    );
    assert_eq!(ui.endpoint.mode, EndpointMode::Dnsrr);
    let p = &ui.endpoint.ports[0];
    assert_eq!(
        (p.published_port, p.target_port, p.protocol, p.publish_mode),
        (9000, 9000, Protocol::Tcp, PublishMode::Ingress)
    );
    assert_eq!(ui.task.networks[0].aliases, ["portainer", "ui"]);
    assert_eq!(ui.task.placement.preferences[0].spread, "node.labels.zone");
    assert_eq!(ui.task.placement.max_replicas_per_node, 1);
    assert_eq!(ui.task.container.mounts[0].source, "wp_portainer_data");
}

#[test]
fn compose_spec_examples_plan() {
    // (intent, compose file, service, check)
    type Check = fn(&ServiceSpec);
    let rows: &[(&str, &str, &str, Check)] = &[
        (
            "a healthcheck as a string runs in the shell",
            "services:\n  web:\n    image: nginx\n    healthcheck:\n      test: curl -f http://localhost\n      interval: 1m30s\n      timeout: 10s\n      retries: 3\n      start_period: 40s\n",
            "wp_web",
            |s| {
                let h = s.task.container.healthcheck.as_ref().unwrap();
                assert_eq!(h.test, ["CMD-SHELL", "curl -f http://localhost"]);
                assert_eq!(
                    (h.interval_ms, h.timeout_ms, h.start_period_ms, h.retries),
                    (90_000, 10_000, 40_000, 3)
                );
            },
        ),
        (
            "healthcheck disable turns the image's check off",
            "services:\n  web:\n    image: nginx\n    healthcheck:\n      disable: true\n",
            "wp_web",
            |s| {
                assert_eq!(
                    s.task.container.healthcheck.as_ref().unwrap().test,
                    ["NONE"]
                );
            },
        ),
        (
            "entrypoint and command as lists",
            "services:\n  web:\n    image: busybox\n    entrypoint: [/bin/sh, -c]\n    command: [\"echo $$HOME\"]\n",
            "wp_web",
            |s| {
                assert_eq!(s.task.container.command, ["/bin/sh", "-c"]);
                assert_eq!(s.task.container.args, ["echo $HOME"]);
            },
        ),
        (
            "environment KEY alone comes from the environment; labels in both forms",
            "services:\n  web:\n    image: busybox\n    environment: [HOME, NOPE]\n    labels: [a=1]\n    deploy:\n      labels: {b: '2'}\n",
            "wp_web",
            |s| {
                assert_eq!(s.task.container.env, ["HOME=/root"]);
                assert_eq!(s.task.container.labels["a"], "1");
                assert_eq!(s.labels["b"], "2");
            },
        ),
        (
            "env_file then environment over it",
            "services:\n  web:\n    image: busybox\n    env_file: ./web.env\n    environment:\n      B: over\n",
            "wp_web",
            |s| assert_eq!(s.task.container.env, ["A=1", "B=over"]),
        ),
        (
            "short ports: udp, a target alone, host mode in the long form",
            "services:\n  dns:\n    image: coredns\n    ports:\n      - 53:53/udp\n      - 8080\n      - {target: 9153, published: 9153, mode: host}\n",
            "wp_dns",
            |s| {
                let p = &s.endpoint.ports;
                assert_eq!((p[0].protocol, p[0].published_port), (Protocol::Udp, 53));
                assert_eq!((p[1].target_port, p[1].published_port), (8080, 0));
                assert_eq!(p[2].publish_mode, PublishMode::Host);
            },
        ),
        (
            "a config in the long form and a tmpfs mount",
            "services:\n  web:\n    image: nginx\n    configs:\n      - source: site\n        target: /etc/nginx/conf.d/site.conf\n        uid: '101'\n    volumes:\n      - type: tmpfs\n        target: /cache\n        tmpfs: {size: 16m}\nconfigs:\n  site:\n    file: /etc/site.conf\n",
            "wp_web",
            |s| {
                let c = &s.task.container.configs[0];
                assert_eq!(
                    (c.name.as_str(), c.target.as_str(), c.uid.as_str()),
                    ("wp_site", "/etc/nginx/conf.d/site.conf", "101")
                );
                assert_eq!(s.task.container.mounts[0].tmpfs_size_bytes, 16 << 20);
            },
        ),
        (
            "external networks and secrets keep their names",
            "services:\n  web:\n    image: nginx\n    networks: [front]\n    secrets: [cert]\nnetworks:\n  front:\n    external: true\nsecrets:\n  cert:\n    external:\n      name: site_cert\n",
            "wp_web",
            |s| {
                assert_eq!(s.task.networks[0].target.as_str(), "front");
                assert_eq!(s.task.container.secrets[0].name, "site_cert");
                assert_eq!(s.task.container.secrets[0].target, "cert");
            },
        ),
        (
            "rollback_config and restart delays",
            "services:\n  web:\n    image: nginx\n    deploy:\n      rollback_config: {parallelism: 0, monitor: 30s, max_failure_ratio: 0.2}\n      restart_policy: {delay: 5s, window: 2m}\n",
            "wp_web",
            |s| {
                assert_eq!((s.rollback.parallelism, s.rollback.monitor_ms), (0, 30_000));
                assert!((s.rollback.max_failure_ratio - 0.2).abs() < 1e-6);
                assert_eq!(
                    (s.task.restart.delay_ms, s.task.restart.window_ms),
                    (5_000, 120_000)
                );
            },
        ),
    ];
    for (intent, text, name, check) in rows {
        let (plan, _) = plan_of(
            text,
            &[("/srv/app/web.env", "A=1\nB=2\n"), ("/etc/site.conf", "x")],
        )
        .unwrap_or_else(|e| panic!("{intent}: {e}"));
        check(service(&plan, name));
    }
}

/// The tutorial's second `WordPress` file (seed 004): the password an external secret made
/// before with `secret create`, a global database on managers, one overlay network.
const WORDPRESS_EXTERNAL_SECRET: &str = r#"
version: "3.7"
services:
  db:
    image: mysql:5.7
    secrets:
      - password
    environment:
      MYSQL_ROOT_PASSWORD_FILE: /run/secrets/password
      MYSQL_DATABASE: wordpress
    volumes:
      - db_data:/var/lib/mysql
    networks:
      - my-network
    deploy:
      mode: global
      placement:
        constraints:
          - node.role == manager
  web:
    depends_on:
      - db
    image: wordpress
    ports:
      - "80:80"
    secrets:
      - password
    environment:
      WORDPRESS_DB_HOST: db:3306
      WORDPRESS_DB_PASSWORD_FILE: /run/secrets/password
    networks:
      - my-network
    deploy:
      mode: replicated
      replicas: 3
      restart_policy:
        condition: on-failure
        delay: 5s
        max_attempts: 3
      update_config:
        parallelism: 3
        delay: 10s
        order: stop-first
volumes:
  db_data:
networks:
  my-network:
    driver: overlay
secrets:
  password:
    external: true
"#;

#[test]
fn the_tutorial_with_an_external_secret_plans_no_secret_to_create() {
    let (plan, warnings) = plan_of(WORDPRESS_EXTERNAL_SECRET, &[]).unwrap();
    assert_eq!(warnings, ["Ignoring unsupported options: depends_on"]);
    assert!(plan.secrets.is_empty());
    assert_eq!(plan.external_secrets, ["password"]);
    let names: Vec<&str> = plan.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        ["wp_my-network"],
        "no default network: every service names one"
    );
    let db = service(&plan, "wp_db");
    assert_eq!(db.mode, ServiceMode::Global);
    assert_eq!(db.task.container.secrets[0].name, "password");
    assert_eq!(db.task.container.secrets[0].target, "password");
    assert_eq!(db.task.networks[0].target.as_str(), "wp_my-network");
    let web = service(&plan, "wp_web");
    assert_eq!(web.update.parallelism, 3);
    assert_eq!(web.task.restart.delay_ms, 5_000);
}

#[test]
fn external_secrets_are_listed_to_check_and_not_created() {
    let (plan, _) = plan_of(
        "services:\n  web:\n    image: nginx\n    secrets: [cert]\nsecrets:\n  cert:\n    external: true\n  unused:\n    external: true\n",
        &[],
    )
    .unwrap();
    assert!(plan.secrets.is_empty());
    assert_eq!(plan.external_secrets, ["cert"]);
}

#[test]
fn errors_say_where_they_are_and_what_is_accepted() {
    // (intent, compose file, expected line, expected text in the message)
    let rows = [
        (
            "a typo in a service key",
            "services:\n  web:\n    image: a\n    imgae: b\n",
            Some(4),
            "service \"web\", key \"imgae\": additional property",
        ),
        (
            "a bad replica count",
            "services:\n  web:\n    image: a\n    deploy:\n      replicas: many\n",
            Some(5),
            "key \"deploy.replicas\": expected a non-negative integer",
        ),
        (
            "replicas with global mode",
            "services:\n  web:\n    image: a\n    deploy:\n      mode: global\n      replicas: 2\n",
            Some(6),
            "replicated mode",
        ),
        (
            "an unknown secret",
            "services:\n  web:\n    image: a\n    secrets: [pw]\n",
            Some(4),
            "undefined secret \"pw\"",
        ),
        (
            "an unknown network",
            "services:\n  web:\n    image: a\n    networks: [back]\n",
            Some(4),
            "undefined network \"back\"",
        ),
        (
            "an undeclared volume",
            "services:\n  web:\n    image: a\n    volumes: ['data:/d']\n",
            Some(4),
            "undefined volume \"data\"",
        ),
        (
            "a bad port",
            "services:\n  web:\n    image: a\n    ports: ['80:x']\n",
            Some(4),
            "invalid port",
        ),
        (
            "a bad constraint",
            "services:\n  web:\n    image: a\n    deploy:\n      placement:\n        constraints: [node.rol == x]\n",
            Some(6),
            "constraint",
        ),
        (
            "a bad duration",
            "services:\n  web:\n    image: a\n    deploy:\n      update_config:\n        delay: soon\n",
            Some(6),
            "key \"deploy.update_config.delay\"",
        ),
        (
            "a required variable",
            "services:\n  web:\n    image: a:${TAG:?give a tag}\n",
            Some(3),
            "give a tag",
        ),
        (
            "no image",
            "services:\n  web:\n    build: .\n",
            Some(2),
            "no image",
        ),
        (
            "a secret file that cannot be read",
            "services:\n  web:\n    image: a\n    secrets: [pw]\nsecrets:\n  pw:\n    file: ./missing\n",
            Some(7),
            "cannot read",
        ),
        (
            "a non-overlay driver",
            "services:\n  web:\n    image: a\n    networks: [n]\nnetworks:\n  n:\n    driver: bridge\n",
            Some(7),
            "overlay",
        ),
        (
            "a bad memory size",
            "services:\n  web:\n    image: a\n    deploy:\n      resources:\n        limits:\n          memory: lots\n",
            Some(7),
            "resources.limits.memory",
        ),
        (
            "an unknown top-level key",
            "services:\n  web:\n    image: a\nservice:\n  x: 1\n",
            Some(4),
            "additional property \"service\"",
        ),
        (
            "a port published twice",
            "services:\n  a:\n    image: x\n    ports: ['80:80']\n  b:\n    image: x\n    ports: ['80:81']\n",
            Some(7),
            "already published by service \"a\"",
        ),
        (
            "version 2",
            "version: '2'\nservices:\n  web:\n    image: a\n",
            Some(1),
            "version 3.x",
        ),
        ("no services", "version: '3'\n", None, "no services"),
    ];
    for (intent, text, line, expected) in rows {
        let e = plan_of(text, &[]).unwrap_err();
        assert_eq!(e.line, line, "{intent}: {e}");
        assert_eq!(e.file.as_deref(), Some("compose.yml"), "{intent}: {e}");
        assert!(e.to_string().contains(expected), "{intent}: {e}");
    }
}

#[test]
fn several_files_merge_later_winning() {
    let env = env();
    let read = |_: &str| Err::<Vec<u8>, String>("none".into());
    let src = Sources {
        working_dir: "/srv",
        env: &env,
        read: &read,
    };
    let files = [
        ("a.yml".to_owned(), "services:\n  web:\n    image: nginx:1\n    deploy: {replicas: 1}\n".to_owned()),
        ("b.yml".to_owned(), "services:\n  web:\n    image: nginx:2\n    deploy: {replicas: 4}\n  api:\n    image: busybox\n".to_owned()),
    ];
    let (plan, _) = load_and_plan(&files, "s", &src).unwrap();
    let web = service(&plan, "s_web");
    assert_eq!(web.task.container.image, "nginx:2");
    assert_eq!(web.mode, ServiceMode::Replicated { replicas: 4 });
    assert!(plan.services.iter().any(|s| s.name == "s_api"));
    let bad = [
        files[0].clone(),
        (
            "b.yml".to_owned(),
            "services:\n  web:\n    deploy: {replicas: x}\n".to_owned(),
        ),
    ];
    let e = load_and_plan(&bad, "s", &src).unwrap_err();
    assert_eq!((e.file.as_deref(), e.line), (Some("b.yml"), Some(3)), "{e}");
}

#[test]
fn stack_names_are_checked() {
    assert!(validate_stack_name("wordpress").is_ok());
    assert!(validate_stack_name("my-stack_2").is_ok());
    for bad in ["", "-x", "a b", "a.b"] {
        assert!(validate_stack_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn printed_tutorial_files_read_back_the_same() {
    for text in [WORDPRESS, PORTAINER, WORDPRESS_EXTERNAL_SECRET] {
        let files = [("c.yml".to_owned(), text.to_owned())];
        let first = load(&files, &env()).unwrap().project;
        let printed = first.to_yaml();
        let again = load(&[("p.yml".to_owned(), printed.clone())], &env())
            .unwrap_or_else(|e| panic!("{e}\n{printed}"))
            .project;
        assert_eq!(first, again, "{printed}");
    }
}

/// A small deterministic generator (splitmix64) for the round trip.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn coin(&mut self) -> bool {
        self.below(2) == 0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    fn maybe(&mut self, items: &[&str]) -> Option<String> {
        self.coin().then(|| self.pick(items).to_owned())
    }
}

const WORDS: &[&str] = &[
    "web", "api", "db", "x-1", "a_b", "1", "true", "null", "a b", "$x", "#c", "é",
];

fn random_service(rng: &mut Rng) -> ServiceDef {
    let mut s = ServiceDef {
        image: rng.pick(&["busybox", "nginx:1.25", "r:5000/a/b:c"]).into(),
        ..ServiceDef::default()
    };
    if rng.coin() {
        s.command = Some(
            (0..rng.below(3))
                .map(|_| rng.pick(WORDS).to_owned())
                .collect(),
        );
    }
    for _ in 0..rng.below(3) {
        let value = rng.maybe(WORDS);
        s.environment
            .insert(rng.pick(&["A", "B_2", "c"]).into(), value);
        s.labels
            .insert(rng.pick(WORDS).into(), rng.pick(WORDS).into());
    }
    for _ in 0..rng.below(3) {
        let port = mesh_cluster::spec::parse_port(rng.pick(&[
            "80",
            "8080:80",
            "53:53/udp",
            "published=1,target=2,mode=host",
        ]))
        .unwrap();
        s.ports.push(port);
    }
    for _ in 0..rng.below(3) {
        let aliases = (0..rng.below(2))
            .map(|_| rng.pick(&["a", "b"]).to_owned())
            .collect();
        s.networks
            .push((rng.pick(&["front", "back", "default"]).into(), aliases));
    }
    s.networks.sort();
    s.networks.dedup_by(|a, b| a.0 == b.0);
    for _ in 0..rng.below(3) {
        s.volumes.push(VolumeMount {
            kind: rng.pick(&["volume", "bind", "tmpfs"]).into(),
            source: rng.pick(&["", "data", "/srv"]).into(),
            target: rng.pick(&["/a", "/b/c"]).into(),
            read_only: rng.coin(),
            nocopy: rng.coin(),
            propagation: rng.pick(&["", "rshared"]).into(),
            tmpfs_size: rng.maybe(&["16m", "1g"]),
        });
    }
    for _ in 0..rng.below(2) {
        s.secrets.push(FileUse {
            source: rng.pick(&["pw", "cert"]).into(),
            target: rng.maybe(&["t", "/etc/x"]),
            uid: rng.maybe(&["0", "101"]),
            gid: rng.maybe(&["0", "101"]),
            mode: rng
                .coin()
                .then(|| rng.pick(&["292", "288", "511"]).parse().unwrap()),
        });
    }
    if rng.coin() {
        s.healthcheck = Some(HealthDef {
            test: vec!["CMD-SHELL".into(), rng.pick(WORDS).into()],
            interval: rng.maybe(&["5s", "1m30s"]),
            retries: rng.coin().then(|| rng.below(5)),
            disable: rng.coin(),
            ..HealthDef::default()
        });
    }
    s.deploy = random_deploy(rng);
    s
}

fn random_deploy(rng: &mut Rng) -> DeployDef {
    DeployDef {
        mode: rng.maybe(&["replicated", "global"]),
        replicas: rng.coin().then(|| rng.below(10)),
        endpoint_mode: rng.maybe(&["vip", "dnsrr"]),
        constraints: (0..rng.below(3))
            .map(|_| {
                rng.pick(&["node.role==manager", "node.labels.z != a"])
                    .to_owned()
            })
            .collect(),
        preferences: (0..rng.below(2))
            .map(|_| "node.labels.zone".to_owned())
            .collect(),
        max_replicas_per_node: rng.coin().then(|| rng.below(4)),
        limits: ResourcesDef {
            cpus: rng.maybe(&["0.5", "2"]),
            memory: rng.maybe(&["64M", "1G"]),
        },
        restart_policy: rng.coin().then(|| RestartDef {
            condition: rng.maybe(&["any", "on-failure"]),
            delay: rng.maybe(&["5s"]),
            max_attempts: rng.coin().then(|| rng.below(4)),
            window: rng.maybe(&["2m"]),
        }),
        update_config: rng.coin().then(|| UpdateDef {
            parallelism: rng.coin().then(|| rng.below(4)),
            max_failure_ratio: rng.maybe(&["0.5", "0"]),
            order: rng.maybe(&["start-first"]),
            ..UpdateDef::default()
        }),
        ..DeployDef::default()
    }
}

fn random_project(rng: &mut Rng) -> Project {
    let mut p = Project::default();
    for _ in 0..=rng.below(3) {
        p.services
            .insert(rng.pick(&["web", "api", "db"]).into(), random_service(rng));
    }
    if rng.coin() {
        p.networks.insert(
            "front".into(),
            NetworkDef {
                attachable: rng.coin(),
                subnet: rng.maybe(&["10.9.0.0/24"]),
                driver_opts: [("mtu".to_owned(), "1400".to_owned())]
                    .into_iter()
                    .collect(),
                ..NetworkDef::default()
            },
        );
    }
    p.secrets.insert(
        "pw".into(),
        FileDef {
            file: Some("./pw".into()),
            ..FileDef::default()
        },
    );
    p.configs.insert(
        "cert".into(),
        FileDef {
            external: true,
            name: rng.maybe(&["site_cert"]),
            ..FileDef::default()
        },
    );
    p.volumes.insert(
        "data".into(),
        VolumeDef {
            driver: rng.maybe(&["local"]),
            ..VolumeDef::default()
        },
    );
    p
}

/// The round-trip fuzz run: a short fixed run here; `scripts/fuzz.sh` sets `MESH_FUZZ_CASES`
/// (and `MESH_FUZZ_SEED`) for a long one.
#[test]
fn random_projects_print_and_read_back_the_same() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let mut rng = Rng(env("MESH_FUZZ_SEED", 0x5eed));
    for case in 0..env("MESH_FUZZ_CASES", 256) {
        let project = random_project(&mut rng);
        let printed = project.to_yaml();
        let read = load(
            &[("p.yml".to_owned(), printed.clone())],
            &Environment::new(),
        )
        .unwrap_or_else(|e| panic!("case {case}: {e}\n{printed}"))
        .project;
        assert_eq!(project, read, "case {case}:\n{printed}");
    }
}
