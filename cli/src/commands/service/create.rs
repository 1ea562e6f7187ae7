//! `service create`: the spec from the flags, sent whole, then followed until it converges.

use std::io::Write;

use anyhow::Result;
use clap::Args;
use mesh_api::{Reply, Request};
use mesh_cluster::spec::{
    check_file_targets, check_mounts, parse_env, parse_file_reference, parse_mode, parse_mount,
    parse_placement_pref, parse_port, split_words,
};
use mesh_cluster::state::ServiceSpec;

use super::client::Conn;
use super::flags::{CommonArgs, apply_common, parse_label, parse_network, spec_err};
use super::progress;
use super::registry::{RegistryArgs, print_warnings};
use crate::commands::{Target, unexpected};

/// `service create [OPTIONS] IMAGE [COMMAND] [ARG...]`.
#[derive(Args, Debug, Default, Clone)]
pub struct CreateArgs {
    /// Service name.
    #[arg(long)]
    pub name: Option<String>,
    /// replicated or global.
    #[arg(long)]
    pub mode: Option<String>,
    /// Placement constraint (node.labels.zone==east).
    #[arg(long)]
    pub constraint: Vec<String>,
    /// Placement preference (spread=node.labels.zone).
    #[arg(long)]
    pub placement_pref: Vec<String>,
    /// Environment variable (KEY=VALUE).
    #[arg(long, short)]
    pub env: Vec<String>,
    /// Service label (key=value).
    #[arg(long, short)]
    pub label: Vec<String>,
    /// Container label (key=value).
    #[arg(long)]
    pub container_label: Vec<String>,
    /// Publish a port: 8080:80[/udp] or published=8080,target=80[,protocol=udp][,mode=host].
    #[arg(long, short)]
    pub publish: Vec<String>,
    /// Attach to an overlay network: NAME, or name=NAME[,alias=ALIAS...] (repeatable; the
    /// tasks get eth0, eth1, ... in this order).
    #[arg(long)]
    pub network: Vec<String>,
    /// Replace the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Attach a filesystem mount: type=volume|bind|tmpfs,source=SRC,target=/PATH[,readonly]...
    /// (repeatable).
    #[arg(long)]
    pub mount: Vec<String>,
    /// Give the tasks a secret: NAME or source=NAME[,target=PATH][,uid=N][,gid=N][,mode=0444]
    /// (at /run/secrets/TARGET unless TARGET is absolute; repeatable).
    #[arg(long)]
    pub secret: Vec<String>,
    /// Give the tasks a config, as --secret (at /TARGET unless TARGET is absolute).
    #[arg(long)]
    pub config: Vec<String>,
    #[command(flatten)]
    pub common: CommonArgs,
    // Registry flags (`--with-registry-auth`, `--no-resolve-image`), kept in their own block.
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The image to run.
    pub image: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// A name for a service created without `--name`, as Docker makes them (`admiring_turing`).
fn random_name() -> String {
    const LEFT: [&str; 12] = [
        "admiring", "brave", "clever", "dazzling", "eager", "festive", "gallant", "happy", "jolly",
        "keen", "lucid", "nifty",
    ];
    const RIGHT: [&str; 12] = [
        "babbage", "curie", "dijkstra", "euler", "hopper", "kepler", "lamport", "lovelace",
        "noether", "ritchie", "shannon", "turing",
    ];
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| {
            d.subsec_nanos() as usize ^ std::process::id() as usize
        });
    format!(
        "{}_{}",
        LEFT[n % LEFT.len()],
        RIGHT[(n / LEFT.len()) % RIGHT.len()]
    )
}

