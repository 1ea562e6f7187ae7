//! `service inspect`: Docker's JSON shape of a service (`Spec.TaskTemplate.ContainerSpec.Image`,
//! `Endpoint.Spec.Ports`, durations in nanoseconds, empty fields left out), `--pretty` as
//! Docker's template lays it out, and `--format` with the templates people use
//! (`{{json .Spec}}`, `{{.Spec.Name}}`, `{{json .Endpoint.Spec.Ports}}`). Beyond Docker, the
//! routing mesh's counters: `MeshStats` in the JSON, a `Mesh:` section in `--pretty`.

use std::fmt::Write as _;
use std::io::Write;

use anyhow::Result;
use mesh_api::{MeshStatsRow, Reply, Request};
use mesh_cluster::spec::{format_cpus, format_duration};
use mesh_cluster::state::{
    ContainerSpec, EndpointSpec, HealthConfig, Mount, Placement, PortConfig, ResourceRequirements,
    Service, ServiceMode, ServiceSpec, UpdateConfig, UpdateState,
};
use serde_json::{Map, Value, json};

use super::client::{Conn, now_ms};
use crate::commands::Target;
use crate::commands::node::{bytes_size, civil};

const NANOS_PER_MS: u64 = 1_000_000;

/// RFC 3339 with nanoseconds, as Docker's JSON has times.
pub(crate) fn rfc3339(ms: u64) -> String {
    let (y, m, d, hh, mm, ss, millis) = civil(ms);
    format!(
        "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{:09}Z",
        millis * NANOS_PER_MS
    )
}

fn ns(ms: u64) -> u64 {
    ms * NANOS_PER_MS
}

/// An object without its empty members (Go's `omitempty`).
pub(crate) fn object(fields: Vec<(&str, Value)>) -> Value {
    let mut m = Map::new();
    for (k, v) in fields {
        let empty = match &v {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            Value::Number(n) => n.as_u64() == Some(0) || n.as_i64() == Some(0),
            Value::Bool(b) => !b,
        };
        if !empty {
            m.insert(k.to_owned(), v);
        }
    }
    Value::Object(m)
}

fn ports(ports: &[PortConfig]) -> Value {
    Value::Array(
        ports
            .iter()
            .map(|p| {
                object(vec![
                    ("Name", json!(p.name)),
                    ("Protocol", json!(p.protocol.as_str())),
                    ("TargetPort", json!(p.target_port)),
                    ("PublishedPort", json!(p.published_port)),
                    ("PublishMode", json!(p.publish_mode.as_str())),
                ])
            })
            .collect(),
    )
}

fn endpoint_spec(e: &EndpointSpec) -> Value {
    object(vec![
        ("Mode", json!(e.mode.as_str())),
        ("Ports", ports(&e.ports)),
    ])
}

/// A ratio as Go prints a float: `0`, `0.1` (not `0.0`, not `0.10000000149`).
fn ratio(r: f32) -> Value {
    let shortest: f64 = r.to_string().parse().unwrap_or(0.0);
    if shortest.fract() == 0.0 {
        json!(shortest as i64)
    } else {
        json!(shortest)
    }
}

fn update_config(c: &UpdateConfig) -> Value {
    let mut v = object(vec![
        ("Delay", json!(ns(c.delay_ms))),
        ("FailureAction", json!(c.failure_action.as_str())),
        ("Monitor", json!(ns(c.monitor_ms))),
        ("Order", json!(c.order.as_str())),
    ]);
    // Docker always shows these two, zero or not.
    if let Value::Object(m) = &mut v {
        let mut out = Map::new();
        out.insert("Parallelism".into(), json!(c.parallelism));
        out.extend(std::mem::take(m));
        out.insert("MaxFailureRatio".into(), ratio(c.max_failure_ratio));
        // Keep Docker's order: Parallelism, Delay, FailureAction, Monitor, MaxFailureRatio, Order.
        let order = [
            "Parallelism",
            "Delay",
            "FailureAction",
            "Monitor",
            "MaxFailureRatio",
            "Order",
        ];
        let mut sorted = Map::new();
        for k in order {
            if let Some(x) = out.remove(k) {
                sorted.insert(k.into(), x);
            }
        }
        *m = sorted;
    }
    v
}

