//! What a task's container is made of, as plain data, and the pure rules around it: names,
//! labels, validation, and the translation into Docker's create request.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::path::PathBuf;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};

use crate::EngineError;

/// Label carrying the task id; `Engine::events` only reports containers that have it.
pub const LABEL_TASK: &str = "meshd.task";
/// Label carrying the service id.
pub const LABEL_SERVICE: &str = "meshd.service";
/// Label carrying the node id.
pub const LABEL_NODE: &str = "meshd.node";
/// Label carrying the node's hostname (`meshctl lab down` removes a lab node's tasks by it).
pub const LABEL_HOSTNAME: &str = "meshd.hostname";

/// The only network mode meshd uses: the agent plumbs its own veths into the namespace.
pub const NETWORK_MODE: &str = "none";

/// Docker's and Swarm's default time between SIGTERM and SIGKILL.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// One task's container. Empty strings and empty lists mean "the image's default", as in
/// `mesh_cluster::state::ContainerSpec`; zero limits mean "no limit".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// `<service>.<slot>.<task id>`, see [`container_name`].
    pub name: String,
    pub image: String,
    /// Replaces the image's entrypoint (Swarm's `command`).
    pub command: Vec<String>,
    /// Replaces the image's `CMD` (Swarm's `args`).
    pub args: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    /// Must include [`LABEL_TASK`]; [`task_labels`] builds meshd's own.
    pub labels: BTreeMap<String, String>,
    pub hostname: String,
    pub workdir: String,
    pub user: String,
    pub nano_cpus: i64,
    pub memory_bytes: i64,
    /// Time between SIGTERM and SIGKILL, also recorded on the container for a manual
    /// `docker stop`.
    pub stop_grace: Duration,
    /// Read-only bind mounts (secrets and configs).
    pub binds: Vec<BindMount>,
}

impl Default for ContainerSpec {
    fn default() -> Self {
        Self {
            name: String::new(),
            image: String::new(),
            command: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            labels: BTreeMap::new(),
            hostname: String::new(),
            workdir: String::new(),
            user: String::new(),
            nano_cpus: 0,
            memory_bytes: 0,
            stop_grace: DEFAULT_STOP_GRACE,
            binds: Vec::new(),
        }
    }
}

/// A host file or directory shown read-only inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Absolute path on the host.
    pub host: PathBuf,
    /// Absolute path inside the container.
    pub container: String,
}

/// Swarm's container name: `<service>.<slot>.<task id>`. The slot is the replica number for
/// replicated services and the node id for global ones.
pub fn container_name(service_name: &str, slot: impl Display, task_id: &str) -> String {
    format!("{service_name}.{slot}.{task_id}")
}

/// meshd's labels for a task's container.
pub fn task_labels(
    task_id: &str,
    service_id: &str,
    node_id: &str,
    node_hostname: &str,
) -> BTreeMap<String, String> {
    [
        (LABEL_TASK, task_id),
        (LABEL_SERVICE, service_id),
        (LABEL_NODE, node_id),
        (LABEL_HOSTNAME, node_hostname),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

impl ContainerSpec {
    /// Checks everything Docker would otherwise reject halfway, so that a bad spec creates
    /// nothing. What Docker alone can judge (the image's contents, paths on the host) it judges.
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |what: String| Err(EngineError::Invalid(what));
        if !is_container_ref(&self.name) {
            return bad(format!(
                "container name {:?} is not valid: it must start with a letter or digit and \
                 contain only letters, digits, '_', '.' and '-'",
                self.name
            ));
        }
        validate_image_reference(&self.image)?;
        if let Some(e) = self
            .env
            .iter()
            .find(|e| e.split_once('=').is_none_or(|(k, _)| k.is_empty()))
        {
            return bad(format!(
                "environment entry {e:?} is not of the form KEY=VALUE"
            ));
        }
        if self.labels.get(LABEL_TASK).is_none_or(String::is_empty) {
            return bad(format!(
                "the {LABEL_TASK} label is missing: meshd tracks containers by it"
            ));
        }
        if self.nano_cpus < 0 || self.memory_bytes < 0 {
            return bad(format!(
                "resource limits must not be negative (nano_cpus {}, memory_bytes {})",
                self.nano_cpus, self.memory_bytes
            ));
        }
        for b in &self.binds {
            if !b.host.is_absolute() || !b.container.starts_with('/') {
                return bad(format!(
                    "bind mount {} -> {} needs absolute paths on both sides",
                    b.host.display(),
                    b.container
                ));
            }
        }
        Ok(())
    }
}

/// Docker's container name rule (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`), which also covers ids. Every
/// container reference goes into a request path, so nothing else may pass.
pub(crate) fn is_container_ref(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The characters of Docker's reference grammar (`registry:port/repo/name:tag@sha256:hex`); the
/// grammar itself is left to Docker, whose message names what is wrong.
pub(crate) fn validate_image_reference(image: &str) -> Result<(), EngineError> {
    let ok = image
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && image
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@'));
    if ok {
        Ok(())
    } else {
        Err(EngineError::Invalid(format!(
            "image reference {image:?} is not valid: expected NAME[:TAG][@DIGEST] made of \
             letters, digits and . _ - / : @"
        )))
    }
}

/// Splits a reference into what the pull API wants: the repository and one tag or digest.
/// Without a tag Docker would pull every tag of the repository, so `latest` is made explicit.
pub(crate) fn split_image_reference(image: &str) -> (&str, &str) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo, digest);
    }
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(i) => (&image[..name_start + i], &image[name_start + i + 1..]),
        None => (image, "latest"),
    }
}

