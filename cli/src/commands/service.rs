//! `meshctl service create | ls | ps | inspect | logs | scale | update | rollback | rm`, with
//! Docker's flags and output.
//!
//! The client builds specs from flags ([`create_spec`], [`update_spec`]: pure, unit-tested) and
//! sends them whole; the manager checks everything before it stores anything. `update` reads the
//! service, applies the flags to its spec and sends it back with the version it read (re-read
//! and re-applied when another write got in between). Without `--detach`, create, update, scale
//! and rollback then follow the service until it converges ([`progress`]).

pub(crate) mod inspect;
mod progress;

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use futures::StreamExt;
use mesh_api::transport::Client;
use mesh_api::{ApiError, Code, LogsRequest, Reply, Request, ServiceTasksReply, StreamItem};
use mesh_cluster::Id;
use mesh_cluster::spec::{
    SpecError, format_mode, parse_cpus, parse_duration, parse_endpoint_mode, parse_env,
    parse_failure_action, parse_memory, parse_mode, parse_placement_pref, parse_port,
    parse_replicas, parse_restart_condition, parse_update_order,
};
use mesh_cluster::state::{
    ClusterState, Network, NetworkAttachmentConfig, Protocol, ServiceMode, ServiceSpec, Task,
    UpdateConfig,
};

use super::{Reported, Target, connect, reported, runtime, unexpected};

#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// Create a new service.
    Create(Box<CreateArgs>),
    /// List services.
    #[command(alias = "list")]
    Ls {
        /// Only IDs.
        #[arg(long, short)]
        quiet: bool,
        /// `json`: one JSON object per service.
        #[arg(long)]
        format: Option<String>,
    },
    /// List the tasks of one or more services.
    Ps {
        /// Full IDs and errors.
        #[arg(long)]
        no_trunc: bool,
        /// Only task IDs.
        #[arg(long, short)]
        quiet: bool,
        /// `desired-state=running|shutdown|...`, `node=NODE`, `id=ID`, `name=NAME`.
        #[arg(long, short)]
        filter: Vec<String>,
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Show services in detail: JSON, `--pretty`, or `--format '{{json .Spec}}'`.
    Inspect {
        #[arg(long)]
        pretty: bool,
        /// `json`, or a template such as '{{json .Endpoint.Spec.Ports}}' or '{{.Spec.Name}}'.
        #[arg(long, short)]
        format: Option<String>,
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Fetch the logs of a service or a task.
    Logs {
        /// Lines from the end of each task's log (`all` or a number).
        #[arg(long, short = 'n', default_value = "all")]
        tail: String,
        /// Keep streaming new lines.
        #[arg(long, short)]
        follow: bool,
        /// Show timestamps.
        #[arg(long, short)]
        timestamps: bool,
        /// Full task IDs in the prefix.
        #[arg(long)]
        no_trunc: bool,
        /// A service, or a task ID.
        target: String,
    },
    /// Scale one or more replicated services: SERVICE=REPLICAS...
    Scale {
        /// Exit at once instead of waiting for the services to converge.
        #[arg(long, short)]
        detach: bool,
        #[arg(required = true)]
        scales: Vec<String>,
    },
    /// Update a service.
    Update(Box<UpdateArgs>),
    /// Publish a port of an existing service: `publish 8080:80 web` (as `update --publish-add`;
    /// the service's tasks are replaced, as any change of its ports does).
    Publish {
        /// Exit at once instead of waiting for the service to converge.
        #[arg(long, short)]
        detach: bool,
        /// Print no progress.
        #[arg(long, short)]
        quiet: bool,
        /// PUBLISHED:TARGET[/udp], TARGET alone (a free port from 30000-32767 is published), or
        /// published=P,target=T[,protocol=tcp|udp][,mode=ingress|host].
        port: String,
        service: String,
    },
    /// Revert a service to its previous spec.
    Rollback {
        #[arg(long, short)]
        detach: bool,
        #[arg(long, short)]
        quiet: bool,
        service: String,
    },
    /// Remove one or more services.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        services: Vec<String>,
    },
}

