//! `service update`: reads the service, applies the flags to its spec and sends it back with the
//! version it read (re-read and re-applied when another write got in between).

use std::io::Write;

use anyhow::{Result, bail};
use clap::Args;
use mesh_api::{Code, Reply, Request};
use mesh_cluster::spec::{
    apply_health, parse_env, parse_mount, parse_placement_pref, parse_port, split_words,
    update_mounts,
};
use mesh_cluster::spec::{check_file_targets, parse_file_reference, update_file_references};
use mesh_cluster::state::{Protocol, ServiceSpec};

use super::client::Conn;
use super::flags::{
    CommonArgs, apply_common, parse_label, parse_network, resolve_networks, spec_err,
};
use super::progress;
use super::registry::{RegistryArgs, print_warnings};
use crate::commands::{Target, reported};

/// `service update [OPTIONS] SERVICE`.
#[derive(Args, Debug, Default, Clone)]
pub struct UpdateArgs {
    /// The image to run.
    #[arg(long)]
    pub image: Option<String>,
    /// The command's arguments, split as a shell splits words (quotes keep a word whole).
    #[arg(long)]
    pub args: Option<String>,
    /// Replace the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    #[arg(long)]
    pub env_add: Vec<String>,
    /// Remove an environment variable by key.
    #[arg(long)]
    pub env_rm: Vec<String>,
    #[arg(long)]
    pub constraint_add: Vec<String>,
    #[arg(long)]
    pub constraint_rm: Vec<String>,
    #[arg(long)]
    pub placement_pref_add: Vec<String>,
    #[arg(long)]
    pub placement_pref_rm: Vec<String>,
    /// Add or change a service label (key=value).
    #[arg(long)]
    pub label_add: Vec<String>,
    /// Remove a service label by key.
    #[arg(long)]
    pub label_rm: Vec<String>,
    #[arg(long)]
    pub container_label_add: Vec<String>,
    #[arg(long)]
    pub container_label_rm: Vec<String>,
    /// Publish a port (as create's --publish).
    #[arg(long)]
    pub publish_add: Vec<String>,
    /// Stop publishing a port: its target port (80, 80/udp) or a whole --publish value.
    #[arg(long)]
    pub publish_rm: Vec<String>,
    /// Attach to a network (as create's --network).
    #[arg(long)]
    pub network_add: Vec<String>,
    /// Detach from a network (its name or id).
    #[arg(long)]
    pub network_rm: Vec<String>,
    /// Add or replace a mount (as create's --mount; one at the same target is replaced).
    #[arg(long)]
    pub mount_add: Vec<String>,
    /// Remove a mount by its target path.
    #[arg(long)]
    pub mount_rm: Vec<String>,
    #[command(flatten)]
    pub files: FileUpdateArgs,
    /// Replace the tasks even if nothing changed.
    #[arg(long)]
    pub force: bool,
    /// Go back to the previous spec.
    #[arg(long)]
    pub rollback: bool,
    #[command(flatten)]
    pub common: CommonArgs,
    // Registry flags (`--with-registry-auth`, `--no-resolve-image`), kept in their own block.
    #[command(flatten)]
    pub registry: RegistryArgs,
    pub service: String,
}

/// `--secret-add/-rm` and `--config-add/-rm`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FileUpdateArgs {
    /// Add or replace a secret (as create's --secret).
    #[arg(long)]
    pub secret_add: Vec<String>,
    /// Remove a secret by its name.
    #[arg(long)]
    pub secret_rm: Vec<String>,
    /// Add or replace a config (as create's --config).
    #[arg(long)]
    pub config_add: Vec<String>,
    /// Remove a config by its name.
    #[arg(long)]
    pub config_rm: Vec<String>,
}

impl FileUpdateArgs {
    /// Applies them to the container's secrets and configs (a rolling update, as any change).
    fn apply(&self, c: &mut mesh_cluster::state::ContainerSpec) -> Result<()> {
        let parse = |what: &str, list: &[String]| -> Result<Vec<_>> {
            list.iter()
                .map(|s| parse_file_reference(what, s).map_err(spec_err))
                .collect()
        };
        let secrets = parse("secret-add", &self.secret_add)?;
        let configs = parse("config-add", &self.config_add)?;
        update_file_references(&mut c.secrets, &secrets, &self.secret_rm);
        update_file_references(&mut c.configs, &configs, &self.config_rm);
        check_file_targets(&c.secrets, &c.configs).map_err(spec_err)?;
        Ok(())
    }
}

