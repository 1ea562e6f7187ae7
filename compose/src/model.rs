//! The compose file as Swarm reads it, short forms expanded: what [`crate::load`] returns and
//! [`Project::to_yaml`] prints back (in long forms), so that parse → print → parse is the
//! identity. Values Swarm parses later (durations, sizes, constraints) stay text here and are
//! checked by the planner with the `service create` parsers.

use std::collections::BTreeMap;

use mesh_cluster::spec::{parse_port, split_words};
use mesh_cluster::state::{PortConfig, Protocol, PublishMode};
use serde_norway::Value;

use crate::error::ComposeError;
use crate::yaml::{At, known_keys};

/// A whole compose project (the merged files).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Project {
    pub services: BTreeMap<String, ServiceDef>,
    pub networks: BTreeMap<String, NetworkDef>,
    pub volumes: BTreeMap<String, VolumeDef>,
    pub secrets: BTreeMap<String, FileDef>,
    pub configs: BTreeMap<String, FileDef>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceDef {
    pub image: String,
    /// `entrypoint`: replaces the image's entrypoint when given.
    pub entrypoint: Option<Vec<String>>,
    /// `command`: the arguments.
    pub command: Option<Vec<String>>,
    /// `None`: `KEY` without a value, taken from the environment if set there.
    pub environment: BTreeMap<String, Option<String>>,
    pub env_file: Vec<String>,
    pub ports: Vec<PortConfig>,
    /// Network key → aliases, in the order given.
    pub networks: Vec<(String, Vec<String>)>,
    pub volumes: Vec<VolumeMount>,
    pub secrets: Vec<FileUse>,
    pub configs: Vec<FileUse>,
    pub healthcheck: Option<HealthDef>,
    /// Container labels.
    pub labels: BTreeMap<String, String>,
    pub hostname: String,
    pub user: String,
    pub working_dir: String,
    pub stop_grace_period: Option<String>,
    pub deploy: DeployDef,
}

/// One entry of a service's `volumes`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeMount {
    /// `volume`, `bind` or `tmpfs`.
    pub kind: String,
    /// A volume key, a host path, or empty (an anonymous volume, or tmpfs).
    pub source: String,
    pub target: String,
    pub read_only: bool,
    pub nocopy: bool,
    pub propagation: String,
    pub tmpfs_size: Option<String>,
}

/// One entry of a service's `secrets` or `configs`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileUse {
    pub source: String,
    pub target: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
    pub mode: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthDef {
    pub test: Vec<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_period: Option<String>,
    pub retries: Option<u64>,
    pub disable: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeployDef {
    pub mode: Option<String>,
    pub replicas: Option<u64>,
    pub endpoint_mode: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub constraints: Vec<String>,
    /// `spread` values (`node.labels.zone`).
    pub preferences: Vec<String>,
    pub max_replicas_per_node: Option<u64>,
    pub limits: ResourcesDef,
    pub reservations: ResourcesDef,
    pub restart_policy: Option<RestartDef>,
    pub update_config: Option<UpdateDef>,
    pub rollback_config: Option<UpdateDef>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourcesDef {
    pub cpus: Option<String>,
    pub memory: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestartDef {
    pub condition: Option<String>,
    pub delay: Option<String>,
    pub max_attempts: Option<u64>,
    pub window: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateDef {
    pub parallelism: Option<u64>,
    pub delay: Option<String>,
    pub failure_action: Option<String>,
    pub monitor: Option<String>,
    pub max_failure_ratio: Option<String>,
    pub order: Option<String>,
}

/// A top-level network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkDef {
    pub driver: Option<String>,
    pub attachable: bool,
    pub external: bool,
    /// The name in the cluster, when not `STACK_KEY` (or the key, for an external one).
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub driver_opts: BTreeMap<String, String>,
    pub subnet: Option<String>,
}

/// A top-level volume.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeDef {
    pub driver: Option<String>,
    pub external: bool,
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub driver_opts: BTreeMap<String, String>,
}

/// A top-level secret or config: from a file, or external.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileDef {
    pub file: Option<String>,
    pub external: bool,
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
}

const TOP_KEYS: &[&str] = &[
    "version", "services", "networks", "volumes", "secrets", "configs",
];

/// Service keys Swarm honours.
const SERVICE_KEYS: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "networks",
    "volumes",
    "secrets",
    "configs",
    "healthcheck",
    "labels",
    "deploy",
    "hostname",
    "user",
    "working_dir",
    "stop_grace_period",
];

