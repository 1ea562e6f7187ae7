//! From a [`Project`] to what a stack deploy sends: networks, secrets and configs to create,
//! and one [`ServiceSpec`] per service, named and labelled as `docker stack deploy` names them,
//! each value checked by the parsers `service create` uses.

use std::collections::BTreeMap;

use mesh_cluster::Id;
use mesh_cluster::spec::{
    DEFAULT_FILE_MODE, check_file_targets, check_health, check_mounts, parse_duration, parse_env,
    parse_failure_action, parse_memory, parse_update_order, validate_service_name,
    validate_service_spec,
};
use mesh_cluster::state::{
    FileReference, HealthConfig, Ipv4Cidr, Mount, MountKind, NetworkAttachmentConfig, NetworkSpec,
    PublishMode, ServiceSpec, UpdateConfig,
};

use crate::error::ComposeError;
use crate::interpolate::{Environment, parse_env_file};
use crate::model::{FileDef, FileUse, HealthDef, Project, ServiceDef, UpdateDef, VolumeMount};
use crate::mounts::is_host_path;

/// The label Docker puts on everything a stack owns.
pub const STACK_LABEL: &str = "com.docker.stack.namespace";
/// The network of services that name none.
pub const DEFAULT_NETWORK: &str = "default";

/// A secret or config to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobPlan {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub data: Vec<u8>,
}

/// Everything `stack deploy` does, decided before anything is sent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StackPlan {
    pub stack: String,
    /// Networks to create unless they exist (`STACK_KEY`, `STACK_default`).
    pub networks: Vec<NetworkSpec>,
    /// External networks the services use: they must exist.
    pub external_networks: Vec<String>,
    pub secrets: Vec<BlobPlan>,
    pub external_secrets: Vec<String>,
    pub configs: Vec<BlobPlan>,
    pub external_configs: Vec<String>,
    /// `STACK_SERVICE`, in name order.
    pub services: Vec<ServiceSpec>,
}

/// Where files named in the compose file are, and how to read them (the caller does the I/O).
pub struct Sources<'a> {
    /// The folder relative paths start from (the first compose file's).
    pub working_dir: &'a str,
    pub env: &'a Environment,
    /// Reads a file (`env_file`, a secret's or config's `file`): its bytes, or why not.
    pub read: &'a dyn Fn(&str) -> Result<Vec<u8>, String>,
}

impl Sources<'_> {
    fn path(&self, p: &str) -> String {
        if p.starts_with('/') {
            p.to_owned()
        } else {
            format!(
                "{}/{}",
                self.working_dir.trim_end_matches('/'),
                p.trim_start_matches("./")
            )
        }
    }
}

/// A stack's name: what `STACK_SERVICE` names may start with.
pub fn validate_stack_name(stack: &str) -> Result<(), String> {
    let ok = !stack.is_empty()
        && stack.len() <= 50
        && stack
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && stack
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid stack name {stack:?}: expected 1 to 50 letters, digits, '-' or '_', starting \
             with a letter or digit"
        ))
    }
}

/// Plans `project` as stack `stack`. Errors say where in the project they are.
pub fn plan(stack: &str, project: &Project, src: &Sources) -> Result<StackPlan, ComposeError> {
    validate_stack_name(stack).map_err(|m| ComposeError::at("", m))?;
    let mut plan = StackPlan {
        stack: stack.to_owned(),
        ..StackPlan::default()
    };
    plan_networks(&mut plan, project)?;
    for (section, defs, external, created) in [
        (
            "secrets",
            &project.secrets,
            &mut plan.external_secrets,
            &mut plan.secrets,
        ),
        (
            "configs",
            &project.configs,
            &mut plan.external_configs,
            &mut plan.configs,
        ),
    ] {
        plan_files(stack, section, defs, project, src, external, created)?;
    }
    for (name, svc) in &project.services {
        plan.services
            .push(service_spec(stack, name, svc, project, src)?);
    }
    check_port_clashes(project)?;
    Ok(plan)
}