/// Docker's create request for `spec`: no network (`none`), no restart policy (Swarm replaces
/// failed tasks instead of restarting them), read-only binds.
pub(crate) fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let non_empty_str = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let non_empty_vec = |v: &[String]| (!v.is_empty()).then(|| v.to_vec());
    let mounts: Vec<Mount> = spec
        .binds
        .iter()
        .map(|b| Mount {
            typ: Some(MountType::BIND),
            source: Some(b.host.display().to_string()),
            target: Some(b.container.clone()),
            read_only: Some(true),
            ..Mount::default()
        })
        .collect();
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: non_empty_vec(&spec.command),
        cmd: non_empty_vec(&spec.args),
        env: non_empty_vec(&spec.env),
        labels: Some(
            spec.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        ),
        hostname: non_empty_str(&spec.hostname),
        working_dir: non_empty_str(&spec.workdir),
        user: non_empty_str(&spec.user),
        stop_timeout: Some(grace_seconds(spec.stop_grace)),
        host_config: Some(HostConfig {
            network_mode: Some(NETWORK_MODE.to_owned()),
            nano_cpus: (spec.nano_cpus > 0).then_some(spec.nano_cpus),
            memory: (spec.memory_bytes > 0).then_some(spec.memory_bytes),
            mounts: (!mounts.is_empty()).then_some(mounts),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    }
}