fn env_key(e: &str) -> &str {
    e.split_once('=').map_or(e, |(k, _)| k)
}

/// `--publish-rm`: a target port (`80`, `80/udp`) or a whole `--publish` value.
fn port_matches(rm: &str, p: &mesh_cluster::state::PortConfig) -> Result<bool> {
    let (port, proto) = match rm.split_once('/') {
        Some((port, proto)) => (port, Some(proto)),
        None => (rm, None),
    };
    if let Ok(target) = port.trim().parse::<u16>() {
        let proto = match proto.map(str::to_ascii_lowercase).as_deref() {
            None | Some("tcp") => Protocol::Tcp,
            Some("udp") => Protocol::Udp,
            Some(other) => {
                bail!("invalid --publish-rm {rm:?}: protocol {other:?} is neither tcp nor udp")
            }
        };
        return Ok(p.target_port == target && p.protocol == proto);
    }
    let want = parse_port(rm).map_err(spec_err)?;
    Ok(p.target_port == want.target_port
        && p.protocol == want.protocol
        && (want.published_port == 0 || want.published_port == p.published_port))
}

/// `--mount-add`, each parsed.
fn parse_mount_adds(a: &UpdateArgs) -> Result<Vec<mesh_cluster::state::Mount>> {
    a.mount_add
        .iter()
        .map(|m| parse_mount(m).map_err(spec_err))
        .collect()
}

/// The flags that need no service to be judged (mounts, health check), checked before any
/// request so that a bad one changes nothing and costs no round trip.
fn check_flags(a: &UpdateArgs) -> Result<()> {
    update_mounts(&[], &parse_mount_adds(a)?, &a.mount_rm).map_err(spec_err)?;
    a.files
        .apply(&mut mesh_cluster::state::ContainerSpec::default())?;
    apply_health(None, &a.common.health.flags()).map_err(spec_err)?;
    Ok(())
}

/// The spec `service update` sends: `current` with the flags applied (pure).
pub fn update_spec(current: &ServiceSpec, a: &UpdateArgs) -> Result<ServiceSpec> {
    let mut spec = current.clone();
    apply_common(&mut spec, &a.common)?;
    let c = &mut spec.task.container;
    if let Some(i) = &a.image {
        i.clone_into(&mut c.image);
    }
    if let Some(args) = &a.args {
        c.args = split_words("--args", args).map_err(spec_err)?;
    }
    if let Some(e) = &a.entrypoint {
        c.command = split_words("--entrypoint", e).map_err(spec_err)?;
    }
    for key in &a.env_rm {
        c.env.retain(|e| env_key(e) != env_key(key));
    }
    for e in &a.env_add {
        let e = parse_env(e).map_err(spec_err)?;
        c.env.retain(|x| env_key(x) != env_key(&e));
        c.env.push(e);
    }
    for key in &a.container_label_rm {
        c.labels.remove(key);
    }
    for l in &a.container_label_add {
        let (k, v) = parse_label(l)?;
        c.labels.insert(k, v);
    }
    for key in &a.label_rm {
        spec.labels.remove(key);
    }
    for l in &a.label_add {
        let (k, v) = parse_label(l)?;
        spec.labels.insert(k, v);
    }
    let placement = &mut spec.task.placement;
    placement
        .constraints
        .retain(|x| !a.constraint_rm.iter().any(|rm| rm.trim() == x.trim()));
    for x in &a.constraint_add {
        if !placement.constraints.contains(x) {
            placement.constraints.push(x.clone());
        }
    }
    for rm in &a.placement_pref_rm {
        let rm = parse_placement_pref(rm).map_err(spec_err)?;
        placement.preferences.retain(|p| *p != rm);
    }
    for p in &a.placement_pref_add {
        placement
            .preferences
            .push(parse_placement_pref(p).map_err(spec_err)?);
    }
    let mut ports = Vec::new();
    for p in std::mem::take(&mut spec.endpoint.ports) {
        let mut removed = false;
        for rm in &a.publish_rm {
            removed |= port_matches(rm, &p)?;
        }
        if !removed {
            ports.push(p);
        }
    }
    for p in &a.publish_add {
        let p = parse_port(p).map_err(spec_err)?;
        // As Docker: the same port again changes nothing, and a published port given a new
        // target replaces its old binding; other ports of the same target stay.
        ports.retain(|q| {
            *q != p
                && !(p.published_port != 0
                    && q.published_port == p.published_port
                    && q.protocol == p.protocol)
        });
        ports.push(p);
    }
    spec.endpoint.ports = ports;
    for n in &a.network_add {
        spec.task.networks.push(parse_network(n)?);
    }
    let mounts = &mut spec.task.container.mounts;
    *mounts = update_mounts(mounts, &parse_mount_adds(a)?, &a.mount_rm).map_err(spec_err)?;
    a.files.apply(&mut spec.task.container)?;
    if a.force {
        spec.task.force_update += 1;
    }
    Ok(spec)
}

