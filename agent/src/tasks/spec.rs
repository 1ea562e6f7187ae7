//! The container a task runs in: Swarm's name, the task's labels, limits, stop grace, mounts and
//! health check.

use std::time::Duration;

use mesh_api::AssignedTask;
use mesh_cluster::Id;
use mesh_cluster::naming::container_name;
use mesh_cluster::state::{HealthConfig, Mount, MountKind};
use mesh_engine::{
    ContainerSpec, DEFAULT_STOP_GRACE, EngineMount, EngineMountKind, Healthcheck, task_labels,
};

/// The container a task runs in.
pub(super) fn container_spec(t: &AssignedTask, node_id: &Id, hostname: &str) -> ContainerSpec {
    let task = &t.task;
    let c = &task.spec.container;
    let mut labels = c.labels.clone();
    labels.extend(task_labels(
        task.id.as_str(),
        task.service_id.as_str(),
        node_id.as_str(),
        hostname,
    ));
    let limits = &task.spec.resources.limits;
    ContainerSpec {
        name: container_name(&t.service_name, task),
        image: c.image.clone(),
        command: c.command.clone(),
        args: c.args.clone(),
        env: c.env.clone(),
        labels,
        hostname: c.hostname.clone(),
        workdir: c.workdir.clone(),
        user: c.user.clone(),
        nano_cpus: limits.nano_cpus,
        memory_bytes: limits.memory_bytes,
        stop_grace: grace(t),
        binds: Vec::new(),
        mounts: c.mounts.iter().map(engine_mount).collect(),
        healthcheck: c.healthcheck.as_ref().map(healthcheck),
    }
}

/// A service mount as the engine makes it: each kind keeps only its own options.
fn engine_mount(m: &Mount) -> EngineMount {
    let kind = match m.kind {
        MountKind::Volume => EngineMountKind::Volume {
            name: m.source.clone(),
            driver: m.volume_driver.clone(),
            driver_options: m.volume_opts.clone(),
            labels: m.volume_labels.clone(),
            nocopy: m.volume_nocopy,
        },
        MountKind::Bind => EngineMountKind::Bind {
            host: m.source.clone().into(),
            propagation: m.bind_propagation.clone(),
        },
        MountKind::Tmpfs => EngineMountKind::Tmpfs {
            size_bytes: m.tmpfs_size_bytes,
            mode: m.tmpfs_mode,
        },
    };
    EngineMount {
        target: m.target.clone(),
        readonly: m.readonly,
        kind,
    }
}

fn healthcheck(h: &HealthConfig) -> Healthcheck {
    Healthcheck {
        test: h.test.clone(),
        interval: Duration::from_millis(h.interval_ms),
        timeout: Duration::from_millis(h.timeout_ms),
        start_period: Duration::from_millis(h.start_period_ms),
        retries: h.retries,
    }
}

pub(super) fn grace(t: &AssignedTask) -> Duration {
    match t.task.spec.container.stop_grace_period_ms {
        0 => DEFAULT_STOP_GRACE,
        ms => Duration::from_millis(ms),
    }
}

#[cfg(test)]
mod tests {
    use mesh_cluster::state::TaskState;

    use super::super::fixtures::assigned;
    use super::*;

    #[test]
    fn containers_are_named_and_labelled_as_swarm_does() {
        let (_, mut t) = assigned(
            "ngbknb89dzyxdas81emw0jz63",
            TaskState::Assigned,
            TaskState::Running,
        );
        t.task.spec.container.args = vec!["httpd".into(), "-f".into()];
        t.task
            .spec
            .container
            .labels
            .insert("meshd.task".into(), "spoofed".into());
        t.task
            .spec
            .container
            .labels
            .insert("tier".into(), "web".into());
        t.task.spec.container.stop_grace_period_ms = 1500;
        t.task.spec.resources.limits.memory_bytes = 64 << 20;
        let spec = container_spec(&t, &Id::from("node1"), "mesh-n1");
        assert_eq!(spec.name, "web.1.ngbknb89dzyxdas81emw0jz63");
        assert_eq!(spec.labels["meshd.task"], "ngbknb89dzyxdas81emw0jz63");
        assert_eq!(spec.labels["meshd.service"], "svc");
        assert_eq!(spec.labels["meshd.node"], "node1");
        assert_eq!(spec.labels["meshd.hostname"], "mesh-n1");
        assert_eq!(spec.labels["tier"], "web");
        assert_eq!(spec.args, ["httpd", "-f"]);
        assert_eq!(spec.stop_grace, Duration::from_millis(1500));
        assert_eq!(spec.memory_bytes, 64 << 20);
        assert_eq!((spec.mounts.len(), spec.healthcheck.as_ref()), (0, None));
        spec.validate().unwrap();
    }

    #[test]
    fn mounts_and_the_health_check_reach_the_engine() {
        let (_, mut t) = assigned(
            "ngbknb89dzyxdas81emw0jz63",
            TaskState::Assigned,
            TaskState::Running,
        );
        let c = &mut t.task.spec.container;
        c.mounts = vec![
            Mount {
                source: "registry".into(),
                target: "/var/lib/registry".into(),
                volume_labels: [("a".to_owned(), "b".to_owned())].into(),
                volume_nocopy: true,
                ..Mount::default()
            },
            Mount {
                kind: MountKind::Bind,
                source: "/srv".into(),
                target: "/srv".into(),
                readonly: true,
                bind_propagation: "rshared".into(),
                ..Mount::default()
            },
            Mount {
                kind: MountKind::Tmpfs,
                target: "/cache".into(),
                tmpfs_size_bytes: 4096,
                tmpfs_mode: 0o700,
                ..Mount::default()
            },
        ];
        c.healthcheck = Some(HealthConfig {
            test: vec!["CMD-SHELL".into(), "true".into()],
            interval_ms: 2_000,
            timeout_ms: 500,
            start_period_ms: 10_000,
            retries: 5,
        });
        let spec = container_spec(&t, &Id::from("node1"), "mesh-n1");
        assert_eq!(
            spec.mounts,
            [
                EngineMount {
                    target: "/var/lib/registry".into(),
                    readonly: false,
                    kind: EngineMountKind::Volume {
                        name: "registry".into(),
                        driver: String::new(),
                        driver_options: std::collections::BTreeMap::new(),
                        labels: [("a".to_owned(), "b".to_owned())].into(),
                        nocopy: true,
                    },
                },
                EngineMount {
                    target: "/srv".into(),
                    readonly: true,
                    kind: EngineMountKind::Bind {
                        host: "/srv".into(),
                        propagation: "rshared".into(),
                    },
                },
                EngineMount {
                    target: "/cache".into(),
                    readonly: false,
                    kind: EngineMountKind::Tmpfs {
                        size_bytes: 4096,
                        mode: 0o700,
                    },
                },
            ]
        );
        assert_eq!(
            spec.healthcheck,
            Some(Healthcheck {
                test: vec!["CMD-SHELL".into(), "true".into()],
                interval: Duration::from_secs(2),
                timeout: Duration::from_millis(500),
                start_period: Duration::from_secs(10),
                retries: 5,
            })
        );
        spec.validate().unwrap();
    }
}