/// The spec `service create` sends (pure: every flag parsed, nothing sent yet).
pub fn create_spec(a: &CreateArgs) -> Result<ServiceSpec> {
    let mut spec = ServiceSpec {
        name: a.name.clone().unwrap_or_else(random_name),
        ..ServiceSpec::default()
    };
    spec.mode = parse_mode(a.mode.as_deref(), a.common.replicas.as_deref()).map_err(spec_err)?;
    let mut common = a.common.clone();
    common.replicas = None; // parse_mode took it
    apply_common(&mut spec, &common)?;
    spec.task.container.image.clone_from(&a.image);
    spec.task.container.args.clone_from(&a.args);
    if let Some(e) = &a.entrypoint {
        spec.task.container.command = split_words("--entrypoint", e).map_err(spec_err)?;
    }
    for e in &a.env {
        spec.task
            .container
            .env
            .push(parse_env(e).map_err(spec_err)?);
    }
    for l in &a.label {
        let (k, v) = parse_label(l)?;
        spec.labels.insert(k, v);
    }
    for l in &a.container_label {
        let (k, v) = parse_label(l)?;
        spec.task.container.labels.insert(k, v);
    }
    spec.task.placement.constraints.clone_from(&a.constraint);
    for p in &a.placement_pref {
        spec.task
            .placement
            .preferences
            .push(parse_placement_pref(p).map_err(spec_err)?);
    }
    for p in &a.publish {
        spec.endpoint.ports.push(parse_port(p).map_err(spec_err)?);
    }
    for n in &a.network {
        spec.task.networks.push(parse_network(n)?);
    }
    for m in &a.mount {
        spec.task
            .container
            .mounts
            .push(parse_mount(m).map_err(spec_err)?);
    }
    check_mounts(&spec.task.container.mounts).map_err(spec_err)?;
    let c = &mut spec.task.container;
    for s in &a.secret {
        c.secrets
            .push(parse_file_reference("secret", s).map_err(spec_err)?);
    }
    for s in &a.config {
        c.configs
            .push(parse_file_reference("config", s).map_err(spec_err)?);
    }
    check_file_targets(&c.secrets, &c.configs).map_err(spec_err)?;
    Ok(spec)
}