/// Two services of the file publishing the same ingress port and protocol: the second would be
/// refused half way through the deploy, so it is refused before anything is sent.
fn check_port_clashes(project: &Project) -> Result<(), ComposeError> {
    let mut taken: BTreeMap<(u16, &str), &str> = BTreeMap::new();
    for (name, svc) in &project.services {
        for (i, p) in svc.ports.iter().enumerate() {
            if p.published_port == 0 || p.publish_mode != PublishMode::Ingress {
                continue;
            }
            let key = (p.published_port, p.protocol.as_str());
            if let Some(other) = taken.insert(key, name)
                && other != name
            {
                return Err(ComposeError::at(
                    &format!("services.{name}.ports[{i}]"),
                    format!(
                        "port {}/{} is already published by service {other:?}: each published \
                         port may be used by one service",
                        key.0, key.1
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn stack_labels(stack: &str, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut l = labels.clone();
    l.insert(STACK_LABEL.into(), stack.into());
    l
}

/// The cluster name of a top-level entry: its `name`, the key if external, else `STACK_KEY`.
fn scoped(stack: &str, key: &str, name: Option<&String>, external: bool) -> String {
    match name {
        Some(n) => n.clone(),
        None if external => key.to_owned(),
        None => format!("{stack}_{key}"),
    }
}

/// The networks the services use (the default one made up when not declared), in name order.
fn plan_networks(plan: &mut StackPlan, project: &Project) -> Result<(), ComposeError> {
    let mut used: Vec<&str> = Vec::new();
    for svc in project.services.values() {
        if svc.networks.is_empty() {
            used.push(DEFAULT_NETWORK);
        }
        used.extend(svc.networks.iter().map(|(n, _)| n.as_str()));
    }
    used.sort_unstable();
    used.dedup();
    let stack = plan.stack.clone();
    for key in used {
        let def = project.networks.get(key).cloned().unwrap_or_default();
        let path = format!("networks.{key}");
        let name = scoped(&stack, key, def.name.as_ref(), def.external);
        if def.external {
            plan.external_networks.push(name);
            continue;
        }
        let driver = def.driver.clone().unwrap_or_else(|| "overlay".into());
        if driver != "overlay" {
            return Err(ComposeError::at(
                &format!("{path}.driver"),
                format!("unsupported network driver {driver:?}: Swarm stacks use overlay"),
            ));
        }
        let subnet = def
            .subnet
            .as_deref()
            .map(str::parse::<Ipv4Cidr>)
            .transpose()
            .map_err(|e| ComposeError::at(&format!("{path}.ipam.config"), e))?;
        plan.networks.push(NetworkSpec {
            name,
            driver,
            subnet,
            attachable: def.attachable,
            ingress: false,
            labels: stack_labels(&stack, &def.labels),
            options: def.driver_opts.clone(),
        });
    }
    Ok(())
}

fn plan_files(
    stack: &str,
    section: &str,
    defs: &BTreeMap<String, FileDef>,
    project: &Project,
    src: &Sources,
    external: &mut Vec<String>,
    created: &mut Vec<BlobPlan>,
) -> Result<(), ComposeError> {
    for (key, def) in defs {
        let name = scoped(stack, key, def.name.as_ref(), def.external);
        if def.external {
            let used = project.services.values().any(|s| {
                let uses = if section == "secrets" {
                    &s.secrets
                } else {
                    &s.configs
                };
                uses.iter().any(|u| &u.source == key)
            });
            if used {
                external.push(name);
            }
            continue;
        }
        let file = def.file.as_deref().unwrap_or_default();
        let data = (src.read)(&src.path(file)).map_err(|e| {
            ComposeError::at(
                &format!("{section}.{key}.file"),
                format!("cannot read {file:?}: {e}"),
            )
        })?;
        created.push(BlobPlan {
            name,
            labels: stack_labels(stack, &def.labels),
            data,
        });
    }
    Ok(())
}

fn service_spec(
    stack: &str,
    key: &str,
    svc: &ServiceDef,
    project: &Project,
    src: &Sources,
) -> Result<ServiceSpec, ComposeError> {
    let path = format!("services.{key}");
    let err = |sub: &str, m: String| ComposeError::at(&crate::yaml::join(&path, sub), m);
    validate_service_name(key).map_err(|e| err("", e.0))?;
    let mut spec = ServiceSpec {
        name: format!("{stack}_{key}"),
        labels: stack_labels(stack, &svc.deploy.labels),
        ..ServiceSpec::default()
    };
    let c = &mut spec.task.container;
    c.image.clone_from(&svc.image);
    c.command = svc.entrypoint.clone().unwrap_or_default();
    c.args = svc.command.clone().unwrap_or_default();
    c.env = environment(svc, src).map_err(|(sub, m)| err(&sub, m))?;
    c.labels = stack_labels(stack, &svc.labels);
    c.hostname.clone_from(&svc.hostname);
    c.user.clone_from(&svc.user);
    c.workdir.clone_from(&svc.working_dir);
    if let Some(d) = &svc.stop_grace_period {
        c.stop_grace_period_ms = parse_duration(d).map_err(|e| err("stop_grace_period", e.0))?;
    } else {
        c.stop_grace_period_ms = 10_000;
    }
    c.mounts = svc
        .volumes
        .iter()
        .enumerate()
        .map(|(i, v)| mount(stack, v, project, src).map_err(|m| err(&format!("volumes[{i}]"), m)))
        .collect::<Result<_, _>>()?;
    check_mounts(&c.mounts).map_err(|e| err("volumes", e.0))?;
    c.secrets =
        file_refs(stack, "secrets", &svc.secrets, &project.secrets).map_err(|(s, m)| err(&s, m))?;
    c.configs =
        file_refs(stack, "configs", &svc.configs, &project.configs).map_err(|(s, m)| err(&s, m))?;
    check_file_targets(&c.secrets, &c.configs).map_err(|e| err("secrets", e.0))?;
    if let Some(h) = &svc.healthcheck {
        c.healthcheck = health(h).map_err(|(s, m)| err(&format!("healthcheck.{s}"), m))?;
    }
    spec.task.networks = attachments(stack, key, svc, project).map_err(|(s, m)| err(&s, m))?;
    spec.endpoint.ports.clone_from(&svc.ports);
    crate::deploy_plan::apply_deploy(&mut spec, &svc.deploy)
        .map_err(|(s, m)| err(&format!("deploy.{s}"), m))?;
    validate_service_spec(&spec).map_err(|e| err("", e.0))?;
    Ok(spec)
}

pub(crate) type Failed = (String, String);

/// `env_file` contents in order, then `environment` over them; `KEY` without a value from the
/// environment, left out when not set there (as docker does).
fn environment(svc: &ServiceDef, src: &Sources) -> Result<Vec<String>, Failed> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for (i, file) in svc.env_file.iter().enumerate() {
        let at = || format!("env_file[{i}]");
        let bytes = (src.read)(&src.path(file))
            .map_err(|e| (at(), format!("cannot read {file:?}: {e}")))?;
        let text =
            String::from_utf8(bytes).map_err(|_| (at(), format!("{file:?} is not UTF-8 text")))?;
        for (k, v) in parse_env_file(&text, src.env).map_err(|e| (at(), format!("{file:?} {e}")))? {
            vars.insert(k, v);
        }
    }
    for (k, v) in &svc.environment {
        match v {
            Some(v) => {
                vars.insert(k.clone(), v.clone());
            }
            None => {
                if let Some(v) = src.env.get(k) {
                    vars.insert(k.clone(), v.clone());
                }
            }
        }
    }
    vars.into_iter()
        .map(|(k, v)| {
            let text = format!("{k}={v}");
            parse_env(&text).map_err(|e| (format!("environment.{k}"), e.0))
        })
        .collect()
}

fn mount(stack: &str, v: &VolumeMount, project: &Project, src: &Sources) -> Result<Mount, String> {
    let mut m = Mount {
        target: v.target.clone(),
        readonly: v.read_only,
        volume_nocopy: v.nocopy,
        bind_propagation: v.propagation.clone(),
        ..Mount::default()
    };
    match v.kind.as_str() {
        "bind" => {
            m.kind = MountKind::Bind;
            m.source = if is_host_path(&v.source) {
                src.path(&v.source)
            } else {
                v.source.clone()
            };
        }
        "tmpfs" => {
            m.kind = MountKind::Tmpfs;
            if let Some(size) = &v.tmpfs_size {
                m.tmpfs_size_bytes = parse_memory(size).map_err(|e| e.0)?;
            }
        }
        _ if v.source.is_empty() => m.kind = MountKind::Volume,
        _ => {
            let def = project.volumes.get(&v.source).ok_or_else(|| {
                format!(
                    "undefined volume {:?}: declare it under the top-level volumes key (or use a \
                     path starting with / or ./ for a bind mount)",
                    v.source
                )
            })?;
            m.kind = MountKind::Volume;
            m.source = scoped(stack, &v.source, def.name.as_ref(), def.external);
            m.volume_driver = def.driver.clone().unwrap_or_default();
            m.volume_opts.clone_from(&def.driver_opts);
            if !def.external {
                m.volume_labels = stack_labels(stack, &def.labels);
            }
        }
    }
    Ok(m)
}

fn file_refs(
    stack: &str,
    section: &str,
    uses: &[FileUse],
    defs: &BTreeMap<String, FileDef>,
) -> Result<Vec<FileReference>, Failed> {
    let mut out = Vec::new();
    for (i, u) in uses.iter().enumerate() {
        let at = format!("{section}[{i}]");
        let def = defs.get(&u.source).ok_or_else(|| {
            let known: Vec<&str> = defs.keys().map(String::as_str).collect();
            (
                at.clone(),
                format!(
                    "undefined {} {:?}: declare it under the top-level {section} key (declared: {})",
                    &section[..section.len() - 1],
                    u.source,
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                ),
            )
        })?;
        let target = u.target.clone().unwrap_or_else(|| u.source.clone());
        if target.split('/').any(|c| c == "..") {
            return Err((at, format!("target {target:?} may not contain '..'")));
        }
        for (what, id) in [("uid", &u.uid), ("gid", &u.gid)] {
            if id
                .as_ref()
                .is_some_and(|v| v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err((at, format!("{what} must be a number")));
            }
        }
        out.push(FileReference {
            id: Id::from(""),
            name: scoped(stack, &u.source, def.name.as_ref(), def.external),
            target,
            uid: u.uid.clone().unwrap_or_else(|| "0".into()),
            gid: u.gid.clone().unwrap_or_else(|| "0".into()),
            mode: u.mode.unwrap_or(DEFAULT_FILE_MODE),
        });
    }
    Ok(out)
}

fn health(h: &HealthDef) -> Result<Option<HealthConfig>, Failed> {
    if h.disable {
        return Ok(Some(HealthConfig {
            test: vec!["NONE".into()],
            ..HealthConfig::default()
        }));
    }
    let duration = |key: &str, v: &Option<String>| {
        v.as_deref()
            .map_or(Ok(0), parse_duration)
            .map_err(|e| (key.to_owned(), e.0))
    };
    let config = HealthConfig {
        test: h.test.clone(),
        interval_ms: duration("interval", &h.interval)?,
        timeout_ms: duration("timeout", &h.timeout)?,
        start_period_ms: duration("start_period", &h.start_period)?,
        retries: h.retries.unwrap_or(0),
    };
    check_health(&config).map_err(|e| ("test".to_owned(), e.0))?;
    Ok((config != HealthConfig::default()).then_some(config))
}

/// The service's networks (`default` when it names none), each with the service's short name
/// as an alias so that `http://api/` reaches `STACK_api` inside the stack.
fn attachments(
    stack: &str,
    key: &str,
    svc: &ServiceDef,
    project: &Project,
) -> Result<Vec<NetworkAttachmentConfig>, Failed> {
    let default = [(DEFAULT_NETWORK.to_owned(), Vec::new())];
    let nets = if svc.networks.is_empty() {
        &default[..]
    } else {
        &svc.networks[..]
    };
    let mut out = Vec::new();
    for (net, aliases) in nets {
        let def = match project.networks.get(net) {
            Some(d) => d.clone(),
            None if net == DEFAULT_NETWORK => crate::model::NetworkDef::default(),
            None => {
                return Err((
                    format!("networks.{net}"),
                    format!(
                        "undefined network {net:?}: declare it under the top-level networks key"
                    ),
                ));
            }
        };
        let mut all = vec![key.to_owned()];
        all.extend(aliases.iter().filter(|a| a.as_str() != key).cloned());
        out.push(NetworkAttachmentConfig {
            target: Id::from(scoped(stack, net, def.name.as_ref(), def.external).as_str()),
            aliases: all,
        });
    }
    Ok(out)
}

/// `update_config`/`rollback_config` over Docker's defaults.
pub(crate) fn update_config(u: &UpdateDef) -> Result<UpdateConfig, Failed> {
    let mut c = UpdateConfig::default();
    if let Some(p) = u.parallelism {
        c.parallelism = p;
    }
    if let Some(d) = &u.delay {
        c.delay_ms = parse_duration(d).map_err(|e| ("delay".to_owned(), e.0))?;
    }
    if let Some(a) = &u.failure_action {
        c.failure_action =
            parse_failure_action(a).map_err(|e| ("failure_action".to_owned(), e.0))?;
    }
    if let Some(m) = &u.monitor {
        c.monitor_ms = parse_duration(m).map_err(|e| ("monitor".to_owned(), e.0))?;
    }
    if let Some(r) = &u.max_failure_ratio {
        c.max_failure_ratio = r
            .trim()
            .parse::<f32>()
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or_else(|| {
                (
                    "max_failure_ratio".to_owned(),
                    format!("{r:?} is not a number from 0 to 1"),
                )
            })?;
    }
    if let Some(o) = &u.order {
        c.order = parse_update_order(o).map_err(|e| ("order".to_owned(), e.0))?;
    }
    Ok(c)
}