/// `service update` (and `service publish`): prints the service as given, then follows it until
/// it converges (unless `--detach`).
pub(super) fn run(target: &Target, a: &UpdateArgs, out: &mut impl Write) -> Result<()> {
    check_flags(a)?;
    let conn = Conn::new(target)?;
    if a.rollback {
        conn.call(&Request::ServiceRollback {
            service: a.service.clone(),
        })?;
    } else {
        update(&conn, a)?;
    }
    writeln!(out, "{}", a.service)?;
    out.flush()?;
    if !a.common.detach {
        progress::follow(&conn, &a.service, a.common.quiet, out)?;
    }
    Ok(())
}

/// Reads the service, applies the flags, writes it back; again if another write got in between.
fn update(conn: &Conn, a: &UpdateArgs) -> Result<()> {
    let network_rm = if a.network_rm.is_empty() {
        Vec::new()
    } else {
        let Reply::Networks(known) = conn.call(&Request::NetworkList)? else {
            bail!("unexpected answer to network ls");
        };
        resolve_networks(&a.network_rm, &known)?
    };
    for attempt in 0.. {
        let current = conn.inspect(&a.service)?;
        let mut spec = update_spec(&current.spec, a)?;
        spec.task
            .networks
            .retain(|n| !network_rm.contains(&n.target));
        // Docker resolves the digest again only when `--image` is given: an update that leaves
        // the image alone keeps its digest.
        let image = a
            .registry
            .options(&spec.task.container.image, a.image.is_some())?;
        let req = Request::ServiceUpdate {
            service: current.id.to_string(),
            version: current.meta.version,
            spec,
            image,
        };
        match conn.call_raw(&req) {
            Ok(reply) => {
                print_warnings(&reply.into_parts().1);
                return Ok(());
            }
            Err(e) if e.code == Code::Conflict && attempt < 5 => {}
            Err(e) => return Err(reported(&conn.client, &e)),
        }
    }
    unreachable!()
}

#[cfg(test)]
mod tests {
    use mesh_cluster::Id;
    use mesh_cluster::state::{Network, ServiceMode};

    use super::super::ServiceCommand;
    use super::super::testing::{create, parse};
    use super::*;

