//! Services: the spec a user declares (tasks, placement, updates, ports) and what the
//! allocator and the updater keep about it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::ids::Id;
use crate::state::{Meta, Millis, Resources};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceMode {
    Replicated { replicas: u64 },
    Global,
}

impl Default for ServiceMode {
    fn default() -> Self {
        Self::Replicated { replicas: 1 }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    #[default]
    Any,
    OnFailure,
    None,
}

/// When a task that ended is replaced by a new one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub condition: RestartCondition,
    pub delay_ms: u64,
    /// 0: no limit.
    pub max_attempts: u64,
    /// The window in which attempts are counted; 0: since the service was created.
    pub window_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            condition: RestartCondition::Any,
            delay_ms: 5_000,
            max_attempts: 0,
            window_ms: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    #[default]
    Pause,
    Continue,
    Rollback,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    #[default]
    StopFirst,
    StartFirst,
}

/// How a rolling update (or rollback) proceeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateConfig {
    /// Tasks updated at once; 0: all.
    pub parallelism: u64,
    pub delay_ms: u64,
    pub failure_action: FailureAction,
    pub monitor_ms: u64,
    pub max_failure_ratio: f32,
    pub order: UpdateOrder,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        Self {
            parallelism: 1,
            delay_ms: 0,
            failure_action: FailureAction::Pause,
            monitor_ms: 5_000,
            max_failure_ratio: 0.0,
            order: UpdateOrder::StopFirst,
        }
    }
}

/// A spread preference: `--placement-pref spread=node.labels.zone`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpreadPreference {
    /// The descriptor spread over, such as `node.labels.zone`.
    pub spread: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Constraint expressions as the user gave them (`node.labels.zone==east`).
    pub constraints: Vec<String>,
    pub preferences: Vec<SpreadPreference>,
    /// 0: no limit.
    pub max_replicas_per_node: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRequirements {
    pub limits: Resources,
    pub reservations: Resources,
}

/// A secret or config delivered into a task's filesystem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReference {
    /// The secret's or config's id (the manager fills it from the name).
    pub id: Id,
    pub name: String,
    /// Path in the container (secrets: under /run/secrets unless absolute; configs: under `/`).
    pub target: String,
    /// The file's owner and group, numeric as Swarm takes them (`0` by default).
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub gid: String,
    pub mode: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub image: String,
    /// Replaces the image's entrypoint when not empty.
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub hostname: String,
    pub workdir: String,
    pub user: String,
    pub secrets: Vec<FileReference>,
    pub configs: Vec<FileReference>,
    pub stop_grace_period_ms: u64,
    /// Volumes, binds and tmpfs mounts (`--mount`); absent in state written before them.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// `None`: the image's `HEALTHCHECK`; `Some` with `test` `["NONE"]`: none at all.
    #[serde(default)]
    pub healthcheck: Option<HealthConfig>,
}

/// What a mount is made from, as Docker names the types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// A named (or, without a source, anonymous) volume, made by the node's engine.
    #[default]
    Volume,
    /// A host path.
    Bind,
    /// A memory file system.
    Tmpfs,
}

/// One `--mount`, with Swarm's fields; the options of the other kinds stay empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Mount {
    pub kind: MountKind,
    /// The volume's name or the host path; empty for tmpfs and anonymous volumes.
    pub source: String,
    /// Absolute path in the container.
    pub target: String,
    pub readonly: bool,
    /// Empty: the engine's default (`local`).
    pub volume_driver: String,
    pub volume_labels: BTreeMap<String, String>,
    pub volume_opts: BTreeMap<String, String>,
    /// Do not copy the image's files at `target` into a new volume.
    pub volume_nocopy: bool,
    /// Empty: Docker's default (`rprivate`).
    pub bind_propagation: String,
    /// 0: no limit.
    pub tmpfs_size_bytes: i64,
    /// 0: Docker's default (1777).
    pub tmpfs_mode: u32,
}

/// A container health check, as Docker's `HealthConfig` (0: the image's or Docker's default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthConfig {
    /// `["CMD-SHELL", cmd]`, `["CMD", arg...]`, `["NONE"]`, or empty to keep the image's test.
    pub test: Vec<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub start_period_ms: u64,
    pub retries: u64,
}

/// A network a service's tasks attach to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttachmentConfig {
    /// The network's id.
    pub target: Id,
    /// Extra DNS names for the service on this network.
    pub aliases: Vec<String>,
}

/// The template every task of a service is made from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub container: ContainerSpec,
    pub resources: ResourceRequirements,
    pub restart: RestartPolicy,
    pub placement: Placement,
    pub networks: Vec<NetworkAttachmentConfig>,
    /// Bumped by `service update --force` to replace tasks without another change.
    pub force_update: u64,
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishMode {
    #[default]
    Ingress,
    Host,
}

/// A published port: `published=8080,target=80,protocol=tcp,mode=ingress`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortConfig {
    pub name: String,
    pub protocol: Protocol,
    pub target_port: u16,
    /// 0 in a spec: pick a free one from the dynamic range (30000-32767).
    pub published_port: u16,
    pub publish_mode: PublishMode,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    #[default]
    Vip,
    Dnsrr,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSpec {
    pub mode: EndpointMode,
    pub ports: Vec<PortConfig>,
}

/// What a user declares about a service.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub task: TaskSpec,
    pub mode: ServiceMode,
    pub update: UpdateConfig,
    pub rollback: UpdateConfig,
    pub endpoint: EndpointSpec,
}

/// A service's virtual IP on one network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualIp {
    pub network_id: Id,
    pub addr: Ipv4Addr,
}

/// What the allocator gave a service: its ports (published ones filled in) and VIPs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub ports: Vec<PortConfig>,
    pub virtual_ips: Vec<VirtualIp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    Updating,
    Paused,
    Completed,
    RollbackStarted,
    RollbackPaused,
    RollbackCompleted,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    pub state: UpdateState,
    pub started_at: Millis,
    pub completed_at: Option<Millis>,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub id: Id,
    pub meta: Meta,
    pub spec: ServiceSpec,
    /// The spec before the last update, for `service update --rollback`.
    pub previous_spec: Option<ServiceSpec>,
    pub endpoint: Endpoint,
    pub update_status: Option<UpdateStatus>,
    /// The stack that deployed it (`com.docker.stack.namespace`), if any.
    pub stack: Option<String>,
    /// `--with-registry-auth`: the login its nodes pull the image with. Outside the spec, and
    /// cleared from every reply (`inspect` never shows it); sealed with the data key in raft.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_auth: Option<super::Sealed<super::RegistryAuth>>,
}