/// `ContainerSpec.Mounts` as Docker's JSON has them: each kind's options only when set.
fn mounts_json(mounts: &[Mount]) -> Value {
    Value::Array(
        mounts
            .iter()
            .map(|m| {
                object(vec![
                    ("Type", json!(m.kind.as_str())),
                    ("Source", json!(m.source)),
                    ("Target", json!(m.target)),
                    ("ReadOnly", json!(m.readonly)),
                    (
                        "VolumeOptions",
                        object(vec![
                            ("NoCopy", json!(m.volume_nocopy)),
                            ("Labels", json!(m.volume_labels)),
                            (
                                "DriverConfig",
                                object(vec![
                                    ("Name", json!(m.volume_driver)),
                                    ("Options", json!(m.volume_opts)),
                                ]),
                            ),
                        ]),
                    ),
                    (
                        "BindOptions",
                        object(vec![("Propagation", json!(m.bind_propagation))]),
                    ),
                    (
                        "TmpfsOptions",
                        object(vec![
                            ("SizeBytes", json!(m.tmpfs_size_bytes)),
                            ("Mode", json!(m.tmpfs_mode)),
                        ]),
                    ),
                ])
            })
            .collect(),
    )
}

/// `ContainerSpec.Healthcheck` as Docker's JSON has it (durations in nanoseconds).
fn health_json(h: &HealthConfig) -> Value {
    object(vec![
        ("Test", json!(h.test)),
        ("Interval", json!(ns(h.interval_ms))),
        ("Timeout", json!(ns(h.timeout_ms))),
        ("StartPeriod", json!(ns(h.start_period_ms))),
        ("Retries", json!(h.retries)),
    ])
}

/// A spec as Docker's JSON has it.
pub(crate) fn spec_json(s: &ServiceSpec) -> Value {
    let c = &s.task.container;
    let r = &s.task.resources;
    let p = &s.task.placement;
    let mode = match s.mode {
        ServiceMode::Replicated { replicas } => json!({"Replicated": {"Replicas": replicas}}),
        ServiceMode::Global => json!({"Global": {}}),
    };
    object(vec![
        ("Name", json!(s.name)),
        ("Labels", json!(s.labels)),
        (
            "TaskTemplate",
            object(vec![
                (
                    "ContainerSpec",
                    object(vec![
                        ("Image", json!(c.image)),
                        ("Labels", json!(c.labels)),
                        ("Command", json!(c.command)),
                        ("Args", json!(c.args)),
                        ("Hostname", json!(c.hostname)),
                        ("Env", json!(c.env)),
                        ("Dir", json!(c.workdir)),
                        ("User", json!(c.user)),
                        ("Mounts", mounts_json(&c.mounts)),
                        ("StopGracePeriod", json!(ns(c.stop_grace_period_ms))),
                        (
                            "Healthcheck",
                            c.healthcheck.as_ref().map_or(Value::Null, health_json),
                        ),
                    ]),
                ),
                (
                    "Resources",
                    object(vec![
                        (
                            "Limits",
                            object(vec![
                                ("NanoCPUs", json!(r.limits.nano_cpus)),
                                ("MemoryBytes", json!(r.limits.memory_bytes)),
                            ]),
                        ),
                        (
                            "Reservations",
                            object(vec![
                                ("NanoCPUs", json!(r.reservations.nano_cpus)),
                                ("MemoryBytes", json!(r.reservations.memory_bytes)),
                            ]),
                        ),
                    ]),
                ),
                (
                    "RestartPolicy",
                    object(vec![
                        ("Condition", json!(s.task.restart.condition.as_str())),
                        ("Delay", json!(ns(s.task.restart.delay_ms))),
                        ("MaxAttempts", json!(s.task.restart.max_attempts)),
                        ("Window", json!(ns(s.task.restart.window_ms))),
                    ]),
                ),
                (
                    "Placement",
                    object(vec![
                        ("Constraints", json!(p.constraints)),
                        (
                            "Preferences",
                            Value::Array(
                                p.preferences
                                    .iter()
                                    .map(|x| json!({"Spread": {"SpreadDescriptor": x.spread}}))
                                    .collect(),
                            ),
                        ),
                        ("MaxReplicas", json!(p.max_replicas_per_node)),
                    ]),
                ),
                (
                    "Networks",
                    Value::Array(
                        s.task
                            .networks
                            .iter()
                            .map(|n| {
                                object(vec![
                                    ("Target", json!(n.target.as_str())),
                                    ("Aliases", json!(n.aliases)),
                                ])
                            })
                            .collect(),
                    ),
                ),
                ("ForceUpdate", json!(s.task.force_update)),
                ("Runtime", json!("container")),
            ]),
        ),
        ("Mode", mode),
        ("UpdateConfig", update_config(&s.update)),
        ("RollbackConfig", update_config(&s.rollback)),
        ("EndpointSpec", endpoint_spec(&s.endpoint)),
    ])
}