/// `service create`: prints the new service's id, then follows it (unless `--detach`).
pub(super) fn run(target: &Target, a: &CreateArgs, out: &mut impl Write) -> Result<()> {
    let spec = create_spec(a)?;
    let image = a.registry.options(&spec.task.container.image, true)?;
    let conn = Conn::new(target)?;
    let (reply, warnings) = conn
        .call(&Request::ServiceCreate { spec, image })?
        .into_parts();
    print_warnings(&warnings);
    let id = match reply {
        Reply::ServiceCreated { id } => id,
        other => return Err(unexpected(&other)),
    };
    writeln!(out, "{id}")?;
    out.flush()?;
    if !a.common.detach {
        progress::follow(&conn, id.as_str(), a.common.quiet, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use mesh_cluster::state::{
        FailureAction, HealthConfig, MountKind, PublishMode, RestartCondition, ServiceMode,
    };

    use super::super::testing::create;

    #[test]
    fn mount_and_health_flags_make_the_spec() {
        let s = create(&[
            "--mount",
            "type=volume,source=registry,target=/var/lib/registry",
            "--mount",
            "type=tmpfs,target=/cache,tmpfs-size=16m",
            "--health-cmd",
            "wget -q -O- localhost:5000 || exit 1",
            "--health-interval",
            "5s",
            "--health-timeout",
            "1s",
            "--health-retries",
            "2",
            "--health-start-period",
            "1m",
            "meshd/busybox",
        ])
        .unwrap();
        let m = &s.task.container.mounts;
        assert_eq!(
            (m[0].kind, m[0].source.as_str(), m[0].target.as_str()),
            (MountKind::Volume, "registry", "/var/lib/registry")
        );
        assert_eq!(
            (m[1].kind, m[1].tmpfs_size_bytes),
            (MountKind::Tmpfs, 16 << 20)
        );
        assert_eq!(
            s.task.container.healthcheck,
            Some(HealthConfig {
                test: vec![
                    "CMD-SHELL".into(),
                    "wget -q -O- localhost:5000 || exit 1".into()
                ],
                interval_ms: 5_000,
                timeout_ms: 1_000,
                start_period_ms: 60_000,
                retries: 2,
            })
        );
        let none = create(&["--no-healthcheck", "meshd/busybox"]).unwrap();
        assert_eq!(
            none.task.container.healthcheck.unwrap().test,
            ["NONE".to_owned()]
        );
        assert_eq!(
            create(&["meshd/busybox"])
                .unwrap()
                .task
                .container
                .healthcheck,
            None
        );
        for (args, want) in [
            (
                &["--mount", "target=/a,bogus=1", "x"][..],
                "unexpected key \"bogus\"",
            ),
            (
                &["--mount", "type=bind,source=rel,target=/a", "x"][..],
                "absolute source",
            ),
            (
                &[
                    "--mount",
                    "source=aa,target=/a",
                    "--mount",
                    "source=bb,target=/a",
                    "x",
                ][..],
                "duplicate mount target",
            ),
            (
                &["--no-healthcheck", "--health-cmd", "true", "x"][..],
                "conflicts with --health-*",
            ),
            (
                &["--health-interval", "5", "x"][..],
                "invalid --health-interval",
            ),
            (
                &["--health-retries", "-2", "x"][..],
                "invalid --health-retries",
            ),
        ] {
            let e = create(args).unwrap_err().to_string();
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn create_flags_make_the_spec() {
        let s = create(&[
            "--name",
            "web",
            "--replicas",
            "3",
            "--constraint",
            "node.role==worker",
            "--env",
            "A=1",
            "-p",
            "8080:80",
            "--restart-condition",
            "on-failure",
            "--restart-delay",
            "1s",
            "--restart-max-attempts",
            "2",
            "--update-failure-action",
            "rollback",
            "--update-monitor",
            "1s",
            "--reserve-memory",
            "64M",
            "--limit-cpu",
            "0.5",
            "--stop-grace-period",
            "1s",
            "--placement-pref",
            "spread=node.labels.zone",
            "meshd/busybox",
            "sh",
            "-c",
            "exit 1",
        ])
        .unwrap();
        assert_eq!(s.name, "web");
        assert_eq!(s.mode, ServiceMode::Replicated { replicas: 3 });
        assert_eq!(s.task.placement.constraints, ["node.role==worker"]);
        assert_eq!(s.task.container.env, ["A=1"]);
        assert_eq!(s.task.container.image, "meshd/busybox");
        assert_eq!(s.task.container.args, ["sh", "-c", "exit 1"]);
        assert_eq!(s.endpoint.ports[0].published_port, 8080);
        assert_eq!(s.endpoint.ports[0].publish_mode, PublishMode::Ingress);
        assert_eq!(s.task.restart.condition, RestartCondition::OnFailure);
        assert_eq!(
            (s.task.restart.delay_ms, s.task.restart.max_attempts),
            (1000, 2)
        );
        assert_eq!(s.update.failure_action, FailureAction::Rollback);
        assert_eq!(s.update.monitor_ms, 1000);
        assert_eq!(s.task.resources.reservations.memory_bytes, 64 << 20);
        assert_eq!(s.task.resources.limits.nano_cpus, 500_000_000);
        assert_eq!(s.task.container.stop_grace_period_ms, 1000);
        assert_eq!(s.task.placement.preferences[0].spread, "node.labels.zone");

        let n = create(&[
            "--network",
            "front",
            "--network",
            "name=back,alias=api,alias=v1",
            "meshd/busybox",
        ])
        .unwrap();
        let nets: Vec<(&str, Vec<String>)> = n
            .task
            .networks
            .iter()
            .map(|a| (a.target.as_str(), a.aliases.clone()))
            .collect();
        assert_eq!(
            nets,
            [
                ("front", vec![]),
                ("back", vec!["api".to_owned(), "v1".to_owned()])
            ]
        );
        let g = create(&["--name", "g", "--mode", "global", "meshd/busybox"]).unwrap();
        assert_eq!(g.mode, ServiceMode::Global);
        assert!(!create(&["meshd/busybox"]).unwrap().name.is_empty());
        for (args, want) in [
            (&["--replicas", "-1", "x"][..], "non-negative integer"),
            (
                &["--mode", "global", "--replicas", "2", "x"][..],
                "replicated mode",
            ),
            (&["-p", "80:x", "x"][..], "invalid port"),
            (&["--restart-delay", "5", "x"][..], "invalid duration"),
            (&["--env", "=1", "x"][..], "invalid environment variable"),
            (&["--update-max-failure-ratio", "2", "x"][..], "from 0 to 1"),
            (&["--network", "", "x"][..], "invalid --network"),
            (
                &["--network", "name=a,mtu=1", "x"][..],
                "unknown or empty field \"mtu=1\"",
            ),
        ] {
            let e = create(args).unwrap_err().to_string();
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }
}