/// Docker counts the grace period in whole seconds; rounding up never shortens it.
pub(crate) fn grace_seconds(grace: Duration) -> i64 {
    let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContainerSpec {
        ContainerSpec {
            name: container_name("web", 1, "abc123"),
            image: "meshd/busybox".into(),
            labels: task_labels("abc123", "svc1", "node1", "host1"),
            ..ContainerSpec::default()
        }
    }

    #[test]
    fn names_follow_swarm() {
        assert_eq!(container_name("web", 3, "x9"), "web.3.x9");
        assert_eq!(container_name("agent", "node7", "t1"), "agent.node7.t1");
    }

    #[test]
    fn task_labels_carry_all_four_ids() {
        let l = task_labels("t", "s", "n", "h");
        assert_eq!(l[LABEL_TASK], "t");
        assert_eq!(l[LABEL_SERVICE], "s");
        assert_eq!(l[LABEL_NODE], "n");
        assert_eq!(l[LABEL_HOSTNAME], "h");
        assert_eq!(l.len(), 4);
    }

    #[test]
    fn a_good_spec_validates() {
        spec().validate().unwrap();
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        type Change = Box<dyn Fn(&mut ContainerSpec)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|s| s.name = "-web".into()), "container name"),
            (Box::new(|s| s.name = "web/1".into()), "container name"),
            (Box::new(|s| s.name = String::new()), "container name"),
            (
                Box::new(|s| s.image = "Busybox latest".into()),
                "image reference",
            ),
            (Box::new(|s| s.image = "x?y".into()), "image reference"),
            (Box::new(|s| s.env = vec!["NOEQUALS".into()]), "KEY=VALUE"),
            (Box::new(|s| s.env = vec!["=v".into()]), "KEY=VALUE"),
            (
                Box::new(|s| drop(s.labels.remove(LABEL_TASK))),
                "meshd.task",
            ),
            (Box::new(|s| s.memory_bytes = -1), "negative"),
            (
                Box::new(|s| {
                    s.binds = vec![BindMount {
                        host: "rel".into(),
                        container: "/x".into(),
                    }];
                }),
                "absolute",
            ),
            (
                Box::new(|s| {
                    s.binds = vec![BindMount {
                        host: "/a".into(),
                        container: "x".into(),
                    }];
                }),
                "absolute",
            ),
        ];
        for (change, expected) in cases {
            let mut s = spec();
            change(&mut s);
            let err = s
                .validate()
                .expect_err(&format!("{s:?} should be refused"))
                .to_string();
            assert!(
                err.contains(expected),
                "{err:?} should mention {expected:?}"
            );
        }
    }

    #[test]
    fn image_references_split_into_repo_and_one_tag() {
        assert_eq!(split_image_reference("busybox"), ("busybox", "latest"));
        assert_eq!(
            split_image_reference("meshd/busybox:1.36"),
            ("meshd/busybox", "1.36")
        );
        assert_eq!(
            split_image_reference("reg:5000/team/app"),
            ("reg:5000/team/app", "latest")
        );
        assert_eq!(
            split_image_reference("reg:5000/app:v2"),
            ("reg:5000/app", "v2")
        );
        assert_eq!(
            split_image_reference("app@sha256:abcd"),
            ("app", "sha256:abcd")
        );
        assert_eq!(
            split_image_reference("app:v1@sha256:abcd"),
            ("app:v1", "sha256:abcd")
        );
    }

    #[test]
    fn create_body_has_no_network_and_readonly_binds() {
        let mut s = spec();
        s.command = vec!["sh".into(), "-c".into()];
        s.args = vec!["echo hi".into()];
        s.env = vec!["A=1".into()];
        s.workdir = "/tmp".into();
        s.nano_cpus = 500_000_000;
        s.memory_bytes = 64 << 20;
        s.stop_grace = Duration::from_millis(1500);
        s.binds = vec![BindMount {
            host: "/run/s".into(),
            container: "/run/secrets/s".into(),
        }];
        let body = create_body(&s);
        let hc = body.host_config.unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("none"));
        assert_eq!(hc.nano_cpus, Some(500_000_000));
        assert_eq!(hc.memory, Some(64 << 20));
        assert_eq!(hc.restart_policy, None);
        let m = &hc.mounts.unwrap()[0];
        assert_eq!(m.typ, Some(MountType::BIND));
        assert_eq!(m.read_only, Some(true));
        assert_eq!(m.source.as_deref(), Some("/run/s"));
        assert_eq!(m.target.as_deref(), Some("/run/secrets/s"));
        assert_eq!(
            body.entrypoint,
            Some(vec!["sh".to_owned(), "-c".to_owned()])
        );
        assert_eq!(body.cmd, Some(vec!["echo hi".to_owned()]));
        assert_eq!(body.working_dir.as_deref(), Some("/tmp"));
        assert_eq!(body.user, None);
        assert_eq!(body.hostname, None);
        assert_eq!(body.stop_timeout, Some(2));
        assert_eq!(body.labels.unwrap()[LABEL_TASK], "abc123");
    }

    #[test]
    fn image_defaults_stay_when_spec_is_empty() {
        let body = create_body(&spec());
        assert_eq!((body.entrypoint, body.cmd, body.env), (None, None, None));
        let hc = body.host_config.unwrap();
        assert_eq!((hc.nano_cpus, hc.memory, hc.mounts), (None, None, None));
    }

    #[test]
    fn grace_rounds_up_to_whole_seconds() {
        assert_eq!(grace_seconds(Duration::ZERO), 0);
        assert_eq!(grace_seconds(Duration::from_secs(10)), 10);
        assert_eq!(grace_seconds(Duration::from_millis(10_001)), 11);
    }
}