/// A service as `docker service inspect` prints it.
pub(crate) fn service_json(s: &Service) -> Value {
    let update_status = s.update_status.as_ref().map(|u| {
        object(vec![
            ("State", json!(update_state(u.state))),
            ("StartedAt", json!(rfc3339(u.started_at))),
            ("CompletedAt", json!(u.completed_at.map(rfc3339))),
            ("Message", json!(u.message)),
        ])
    });
    object(vec![
        ("ID", json!(s.id.as_str())),
        ("Version", json!({"Index": s.meta.version})),
        ("CreatedAt", json!(rfc3339(s.meta.created_at))),
        ("UpdatedAt", json!(rfc3339(s.meta.updated_at))),
        ("Spec", spec_json(&s.spec)),
        (
            "PreviousSpec",
            s.previous_spec.as_ref().map_or(Value::Null, spec_json),
        ),
        (
            "Endpoint",
            object(vec![
                ("Spec", endpoint_spec(&s.spec.endpoint)),
                ("Ports", ports(&s.endpoint.ports)),
                (
                    "VirtualIPs",
                    Value::Array(
                        s.endpoint
                            .virtual_ips
                            .iter()
                            .map(|v| json!({"NetworkID": v.network_id.as_str(), "Addr": v.addr.to_string()}))
                            .collect(),
                    ),
                ),
            ]),
        ),
        ("UpdateStatus", update_status.unwrap_or(Value::Null)),
    ])
}

fn update_state(s: UpdateState) -> &'static str {
    match s {
        UpdateState::Updating => "updating",
        UpdateState::Paused => "paused",
        UpdateState::Completed => "completed",
        UpdateState::RollbackStarted => "rollback_started",
        UpdateState::RollbackPaused => "rollback_paused",
        UpdateState::RollbackCompleted => "rollback_completed",
    }
}

/// `service inspect --pretty`, as Docker's template lays it out.
pub(crate) fn pretty(s: &Service, now: u64) -> String {
    let mut o = String::new();
    pretty_name_and_mode(&mut o, s);
    pretty_update_status(&mut o, s, now);
    pretty_placement(&mut o, &s.spec.task.placement);
    pretty_update_configs(&mut o, &s.spec);
    pretty_container(&mut o, &s.spec.task.container);
    pretty_resources(&mut o, &s.spec.task.resources);
    pretty_endpoint(&mut o, s);
    o
}

/// `ID`, `Name`, `Labels` and `Service Mode`.
fn pretty_name_and_mode(o: &mut String, s: &Service) {
    let spec = &s.spec;
    let _ = writeln!(o, "\nID:\t\t{}", s.id);
    let _ = writeln!(o, "Name:\t\t{}", spec.name);
    if !spec.labels.is_empty() {
        let _ = writeln!(o, "Labels:");
        for (k, v) in &spec.labels {
            if v.is_empty() {
                let _ = writeln!(o, " {k}");
            } else {
                let _ = writeln!(o, " {k}={v}");
            }
        }
    }
    match spec.mode {
        ServiceMode::Global => {
            let _ = writeln!(o, "Service Mode:\tGlobal");
        }
        ServiceMode::Replicated { replicas } => {
            let _ = writeln!(o, "Service Mode:\tReplicated");
            let _ = writeln!(o, " Replicas:\t{replicas}");
        }
    }
}

