//! What a task's container is made of, as plain data, and the pure rules around it: names,
//! labels, validation, and the translation into Docker's create request.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::path::PathBuf;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, HealthConfig, HostConfig, Mount, MountBindOptions,
    MountBindOptionsPropagationEnum, MountTmpfsOptions, MountType, MountVolumeOptions,
    MountVolumeOptionsDriverConfig,
};

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
    /// The service's own mounts (`--mount`): volumes, binds, tmpfs.
    pub mounts: Vec<EngineMount>,
    /// `None`: the image's `HEALTHCHECK`.
    pub healthcheck: Option<Healthcheck>,
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
            mounts: Vec::new(),
            healthcheck: None,
        }
    }
}

/// One of a service's mounts, as the engine makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineMount {
    /// Absolute path inside the container.
    pub target: String,
    pub readonly: bool,
    pub kind: EngineMountKind,
}

/// What a mount is made from, with the options of that kind only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineMountKind {
    /// A named volume, made by the engine on create when missing (as Docker does); an empty name
    /// is an anonymous volume.
    Volume {
        name: String,
        /// Empty: the engine's default (`local`).
        driver: String,
        driver_options: BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
        /// Do not copy the image's files at the target into a new volume.
        nocopy: bool,
    },
    /// A path on the node.
    Bind {
        host: PathBuf,
        /// One of [`BIND_PROPAGATIONS`], or empty for Docker's default (`rprivate`).
        propagation: String,
    },
    /// A memory file system.
    Tmpfs {
        /// 0: no limit.
        size_bytes: i64,
        /// 0: Docker's default (1777).
        mode: u32,
    },
}

/// The propagation modes of a bind mount Docker accepts.
pub const BIND_PROPAGATIONS: &[&str] = &[
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

/// A container health check as Docker runs it; zero durations and retries mean Docker's (or the
/// image's) defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Healthcheck {
    /// `["CMD-SHELL", cmd]`, `["CMD", arg...]`, `["NONE"]`, or empty for the image's test.
    pub test: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub retries: u64,
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
        self.validate_mounts()?;
        if let Some(h) = &self.healthcheck {
            validate_healthcheck(h).map_err(EngineError::Invalid)?;
        }
        Ok(())
    }

    /// Each mount well formed, and no container path mounted twice (secrets and configs
    /// included): Docker would refuse the create with "Duplicate mount point".
    fn validate_mounts(&self) -> Result<(), EngineError> {
        let mut targets = std::collections::BTreeSet::new();
        for b in &self.binds {
            targets.insert(b.container.trim_end_matches('/'));
        }
        for m in &self.mounts {
            validate_mount(m).map_err(EngineError::Invalid)?;
            if !targets.insert(m.target.trim_end_matches('/')) {
                return Err(EngineError::Invalid(format!(
                    "mount target {} is used twice: each container path may be mounted once",
                    m.target
                )));
            }
        }
        Ok(())
    }
}

fn validate_mount(m: &EngineMount) -> Result<(), String> {
    if !m.target.starts_with('/') {
        return Err(format!(
            "mount target {:?} must be an absolute path",
            m.target
        ));
    }
    match &m.kind {
        EngineMountKind::Volume { name, driver, .. } => {
            let local = driver.is_empty() || driver == "local";
            let mut chars = name.chars();
            let local_name = name.len() >= 2
                && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if name.starts_with('/') || (local && !name.is_empty() && !local_name) {
                return Err(format!(
                    "volume name {name:?} is not valid: at least two letters, digits, '_', '.' or \
                     '-', starting with a letter or digit"
                ));
            }
        }
        EngineMountKind::Bind { host, propagation } => {
            if !host.is_absolute() {
                return Err(format!(
                    "bind mount source {} must be an absolute path on the node",
                    host.display()
                ));
            }
            if !propagation.is_empty() && !BIND_PROPAGATIONS.contains(&propagation.as_str()) {
                return Err(format!(
                    "bind propagation {propagation:?} is not one of {}",
                    BIND_PROPAGATIONS.join(", ")
                ));
            }
        }
        EngineMountKind::Tmpfs { size_bytes, mode } => {
            if *size_bytes < 0 || *mode > 0o7777 {
                return Err(format!(
                    "tmpfs options size {size_bytes}, mode {mode:o}: the size cannot be negative \
                     and the mode is at most 7777"
                ));
            }
        }
    }
    Ok(())
}