/// Flags `create` and `update` share (Docker's names).
#[derive(Args, Debug, Default, Clone)]
pub struct CommonArgs {
    /// Number of tasks (replicated mode).
    #[arg(long, allow_hyphen_values = true)]
    pub replicas: Option<String>,
    /// Exit at once instead of waiting for the service to converge.
    #[arg(long, short)]
    pub detach: bool,
    /// Print no progress.
    #[arg(long, short)]
    pub quiet: bool,
    /// Reserve CPUs (0.5).
    #[arg(long)]
    pub reserve_cpu: Option<String>,
    /// Reserve memory (512M).
    #[arg(long)]
    pub reserve_memory: Option<String>,
    /// Limit CPUs.
    #[arg(long)]
    pub limit_cpu: Option<String>,
    /// Limit memory.
    #[arg(long)]
    pub limit_memory: Option<String>,
    /// Restart when: any, on-failure, none.
    #[arg(long)]
    pub restart_condition: Option<String>,
    /// Delay between restart attempts (5s).
    #[arg(long)]
    pub restart_delay: Option<String>,
    /// Maximum number of restarts before giving up (0: no limit).
    #[arg(long)]
    pub restart_max_attempts: Option<String>,
    /// Window in which restarts are counted (0: since creation).
    #[arg(long)]
    pub restart_window: Option<String>,
    /// Delay between updates of groups of tasks.
    #[arg(long)]
    pub update_delay: Option<String>,
    /// Tasks updated at once (0: all).
    #[arg(long)]
    pub update_parallelism: Option<String>,
    /// On update failure: pause, continue, rollback.
    #[arg(long)]
    pub update_failure_action: Option<String>,
    /// stop-first or start-first.
    #[arg(long)]
    pub update_order: Option<String>,
    /// Time to watch each updated task for failure.
    #[arg(long)]
    pub update_monitor: Option<String>,
    /// Failure rate to tolerate during an update (0 to 1).
    #[arg(long)]
    pub update_max_failure_ratio: Option<String>,
    /// Delay between rollbacks of groups of tasks.
    #[arg(long)]
    pub rollback_delay: Option<String>,
    /// Tasks rolled back at once (0: all).
    #[arg(long)]
    pub rollback_parallelism: Option<String>,
    /// On rollback failure: pause, continue.
    #[arg(long)]
    pub rollback_failure_action: Option<String>,
    /// stop-first or start-first.
    #[arg(long)]
    pub rollback_order: Option<String>,
    /// Time to watch each rolled-back task for failure.
    #[arg(long)]
    pub rollback_monitor: Option<String>,
    /// Failure rate to tolerate during a rollback (0 to 1).
    #[arg(long)]
    pub rollback_max_failure_ratio: Option<String>,
    /// vip or dnsrr.
    #[arg(long)]
    pub endpoint_mode: Option<String>,
    /// Time between SIGTERM and SIGKILL when a task stops (10s).
    #[arg(long)]
    pub stop_grace_period: Option<String>,
    /// Maximum replicas of the service on one node (0: no limit).
    #[arg(long)]
    pub replicas_max_per_node: Option<String>,
    /// The containers' hostname.
    #[arg(long)]
    pub hostname: Option<String>,
    /// The containers' working directory.
    #[arg(long, short)]
    pub workdir: Option<String>,
    /// The containers' user.
    #[arg(long, short)]
    pub user: Option<String>,
}

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
    #[command(flatten)]
    pub common: CommonArgs,
    /// The image to run.
    pub image: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// `service update [OPTIONS] SERVICE`.
#[derive(Args, Debug, Default, Clone)]
pub struct UpdateArgs {
    /// The image to run.
    #[arg(long)]
    pub image: Option<String>,
    /// The command's arguments (split on spaces).
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
    /// Replace the tasks even if nothing changed.
    #[arg(long)]
    pub force: bool,
    /// Go back to the previous spec.
    #[arg(long)]
    pub rollback: bool,
    #[command(flatten)]
    pub common: CommonArgs,
    pub service: String,
}