/// `UpdateStatus`, when the service has been updated.
fn pretty_update_status(o: &mut String, s: &Service, now: u64) {
    let Some(u) = &s.update_status else {
        return;
    };
    let ago = |ms: u64| {
        format!(
            "{} ago",
            mesh_cluster::naming::human_duration(now.saturating_sub(ms)).to_lowercase()
        )
    };
    let _ = writeln!(o, "UpdateStatus:");
    let _ = writeln!(o, " State:\t\t{}", update_state(u.state));
    let _ = writeln!(o, " Started:\t{}", ago(u.started_at));
    if let Some(c) = u.completed_at {
        let _ = writeln!(o, " Completed:\t{}", ago(c));
    }
    let _ = writeln!(o, " Message:\t{}", u.message);
}

/// `Placement`.
fn pretty_placement(o: &mut String, p: &Placement) {
    let _ = writeln!(o, "Placement:");
    if !p.constraints.is_empty() {
        let _ = writeln!(o, " Constraints:\t[{}]", p.constraints.join(" "));
    }
    if !p.preferences.is_empty() {
        let prefs: Vec<String> = p
            .preferences
            .iter()
            .map(|x| format!("spread={}", x.spread))
            .collect();
        let _ = writeln!(o, " Preferences:   [{}]", prefs.join(" "));
    }
    if p.max_replicas_per_node > 0 {
        let _ = writeln!(o, " Max Replicas Per Node:   {}", p.max_replicas_per_node);
    }
}

/// `UpdateConfig` and `RollbackConfig`.
fn pretty_update_configs(o: &mut String, spec: &ServiceSpec) {
    for (title, c, order) in [
        ("UpdateConfig", &spec.update, "Update order:     "),
        ("RollbackConfig", &spec.rollback, "Rollback order:   "),
    ] {
        let _ = writeln!(o, "{title}:");
        let _ = writeln!(o, " Parallelism:\t{}", c.parallelism);
        if c.delay_ms > 0 {
            let _ = writeln!(o, " Delay:\t\t{}", format_duration(c.delay_ms));
        }
        let _ = writeln!(o, " On failure:\t{}", c.failure_action.as_str());
        if c.monitor_ms > 0 {
            let _ = writeln!(o, " Monitoring Period: {}", format_duration(c.monitor_ms));
        }
        let _ = writeln!(o, " Max failure ratio: {}", c.max_failure_ratio);
        let _ = writeln!(o, " {order} {}", c.order.as_str());
    }
}

/// `ContainerSpec`.
fn pretty_container(o: &mut String, c: &ContainerSpec) {
    let _ = writeln!(o, "ContainerSpec:");
    let _ = writeln!(o, " Image:\t\t{}", c.image);
    if !c.command.is_empty() {
        let _ = writeln!(o, " Command:\t{}", c.command.join(" "));
    }
    if !c.args.is_empty() {
        let _ = writeln!(o, " Args:\t\t{} ", c.args.join(" "));
    }
    if !c.env.is_empty() {
        let _ = writeln!(o, " Env:\t\t{} ", c.env.join(" "));
    }
    if !c.workdir.is_empty() {
        let _ = writeln!(o, " Dir:\t\t{}", c.workdir);
    }
    if !c.user.is_empty() {
        let _ = writeln!(o, " User: {}", c.user);
    }
    pretty_mounts_and_health(o, c);
}

/// `Mounts` (Docker's template) and `Healthcheck` (laid out as newer docker CLIs do).
fn pretty_mounts_and_health(o: &mut String, c: &ContainerSpec) {
    if !c.mounts.is_empty() {
        let _ = writeln!(o, "Mounts:");
    }
    for m in &c.mounts {
        let _ = writeln!(o, "  Target = {}", m.target);
        let _ = writeln!(o, "   Source = {}", m.source);
        let _ = writeln!(o, "   ReadOnly = {}", m.readonly);
        let _ = writeln!(o, "   Type = {}", m.kind.as_str());
    }
    if let Some(h) = &c.healthcheck {
        let _ = writeln!(o, " Healthcheck:");
        let _ = writeln!(o, "  Interval = {}", format_duration(h.interval_ms));
        let _ = writeln!(o, "  Retries = {}", h.retries);
        let _ = writeln!(o, "  StartPeriod = {}", format_duration(h.start_period_ms));
        let _ = writeln!(o, "  Timeout = {}", format_duration(h.timeout_ms));
        if !h.test.is_empty() {
            let _ = writeln!(o, "  Tests:");
            for t in &h.test {
                let _ = writeln!(o, "   Test = {t}");
            }
        }
    }
}

