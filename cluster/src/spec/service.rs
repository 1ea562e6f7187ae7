//! Service flags (`--env`, `--replicas`, `--mode`, `--endpoint-mode`, `--restart-condition`,
//! `--update-failure-action`, `--update-order`, `--placement-pref`) and the check of a whole
//! [`ServiceSpec`] before it is stored.

use std::collections::BTreeSet;

use super::limits::{MAX_HOSTNAME, MAX_REPLICAS, check_labels, check_replicas};
use super::{SpecError, check_health, check_mounts, parse_constraints};
use crate::state::{
    EndpointMode, FailureAction, Protocol, PublishMode, RestartCondition, ServiceMode, ServiceSpec,
    SpreadPreference, UpdateConfig, UpdateOrder,
};

const ENDPOINT_MODES: &[(&str, EndpointMode)] =
    &[("vip", EndpointMode::Vip), ("dnsrr", EndpointMode::Dnsrr)];
const RESTART_CONDITIONS: &[(&str, RestartCondition)] = &[
    ("any", RestartCondition::Any),
    ("on-failure", RestartCondition::OnFailure),
    ("none", RestartCondition::None),
];
const FAILURE_ACTIONS: &[(&str, FailureAction)] = &[
    ("pause", FailureAction::Pause),
    ("continue", FailureAction::Continue),
    ("rollback", FailureAction::Rollback),
];
const UPDATE_ORDERS: &[(&str, UpdateOrder)] = &[
    ("stop-first", UpdateOrder::StopFirst),
    ("start-first", UpdateOrder::StartFirst),
];
const PUBLISH_MODES: &[(&str, PublishMode)] = &[
    ("ingress", PublishMode::Ingress),
    ("host", PublishMode::Host),
];

fn name_of<T: Copy + PartialEq>(choices: &[(&'static str, T)], v: T) -> &'static str {
    choices.iter().find(|(_, c)| *c == v).map_or("", |(n, _)| n)
}

/// The names users type and `inspect --pretty` prints (`dnsrr`, `on-failure`, `stop-first`).
macro_rules! named {
    ($($ty:ty => $table:ident),*) => {$(
        impl $ty {
            pub fn as_str(self) -> &'static str {
                name_of($table, self)
            }
        }
    )*};
}
named!(EndpointMode => ENDPOINT_MODES, RestartCondition => RESTART_CONDITIONS,
       FailureAction => FAILURE_ACTIONS, UpdateOrder => UPDATE_ORDERS, PublishMode => PUBLISH_MODES);

fn one_of<T: Copy>(what: &str, input: &str, choices: &[(&str, T)]) -> Result<T, SpecError> {
    let s = input.trim().to_ascii_lowercase();
    choices
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            SpecError::new(format!(
                "invalid {what} {input:?}: expected {}",
                names.join(" or ")
            ))
        })
}

/// `--env K=V`: returns the `K=V` string a container takes.
pub fn parse_env(input: &str) -> Result<String, SpecError> {
    match input.split_once('=') {
        Some((key, _)) if !key.is_empty() && !key.chars().any(char::is_whitespace) => {
            Ok(input.to_owned())
        }
        _ => Err(SpecError::new(format!(
            "invalid environment variable {input:?}: expected KEY=VALUE with a non-empty KEY \
             without spaces"
        ))),
    }
}

/// `--replicas K`: a non-negative integer, at most [`MAX_REPLICAS`].
pub fn parse_replicas(input: &str) -> Result<u64, SpecError> {
    let n = input.trim().parse().map_err(|_| {
        SpecError::new(format!(
            "invalid replicas value {input:?}: expected a non-negative integer (0 to {MAX_REPLICAS})"
        ))
    })?;
    check_replicas(n)?;
    Ok(n)
}

