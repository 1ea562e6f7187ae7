//! meshd's service spec as the Engine API's `ServiceSpec` and `TaskSpec` (moby's
//! `api/swagger.yaml`, definitions `ServiceSpec` and `TaskSpec`). Durations are nanoseconds.

use mesh_cluster::state::{
    ContainerSpec, FileReference, Mount, PortConfig, ServiceMode, ServiceSpec, TaskSpec,
    UpdateConfig,
};
use serde_json::{Value, json};

const NS_PER_MS: u64 = 1_000_000;

pub fn ns(ms: u64) -> u64 {
    ms.saturating_mul(NS_PER_MS)
}

pub fn service_spec(s: &ServiceSpec) -> Value {
    let mode = match s.mode {
        ServiceMode::Replicated { replicas } => json!({ "Replicated": { "Replicas": replicas } }),
        ServiceMode::Global => json!({ "Global": {} }),
    };
    json!({
        "Name": s.name,
        "Labels": s.labels,
        "TaskTemplate": task_spec(&s.task),
        "Mode": mode,
        "UpdateConfig": update_config(&s.update),
        "RollbackConfig": update_config(&s.rollback),
        "EndpointSpec": {
            "Mode": s.endpoint.mode.as_str(),
            "Ports": s.endpoint.ports.iter().map(port).collect::<Vec<_>>(),
        },
    })
}

pub fn task_spec(t: &TaskSpec) -> Value {
    let r = &t.resources;
    json!({
        "ContainerSpec": container_spec(&t.container),
        "Resources": {
            "Limits": { "NanoCPUs": r.limits.nano_cpus, "MemoryBytes": r.limits.memory_bytes },
            "Reservations": {
                "NanoCPUs": r.reservations.nano_cpus,
                "MemoryBytes": r.reservations.memory_bytes,
            },
        },
        "RestartPolicy": {
            "Condition": t.restart.condition.as_str(),
            "Delay": ns(t.restart.delay_ms),
            "MaxAttempts": t.restart.max_attempts,
            "Window": ns(t.restart.window_ms),
        },
        "Placement": {
            "Constraints": t.placement.constraints,
            "Preferences": t.placement.preferences.iter()
                .map(|p| json!({ "Spread": { "SpreadDescriptor": p.spread } }))
                .collect::<Vec<_>>(),
            "MaxReplicas": t.placement.max_replicas_per_node,
        },
        "Networks": t.networks.iter()
            .map(|n| json!({ "Target": n.target.as_str(), "Aliases": n.aliases }))
            .collect::<Vec<_>>(),
        "ForceUpdate": t.force_update,
        "Runtime": "container",
    })
}

fn container_spec(c: &ContainerSpec) -> Value {
    let mut v = json!({
        "Image": c.image,
        "Labels": c.labels,
        "Env": c.env,
        "Mounts": c.mounts.iter().map(mount).collect::<Vec<_>>(),
        "Secrets": c.secrets.iter().map(|f| file_reference(f, "Secret")).collect::<Vec<_>>(),
        "Configs": c.configs.iter().map(|f| file_reference(f, "Config")).collect::<Vec<_>>(),
        "Isolation": "default",
    });
    let o = v.as_object_mut().expect("an object");
    let strings = [
        ("Hostname", &c.hostname),
        ("Dir", &c.workdir),
        ("User", &c.user),
    ];
    for (key, value) in strings {
        if !value.is_empty() {
            o.insert(key.into(), json!(value));
        }
    }
    if !c.command.is_empty() {
        o.insert("Command".into(), json!(c.command));
    }
    if !c.args.is_empty() {
        o.insert("Args".into(), json!(c.args));
    }
    if c.stop_grace_period_ms != 0 {
        o.insert("StopGracePeriod".into(), json!(ns(c.stop_grace_period_ms)));
    }
    if let Some(h) = &c.healthcheck {
        o.insert(
            "Healthcheck".into(),
            json!({
                "Test": h.test,
                "Interval": ns(h.interval_ms),
                "Timeout": ns(h.timeout_ms),
                "StartPeriod": ns(h.start_period_ms),
                "Retries": h.retries,
            }),
        );
    }
    v
}

fn file_reference(f: &FileReference, kind: &str) -> Value {
    json!({
        "File": { "Name": f.target, "UID": f.uid, "GID": f.gid, "Mode": f.mode },
        format!("{kind}ID"): f.id.as_str(),
        format!("{kind}Name"): f.name,
    })
}

fn mount(m: &Mount) -> Value {
    let mut v = json!({
        "Type": m.kind.as_str(),
        "Source": m.source,
        "Target": m.target,
        "ReadOnly": m.readonly,
    });
    let o = v.as_object_mut().expect("an object");
    match m.kind {
        mesh_cluster::state::MountKind::Volume => {
            o.insert(
                "VolumeOptions".into(),
                json!({
                    "NoCopy": m.volume_nocopy,
                    "Labels": m.volume_labels,
                    "DriverConfig": { "Name": m.volume_driver, "Options": m.volume_opts },
                }),
            );
        }
        mesh_cluster::state::MountKind::Bind => {
            if !m.bind_propagation.is_empty() {
                o.insert(
                    "BindOptions".into(),
                    json!({ "Propagation": m.bind_propagation }),
                );
            }
        }
        mesh_cluster::state::MountKind::Tmpfs => {
            o.insert(
                "TmpfsOptions".into(),
                json!({ "SizeBytes": m.tmpfs_size_bytes, "Mode": m.tmpfs_mode }),
            );
        }
    }
    v
}

pub fn port(p: &PortConfig) -> Value {
    let mut v = json!({
        "Protocol": p.protocol.as_str(),
        "TargetPort": p.target_port,
        "PublishedPort": p.published_port,
        "PublishMode": p.publish_mode.as_str(),
    });
    if !p.name.is_empty() {
        v["Name"] = json!(p.name);
    }
    v
}

fn update_config(u: &UpdateConfig) -> Value {
    json!({
        "Parallelism": u.parallelism,
        "Delay": ns(u.delay_ms),
        "FailureAction": u.failure_action.as_str(),
        "Monitor": ns(u.monitor_ms),
        "MaxFailureRatio": u.max_failure_ratio,
        "Order": u.order.as_str(),
    })
}
