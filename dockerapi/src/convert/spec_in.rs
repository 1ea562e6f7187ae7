//! The Engine API's `ServiceSpec` (a `service create` / `update` body) as meshd's
//! [`ServiceSpec`]. What meshd does not carry is refused by name ([`refuse_unsupported`]); the
//! manager validates the rest, as it does meshctl's.

use std::collections::BTreeMap;

use mesh_cluster::Id;
use mesh_cluster::spec::{
    parse_endpoint_mode, parse_failure_action, parse_restart_condition, parse_update_order,
};
use mesh_cluster::state::{
    ContainerSpec, EndpointSpec, FileReference, HealthConfig, Mount, MountKind,
    NetworkAttachmentConfig, Placement, PortConfig, Protocol, PublishMode, ResourceRequirements,
    Resources, RestartPolicy, ServiceMode, ServiceSpec, SpreadPreference, TaskSpec, UpdateConfig,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::unsupported::refuse_unsupported;
use crate::error::HttpError;

type Rest = Map<String, Value>;

fn ms(ns: i64) -> u64 {
    u64::try_from(ns / 1_000_000).unwrap_or(0)
}

fn bad(e: impl std::fmt::Display) -> HttpError {
    HttpError::bad_request(e.to_string())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiServiceSpec {
    name: String,
    labels: Option<BTreeMap<String, String>>,
    task_template: ApiTaskSpec,
    mode: Option<ApiMode>,
    update_config: Option<ApiUpdateConfig>,
    rollback_config: Option<ApiUpdateConfig>,
    endpoint_spec: Option<ApiEndpointSpec>,
    /// Deprecated in the API in favour of `TaskTemplate.Networks`; still accepted there.
    networks: Option<Vec<ApiNetworkAttachment>>,
    #[serde(flatten)]
    rest: Rest,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiTaskSpec {
    container_spec: ApiContainerSpec,
    resources: Option<ApiResourceRequirements>,
    restart_policy: Option<ApiRestartPolicy>,
    placement: Option<ApiPlacement>,
    networks: Option<Vec<ApiNetworkAttachment>>,
    force_update: u64,
    #[serde(flatten)]
    rest: Rest,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiContainerSpec {
    image: String,
    labels: Option<BTreeMap<String, String>>,
    command: Option<Vec<String>>,
    args: Option<Vec<String>>,
    hostname: String,
    env: Option<Vec<String>>,
    dir: String,
    user: String,
    mounts: Option<Vec<ApiMount>>,
    stop_grace_period: Option<i64>,
    healthcheck: Option<ApiHealthcheck>,
    secrets: Option<Vec<ApiFileReference>>,
    configs: Option<Vec<ApiFileReference>>,
    #[serde(flatten)]
    rest: Rest,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiHealthcheck {
    test: Option<Vec<String>>,
    interval: i64,
    timeout: i64,
    start_period: i64,
    retries: u64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ApiFileReference {
    #[serde(rename = "File")]
    file: Option<ApiFile>,
    #[serde(rename = "SecretID", alias = "ConfigID")]
    id: String,
    #[serde(rename = "SecretName", alias = "ConfigName")]
    name: String,
    #[serde(rename = "Runtime")]
    runtime: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ApiFile {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "UID")]
    uid: String,
    #[serde(rename = "GID")]
    gid: String,
    #[serde(rename = "Mode")]
    mode: u32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiMount {
    #[serde(rename = "Type")]
    kind: String,
    source: String,
    target: String,
    read_only: bool,
    volume_options: Option<ApiVolumeOptions>,
    bind_options: Option<ApiBindOptions>,
    tmpfs_options: Option<ApiTmpfsOptions>,
    #[serde(flatten)]
    rest: Rest,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiVolumeOptions {
    no_copy: bool,
    labels: Option<BTreeMap<String, String>>,
    driver_config: Option<ApiDriver>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiDriver {
    name: String,
    options: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiBindOptions {
    propagation: String,
    #[serde(flatten)]
    rest: Rest,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiTmpfsOptions {
    size_bytes: i64,
    mode: u32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiResources {
    #[serde(rename = "NanoCPUs")]
    nano_cpus: i64,
    memory_bytes: i64,
    #[serde(flatten)]
    rest: Rest,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiResourceRequirements {
    limits: Option<ApiResources>,
    reservations: Option<ApiResources>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiRestartPolicy {
    condition: String,
    delay: Option<i64>,
    max_attempts: u64,
    window: i64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiPlacement {
    constraints: Option<Vec<String>>,
    preferences: Option<Vec<ApiPreference>>,
    max_replicas: u64,
    #[serde(flatten)]
    rest: Rest,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiPreference {
    spread: Option<ApiSpread>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiSpread {
    spread_descriptor: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiNetworkAttachment {
    target: String,
    aliases: Option<Vec<String>>,
    #[serde(flatten)]
    rest: Rest,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiMode {
    replicated: Option<ApiReplicated>,
    global: Option<Value>,
    #[serde(flatten)]
    rest: Rest,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiReplicated {
    replicas: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiUpdateConfig {
    parallelism: u64,
    delay: i64,
    failure_action: String,
    monitor: i64,
    max_failure_ratio: f32,
    order: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiEndpointSpec {
    mode: String,
    ports: Option<Vec<ApiPort>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ApiPort {
    name: String,
    protocol: String,
    target_port: u16,
    published_port: u16,
    publish_mode: String,
}

/// A `service create` / `update` body as meshd's spec.
pub fn service_spec(body: &[u8]) -> Result<ServiceSpec, HttpError> {
    let api: ApiServiceSpec = serde_json::from_slice(body)
        .map_err(|e| HttpError::bad_request(format!("invalid service spec: {e}")))?;
    refuse_unsupported("ServiceSpec", &api.rest)?;
    let mut task = task_spec(api.task_template)?;
    if let Some(networks) = api.networks {
        if !task.networks.is_empty() && !networks.is_empty() {
            return Err(HttpError::bad_request(
                "give the service's networks in TaskTemplate.Networks or Networks, not both",
            ));
        }
        task.networks.extend(networks_of(networks)?);
    }
    Ok(ServiceSpec {
        name: api.name,
        labels: api.labels.unwrap_or_default(),
        task,
        mode: mode(api.mode)?,
        update: update_config(api.update_config)?,
        rollback: update_config(api.rollback_config)?,
        endpoint: endpoint_spec(api.endpoint_spec)?,
    })
}

fn mode(m: Option<ApiMode>) -> Result<ServiceMode, HttpError> {
    let Some(m) = m else {
        return Ok(ServiceMode::default());
    };
    refuse_unsupported("Mode", &m.rest)?;
    match (m.replicated, m.global) {
        (Some(_), Some(_)) => Err(HttpError::bad_request(
            "Mode: give Replicated or Global, not both",
        )),
        (Some(r), None) => Ok(ServiceMode::Replicated {
            replicas: r.replicas.unwrap_or(1),
        }),
        (None, Some(_)) => Ok(ServiceMode::Global),
        (None, None) => Ok(ServiceMode::default()),
    }
}

fn task_spec(t: ApiTaskSpec) -> Result<TaskSpec, HttpError> {
    refuse_unsupported("TaskTemplate", &t.rest)?;
    let resources = t.resources.unwrap_or_default();
    Ok(TaskSpec {
        container: container_spec(t.container_spec)?,
        resources: ResourceRequirements {
            limits: resources_of("Limits", resources.limits)?,
            reservations: resources_of("Reservations", resources.reservations)?,
        },
        restart: restart_policy(t.restart_policy)?,
        placement: placement(t.placement)?,
        networks: networks_of(t.networks.unwrap_or_default())?,
        force_update: t.force_update,
    })
}

fn container_spec(c: ApiContainerSpec) -> Result<ContainerSpec, HttpError> {
    refuse_unsupported("TaskTemplate.ContainerSpec", &c.rest)?;
    let mounts = c
        .mounts
        .unwrap_or_default()
        .into_iter()
        .map(mount)
        .collect::<Result<_, _>>()?;
    Ok(ContainerSpec {
        image: c.image,
        command: c.command.unwrap_or_default(),
        args: c.args.unwrap_or_default(),
        env: c.env.unwrap_or_default(),
        labels: c.labels.unwrap_or_default(),
        hostname: c.hostname,
        workdir: c.dir,
        user: c.user,
        secrets: files("Secrets", c.secrets)?,
        configs: files("Configs", c.configs)?,
        stop_grace_period_ms: c.stop_grace_period.map_or(0, ms),
        mounts,
        healthcheck: c.healthcheck.map(|h| HealthConfig {
            test: h.test.unwrap_or_default(),
            interval_ms: ms(h.interval),
            timeout_ms: ms(h.timeout),
            start_period_ms: ms(h.start_period),
            retries: h.retries,
        }),
    })
}

fn files(what: &str, list: Option<Vec<ApiFileReference>>) -> Result<Vec<FileReference>, HttpError> {
    list.unwrap_or_default()
        .into_iter()
        .map(|f| {
            let Some(file) = f.file else {
                return Err(HttpError::bad_request(format!(
                    "TaskTemplate.ContainerSpec.{what}: meshd mounts {what} as files; give File (Name, UID, GID, Mode), not Runtime{}",
                    if f.runtime.is_some() { "" } else { " (File is missing)" }
                )));
            };
            Ok(FileReference {
                id: Id::from(f.id),
                name: f.name,
                target: file.name,
                uid: file.uid,
                gid: file.gid,
                mode: file.mode,
            })
        })
        .collect()
}

fn mount(m: ApiMount) -> Result<Mount, HttpError> {
    refuse_unsupported("TaskTemplate.ContainerSpec.Mounts[]", &m.rest)?;
    let kind = match m.kind.as_str() {
        "volume" | "" => MountKind::Volume,
        "bind" => MountKind::Bind,
        "tmpfs" => MountKind::Tmpfs,
        other => {
            return Err(HttpError::bad_request(format!(
                "invalid mount type {other:?}: expected volume, bind or tmpfs"
            )));
        }
    };
    let volume = m.volume_options.unwrap_or_default();
    let driver = volume.driver_config.unwrap_or_default();
    let bind = m.bind_options.unwrap_or_default();
    refuse_unsupported(
        "TaskTemplate.ContainerSpec.Mounts[].BindOptions",
        &bind.rest,
    )?;
    let tmpfs = m.tmpfs_options.unwrap_or_default();
    Ok(Mount {
        kind,
        source: m.source,
        target: m.target,
        readonly: m.read_only,
        volume_driver: driver.name,
        volume_labels: volume.labels.unwrap_or_default(),
        volume_opts: driver.options.unwrap_or_default(),
        volume_nocopy: volume.no_copy,
        bind_propagation: bind.propagation,
        tmpfs_size_bytes: tmpfs.size_bytes,
        tmpfs_mode: tmpfs.mode,
    })
}

fn resources_of(what: &str, r: Option<ApiResources>) -> Result<Resources, HttpError> {
    let r = r.unwrap_or_default();
    refuse_unsupported(&format!("TaskTemplate.Resources.{what}"), &r.rest)?;
    Ok(Resources {
        nano_cpus: r.nano_cpus,
        memory_bytes: r.memory_bytes,
    })
}

fn restart_policy(r: Option<ApiRestartPolicy>) -> Result<RestartPolicy, HttpError> {
    let default = RestartPolicy::default();
    let Some(r) = r else { return Ok(default) };
    Ok(RestartPolicy {
        condition: if r.condition.is_empty() {
            default.condition
        } else {
            parse_restart_condition(&r.condition).map_err(bad)?
        },
        delay_ms: r.delay.map_or(default.delay_ms, ms),
        max_attempts: r.max_attempts,
        window_ms: ms(r.window),
    })
}

fn placement(p: Option<ApiPlacement>) -> Result<Placement, HttpError> {
    let p = p.unwrap_or_default();
    refuse_unsupported("TaskTemplate.Placement", &p.rest)?;
    let preferences = p
        .preferences
        .unwrap_or_default()
        .into_iter()
        .map(|pref| match pref.spread {
            Some(s) => Ok(SpreadPreference {
                spread: s.spread_descriptor,
            }),
            None => Err(HttpError::bad_request(
                "TaskTemplate.Placement.Preferences: only Spread preferences exist",
            )),
        })
        .collect::<Result<_, _>>()?;
    Ok(Placement {
        constraints: p.constraints.unwrap_or_default(),
        preferences,
        max_replicas_per_node: p.max_replicas,
    })
}

fn networks_of(list: Vec<ApiNetworkAttachment>) -> Result<Vec<NetworkAttachmentConfig>, HttpError> {
    list.into_iter()
        .map(|n| {
            refuse_unsupported("TaskTemplate.Networks[]", &n.rest)?;
            Ok(NetworkAttachmentConfig {
                target: Id::from(n.target),
                aliases: n.aliases.unwrap_or_default(),
            })
        })
        .collect()
}

fn update_config(u: Option<ApiUpdateConfig>) -> Result<UpdateConfig, HttpError> {
    let default = UpdateConfig::default();
    let Some(u) = u else { return Ok(default) };
    Ok(UpdateConfig {
        parallelism: u.parallelism,
        delay_ms: ms(u.delay),
        failure_action: if u.failure_action.is_empty() {
            default.failure_action
        } else {
            parse_failure_action(&u.failure_action).map_err(bad)?
        },
        // 0 is "not given" (the docker CLI sends 0 without --update-monitor); swarm then
        // monitors for its default, as meshd's default does.
        monitor_ms: if u.monitor == 0 {
            default.monitor_ms
        } else {
            ms(u.monitor)
        },
        max_failure_ratio: u.max_failure_ratio,
        order: if u.order.is_empty() {
            default.order
        } else {
            parse_update_order(&u.order).map_err(bad)?
        },
    })
}

fn endpoint_spec(e: Option<ApiEndpointSpec>) -> Result<EndpointSpec, HttpError> {
    let e = e.unwrap_or_default();
    let ports = e
        .ports
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let protocol = match p.protocol.as_str() {
                "tcp" | "" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                other => {
                    return Err(HttpError::bad_request(format!(
                        "invalid port protocol {other:?}: expected tcp or udp (meshd does not serve sctp)"
                    )));
                }
            };
            let publish_mode = match p.publish_mode.as_str() {
                "ingress" | "" => PublishMode::Ingress,
                "host" => PublishMode::Host,
                other => {
                    return Err(HttpError::bad_request(format!(
                        "invalid publish mode {other:?}: expected ingress or host"
                    )));
                }
            };
            Ok(PortConfig {
                name: p.name,
                protocol,
                target_port: p.target_port,
                published_port: p.published_port,
                publish_mode,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(EndpointSpec {
        mode: if e.mode.is_empty() {
            mesh_cluster::state::EndpointMode::Vip
        } else {
            parse_endpoint_mode(&e.mode).map_err(bad)?
        },
        ports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::spec_out;
    use mesh_cluster::state::{HealthConfig, RestartCondition, UpdateOrder};

    /// Captured from Debian's docker 20.10.24 CLI: `docker service create --detach
    /// --no-resolve-image --name web --replicas 3 -p 8080:80 IMAGE httpd -f -p 80 -h /www`.
    const CLI_CREATE: &str = r#"{"Name":"web","Labels":{},"TaskTemplate":{"ContainerSpec":{"Image":"198.18.220.5:5000/meshd/busybox:latest","Args":["httpd","-f","-p","80","-h","/www"],"Init":false,"DNSConfig":{}},"Resources":{"Limits":{},"Reservations":{}},"Placement":{},"ForceUpdate":0},"Mode":{"Replicated":{"Replicas":3}},"EndpointSpec":{"Mode":"vip","Ports":[{"Protocol":"tcp","TargetPort":80,"PublishedPort":8080,"PublishMode":"ingress"}]}}"#;

    #[test]
    fn the_clis_create_body_becomes_meshds_spec() {
        let s = service_spec(CLI_CREATE.as_bytes()).unwrap();
        assert_eq!(s.name, "web");
        assert_eq!(s.mode, ServiceMode::Replicated { replicas: 3 });
        assert_eq!(
            s.task.container.image,
            "198.18.220.5:5000/meshd/busybox:latest"
        );
        assert_eq!(
            s.task.container.args,
            ["httpd", "-f", "-p", "80", "-h", "/www"]
        );
        assert!(s.task.container.command.is_empty());
        let p = &s.endpoint.ports[0];
        assert_eq!((p.target_port, p.published_port), (80, 8080));
        assert_eq!(p.publish_mode, PublishMode::Ingress);
        // What the CLI leaves out takes meshd's defaults, as meshctl's.
        assert_eq!(s.update, UpdateConfig::default());
        assert_eq!(s.task.restart, RestartPolicy::default());
    }

    #[test]
    fn a_spec_survives_inspect_and_update() {
        // What `docker service update` does: read the spec (inspect), change it, send it back.
        let mut spec = service_spec(CLI_CREATE.as_bytes()).unwrap();
        spec.labels.insert("tier".into(), "web".into());
        spec.task.container.env = vec!["A=1".into()];
        spec.task.container.command = vec!["sh".into(), "-c".into()];
        spec.task.container.stop_grace_period_ms = 3_000;
        spec.task.container.healthcheck = Some(HealthConfig {
            test: vec!["CMD".into(), "true".into()],
            interval_ms: 1_000,
            timeout_ms: 500,
            start_period_ms: 0,
            retries: 3,
        });
        spec.task.container.mounts = vec![Mount {
            kind: MountKind::Tmpfs,
            target: "/tmp/x".into(),
            tmpfs_size_bytes: 1 << 20,
            ..Mount::default()
        }];
        spec.task.restart.condition = RestartCondition::OnFailure;
        spec.task.placement.constraints = vec!["node.role==worker".into()];
        spec.task.placement.preferences = vec![SpreadPreference {
            spread: "node.labels.zone".into(),
        }];
        spec.task.networks = vec![NetworkAttachmentConfig {
            target: Id::from("net1"),
            aliases: vec!["w".into()],
        }];
        spec.task.resources.limits.memory_bytes = 64 << 20;
        spec.update.order = UpdateOrder::StartFirst;
        spec.update.delay_ms = 2_000;
        spec.rollback.parallelism = 0;
        let body = spec_out::service_spec(&spec).to_string();
        assert_eq!(service_spec(body.as_bytes()).unwrap(), spec);
    }

    #[test]
    fn what_meshd_does_not_carry_is_refused_by_name() {
        for (body, named) in [
            (
                r#"{"Name":"x","TaskTemplate":{"ContainerSpec":{"Image":"i","TTY":true}}}"#,
                "TaskTemplate.ContainerSpec.TTY",
            ),
            (
                r#"{"Name":"x","TaskTemplate":{"LogDriver":{"Name":"syslog"}}}"#,
                "TaskTemplate.LogDriver",
            ),
            (
                r#"{"Name":"x","Mode":{"ReplicatedJob":{"MaxConcurrent":1}}}"#,
                "Mode.ReplicatedJob",
            ),
            (
                r#"{"Name":"x","TaskTemplate":{"Resources":{"Limits":{"Pids":10}}}}"#,
                "Resources.Limits.Pids",
            ),
        ] {
            let e = service_spec(body.as_bytes()).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.message.contains(named), "{named}: {}", e.message);
        }
        let e = service_spec(
            br#"{"Name":"x","EndpointSpec":{"Ports":[{"Protocol":"sctp","TargetPort":1}]}}"#,
        )
        .unwrap_err();
        assert!(
            e.message.contains("sctp") && e.message.contains("tcp or udp"),
            "{}",
            e.message
        );
        let e = service_spec(b"not json").unwrap_err();
        assert!(
            e.message.starts_with("invalid service spec"),
            "{}",
            e.message
        );
    }
}