    #[test]
    fn mount_and_health_updates_replace_what_they_name() {
        let current = create(&[
            "--name",
            "reg",
            "--mount",
            "source=registry,target=/var/lib/registry",
            "--mount",
            "type=tmpfs,target=/tmp/cache",
            "--health-cmd",
            "true",
            "--health-retries",
            "3",
            "meshd/busybox",
        ])
        .unwrap();
        let ServiceCommand::Update(args) = parse(&[
            "update",
            "--mount-add",
            "source=registry2,target=/var/lib/registry,ro",
            "--mount-rm",
            "/tmp/cache",
            "--health-interval",
            "2s",
            "reg",
        ]) else {
            panic!()
        };
        check_flags(&args).unwrap();
        let s = update_spec(&current, &args).unwrap();
        let mounts = &s.task.container.mounts;
        assert_eq!(mounts.len(), 1);
        assert_eq!(
            (
                mounts[0].source.as_str(),
                mounts[0].target.as_str(),
                mounts[0].readonly
            ),
            ("registry2", "/var/lib/registry", true)
        );
        let health = s.task.container.healthcheck.clone().unwrap();
        assert_eq!(
            (health.test[1].as_str(), health.retries, health.interval_ms),
            ("true", 3, 2_000)
        );
        let ServiceCommand::Update(off) = parse(&["update", "--no-healthcheck", "reg"]) else {
            panic!()
        };
        let s = update_spec(&current, &off).unwrap();
        assert_eq!(
            s.task.container.healthcheck.unwrap().test,
            ["NONE".to_owned()]
        );
        for (args, want) in [
            (
                &[
                    "update",
                    "--mount-add",
                    "type=tmpfs,source=x,target=/t",
                    "reg",
                ][..],
                "takes no source",
            ),
            (
                &[
                    "update",
                    "--mount-add",
                    "source=aa,target=/t",
                    "--mount-add",
                    "source=bb,target=/t",
                    "reg",
                ][..],
                "duplicate mount target",
            ),
            (
                &[
                    "update",
                    "--no-healthcheck",
                    "--health-timeout",
                    "1s",
                    "reg",
                ][..],
                "conflicts",
            ),
        ] {
            let ServiceCommand::Update(bad) = parse(args) else {
                panic!()
            };
            let e = check_flags(&bad).unwrap_err().to_string();
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn update_flags_change_only_what_they_name() {
        let current = create(&[
            "--name",
            "web",
            "--env",
            "A=1",
            "--env",
            "B=2",
            "--constraint",
            "node.role==worker",
            "-l",
            "tier=front",
            "-p",
            "8080:80",
            "meshd/busybox",
        ])
        .unwrap();
        let ServiceCommand::Update(a) = parse(&[
            "update",
            "--image",
            "meshd/busybox:2",
            "--env-add",
            "A=9",
            "--env-rm",
            "B",
            "--constraint-rm",
            "node.role==worker",
            "--constraint-add",
            "node.labels.zone==east",
            "--label-rm",
            "tier",
            "--label-add",
            "team=x",
            "--publish-rm",
            "80",
            "--publish-add",
            "9090:90/udp",
            "--replicas",
            "4",
            "--force",
            "web",
        ]) else {
            panic!()
        };
        let s = update_spec(&current, &a).unwrap();
        assert_eq!(s.task.container.image, "meshd/busybox:2");
        assert_eq!(s.task.container.env, ["A=9"]);
        assert_eq!(s.task.placement.constraints, ["node.labels.zone==east"]);
        assert_eq!(s.labels.get("team").map(String::as_str), Some("x"));
        assert!(!s.labels.contains_key("tier"));
        assert_eq!(s.endpoint.ports.len(), 1);
        assert_eq!(s.endpoint.ports[0].target_port, 90);
        assert_eq!(s.endpoint.ports[0].protocol, Protocol::Udp);
        assert_eq!(s.mode, ServiceMode::Replicated { replicas: 4 });
        assert_eq!(s.task.force_update, 1);
        let ServiceCommand::Update(nets) = parse(&["update", "--network-add", "back", "web"])
        else {
            panic!()
        };
        let with_back = update_spec(&current, &nets).unwrap();
        assert_eq!(with_back.task.networks.len(), 1);
        assert_eq!(with_back.task.networks[0].target.as_str(), "back");
        let known = [Network {
            id: Id::from("ngbknb89dzyxdas81emw0jz63"),
            meta: mesh_cluster::state::Meta::default(),
            spec: mesh_cluster::state::NetworkSpec {
                name: "back".into(),
                ..Default::default()
            },
            subnet: "10.0.1.0/24".parse().unwrap(),
            vni: 4097,
        }];
        for q in ["back", "ngbknb89dzyxdas81emw0jz63", "ngbk"] {
            assert_eq!(
                resolve_networks(&[q.into()], &known).unwrap(),
                [known[0].id.clone()]
            );
        }
        let e = resolve_networks(&["front".into()], &known).unwrap_err();
        assert!(e.to_string().contains("network front not found"), "{e}");
        let ServiceCommand::Update(none) = parse(&["update", "web"]) else {
            panic!()
        };
        assert_eq!(update_spec(&current, &none).unwrap(), current);
    }
}