/// Docker's own checks of a health config (its test forms, durations of at least 1ms when set
/// and that fit its nanoseconds), made before anything is created.
fn validate_healthcheck(h: &Healthcheck) -> Result<(), String> {
    let test_ok = match h.test.first().map(String::as_str) {
        None => true,
        Some("NONE") => h.test.len() == 1,
        Some("CMD-SHELL") => h.test.len() == 2,
        Some("CMD") => h.test.len() >= 2,
        Some(_) => false,
    };
    if !test_ok {
        return Err(format!(
            "health check test {:?} is not valid: expected [\"CMD-SHELL\", COMMAND], \
             [\"CMD\", ARG...], [\"NONE\"] or empty",
            h.test
        ));
    }
    if i64::try_from(h.retries).is_err() {
        return Err(format!(
            "health check retries {} is not valid: at most {}",
            h.retries,
            i64::MAX
        ));
    }
    for (what, d) in [
        ("interval", h.interval),
        ("timeout", h.timeout),
        ("start period", h.start_period),
    ] {
        if d != Duration::ZERO && (d < Duration::from_millis(1) || nanos(d).is_none()) {
            return Err(format!(
                "health check {what} {d:?} is not valid: 0 (the default) or from 1ms to {:?}",
                Duration::from_nanos(i64::MAX.unsigned_abs())
            ));
        }
    }
    Ok(())
}

