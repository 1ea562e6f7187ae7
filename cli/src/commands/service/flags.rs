//! The flags `create` and `update` share, and how they are parsed into a spec.

use anyhow::{Result, bail};
use clap::Args;
use mesh_cluster::Id;
use mesh_cluster::spec::{
    HealthFlags, SpecError, apply_health, parse_cpus, parse_duration, parse_endpoint_mode,
    parse_failure_action, parse_memory, parse_replicas, parse_restart_condition,
    parse_update_order,
};
use mesh_cluster::state::{
    Network, NetworkAttachmentConfig, ServiceMode, ServiceSpec, UpdateConfig,
};

use crate::commands::Reported;

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
    #[command(flatten)]
    pub health: HealthArgs,
}

/// The health check flags `create` and `update` share (Docker's names); each replaces its own
/// field of the service's check.
#[derive(Args, Debug, Default, Clone)]
pub struct HealthArgs {
    /// Command to run to check health (by the container's shell).
    #[arg(long, allow_hyphen_values = true)]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h).
    #[arg(long, allow_hyphen_values = true)]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h).
    #[arg(long, allow_hyphen_values = true)]
    pub health_timeout: Option<String>,
    /// Start period for the container to initialize before counting retries (ms|s|m|h).
    #[arg(long, allow_hyphen_values = true)]
    pub health_start_period: Option<String>,
    /// Consecutive failures needed to report unhealthy.
    #[arg(long, allow_hyphen_values = true)]
    pub health_retries: Option<String>,
    /// Disable any container-specified HEALTHCHECK.
    #[arg(long)]
    pub no_healthcheck: bool,
}

impl HealthArgs {
    pub(super) fn flags(&self) -> HealthFlags<'_> {
        HealthFlags {
            cmd: self.health_cmd.as_deref(),
            interval: self.health_interval.as_deref(),
            timeout: self.health_timeout.as_deref(),
            start_period: self.health_start_period.as_deref(),
            retries: self.health_retries.as_deref(),
            no_healthcheck: self.no_healthcheck,
        }
    }
}

pub(super) fn spec_err(e: SpecError) -> anyhow::Error {
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
pub(super) fn parse_label(s: &str) -> Result<(String, String)> {
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
pub(super) fn apply_common(spec: &mut ServiceSpec, c: &CommonArgs) -> Result<()> {
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
    container.healthcheck =
        apply_health(container.healthcheck.as_ref(), &c.health.flags()).map_err(spec_err)?;
    Ok(())
}
