//! A service's `deploy` section applied to its spec with the `service create` parsers.

use mesh_cluster::spec::{
    parse_constraints, parse_cpus, parse_duration, parse_endpoint_mode, parse_memory, parse_mode,
    parse_placement_pref, parse_restart_condition,
};
use mesh_cluster::state::{Resources, ServiceSpec};

use crate::model::{DeployDef, ResourcesDef};
use crate::plan::{Failed, update_config};

fn at(key: &str) -> impl Fn(mesh_cluster::spec::SpecError) -> Failed + '_ {
    move |e| (key.to_owned(), e.0)
}

pub(crate) fn apply_deploy(spec: &mut ServiceSpec, d: &DeployDef) -> Result<(), Failed> {
    let replicas = d.replicas.map(|r| r.to_string());
    spec.mode = parse_mode(d.mode.as_deref(), replicas.as_deref()).map_err(|e| {
        let key = if d.mode.as_deref() == Some("global") && replicas.is_some() {
            "replicas"
        } else {
            "mode"
        };
        (
            key.to_owned(),
            e.0.replace("--replicas", "replicas")
                .replace("--mode global", "mode: global"),
        )
    })?;
    if let Some(m) = &d.endpoint_mode {
        spec.endpoint.mode = parse_endpoint_mode(m).map_err(at("endpoint_mode"))?;
    }
    parse_constraints(&d.constraints).map_err(at("placement.constraints"))?;
    spec.task.placement.constraints.clone_from(&d.constraints);
    for p in &d.preferences {
        let pref =
            parse_placement_pref(&format!("spread={p}")).map_err(at("placement.preferences"))?;
        spec.task.placement.preferences.push(pref);
    }
    spec.task.placement.max_replicas_per_node = d.max_replicas_per_node.unwrap_or(0);
    spec.task.resources.limits = resources(&d.limits, "resources.limits")?;
    spec.task.resources.reservations = resources(&d.reservations, "resources.reservations")?;
    if let Some(r) = &d.restart_policy {
        let p = &mut spec.task.restart;
        if let Some(c) = &r.condition {
            p.condition = parse_restart_condition(c).map_err(at("restart_policy.condition"))?;
        }
        if let Some(v) = &r.delay {
            p.delay_ms = parse_duration(v).map_err(at("restart_policy.delay"))?;
        }
        if let Some(n) = r.max_attempts {
            p.max_attempts = n;
        }
        if let Some(v) = &r.window {
            p.window_ms = parse_duration(v).map_err(at("restart_policy.window"))?;
        }
    }
    if let Some(u) = &d.update_config {
        spec.update = update_config(u).map_err(|(k, m)| (format!("update_config.{k}"), m))?;
    }
    if let Some(u) = &d.rollback_config {
        spec.rollback = update_config(u).map_err(|(k, m)| (format!("rollback_config.{k}"), m))?;
    }
    Ok(())
}

fn resources(r: &ResourcesDef, key: &str) -> Result<Resources, Failed> {
    let mut out = Resources::default();
    if let Some(c) = &r.cpus {
        out.nano_cpus = parse_cpus(c).map_err(|e| (format!("{key}.cpus"), e.0))?;
    }
    if let Some(m) = &r.memory {
        out.memory_bytes = parse_memory(m).map_err(|e| (format!("{key}.memory"), e.0))?;
    }
    Ok(out)
}
