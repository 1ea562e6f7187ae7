//! The container a task runs in: Swarm's name, the task's labels, limits and stop grace.

use std::time::Duration;

use mesh_api::AssignedTask;
use mesh_cluster::Id;
use mesh_cluster::naming::container_name;
use mesh_engine::{ContainerSpec, DEFAULT_STOP_GRACE, task_labels};

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
        spec.validate().unwrap();
    }
}