/// `--mode replicated|global` with `--replicas`: replicated by default with 1 replica; global
/// refuses `--replicas`.
pub fn parse_mode(mode: Option<&str>, replicas: Option<&str>) -> Result<ServiceMode, SpecError> {
    let global = match mode {
        None => false,
        Some(m) => one_of("mode", m, &[("replicated", false), ("global", true)])?,
    };
    match (global, replicas) {
        (true, Some(_)) => Err(SpecError::new(
            "--replicas can only be used with replicated mode (not with --mode global)",
        )),
        (true, None) => Ok(ServiceMode::Global),
        (false, r) => Ok(ServiceMode::Replicated {
            replicas: r.map(parse_replicas).transpose()?.unwrap_or(1),
        }),
    }
}

/// `replicated` or `global`, as `service ls` prints the mode.
pub fn format_mode(mode: ServiceMode) -> &'static str {
    match mode {
        ServiceMode::Replicated { .. } => "replicated",
        ServiceMode::Global => "global",
    }
}

/// `--endpoint-mode vip|dnsrr`.
pub fn parse_endpoint_mode(input: &str) -> Result<EndpointMode, SpecError> {
    one_of("endpoint mode", input, ENDPOINT_MODES)
}

/// `--restart-condition any|on-failure|none`.
pub fn parse_restart_condition(input: &str) -> Result<RestartCondition, SpecError> {
    one_of("restart condition", input, RESTART_CONDITIONS)
}

/// `--update-failure-action pause|continue|rollback` (and `--rollback-failure-action`).
pub fn parse_failure_action(input: &str) -> Result<FailureAction, SpecError> {
    one_of("failure action", input, FAILURE_ACTIONS)
}

/// `--update-order stop-first|start-first` (and `--rollback-order`).
pub fn parse_update_order(input: &str) -> Result<UpdateOrder, SpecError> {
    one_of("update order", input, UPDATE_ORDERS)
}

/// `--placement-pref spread=node.labels.K` (or `engine.labels.K`).
pub fn parse_placement_pref(input: &str) -> Result<SpreadPreference, SpecError> {
    let bad = || {
        SpecError::new(format!(
            "invalid placement preference {input:?}: expected spread=node.labels.LABEL \
             (or spread=engine.labels.LABEL)"
        ))
    };
    let (strategy, descriptor) = input.trim().split_once('=').ok_or_else(bad)?;
    if !strategy.trim().eq_ignore_ascii_case("spread") {
        return Err(bad());
    }
    let descriptor = descriptor.trim();
    let label = descriptor
        .strip_prefix("node.labels.")
        .or_else(|| descriptor.strip_prefix("engine.labels."))
        .ok_or_else(bad)?;
    if label.is_empty() || label.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok(SpreadPreference {
        spread: descriptor.to_owned(),
    })
}

pub fn format_placement_pref(p: &SpreadPreference) -> String {
    format!("spread={}", p.spread)
}

/// Docker's rule for service names: a DNS label (letters, digits, `-` and `_` inside, at most 63).
pub fn validate_service_name(name: &str) -> Result<(), SpecError> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
    if ok {
        Ok(())
    } else {
        Err(SpecError::new(format!(
            "invalid service name {name:?}: expected 1 to 63 letters, digits, '-' or '_', \
             starting and ending with a letter or digit (a DNS name component)"
        )))
    }
}

fn check_update_config(what: &str, c: &UpdateConfig) -> Result<(), SpecError> {
    if !(0.0..=1.0).contains(&c.max_failure_ratio) {
        return Err(SpecError::new(format!(
            "invalid {what} max failure ratio {}: expected a number from 0 to 1",
            c.max_failure_ratio
        )));
    }
    Ok(())
}

