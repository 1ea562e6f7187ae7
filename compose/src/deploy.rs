//! A service's `deploy` and `healthcheck` sections, read as text for the planner.

use serde_norway::Value;

use crate::error::ComposeError;
use crate::model::{DeployDef, HealthDef, ResourcesDef, RestartDef, UpdateDef};
use crate::yaml::{At, known_keys};

const DEPLOY_KEYS: &[&str] = &[
    "mode",
    "replicas",
    "endpoint_mode",
    "labels",
    "placement",
    "resources",
    "restart_policy",
    "update_config",
    "rollback_config",
];

pub(crate) fn read_deploy(at: At) -> Result<DeployDef, ComposeError> {
    let mut d = DeployDef::default();
    let mut ignored = Vec::new();
    for (key, v, path) in known_keys(at, DEPLOY_KEYS, &[], &mut ignored)? {
        let f = At {
            value: v,
            path: &path,
        };
        match key.as_str() {
            "mode" => d.mode = Some(f.string()?),
            "replicas" => d.replicas = Some(f.u64()?),
            "endpoint_mode" => d.endpoint_mode = Some(f.string()?),
            "labels" => {
                d.labels = crate::model::string_map(f)?
                    .into_iter()
                    .map(|(k, v)| (k, v.unwrap_or_default()))
                    .collect();
            }
            "placement" => read_placement(f, &mut d)?,
            "resources" => read_resources(f, &mut d)?,
            "restart_policy" => d.restart_policy = Some(read_restart(f)?),
            "update_config" => d.update_config = Some(read_update(f)?),
            _ => d.rollback_config = Some(read_update(f)?),
        }
    }
    Ok(d)
}

fn read_placement(at: At, d: &mut DeployDef) -> Result<(), ComposeError> {
    let keys = ["constraints", "preferences", "max_replicas_per_node"];
    for (key, v, path) in known_keys(at, &keys, &[], &mut Vec::new())? {
        let f = At {
            value: v,
            path: &path,
        };
        match key.as_str() {
            "constraints" => d.constraints = f.strings()?,
            "max_replicas_per_node" => d.max_replicas_per_node = Some(f.u64()?),
            _ => {
                for (item, path) in f.items()? {
                    let pref = At {
                        value: item,
                        path: &path,
                    };
                    for (_, v, path) in known_keys(pref, &["spread"], &[], &mut Vec::new())? {
                        d.preferences.push(
                            At {
                                value: v,
                                path: &path,
                            }
                            .string()?,
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

fn read_resources(at: At, d: &mut DeployDef) -> Result<(), ComposeError> {
    for (key, v, path) in known_keys(at, &["limits", "reservations"], &[], &mut Vec::new())? {
        let f = At {
            value: v,
            path: &path,
        };
        let mut r = ResourcesDef::default();
        let unsupported = ["pids", "devices", "generic_resources"];
        let mut ignored = Vec::new();
        for (k, v, path) in known_keys(f, &["cpus", "memory"], &unsupported, &mut ignored)? {
            let value = At {
                value: v,
                path: &path,
            }
            .string()?;
            if k == "cpus" {
                r.cpus = Some(value);
            } else {
                r.memory = Some(value);
            }
        }
        if let Some(first) = ignored.first() {
            return Err(ComposeError::at(
                &format!("{path}.{first}"),
                "not supported here: resources take cpus and memory",
            ));
        }
        if key == "limits" {
            d.limits = r;
        } else {
            d.reservations = r;
        }
    }
    Ok(())
}

fn read_restart(at: At) -> Result<RestartDef, ComposeError> {
    let mut r = RestartDef::default();
    let keys = ["condition", "delay", "max_attempts", "window"];
    for (key, v, path) in known_keys(at, &keys, &[], &mut Vec::new())? {
        let f = At {
            value: v,
            path: &path,
        };
        match key.as_str() {
            "condition" => r.condition = Some(f.string()?),
            "delay" => r.delay = Some(f.string()?),
            "max_attempts" => r.max_attempts = Some(f.u64()?),
            _ => r.window = Some(f.string()?),
        }
    }
    Ok(r)
}

fn read_update(at: At) -> Result<UpdateDef, ComposeError> {
    let mut u = UpdateDef::default();
    let keys = [
        "parallelism",
        "delay",
        "failure_action",
        "monitor",
        "max_failure_ratio",
        "order",
    ];
    for (key, v, path) in known_keys(at, &keys, &[], &mut Vec::new())? {
        let f = At {
            value: v,
            path: &path,
        };
        match key.as_str() {
            "parallelism" => u.parallelism = Some(f.u64()?),
            "delay" => u.delay = Some(f.string()?),
            "failure_action" => u.failure_action = Some(f.string()?),
            "monitor" => u.monitor = Some(f.string()?),
            "max_failure_ratio" => u.max_failure_ratio = Some(f.string()?),
            _ => u.order = Some(f.string()?),
        }
    }
    Ok(u)
}

pub(crate) fn read_health(at: At) -> Result<HealthDef, ComposeError> {
    let mut h = HealthDef::default();
    let keys = [
        "test",
        "interval",
        "timeout",
        "start_period",
        "retries",
        "disable",
    ];
    for (key, v, path) in known_keys(at, &keys, &["start_interval"], &mut Vec::new())? {
        let f = At {
            value: v,
            path: &path,
        };
        match key.as_str() {
            // A string is run by the shell; a list is Docker's own form (["CMD", ...]).
            "test" => {
                h.test = if let Value::Sequence(_) = v {
                    f.strings()?
                } else {
                    vec!["CMD-SHELL".into(), f.string()?]
                };
            }
            "interval" => h.interval = Some(f.string()?),
            "timeout" => h.timeout = Some(f.string()?),
            "start_period" => h.start_period = Some(f.string()?),
            "retries" => h.retries = Some(f.u64()?),
            _ => h.disable = f.bool()?,
        }
    }
    Ok(h)
}