/// `Resources`: reservations and limits, those set.
fn pretty_resources(o: &mut String, r: &ResourceRequirements) {
    let _ = writeln!(o, "Resources:");
    for (title, x) in [(" Reservations:", &r.reservations), (" Limits:", &r.limits)] {
        if x.nano_cpus > 0 || x.memory_bytes > 0 {
            let _ = writeln!(o, "{title}");
            if x.nano_cpus > 0 {
                let _ = writeln!(o, "  CPU:\t\t{}", format_cpus(x.nano_cpus));
            }
            if x.memory_bytes > 0 {
                let _ = writeln!(o, "  Memory:\t{}", bytes_size(x.memory_bytes));
            }
        }
    }
}

/// `Networks`, `Endpoint Mode` and `Ports` (those published, else those asked for).
fn pretty_endpoint(o: &mut String, s: &Service) {
    let spec = &s.spec;
    if !spec.task.networks.is_empty() {
        let nets: Vec<&str> = spec
            .task
            .networks
            .iter()
            .map(|n| n.target.as_str())
            .collect();
        let _ = writeln!(o, "Networks:\t{}", nets.join(" "));
    }
    let _ = writeln!(o, "Endpoint Mode:\t{}", spec.endpoint.mode.as_str());
    if !s.endpoint.ports.is_empty() || !spec.endpoint.ports.is_empty() {
        let list = if s.endpoint.ports.is_empty() {
            &spec.endpoint.ports
        } else {
            &s.endpoint.ports
        };
        let _ = writeln!(o, "Ports:");
        for p in list {
            let _ = writeln!(o, " PublishedPort = {}", p.published_port);
            let _ = writeln!(o, "  Protocol = {}", p.protocol.as_str());
            let _ = writeln!(o, "  TargetPort = {}", p.target_port);
            let _ = writeln!(o, "  PublishMode = {}", p.publish_mode.as_str());
        }
    }
}

/// A service's routing-mesh counters: the sum and each node's (None without any report).
pub(crate) fn mesh_json(s: &Service, stats: &[MeshStatsRow]) -> Option<Value> {
    let rows: Vec<&MeshStatsRow> = stats.iter().filter(|r| r.service_id == s.id).collect();
    if rows.is_empty() {
        return None;
    }
    let sum = |f: fn(&MeshStatsRow) -> u64| rows.iter().map(|r| f(r)).sum::<u64>();
    Some(json!({
        "Packets": sum(|r| r.packets),
        "Bytes": sum(|r| r.bytes),
        "Connections": sum(|r| r.connections),
        "Nodes": rows.iter().map(|r| json!({
            "Node": r.hostname,
            "Packets": r.packets,
            "Bytes": r.bytes,
            "Connections": r.connections,
        })).collect::<Vec<_>>(),
    }))
}

/// The `Mesh:` section of `--pretty`.
fn mesh_pretty(s: &Service, stats: &[MeshStatsRow]) -> String {
    let Some(v) = mesh_json(s, stats) else {
        return String::new();
    };
    let mut o = String::new();
    let _ = writeln!(o, "Mesh:");
    let _ = writeln!(o, " Packets:	{}", v["Packets"]);
    let _ = writeln!(o, " Bytes:		{}", v["Bytes"]);
    let _ = writeln!(o, " Connections:	{}", v["Connections"]);
    let _ = writeln!(o, " Nodes:");
    for n in v["Nodes"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "  {}:	packets {}, bytes {}, connections {}",
            n["Node"].as_str().unwrap_or_default(),
            n["Packets"],
            n["Bytes"],
            n["Connections"]
        );
    }
    o
}