/// Checks a whole spec before it is stored: everything a user could have got wrong, each with
/// what is accepted. Port conflicts with other services are checked by
/// [`crate::alloc::check_ports`], network existence by the API.
pub fn validate_service_spec(spec: &ServiceSpec) -> Result<(), SpecError> {
    validate_service_name(&spec.name)?;
    if let ServiceMode::Replicated { replicas } = spec.mode {
        check_replicas(replicas)?;
    }
    check_labels("service", &spec.labels)?;
    let c = &spec.task.container;
    check_labels("container", &c.labels)?;
    if c.hostname.len() > MAX_HOSTNAME {
        return Err(SpecError::new(format!(
            "invalid hostname: {} bytes long, at most {MAX_HOSTNAME} are accepted",
            c.hostname.len()
        )));
    }
    if c.image.trim().is_empty() || c.image.contains(char::is_whitespace) {
        return Err(SpecError::new(format!(
            "invalid image {:?}: expected an image reference such as busybox or nginx:1.25",
            c.image
        )));
    }
    for env in &c.env {
        parse_env(env)?;
    }
    check_mounts(&c.mounts)?;
    if let Some(h) = &c.healthcheck {
        check_health(h)?;
    }
    parse_constraints(&spec.task.placement.constraints)?;
    for pref in &spec.task.placement.preferences {
        parse_placement_pref(&format_placement_pref(pref))?;
    }
    let res = &spec.task.resources;
    for (what, value) in [
        ("CPU reservation", res.reservations.nano_cpus),
        ("memory reservation", res.reservations.memory_bytes),
        ("CPU limit", res.limits.nano_cpus),
        ("memory limit", res.limits.memory_bytes),
    ] {
        if value < 0 {
            return Err(SpecError::new(format!(
                "invalid {what} {value}: it cannot be negative"
            )));
        }
    }
    if res.limits.nano_cpus > 0 && res.reservations.nano_cpus > res.limits.nano_cpus {
        return Err(SpecError::new(
            "invalid resources: the CPU reservation is larger than the CPU limit",
        ));
    }
    if res.limits.memory_bytes > 0 && res.reservations.memory_bytes > res.limits.memory_bytes {
        return Err(SpecError::new(
            "invalid resources: the memory reservation is larger than the memory limit",
        ));
    }
    check_update_config("update", &spec.update)?;
    check_update_config("rollback", &spec.rollback)?;
    if spec.rollback.failure_action == FailureAction::Rollback {
        return Err(SpecError::new(
            "invalid rollback failure action \"rollback\": expected pause or continue",
        ));
    }
    let mut networks = BTreeSet::new();
    for n in &spec.task.networks {
        if !networks.insert(&n.target) {
            return Err(SpecError::new(format!(
                "network {} is attached twice: give each network once",
                n.target
            )));
        }
    }
    let mut published: BTreeSet<(u16, Protocol)> = BTreeSet::new();
    for p in &spec.endpoint.ports {
        if p.target_port == 0 {
            return Err(SpecError::new(
                "invalid port: the target port must be a number from 1 to 65535",
            ));
        }
        // Host mode with published 0 is allowed: Docker then picks a port on each node.
        if p.published_port != 0 && !published.insert((p.published_port, p.protocol)) {
            return Err(SpecError::new(format!(
                "port {}/{} is published twice: each published port and protocol may appear once",
                p.published_port,
                p.protocol.as_str()
            )));
        }
    }
    // Unlike Swarm, `dnsrr` services may publish ingress ports: the mesh balances over the task
    // addresses directly.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{TestRng, parse_port};
    use crate::state::{NetworkAttachmentConfig, PortConfig};

    #[test]
    fn specs_past_the_limits_are_refused() {
        let mut s = spec();
        s.mode = ServiceMode::Replicated {
            replicas: 1_000_000_000_000,
        };
        let err = validate_service_spec(&s).unwrap_err().to_string();
        assert!(err.contains("at most 10000 replicas"), "{err}");
        let mut s = spec();
        s.labels.insert("k".repeat(200), "v".into());
        let err = validate_service_spec(&s).unwrap_err().to_string();
        assert!(err.contains("service label"), "{err}");
        let mut s = spec();
        s.task.container.hostname = "h".repeat(300);
        let err = validate_service_spec(&s).unwrap_err().to_string();
        assert!(err.contains("at most 253"), "{err}");
        assert!(validate_service_spec(&spec()).is_ok());
    }

    fn spec() -> ServiceSpec {
        let mut s = ServiceSpec {
            name: "web".into(),
            ..ServiceSpec::default()
        };
        s.task.container.image = "busybox".into();
        s
    }

    /// Mounts and health checks from any source (a compose file, an API call) are checked
    /// with the spec, and state written before they existed still decodes.
    #[test]
    fn mounts_and_health_checks_are_checked_with_the_spec() {
        let mut s = spec();
        let m = crate::spec::parse_mount("source=data,target=/data").unwrap();
        s.task.container.mounts = vec![m.clone(), m];
        let err = validate_service_spec(&s).unwrap_err().to_string();
        assert!(err.contains("duplicate mount target"), "{err}");
        let mut s = spec();
        s.task.container.healthcheck = Some(crate::state::HealthConfig {
            test: vec!["CMD-SHELL".into()],
            ..Default::default()
        });
        let err = validate_service_spec(&s).unwrap_err().to_string();
        assert!(err.contains("CMD-SHELL takes exactly one"), "{err}");
        let mut old = serde_json::to_value(spec()).unwrap();
        let container = &mut old["task"]["container"];
        let container = container.as_object_mut().unwrap();
        assert!(container.remove("mounts").is_some() && container.remove("healthcheck").is_some());
        let decoded: ServiceSpec = serde_json::from_value(old).unwrap();
        assert_eq!(decoded, spec());
    }

    #[test]
    fn small_flags() {
        assert_eq!(parse_replicas("3"), Ok(3));
        let err = parse_replicas("-1").unwrap_err().to_string();
        assert!(
            err.contains("\"-1\"") && err.contains("non-negative"),
            "{err}"
        );
        assert!(parse_replicas("x").is_err());
        let err = parse_replicas("1000000000000").unwrap_err().to_string();
        assert!(err.contains("at most 10000 replicas"), "{err}");
        assert_eq!(parse_replicas("10000"), Ok(10_000));
        assert_eq!(
            parse_mode(None, None),
            Ok(ServiceMode::Replicated { replicas: 1 })
        );
        assert_eq!(parse_mode(Some("global"), None), Ok(ServiceMode::Global));
        assert_eq!(
            parse_mode(Some("replicated"), Some("5")),
            Ok(ServiceMode::Replicated { replicas: 5 })
        );
        assert!(parse_mode(Some("global"), Some("2")).is_err());
        assert!(
            parse_mode(Some("daemonset"), None)
                .unwrap_err()
                .0
                .contains("replicated or global")
        );
        assert_eq!(parse_endpoint_mode("dnsrr"), Ok(EndpointMode::Dnsrr));
        assert!(
            parse_endpoint_mode("rr")
                .unwrap_err()
                .0
                .contains("vip or dnsrr")
        );
        assert_eq!(
            parse_restart_condition("on-failure"),
            Ok(RestartCondition::OnFailure)
        );
        assert_eq!(
            parse_failure_action("rollback"),
            Ok(FailureAction::Rollback)
        );
        assert_eq!(
            parse_update_order("start-first"),
            Ok(UpdateOrder::StartFirst)
        );
        assert!(parse_update_order("first").is_err());
        assert_eq!(parse_env("A=b=c"), Ok("A=b=c".into()));
        assert_eq!(parse_env("A="), Ok("A=".into()));
        for bad in ["A", "=b", "A B=c", ""] {
            assert!(parse_env(bad).is_err(), "{bad}");
        }
        let p = parse_placement_pref("spread=node.labels.zone").unwrap();
        assert_eq!(parse_placement_pref(&format_placement_pref(&p)), Ok(p));
        for bad in [
            "spread=zone",
            "binpack=node.labels.zone",
            "spread=node.labels.",
            "spread",
        ] {
            assert!(parse_placement_pref(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn service_names_follow_docker() {
        for good in ["web", "Web-1", "a", "my_app", &"x".repeat(63)] {
            assert!(validate_service_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-web", "web-", "web.1", "we b", "wéb", &"x".repeat(64)] {
            assert!(validate_service_name(bad).is_err(), "{bad}");
        }
    }

    type Change = Box<dyn Fn(&mut ServiceSpec)>;

    #[test]
    fn whole_specs() {
        assert_eq!(validate_service_spec(&spec()), Ok(()));
        let cases: Vec<(&str, Change)> = vec![
            ("service name", Box::new(|s| s.name = "bad name".into())),
            (
                "image",
                Box::new(|s| s.task.container.image = String::new()),
            ),
            (
                "environment",
                Box::new(|s| s.task.container.env = vec!["NOEQ".into()]),
            ),
            (
                "constraint",
                Box::new(|s| s.task.placement.constraints = vec!["node.labels.zone=east".into()]),
            ),
            (
                "published twice",
                Box::new(|s| {
                    s.endpoint.ports = vec![
                        parse_port("8080:80").unwrap(),
                        parse_port("8080:81").unwrap(),
                    ];
                }),
            ),
            (
                "target port",
                Box::new(|s| s.endpoint.ports = vec![PortConfig::default()]),
            ),
            ("ratio", Box::new(|s| s.update.max_failure_ratio = 1.5)),
            (
                "rollback failure action",
                Box::new(|s| s.rollback.failure_action = FailureAction::Rollback),
            ),
            (
                "larger than the memory limit",
                Box::new(|s| {
                    s.task.resources.limits.memory_bytes = 1;
                    s.task.resources.reservations.memory_bytes = 2;
                }),
            ),
            (
                "attached twice",
                Box::new(|s| {
                    let n = NetworkAttachmentConfig {
                        target: "n".into(),
                        aliases: vec![],
                    };
                    s.task.networks = vec![n.clone(), n];
                }),
            ),
        ];
        for (want, change) in cases {
            let mut s = spec();
            change(&mut s);
            let err = validate_service_spec(&s).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        // Allowed: the same port over two protocols, host mode without a published port, and
        // ingress ports on a dnsrr service.
        let mut s = spec();
        s.endpoint.mode = EndpointMode::Dnsrr;
        s.endpoint.ports = vec![
            parse_port("53:53").unwrap(),
            parse_port("53:53/udp").unwrap(),
            parse_port("target=80,mode=host").unwrap(),
            parse_port("target=81,mode=host").unwrap(),
        ];
        assert_eq!(validate_service_spec(&s), Ok(()));
    }

    #[test]
    fn choices_round_trip() {
        // Each choice prints as its name (as serde and `inspect --pretty` show it), and every
        // casing and spacing of a name parses back to the same value.
        let mut rng = TestRng::new(5);
        let names = [
            "vip",
            "dnsrr",
            "any",
            "on-failure",
            "none",
            "pause",
            "continue",
            "rollback",
            "stop-first",
            "start-first",
            "global",
            "bogus",
        ];
        for _ in 0..2_000 {
            let mut s: String = rng
                .pick(&names)
                .chars()
                .map(|c| {
                    if rng.below(2) == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            if rng.below(4) == 0 {
                s = format!(" {s} ");
            }
            if let Ok(v) = parse_endpoint_mode(&s) {
                assert_eq!(parse_endpoint_mode(v.as_str()), Ok(v));
                assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
            }
            if let Ok(v) = parse_restart_condition(&s) {
                assert_eq!(parse_restart_condition(v.as_str()), Ok(v));
                assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
            }
            if let Ok(v) = parse_failure_action(&s) {
                assert_eq!(parse_failure_action(v.as_str()), Ok(v));
                assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
            }
            if let Ok(v) = parse_update_order(&s) {
                assert_eq!(parse_update_order(v.as_str()), Ok(v));
                assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
            }
            let all_fail = parse_endpoint_mode(&s).is_err()
                && parse_restart_condition(&s).is_err()
                && parse_failure_action(&s).is_err()
                && parse_update_order(&s).is_err();
            let word = s.trim().to_ascii_lowercase();
            assert_eq!(all_fail, word == "global" || word == "bogus", "{s:?}");
        }
    }
}