/// Service keys of the compose format that Swarm ignores ("Ignoring unsupported options").
const SERVICE_UNSUPPORTED: &[&str] = &[
    "build",
    "cap_add",
    "cap_drop",
    "cgroup_parent",
    "cgroupns_mode",
    "container_name",
    "depends_on",
    "devices",
    "dns",
    "dns_search",
    "domainname",
    "expose",
    "external_links",
    "extra_hosts",
    "init",
    "ipc",
    "isolation",
    "links",
    "logging",
    "mac_address",
    "network_mode",
    "pid",
    "privileged",
    "read_only",
    "restart",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_signal",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "userns_mode",
];

impl Project {
    /// Reads the merged tree; `ignored` collects the unsupported keys met.
    pub fn from_tree(tree: &Value, ignored: &mut Vec<String>) -> Result<Self, ComposeError> {
        let root = At {
            value: tree,
            path: "",
        };
        let mut p = Project::default();
        let mut has_services = false;
        for (key, value, path) in known_keys(root, TOP_KEYS, &[], ignored)? {
            let at = At { value, path: &path };
            match key.as_str() {
                "version" => check_version(at)?,
                "services" => {
                    has_services = true;
                    for (name, v, path) in at.entries()?.items {
                        let def = ServiceDef::read(
                            At {
                                value: v,
                                path: &path,
                            },
                            ignored,
                        )?;
                        p.services.insert(name, def);
                    }
                }
                "networks" => p.networks = named(at, NetworkDef::read)?,
                "volumes" => p.volumes = named(at, VolumeDef::read)?,
                "secrets" => p.secrets = named(at, FileDef::read)?,
                _ => p.configs = named(at, FileDef::read)?,
            }
        }
        if !has_services || p.services.is_empty() {
            return Err(ComposeError::at(
                "services",
                "no services: a compose file needs a services mapping with at least one service",
            ));
        }
        Ok(p)
    }
}

fn check_version(at: At) -> Result<(), ComposeError> {
    let v = at.string()?;
    if v.starts_with('3') {
        Ok(())
    } else {
        Err(at.err(format!(
            "unsupported compose file version {v:?}: Swarm stacks take version 3.x (or no \
             version key)"
        )))
    }
}

fn named<T>(
    at: At,
    read: fn(At) -> Result<T, ComposeError>,
) -> Result<BTreeMap<String, T>, ComposeError> {
    let mut out = BTreeMap::new();
    for (name, v, path) in at.entries()?.items {
        out.insert(
            name,
            read(At {
                value: v,
                path: &path,
            })?,
        );
    }
    Ok(out)
}

/// `labels`, `environment`, `driver_opts`: a mapping, or a list of `K=V` (`K` alone: no value).
pub(crate) fn string_map(at: At) -> Result<BTreeMap<String, Option<String>>, ComposeError> {
    let mut out = BTreeMap::new();
    if matches!(at.value, Value::Sequence(_)) {
        for (v, path) in at.items()? {
            let item = At {
                value: v,
                path: &path,
            }
            .string()?;
            let (k, v) = match item.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (item.clone(), None),
            };
            if k.trim().is_empty() {
                return Err(ComposeError::at(
                    &path,
                    format!("{item:?} is not KEY=VALUE"),
                ));
            }
            out.insert(k, v);
        }
        return Ok(out);
    }
    for (k, v, path) in at.entries()?.items {
        let value = At {
            value: v,
            path: &path,
        };
        out.insert(
            k,
            if value.is_null() {
                None
            } else {
                Some(value.string()?)
            },
        );
    }
    Ok(out)
}