/// A duration in Docker's `int64` nanoseconds.
fn nanos(d: Duration) -> Option<i64> {
    i64::try_from(d.as_nanos()).ok()
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
    let mut mounts: Vec<Mount> = spec
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
    mounts.extend(spec.mounts.iter().map(docker_mount));
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
        healthcheck: spec.healthcheck.as_ref().map(docker_healthcheck),
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

/// A map as bollard wants it, `None` when empty (Docker's `omitempty`).
fn string_map(m: &BTreeMap<String, String>) -> Option<HashMap<String, String>> {
    (!m.is_empty()).then(|| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// One service mount in Docker's terms; each kind carries only its own options.
fn docker_mount(m: &EngineMount) -> Mount {
    let mut out = Mount {
        target: Some(m.target.clone()),
        read_only: Some(m.readonly),
        ..Mount::default()
    };
    match &m.kind {
        EngineMountKind::Volume {
            name,
            driver,
            driver_options,
            labels,
            nocopy,
        } => {
            out.typ = Some(MountType::VOLUME);
            out.source = (!name.is_empty()).then(|| name.clone());
            let driver_config = (!driver.is_empty() || !driver_options.is_empty()).then(|| {
                MountVolumeOptionsDriverConfig {
                    name: (!driver.is_empty()).then(|| driver.clone()),
                    options: string_map(driver_options),
                }
            });
            if driver_config.is_some() || !labels.is_empty() || *nocopy {
                out.volume_options = Some(MountVolumeOptions {
                    no_copy: nocopy.then_some(true),
                    labels: string_map(labels),
                    driver_config,
                    ..MountVolumeOptions::default()
                });
            }
        }
        EngineMountKind::Bind { host, propagation } => {
            out.typ = Some(MountType::BIND);
            out.source = Some(host.display().to_string());
            out.bind_options = propagation_of(propagation).map(|p| MountBindOptions {
                propagation: Some(p),
                ..MountBindOptions::default()
            });
        }
        EngineMountKind::Tmpfs { size_bytes, mode } => {
            out.typ = Some(MountType::TMPFS);
            if *size_bytes != 0 || *mode != 0 {
                out.tmpfs_options = Some(MountTmpfsOptions {
                    size_bytes: (*size_bytes != 0).then_some(*size_bytes),
                    mode: (*mode != 0).then_some(i64::from(*mode)),
                    ..MountTmpfsOptions::default()
                });
            }
        }
    }
    out
}

fn propagation_of(name: &str) -> Option<MountBindOptionsPropagationEnum> {
    use MountBindOptionsPropagationEnum as P;
    Some(match name {
        "private" => P::PRIVATE,
        "rprivate" => P::RPRIVATE,
        "shared" => P::SHARED,
        "rshared" => P::RSHARED,
        "slave" => P::SLAVE,
        "rslave" => P::RSLAVE,
        _ => return None,
    })
}

/// The health check in Docker's terms: durations in nanoseconds, zero left out (the default).
fn docker_healthcheck(h: &Healthcheck) -> HealthConfig {
    let set = |d: Duration| nanos(d).filter(|n| *n > 0);
    HealthConfig {
        test: (!h.test.is_empty()).then(|| h.test.clone()),
        interval: set(h.interval),
        timeout: set(h.timeout),
        start_period: set(h.start_period),
        retries: i64::try_from(h.retries).ok().filter(|r| *r > 0),
        ..HealthConfig::default()
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

    fn mount(target: &str, kind: EngineMountKind) -> EngineMount {
        EngineMount {
            target: target.into(),
            readonly: false,
            kind,
        }
    }

    fn volume(name: &str) -> EngineMountKind {
        EngineMountKind::Volume {
            name: name.into(),
            driver: String::new(),
            driver_options: BTreeMap::new(),
            labels: BTreeMap::new(),
            nocopy: false,
        }
    }

    /// Each kind reaches Docker with its own options only, after the secrets' read-only binds.
    #[test]
    fn create_body_carries_volumes_binds_and_tmpfs() {
        let mut s = spec();
        s.binds = vec![BindMount {
            host: "/run/s".into(),
            container: "/run/secrets/s".into(),
        }];
        s.mounts = vec![
            mount("/data", volume("data")),
            EngineMount {
                readonly: true,
                ..mount(
                    "/db",
                    EngineMountKind::Volume {
                        name: "db".into(),
                        driver: "local".into(),
                        driver_options: [("type".to_owned(), "tmpfs".to_owned())].into(),
                        labels: [("tier".to_owned(), "db".to_owned())].into(),
                        nocopy: true,
                    },
                )
            },
            mount(
                "/www",
                EngineMountKind::Bind {
                    host: "/srv/www".into(),
                    propagation: "rslave".into(),
                },
            ),
            mount(
                "/cache",
                EngineMountKind::Tmpfs {
                    size_bytes: 1 << 20,
                    mode: 0o1770,
                },
            ),
        ];
        s.validate().unwrap();
        let mounts = create_body(&s).host_config.unwrap().mounts.unwrap();
        assert_eq!(mounts.len(), 5);
        assert_eq!(mounts[0].target.as_deref(), Some("/run/secrets/s"));
        let plain = &mounts[1];
        assert_eq!(
            (plain.typ, plain.source.as_deref(), plain.read_only),
            (Some(MountType::VOLUME), Some("data"), Some(false))
        );
        assert_eq!(plain.volume_options, None);
        let db = mounts[2].volume_options.clone().unwrap();
        assert_eq!(mounts[2].read_only, Some(true));
        assert_eq!(db.no_copy, Some(true));
        assert_eq!(db.labels.unwrap()["tier"], "db");
        let driver = db.driver_config.unwrap();
        assert_eq!(driver.name.as_deref(), Some("local"));
        assert_eq!(driver.options.unwrap()["type"], "tmpfs");
        let www = &mounts[3];
        assert_eq!(
            (www.typ, www.source.as_deref()),
            (Some(MountType::BIND), Some("/srv/www"))
        );
        assert_eq!(
            www.bind_options.clone().unwrap().propagation,
            Some(MountBindOptionsPropagationEnum::RSLAVE)
        );
        assert_eq!(www.volume_options, None);
        let cache = &mounts[4];
        assert_eq!(
            (cache.typ, cache.source.as_ref()),
            (Some(MountType::TMPFS), None)
        );
        let t = cache.tmpfs_options.clone().unwrap();
        assert_eq!((t.size_bytes, t.mode), (Some(1 << 20), Some(0o1770)));
    }

    #[test]
    fn create_body_carries_the_health_check_in_nanoseconds() {
        let mut s = spec();
        s.healthcheck = Some(Healthcheck {
            test: vec!["CMD-SHELL".into(), "test -f /tmp/ok".into()],
            interval: Duration::from_millis(1500),
            timeout: Duration::from_secs(2),
            start_period: Duration::ZERO,
            retries: 4,
        });
        s.validate().unwrap();
        let h = create_body(&s).healthcheck.unwrap();
        assert_eq!(
            h.test,
            Some(vec!["CMD-SHELL".to_owned(), "test -f /tmp/ok".to_owned()])
        );
        assert_eq!(
            (h.interval, h.timeout, h.start_period, h.retries),
            (Some(1_500_000_000), Some(2_000_000_000), None, Some(4))
        );
        s.healthcheck = Some(Healthcheck {
            test: vec!["NONE".into()],
            ..Healthcheck::default()
        });
        let h = create_body(&s).healthcheck.unwrap();
        assert_eq!((h.test, h.interval), (Some(vec!["NONE".to_owned()]), None));
        assert_eq!(create_body(&spec()).healthcheck, None);
    }

    #[test]
    fn bad_mounts_and_health_checks_are_refused() {
        type Change = Box<dyn Fn(&mut ContainerSpec)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|s| s.mounts = vec![mount("data", volume("v1"))]),
                "absolute path",
            ),
            (
                Box::new(|s| {
                    s.binds = vec![BindMount {
                        host: "/run/s".into(),
                        container: "/run/secrets/s".into(),
                    }];
                    s.mounts = vec![mount("/run/secrets/s/", volume("v1"))];
                }),
                "used twice",
            ),
            (
                Box::new(|s| s.mounts = vec![mount("/d", volume("a"))]),
                "volume name",
            ),
            (
                Box::new(|s| s.mounts = vec![mount("/d", volume("/srv"))]),
                "volume name",
            ),
            (
                Box::new(|s| {
                    s.mounts = vec![mount(
                        "/d",
                        EngineMountKind::Bind {
                            host: "srv".into(),
                            propagation: String::new(),
                        },
                    )];
                }),
                "absolute path on the node",
            ),
            (
                Box::new(|s| {
                    s.mounts = vec![mount(
                        "/d",
                        EngineMountKind::Bind {
                            host: "/srv".into(),
                            propagation: "up".into(),
                        },
                    )];
                }),
                "bind propagation",
            ),
            (
                Box::new(|s| {
                    s.mounts = vec![mount(
                        "/d",
                        EngineMountKind::Tmpfs {
                            size_bytes: -1,
                            mode: 0,
                        },
                    )];
                }),
                "cannot be negative",
            ),
            (
                Box::new(|s| {
                    s.healthcheck = Some(Healthcheck {
                        test: vec!["CMD-SHELL".into()],
                        ..Healthcheck::default()
                    });
                }),
                "health check test",
            ),
            (
                Box::new(|s| {
                    s.healthcheck = Some(Healthcheck {
                        interval: Duration::from_micros(500),
                        ..Healthcheck::default()
                    });
                }),
                "health check interval",
            ),
            (
                Box::new(|s| {
                    s.healthcheck = Some(Healthcheck {
                        retries: u64::MAX,
                        ..Healthcheck::default()
                    });
                }),
                "health check retries",
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