fn spec_err(e: SpecError) -> anyhow::Error {
    anyhow::Error::msg(e.0)
}

/// `--network`: `NAME` (a name or id), or `name=NAME[,alias=ALIAS...]`. The manager resolves the
/// name to the network's id.
pub fn parse_network(s: &str) -> Result<NetworkAttachmentConfig> {
    let bad = |why: &str| {
        anyhow::anyhow!("invalid --network {s:?}: {why}; expected NAME or name=NAME[,alias=ALIAS]")
    };
    if !s.contains('=') {
        if s.trim().is_empty() || s.contains(',') {
            return Err(bad("no network name"));
        }
        return Ok(NetworkAttachmentConfig {
            target: Id::from(s.trim()),
            aliases: Vec::new(),
        });
    }
    let mut target = None;
    let mut aliases = Vec::new();
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("name" | "target", v)) if !v.trim().is_empty() => target = Some(v.trim()),
            Some(("alias", v)) if !v.trim().is_empty() => aliases.push(v.trim().to_owned()),
            _ => return Err(bad(&format!("unknown or empty field {part:?}"))),
        }
    }
    let target = target.ok_or_else(|| bad("no name= field"))?;
    Ok(NetworkAttachmentConfig {
        target: Id::from(target),
        aliases,
    })
}

/// `--network-rm`: the networks named (by id, name or unique id prefix) among `known`.
pub fn resolve_networks(names: &[String], known: &[Network]) -> Result<Vec<Id>> {
    names
        .iter()
        .map(|q| {
            let by_id = known.iter().find(|n| n.id.as_str() == q);
            let by_name = || known.iter().find(|n| n.spec.name == *q);
            let by_prefix = || {
                let mut m = known.iter().filter(|n| n.id.matches_prefix(q));
                match (m.next(), m.next()) {
                    (Some(n), None) => Some(n),
                    _ => None,
                }
            };
            by_id
                .or_else(by_name)
                .or_else(by_prefix)
                .map(|n| n.id.clone())
                .ok_or_else(|| {
                    Reported(format!("Error response from daemon: network {q} not found")).into()
                })
        })
        .collect()
}

/// `key=value` (or `key`, an empty value).
fn parse_label(s: &str) -> Result<(String, String)> {
    let (k, v) = s.split_once('=').unwrap_or((s, ""));
    if k.trim().is_empty() {
        bail!("invalid label {s:?}: expected key=value");
    }
    Ok((k.to_owned(), v.to_owned()))
}

fn parse_u64(what: &str, s: &str) -> Result<u64> {
    s.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid {what} {s:?}: expected a non-negative integer"))
}

fn parse_ratio(what: &str, s: &str) -> Result<f32> {
    match s.trim().parse::<f32>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => bail!("invalid {what} {s:?}: expected a number from 0 to 1"),
    }
}

/// The flags of one update or rollback config.
struct ConfigFlags<'a> {
    what: &'static str,
    delay: &'a Option<String>,
    parallelism: &'a Option<String>,
    failure_action: &'a Option<String>,
    order: &'a Option<String>,
    monitor: &'a Option<String>,
    max_failure_ratio: &'a Option<String>,
}

fn apply_config(c: &mut UpdateConfig, f: &ConfigFlags) -> Result<()> {
    if let Some(v) = f.delay {
        c.delay_ms = parse_duration(v).map_err(spec_err)?;
    }
    if let Some(v) = f.parallelism {
        c.parallelism = parse_u64(&format!("--{}-parallelism", f.what), v)?;
    }
    if let Some(v) = f.failure_action {
        c.failure_action = parse_failure_action(v).map_err(spec_err)?;
    }
    if let Some(v) = f.order {
        c.order = parse_update_order(v).map_err(spec_err)?;
    }
    if let Some(v) = f.monitor {
        c.monitor_ms = parse_duration(v).map_err(spec_err)?;
    }
    if let Some(v) = f.max_failure_ratio {
        c.max_failure_ratio = parse_ratio(&format!("--{}-max-failure-ratio", f.what), v)?;
    }
    Ok(())
}