/// The JSON of `service inspect`: Docker's, with the mesh's counters when there are any.
fn inspect_json(s: &Service, stats: &[MeshStatsRow]) -> Value {
    let mut v = service_json(s);
    if let (Some(m), Value::Object(o)) = (mesh_json(s, stats), &mut v) {
        o.insert("MeshStats".into(), m);
    }
    v
}

/// `service inspect`: every service found is printed, then the first one not found is the error.
pub(super) fn run(
    target: &Target,
    services: &[String],
    pretty: bool,
    format: Option<&str>,
    out: &mut impl Write,
) -> Result<()> {
    let conn = Conn::new(target)?;
    let mut found = Vec::new();
    let mut first_error = None;
    for q in services {
        match conn.inspect(q) {
            Ok(s) => found.push(s),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    // The mesh's counters, when the leader has them (an older one does not).
    let stats = if found.is_empty() {
        Vec::new()
    } else {
        let ids = found.iter().map(|s| s.id.to_string()).collect();
        match conn.call_raw(&Request::MeshStats { services: ids }) {
            Ok(Reply::MeshStats(rows)) => rows,
            _ => Vec::new(),
        }
    };
    print(&found, &stats, pretty, format, out)?;
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(())
}

/// Prints `services` as `service inspect` was asked to, with their mesh counters (`stats`).
pub(super) fn print(
    services: &[Service],
    stats: &[MeshStatsRow],
    as_pretty: bool,
    format: Option<&str>,
    out: &mut impl Write,
) -> Result<()> {
    if as_pretty {
        let now = now_ms();
        for s in services {
            write!(out, "{}{}", pretty(s, now), mesh_pretty(s, stats))?;
        }
        return Ok(());
    }
    let docs: Vec<Value> = services.iter().map(|s| inspect_json(s, stats)).collect();
    crate::format::write_inspect(out, format, &docs)
}

#[cfg(test)]
mod tests {
    use mesh_cluster::Id;
    use mesh_cluster::spec::parse_port;

    use super::*;

    fn render(t: &str, v: &Value) -> Result<String> {
        crate::format::render_inspect(Some(t), std::slice::from_ref(v))
            .map(|s| s.trim_end_matches('\n').to_owned())
    }

    fn service() -> Service {
        let mut spec = ServiceSpec {
            name: "ghost".into(),
            mode: ServiceMode::Replicated { replicas: 2 },
            ..ServiceSpec::default()
        };
        spec.task.container.image = "ghost:1.21.3".into();
        spec.update.delay_ms = 10_000;
        spec.endpoint.ports = vec![parse_port("published=8080,target=2368").unwrap()];
        let mut s =
            mesh_cluster::orchestrator::new_service(spec, Id::from("tynb9d9pu0nqm7f1vmmffy9j0"));
        s.endpoint.ports = s.spec.endpoint.ports.clone();
        s
    }

    #[test]
    fn templates_pick_fields_as_docker_prints_them() {
        let v = service_json(&service());
        assert_eq!(
            render("{{json .Endpoint.Spec.Ports}}", &v).unwrap(),
            r#"[{"Protocol":"tcp","TargetPort":2368,"PublishedPort":8080,"PublishMode":"ingress"}]"#
        );
        assert_eq!(render("{{.Spec.Name}} x", &v).unwrap(), "ghost x");
        assert_eq!(
            render("{{.Spec.Mode.Replicated.Replicas}}", &v).unwrap(),
            "2"
        );
        assert_eq!(
            render("{{json .Spec.TaskTemplate.ContainerSpec.Image}}", &v).unwrap(),
            "\"ghost:1.21.3\""
        );
        assert_eq!(render("{{.Nope}}", &v).unwrap(), "<no value>");
        assert!(render("{{index .Spec 1 2 3}}", &v).is_err());
        assert_eq!(v["Spec"]["UpdateConfig"]["Delay"], json!(10_000_000_000u64));
    }

    /// The mesh's counters: summed and per node in the JSON (`MeshStats`), a `Mesh:` section
    /// in `--pretty`; nothing without a report.
    #[test]
    fn mesh_counters_are_shown() {
        let s = service();
        let row = |node: &str, packets| MeshStatsRow {
            service_id: s.id.clone(),
            service_name: "ghost".into(),
            ports: "*:8080->2368/tcp".into(),
            node_id: Id::from(node),
            hostname: node.into(),
            packets,
            bytes: packets * 10,
            connections: 1,
            age_ms: 0,
        };
        let stats = [row("n1", 5), row("n2", 7)];
        let v = inspect_json(&s, &stats);
        assert_eq!(
            render("{{json .MeshStats}}", &v).unwrap(),
            r#"{"Packets":12,"Bytes":120,"Connections":2,"Nodes":[{"Node":"n1","Packets":5,"Bytes":50,"Connections":1},{"Node":"n2","Packets":7,"Bytes":70,"Connections":1}]}"#
        );
        assert_eq!(
            render("{{json .Endpoint.Spec.Ports}}", &v).unwrap(),
            r#"[{"Protocol":"tcp","TargetPort":2368,"PublishedPort":8080,"PublishMode":"ingress"}]"#
        );
        let text = mesh_pretty(&s, &stats);
        assert!(
            text.starts_with("Mesh:\n Packets:\t12\n Bytes:\t\t120\n Connections:\t2\n Nodes:\n  n1:\tpackets 5, bytes 50, connections 1\n"),
            "{text}"
        );
        assert!(inspect_json(&s, &[]).get("MeshStats").is_none());
        assert_eq!(mesh_pretty(&s, &[]), "");
    }

    /// Mounts and the health check: Docker's JSON (options of the mount's own kind, durations
    /// in nanoseconds) and `--pretty` sections.
    #[test]
    fn mounts_and_health_checks_are_shown() {
        let mut s = service();
        let c = &mut s.spec.task.container;
        c.mounts = vec![
            mesh_cluster::spec::parse_mount("source=data,target=/data,ro,volume-label=a=b")
                .unwrap(),
            mesh_cluster::spec::parse_mount("type=tmpfs,target=/t,tmpfs-mode=700").unwrap(),
        ];
        c.healthcheck = Some(HealthConfig {
            test: vec!["CMD-SHELL".into(), "true".into()],
            interval_ms: 5_000,
            retries: 2,
            ..HealthConfig::default()
        });
        let v = service_json(&s);
        assert_eq!(
            render("{{json .Spec.TaskTemplate.ContainerSpec.Mounts}}", &v).unwrap(),
            r#"[{"Type":"volume","Source":"data","Target":"/data","ReadOnly":true,"VolumeOptions":{"Labels":{"a":"b"}}},{"Type":"tmpfs","Target":"/t","TmpfsOptions":{"Mode":448}}]"#
        );
        assert_eq!(
            render("{{json .Spec.TaskTemplate.ContainerSpec.Healthcheck}}", &v).unwrap(),
            r#"{"Test":["CMD-SHELL","true"],"Interval":5000000000,"Retries":2}"#
        );
        let text = pretty(&s, 0);
        for want in [
            "Mounts:\n  Target = /data\n   Source = data\n   ReadOnly = true\n   Type = volume\n  Target = /t\n",
            " Healthcheck:\n  Interval = 5s\n  Retries = 2\n  StartPeriod = 0s\n  Timeout = 0s\n  Tests:\n   Test = CMD-SHELL\n   Test = true\n",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        assert!(!pretty(&service(), 0).contains("Mounts:"));
    }

    #[test]
    fn pretty_has_dockers_sections() {
        let text = pretty(&service(), 0);
        for want in [
            "ID:\t\ttynb9d9pu0nqm7f1vmmffy9j0\n",
            "Name:\t\tghost\n",
            "Service Mode:\tReplicated\n Replicas:\t2\n",
            "UpdateConfig:\n Parallelism:\t1\n Delay:\t\t10s\n On failure:\tpause\n Monitoring Period: 5s\n Max failure ratio: 0\n Update order:      stop-first\n",
            "RollbackConfig:\n",
            "ContainerSpec:\n Image:\t\tghost:1.21.3\n",
            "Endpoint Mode:\tvip\n",
            " PublishedPort = 8080\n",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        assert_eq!(rfc3339(1_519_799_123_718), "2018-02-28T06:25:23.718000000Z");
    }
}