fn labels(at: At) -> Result<BTreeMap<String, String>, ComposeError> {
    Ok(string_map(at)?
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

/// `external: true`, or the old `external: {name: N}`.
fn external(at: At, name: &mut Option<String>) -> Result<bool, ComposeError> {
    if matches!(at.value, Value::Mapping(_)) {
        for (k, v, path) in known_keys(at, &["name"], &[], &mut Vec::new())? {
            debug_assert_eq!(k, "name");
            *name = Some(
                At {
                    value: v,
                    path: &path,
                }
                .string()?,
            );
        }
        return Ok(true);
    }
    at.bool()
}

impl NetworkDef {
    fn read(at: At) -> Result<Self, ComposeError> {
        let mut n = NetworkDef::default();
        let keys = [
            "driver",
            "attachable",
            "external",
            "name",
            "labels",
            "driver_opts",
            "ipam",
            "internal",
        ];
        for (key, v, path) in known_keys(at, &keys, &[], &mut Vec::new())? {
            let f = At {
                value: v,
                path: &path,
            };
            match key.as_str() {
                "driver" => n.driver = Some(f.string()?),
                "attachable" => n.attachable = f.bool()?,
                "external" => n.external = external(f, &mut n.name)?,
                "name" => n.name = Some(f.string()?),
                "labels" => n.labels = labels(f)?,
                "driver_opts" => n.driver_opts = labels(f)?,
                "ipam" => n.subnet = ipam_subnet(f)?,
                _ => {
                    if f.bool()? {
                        return Err(f.err("internal networks are not supported: overlay networks here always route"));
                    }
                }
            }
        }
        Ok(n)
    }
}

/// `ipam: {config: [{subnet: CIDR}]}`: the one subnet an overlay network takes.
fn ipam_subnet(at: At) -> Result<Option<String>, ComposeError> {
    let mut subnet = None;
    for (key, v, path) in known_keys(at, &["driver", "config"], &[], &mut Vec::new())? {
        let f = At {
            value: v,
            path: &path,
        };
        if key == "driver" {
            if f.string()? != "default" {
                return Err(f.err("only the default IPAM driver exists"));
            }
            continue;
        }
        let items = f.items()?;
        if items.len() > 1 {
            return Err(f.err("an overlay network takes one subnet: give one config entry"));
        }
        for (item, path) in items {
            for (_, v, path) in known_keys(
                At {
                    value: item,
                    path: &path,
                },
                &["subnet"],
                &[],
                &mut Vec::new(),
            )? {
                subnet = Some(
                    At {
                        value: v,
                        path: &path,
                    }
                    .string()?,
                );
            }
        }
    }
    Ok(subnet)
}

impl VolumeDef {
    fn read(at: At) -> Result<Self, ComposeError> {
        let mut d = VolumeDef::default();
        for (key, v, path) in known_keys(
            at,
            &["driver", "external", "name", "labels", "driver_opts"],
            &[],
            &mut Vec::new(),
        )? {
            let f = At {
                value: v,
                path: &path,
            };
            match key.as_str() {
                "driver" => d.driver = Some(f.string()?),
                "external" => d.external = external(f, &mut d.name)?,
                "name" => d.name = Some(f.string()?),
                "labels" => d.labels = labels(f)?,
                _ => d.driver_opts = labels(f)?,
            }
        }
        Ok(d)
    }
}

impl FileDef {
    fn read(at: At) -> Result<Self, ComposeError> {
        let mut d = FileDef::default();
        for (key, v, path) in known_keys(
            at,
            &["file", "external", "name", "labels"],
            &[],
            &mut Vec::new(),
        )? {
            let f = At {
                value: v,
                path: &path,
            };
            match key.as_str() {
                "file" => d.file = Some(f.string()?),
                "external" => d.external = external(f, &mut d.name)?,
                "name" => d.name = Some(f.string()?),
                _ => d.labels = labels(f)?,
            }
        }
        if d.external == d.file.is_some() {
            return Err(at.err("give either file: PATH or external: true (exactly one)"));
        }
        Ok(d)
    }
}

impl ServiceDef {
    fn read(at: At, ignored: &mut Vec<String>) -> Result<Self, ComposeError> {
        let mut s = ServiceDef::default();
        for (key, v, path) in known_keys(at, SERVICE_KEYS, SERVICE_UNSUPPORTED, ignored)? {
            let f = At {
                value: v,
                path: &path,
            };
            match key.as_str() {
                "image" => s.image = f.string()?,
                "command" => s.command = Some(words(f)?),
                "entrypoint" => s.entrypoint = Some(words(f)?),
                "environment" => s.environment = string_map(f)?,
                "env_file" => s.env_file = f.strings()?,
                "ports" => s.ports = ports(f)?,
                "networks" => s.networks = service_networks(f)?,
                "volumes" => s.volumes = crate::mounts::read_volumes(f)?,
                "secrets" => s.secrets = file_uses(f)?,
                "configs" => s.configs = file_uses(f)?,
                "healthcheck" => s.healthcheck = Some(crate::deploy::read_health(f)?),
                "labels" => s.labels = labels(f)?,
                "hostname" => s.hostname = f.string()?,
                "user" => s.user = f.string()?,
                "working_dir" => s.working_dir = f.string()?,
                "stop_grace_period" => s.stop_grace_period = Some(f.string()?),
                _ => s.deploy = crate::deploy::read_deploy(f)?,
            }
        }
        if s.image.trim().is_empty() {
            return Err(at.err(
                "no image: every service needs image: NAME[:TAG] (build: is ignored by stacks)",
            ));
        }
        Ok(s)
    }
}

/// `command`/`entrypoint`: a string split as a shell would, or a list as is.
fn words(at: At) -> Result<Vec<String>, ComposeError> {
    match at.value {
        Value::Sequence(_) => at.strings(),
        _ => split_words(at.path, &at.string()?).map_err(|e| at.err(e.0)),
    }
}

fn ports(at: At) -> Result<Vec<PortConfig>, ComposeError> {
    let mut out = Vec::new();
    for (v, path) in at.items()? {
        let item = At {
            value: v,
            path: &path,
        };
        let port = if matches!(v, Value::Mapping(_)) {
            long_port(item)?
        } else {
            parse_port(&item.string()?).map_err(|e| item.err(e.0))?
        };
        out.push(port);
    }
    Ok(out)
}

/// `{target, published, protocol, mode}`, checked by the `--publish` parser.
fn long_port(at: At) -> Result<PortConfig, ComposeError> {
    let mut fields = Vec::new();
    for (key, v, path) in known_keys(
        at,
        &["target", "published", "protocol", "mode"],
        &[],
        &mut Vec::new(),
    )? {
        fields.push(format!(
            "{key}={}",
            At {
                value: v,
                path: &path
            }
            .string()?
        ));
    }
    if !fields.iter().any(|f| f.starts_with("target=")) {
        return Err(at.err(
            "a long-form port needs target: PORT (and optionally published, protocol, mode)",
        ));
    }
    parse_port(&fields.join(",")).map_err(|e| at.err(e.0))
}

/// A service's `networks`: a list of keys, or a mapping of key → `{aliases: [...]}` or null.
fn service_networks(at: At) -> Result<Vec<(String, Vec<String>)>, ComposeError> {
    if matches!(at.value, Value::Sequence(_)) {
        return Ok(at.strings()?.into_iter().map(|n| (n, Vec::new())).collect());
    }
    let mut out = Vec::new();
    for (name, v, path) in at.entries()?.items {
        let mut aliases = Vec::new();
        let f = At {
            value: v,
            path: &path,
        };
        for (key, v, path) in known_keys(
            f,
            &["aliases"],
            &["ipv4_address", "ipv6_address"],
            &mut Vec::new(),
        )? {
            debug_assert_eq!(key, "aliases");
            aliases = At {
                value: v,
                path: &path,
            }
            .strings()?;
        }
        out.push((name, aliases));
    }
    Ok(out)
}

/// A service's `secrets`/`configs`: names, or `{source, target, uid, gid, mode}`.
fn file_uses(at: At) -> Result<Vec<FileUse>, ComposeError> {
    let mut out = Vec::new();
    for (v, path) in at.items()? {
        let item = At {
            value: v,
            path: &path,
        };
        if !matches!(v, Value::Mapping(_)) {
            out.push(FileUse {
                source: item.string()?,
                ..FileUse::default()
            });
            continue;
        }
        let mut u = FileUse::default();
        for (key, v, path) in known_keys(
            item,
            &["source", "target", "uid", "gid", "mode"],
            &[],
            &mut Vec::new(),
        )? {
            let f = At {
                value: v,
                path: &path,
            };
            match key.as_str() {
                "source" => u.source = f.string()?,
                "target" => u.target = Some(f.string()?),
                "uid" => u.uid = Some(f.string()?),
                "gid" => u.gid = Some(f.string()?),
                _ => u.mode = Some(file_mode(f)?),
            }
        }
        if u.source.is_empty() {
            return Err(item.err("no source: give source: NAME (a key of the top-level section)"));
        }
        out.push(u);
    }
    Ok(out)
}

/// A file mode: an integer as YAML read it (`0440` is octal in YAML 1.1, as docker reads it;
/// `0o440` in YAML 1.2) or an octal string.
fn file_mode(at: At) -> Result<u32, ComposeError> {
    let bad = || at.err("expected an octal file mode such as 0440 or 0o440 (at most 0o7777)");
    let mode = match at.value {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(bad)?,
        Value::String(s) => {
            u32::from_str_radix(s.trim_start_matches("0o"), 8).map_err(|_| bad())?
        }
        _ => return Err(bad()),
    };
    if mode > 0o7777 {
        return Err(bad());
    }
    Ok(mode)
}

pub(crate) fn protocol_name(p: Protocol) -> &'static str {
    p.as_str()
}

pub(crate) fn publish_mode_name(m: PublishMode) -> &'static str {
    m.as_str()
}