/// Applies the flags `create` and `update` share (those given) to `spec`.
fn apply_common(spec: &mut ServiceSpec, c: &CommonArgs) -> Result<()> {
    if let Some(r) = &c.replicas {
        let replicas = parse_replicas(r).map_err(spec_err)?;
        match spec.mode {
            ServiceMode::Replicated { .. } => spec.mode = ServiceMode::Replicated { replicas },
            ServiceMode::Global => {
                bail!("--replicas can only be used with replicated mode (not with --mode global)")
            }
        }
    }
    let res = &mut spec.task.resources;
    if let Some(v) = &c.reserve_cpu {
        res.reservations.nano_cpus = parse_cpus(v).map_err(spec_err)?;
    }
    if let Some(v) = &c.reserve_memory {
        res.reservations.memory_bytes = parse_memory(v).map_err(spec_err)?;
    }
    if let Some(v) = &c.limit_cpu {
        res.limits.nano_cpus = parse_cpus(v).map_err(spec_err)?;
    }
    if let Some(v) = &c.limit_memory {
        res.limits.memory_bytes = parse_memory(v).map_err(spec_err)?;
    }
    let restart = &mut spec.task.restart;
    if let Some(v) = &c.restart_condition {
        restart.condition = parse_restart_condition(v).map_err(spec_err)?;
    }
    if let Some(v) = &c.restart_delay {
        restart.delay_ms = parse_duration(v).map_err(spec_err)?;
    }
    if let Some(v) = &c.restart_max_attempts {
        restart.max_attempts = parse_u64("--restart-max-attempts", v)?;
    }
    if let Some(v) = &c.restart_window {
        restart.window_ms = parse_duration(v).map_err(spec_err)?;
    }
    apply_config(
        &mut spec.update,
        &ConfigFlags {
            what: "update",
            delay: &c.update_delay,
            parallelism: &c.update_parallelism,
            failure_action: &c.update_failure_action,
            order: &c.update_order,
            monitor: &c.update_monitor,
            max_failure_ratio: &c.update_max_failure_ratio,
        },
    )?;
    apply_config(
        &mut spec.rollback,
        &ConfigFlags {
            what: "rollback",
            delay: &c.rollback_delay,
            parallelism: &c.rollback_parallelism,
            failure_action: &c.rollback_failure_action,
            order: &c.rollback_order,
            monitor: &c.rollback_monitor,
            max_failure_ratio: &c.rollback_max_failure_ratio,
        },
    )?;
    if let Some(v) = &c.endpoint_mode {
        spec.endpoint.mode = parse_endpoint_mode(v).map_err(spec_err)?;
    }
    let container = &mut spec.task.container;
    if let Some(v) = &c.stop_grace_period {
        container.stop_grace_period_ms = parse_duration(v).map_err(spec_err)?;
    }
    if let Some(v) = &c.replicas_max_per_node {
        spec.task.placement.max_replicas_per_node = parse_u64("--replicas-max-per-node", v)?;
    }
    if let Some(v) = &c.hostname {
        v.clone_into(&mut container.hostname);
    }
    if let Some(v) = &c.workdir {
        v.clone_into(&mut container.workdir);
    }
    if let Some(v) = &c.user {
        v.clone_into(&mut container.user);
    }
    Ok(())
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
        spec.task.container.command = e.split_whitespace().map(str::to_owned).collect();
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
    Ok(spec)
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

/// The spec `service update` sends: `current` with the flags applied (pure).
pub fn update_spec(current: &ServiceSpec, a: &UpdateArgs) -> Result<ServiceSpec> {
    let mut spec = current.clone();
    apply_common(&mut spec, &a.common)?;
    let c = &mut spec.task.container;
    if let Some(i) = &a.image {
        i.clone_into(&mut c.image);
    }
    if let Some(args) = &a.args {
        c.args = args.split_whitespace().map(str::to_owned).collect();
    }
    if let Some(e) = &a.entrypoint {
        c.command = e.split_whitespace().map(str::to_owned).collect();
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
    if a.force {
        spec.task.force_update += 1;
    }
    Ok(spec)
}

/// One connection to meshd for a command that makes several calls.
struct Conn {
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl Conn {
    fn new(target: &Target) -> Result<Self> {
        let rt = runtime()?;
        let client = {
            let _guard = rt.enter();
            connect(target)?
        };
        Ok(Self { rt, client })
    }

    fn call_raw(&self, req: &Request) -> Result<Reply, ApiError> {
        self.rt
            .block_on(self.client.call_with_timeout(req, Duration::from_secs(30)))
    }

    fn call(&self, req: &Request) -> Result<Reply> {
        self.call_raw(req).map_err(|e| reported(&self.client, &e))
    }

    fn tasks(&self, services: Vec<String>) -> Result<ServiceTasksReply> {
        match self.call(&Request::ServiceTasks { services })? {
            Reply::ServiceTasks(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    fn inspect(&self, service: &str) -> Result<mesh_cluster::state::Service> {
        match self.call(&Request::ServiceInspect {
            service: service.to_owned(),
        })? {
            Reply::Service(s) => Ok(*s),
            other => Err(unexpected(&other)),
        }
    }
}

/// A mini state holding what `service ps` needs, for `mesh_cluster::naming::ps_rows`.
fn state_of(r: &ServiceTasksReply, tasks: Vec<Task>) -> ClusterState {
    ClusterState {
        nodes: r.nodes.iter().map(|n| (n.id.clone(), n.clone())).collect(),
        services: r
            .services
            .iter()
            .map(|s| (s.id.clone(), s.clone()))
            .collect(),
        tasks: tasks.into_iter().map(|t| (t.id.clone(), t)).collect(),
        ..ClusterState::default()
    }
}

/// `service ps --filter`: `desired-state`, `node`, `id`, `name`.
fn task_filter(r: &ServiceTasksReply, filters: &[String]) -> Result<Vec<Task>> {
    let mut parsed = Vec::new();
    for f in filters {
        let Some((k, v)) = f.split_once('=') else {
            bail!("invalid filter {f:?}: expected KEY=VALUE (desired-state, node, id, name)");
        };
        match k {
            "desired-state" => {
                let ok = ["running", "shutdown", "accepted", "ready", "remove"];
                if !ok.contains(&v) {
                    bail!(
                        "invalid filter 'desired-state={v}': expected running, shutdown, accepted, ready or remove"
                    );
                }
            }
            "node" | "id" | "name" => {}
            other => bail!("invalid filter {other:?}: expected desired-state, node, id or name"),
        }
        parsed.push((k, v));
    }
    let name_of = |t: &Task| {
        r.services
            .iter()
            .find(|s| s.id == t.service_id)
            .map(|s| mesh_cluster::naming::task_name(&s.spec.name, t))
            .unwrap_or_default()
    };
    Ok(r.tasks
        .iter()
        .filter(|t| {
            parsed.iter().all(|(k, v)| match *k {
                "desired-state" => t.desired_state.as_str() == *v,
                "node" => t.node_id.as_ref().is_some_and(|n| {
                    n.as_str() == *v
                        || r.nodes
                            .iter()
                            .any(|x| &x.id == n && x.description.hostname == *v)
                }),
                "id" => t.id.as_str().starts_with(v),
                "name" => name_of(t).starts_with(v),
                _ => true,
            })
        })
        .cloned()
        .collect())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `service ps` as Docker prints it.
fn ps_table(
    r: &ServiceTasksReply,
    tasks: Vec<Task>,
    no_trunc: bool,
    quiet: bool,
) -> Vec<Vec<String>> {
    let state = state_of(r, tasks);
    let ids: Vec<&mesh_cluster::Id> = r.services.iter().map(|s| &s.id).collect();
    let rows = mesh_cluster::naming::ps_rows(&state, &ids, now_ms(), no_trunc);
    if quiet {
        return rows
            .into_iter()
            .map(|r| {
                vec![if no_trunc {
                    r.task_id.to_string()
                } else {
                    r.id
                }]
            })
            .collect();
    }
    let mut out = vec![
        [
            "ID",
            "NAME",
            "IMAGE",
            "NODE",
            "DESIRED STATE",
            "CURRENT STATE",
            "ERROR",
            "PORTS",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for row in rows {
        out.push(vec![
            if no_trunc {
                row.task_id.to_string()
            } else {
                row.id
            },
            row.name,
            row.image,
            row.node,
            row.desired,
            row.current,
            row.error,
            row.ports,
        ]);
    }
    out
}

/// The image as `service ls` shows it: without a digest.
fn short_image(image: &str) -> &str {
    image.split_once('@').map_or(image, |(i, _)| i)
}

pub fn run(target: &Target, cmd: ServiceCommand, out: &mut impl Write) -> Result<i32> {
    match cmd {
        ServiceCommand::Create(a) => {
            let spec = create_spec(&a)?;
            let conn = Conn::new(target)?;
            let id = match conn.call(&Request::ServiceCreate { spec })? {
                Reply::ServiceCreated { id } => id,
                other => return Err(unexpected(&other)),
            };
            writeln!(out, "{id}")?;
            out.flush()?;
            if !a.common.detach {
                progress::follow(&conn, id.as_str(), a.common.quiet, out)?;
            }
        }
        ServiceCommand::Ls { quiet, format } => {
            let json = match format.as_deref() {
                None => false,
                Some("json") => true,
                Some(other) => bail!("unsupported --format {other:?}: only json is supported"),
            };
            let conn = Conn::new(target)?;
            let reply = conn.call(&Request::ServiceList)?;
            let Reply::Services(list) = reply else {
                return Err(unexpected(&reply));
            };
            if quiet {
                for s in &list {
                    writeln!(out, "{}", s.service.id.short())?;
                }
            } else if json {
                for s in &list {
                    let v = serde_json::json!({
                        "ID": s.service.id.short(),
                        "Image": short_image(&s.service.spec.task.container.image),
                        "Mode": format_mode(s.service.spec.mode),
                        "Name": s.service.spec.name,
                        "Ports": s.ports,
                        "Replicas": s.replicas,
                    });
                    writeln!(out, "{v}")?;
                }
            } else {
                let mut rows = vec![
                    ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"]
                        .map(str::to_owned)
                        .to_vec(),
                ];
                for s in &list {
                    rows.push(vec![
                        s.service.id.short().to_owned(),
                        s.service.spec.name.clone(),
                        format_mode(s.service.spec.mode).to_owned(),
                        s.replicas.clone(),
                        short_image(&s.service.spec.task.container.image).to_owned(),
                        s.ports.clone(),
                    ]);
                }
                crate::table::write(out, &rows)?;
            }
        }
        ServiceCommand::Ps {
            no_trunc,
            quiet,
            filter,
            services,
        } => {
            let conn = Conn::new(target)?;
            let r = conn.tasks(services)?;
            let tasks = task_filter(&r, &filter)?;
            let rows = ps_table(&r, tasks, no_trunc, quiet);
            if quiet {
                for row in rows {
                    writeln!(out, "{}", row[0])?;
                }
            } else {
                crate::table::write(out, &rows)?;
            }
        }
        ServiceCommand::Inspect {
            pretty,
            format,
            services,
        } => {
            let conn = Conn::new(target)?;
            let mut found = Vec::new();
            let mut first_error = None;
            for q in &services {
                match conn.inspect(q) {
                    Ok(s) => found.push(s),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            // The mesh's counters, when the leader has them (an older one does not).
            let stats = if found.is_empty() {
                Vec::new()
            } else {
                let ids = found.iter().map(|s| s.id.to_string()).collect();
                match conn.call_raw(&Request::MeshStats { services: ids }) {
                    Ok(Reply::MeshStats(rows)) => rows,
                    _ => Vec::new(),
                }
            };
            inspect::print(&found, &stats, pretty, format.as_deref(), out)?;
            if let Some(e) = first_error {
                return Err(e);
            }
        }
        ServiceCommand::Logs {
            tail,
            follow,
            timestamps,
            no_trunc,
            target: what,
        } => {
            let tail = match tail.as_str() {
                "all" => None,
                n => Some(n.parse::<usize>().map_err(|_| {
                    anyhow::anyhow!("invalid --tail {n:?}: expected a number of lines or all")
                })?),
            };
            let conn = Conn::new(target)?;
            let req = Request::ServiceLogs(LogsRequest {
                target: what,
                tail,
                follow,
                timestamps,
                no_trunc,
            });
            logs(&conn, &req, out)?;
        }
        ServiceCommand::Scale { detach, scales } => {
            let mut parsed = Vec::new();
            for s in &scales {
                let Some((name, n)) = s.split_once('=') else {
                    bail!("invalid scale specifier {s:?}: expected the form SERVICE=REPLICAS");
                };
                let n = parse_replicas(n).map_err(spec_err)?;
                parsed.push((name.to_owned(), n));
            }
            let conn = Conn::new(target)?;
            let mut failed = Vec::new();
            let mut scaled = Vec::new();
            for (name, replicas) in parsed {
                match conn.call(&Request::ServiceScale {
                    service: name.clone(),
                    replicas,
                }) {
                    Ok(_) => {
                        writeln!(out, "{name} scaled to {replicas}")?;
                        scaled.push(name);
                    }
                    Err(e) => failed.push(e.to_string()),
                }
            }
            out.flush()?;
            if !detach {
                for name in &scaled {
                    progress::follow(&conn, name, false, out)?;
                }
            }
            if !failed.is_empty() {
                return Err(Reported(failed.join("\n")).into());
            }
        }
        ServiceCommand::Update(a) => run_update(target, &a, out)?,
        ServiceCommand::Publish {
            detach,
            quiet,
            port,
            service,
        } => {
            // Checked before anything is sent.
            parse_port(&port).map_err(spec_err)?;
            let a = UpdateArgs {
                publish_add: vec![port],
                service,
                common: CommonArgs {
                    detach,
                    quiet,
                    ..CommonArgs::default()
                },
                ..UpdateArgs::default()
            };
            run_update(target, &a, out)?;
        }
        ServiceCommand::Rollback {
            detach,
            quiet,
            service,
        } => {
            let conn = Conn::new(target)?;
            conn.call(&Request::ServiceRollback {
                service: service.clone(),
            })?;
            writeln!(out, "{service}")?;
            out.flush()?;
            if !detach {
                progress::follow(&conn, &service, quiet, out)?;
            }
        }
        ServiceCommand::Rm { services } => {
            let conn = Conn::new(target)?;
            let mut failed = Vec::new();
            for s in &services {
                match conn.call(&Request::ServiceRemove { service: s.clone() }) {
                    Ok(_) => writeln!(out, "{s}")?,
                    Err(e) => failed.push(e.to_string()),
                }
            }
            if !failed.is_empty() {
                return Err(Reported(failed.join("\n")).into());
            }
        }
    }
    Ok(0)
}

/// `service update` (and `service publish`): prints the service as given, then follows it until
/// it converges (unless `--detach`).
fn run_update(target: &Target, a: &UpdateArgs, out: &mut impl Write) -> Result<()> {
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
        let req = Request::ServiceUpdate {
            service: current.id.to_string(),
            version: current.meta.version,
            spec,
        };
        match conn.call_raw(&req) {
            Ok(_) => return Ok(()),
            Err(e) if e.code == Code::Conflict && attempt < 5 => {}
            Err(e) => return Err(reported(&conn.client, &e)),
        }
    }
    unreachable!()
}

/// `service logs`: Docker's `SERVICE.SLOT.TASK@NODE    | line`, container stderr on stderr.
fn logs(conn: &Conn, req: &Request, out: &mut impl Write) -> Result<()> {
    conn.rt.block_on(async {
        let mut items = conn
            .client
            .stream(req)
            .await
            .map_err(|e| reported(&conn.client, &e))?;
        let mut err = std::io::stderr();
        while let Some(item) = items.next().await {
            match item.map_err(|e| reported(&conn.client, &e))? {
                StreamItem::Logs(records) => {
                    for r in records {
                        let line = match &r.timestamp {
                            Some(ts) => format!("{ts} {}    | {}", r.context, r.text),
                            None => format!("{}    | {}", r.context, r.text),
                        };
                        if r.stderr {
                            writeln!(err, "{line}")?;
                        } else {
                            writeln!(out, "{line}")?;
                        }
                    }
                    out.flush()?;
                }
                StreamItem::Warning(w) => writeln!(err, "warning: {w}")?,
            }
        }
        anyhow::Ok(())
    })
}

/// Is stdout a terminal (live redraws) or not (one line per change)?
fn stdout_is_tty() -> bool {
    std::io::stdout().is_terminal()
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use mesh_cluster::state::{FailureAction, PublishMode, RestartCondition};

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        cmd: ServiceCommand,
    }

    fn parse(args: &[&str]) -> ServiceCommand {
        let mut v = vec!["service"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap().cmd
    }

    fn create(args: &[&str]) -> Result<ServiceSpec> {
        let ServiceCommand::Create(a) = parse(&[&["create"], args].concat()) else {
            panic!()
        };
        create_spec(&a)
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

    /// `--publish-add` (and `service publish`) adds a port as Docker does: other ports of the
    /// same target stay, the same port again is one port, a published port given a new target
    /// is replaced.
    #[test]
    fn publish_adds_ports_as_docker_does() {
        let ServiceCommand::Publish { port, service, .. } =
            parse(&["publish", "8081:80/udp", "web"])
        else {
            panic!()
        };
        assert_eq!((port.as_str(), service.as_str()), ("8081:80/udp", "web"));
        let current = create(&["--name", "web", "-p", "8080:80", "meshd/busybox"]).unwrap();
        let add = |spec: &ServiceSpec, p: &str| {
            let ServiceCommand::Update(a) = parse(&["update", "--publish-add", p, "web"]) else {
                panic!()
            };
            update_spec(spec, &a).unwrap()
        };
        let ports = |s: &ServiceSpec| {
            s.endpoint
                .ports
                .iter()
                .map(|p| {
                    format!(
                        "{}:{}/{}",
                        p.published_port,
                        p.target_port,
                        p.protocol.as_str()
                    )
                })
                .collect::<Vec<_>>()
        };
        let two = add(&current, "8081:80");
        assert_eq!(ports(&two), ["8080:80/tcp", "8081:80/tcp"]);
        assert_eq!(ports(&add(&two, "8081:80")), ["8080:80/tcp", "8081:80/tcp"]);
        assert_eq!(ports(&add(&two, "8081:90")), ["8080:80/tcp", "8081:90/tcp"]);
        assert_eq!(
            ports(&add(&two, "8081:80/udp")),
            ["8080:80/tcp", "8081:80/tcp", "8081:80/udp"]
        );
    }

    #[test]
    fn ps_filters_select_tasks() {
        let e = task_filter(
            &ServiceTasksReply {
                services: vec![],
                tasks: vec![],
                nodes: vec![],
            },
            &["desired-state=sideways".into()],
        )
        .unwrap_err();
        assert!(e.to_string().contains("expected running, shutdown"), "{e}");
    }
}
