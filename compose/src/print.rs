//! A [`Project`] printed back as a compose file, every entry in its long form, so that reading
//! the print gives the same project.

use std::collections::BTreeMap;

use serde_norway::{Mapping, Value};

use crate::model::{
    DeployDef, FileDef, FileUse, HealthDef, NetworkDef, Project, ResourcesDef, RestartDef,
    ServiceDef, UpdateDef, VolumeDef, VolumeMount, protocol_name, publish_mode_name,
};

/// Builds a mapping, leaving out absent values.
#[derive(Default)]
struct Map(Mapping);

impl Map {
    fn put(&mut self, key: &str, v: Value) -> &mut Self {
        self.0.insert(Value::String(key.into()), v);
        self
    }
    fn opt_str(&mut self, key: &str, v: Option<&String>) -> &mut Self {
        if let Some(v) = v {
            self.put(key, s(v));
        }
        self
    }
    fn nonempty(&mut self, key: &str, v: &str) -> &mut Self {
        if !v.is_empty() {
            self.put(key, s(v));
        }
        self
    }
    fn opt_u64(&mut self, key: &str, v: Option<u64>) -> &mut Self {
        if let Some(v) = v {
            self.put(key, Value::Number(v.into()));
        }
        self
    }
    fn flag(&mut self, key: &str, v: bool) -> &mut Self {
        if v {
            self.put(key, Value::Bool(true));
        }
        self
    }
    fn map(&mut self, key: &str, v: &BTreeMap<String, String>) -> &mut Self {
        if !v.is_empty() {
            self.put(key, string_map(v));
        }
        self
    }
    fn sub(&mut self, key: &str, m: Map) -> &mut Self {
        if !m.0.is_empty() {
            self.put(key, Value::Mapping(m.0));
        }
        self
    }
    fn done(&mut self) -> Value {
        Value::Mapping(std::mem::take(&mut self.0))
    }
}

/// A string value, `$` escaped so that reading the print does not interpolate it.
fn s(v: &str) -> Value {
    Value::String(v.replace('$', "$$"))
}

/// A key as is: compose interpolates values only.
fn key(k: &str) -> Value {
    Value::String(k.to_owned())
}

fn list(items: &[String]) -> Value {
    Value::Sequence(items.iter().map(|i| s(i)).collect())
}

fn string_map(m: &BTreeMap<String, String>) -> Value {
    let mut out = Mapping::new();
    for (k, v) in m {
        out.insert(key(k), s(v));
    }
    Value::Mapping(out)
}

impl Project {
    /// The project as compose YAML.
    pub fn to_yaml(&self) -> String {
        let mut root = Map::default();
        root.put("version", s("3.8"));
        let mut services = Map::default();
        for (name, svc) in &self.services {
            services.put(name, service(svc));
        }
        root.put("services", services.done());
        for (key, section) in [
            (
                "networks",
                self.networks
                    .iter()
                    .map(|(k, n)| (k, network(n)))
                    .collect::<Vec<_>>(),
            ),
            (
                "volumes",
                self.volumes.iter().map(|(k, v)| (k, volume(v))).collect(),
            ),
            (
                "secrets",
                self.secrets.iter().map(|(k, f)| (k, file(f))).collect(),
            ),
            (
                "configs",
                self.configs.iter().map(|(k, f)| (k, file(f))).collect(),
            ),
        ] {
            let mut m = Map::default();
            for (k, v) in section {
                m.put(k, v);
            }
            root.sub(key, m);
        }
        serde_norway::to_string(&root.done()).expect("a YAML value always prints")
    }
}

fn service(svc: &ServiceDef) -> Value {
    let mut m = Map::default();
    m.put("image", s(&svc.image));
    if let Some(e) = &svc.entrypoint {
        m.put("entrypoint", list(e));
    }
    if let Some(c) = &svc.command {
        m.put("command", list(c));
    }
    if !svc.environment.is_empty() {
        let mut env = Mapping::new();
        for (k, v) in &svc.environment {
            env.insert(key(k), v.as_deref().map_or(Value::Null, s));
        }
        m.put("environment", Value::Mapping(env));
    }
    if !svc.env_file.is_empty() {
        m.put("env_file", list(&svc.env_file));
    }
    if !svc.ports.is_empty() {
        let ports = svc.ports.iter().map(|p| {
            let mut pm = Map::default();
            pm.put("target", Value::Number(p.target_port.into()));
            if p.published_port != 0 {
                pm.put("published", Value::Number(p.published_port.into()));
            }
            pm.put("protocol", s(protocol_name(p.protocol)));
            pm.put("mode", s(publish_mode_name(p.publish_mode)));
            pm.done()
        });
        m.put("ports", Value::Sequence(ports.collect()));
    }
    if !svc.networks.is_empty() {
        let mut nets = Map::default();
        for (name, aliases) in &svc.networks {
            let mut n = Map::default();
            if !aliases.is_empty() {
                n.put("aliases", list(aliases));
            }
            nets.put(
                name,
                if aliases.is_empty() {
                    Value::Null
                } else {
                    n.done()
                },
            );
        }
        m.put("networks", nets.done());
    }
    if !svc.volumes.is_empty() {
        m.put(
            "volumes",
            Value::Sequence(svc.volumes.iter().map(volume_mount).collect()),
        );
    }
    for (key, uses) in [("secrets", &svc.secrets), ("configs", &svc.configs)] {
        if !uses.is_empty() {
            m.put(key, Value::Sequence(uses.iter().map(file_use).collect()));
        }
    }
    if let Some(h) = &svc.healthcheck {
        m.put("healthcheck", health(h));
    }
    m.map("labels", &svc.labels)
        .nonempty("hostname", &svc.hostname)
        .nonempty("user", &svc.user)
        .nonempty("working_dir", &svc.working_dir)
        .opt_str("stop_grace_period", svc.stop_grace_period.as_ref())
        .sub("deploy", deploy(&svc.deploy));
    m.done()
}

fn volume_mount(v: &VolumeMount) -> Value {
    let mut m = Map::default();
    m.put("type", s(&v.kind))
        .nonempty("source", &v.source)
        .put("target", s(&v.target));
    m.flag("read_only", v.read_only);
    if v.nocopy {
        m.sub(
            "volume",
            std::mem::take(Map::default().put("nocopy", Value::Bool(true))),
        );
    }
    if !v.propagation.is_empty() {
        m.sub(
            "bind",
            std::mem::take(Map::default().put("propagation", s(&v.propagation))),
        );
    }
    if let Some(size) = &v.tmpfs_size {
        m.sub("tmpfs", std::mem::take(Map::default().put("size", s(size))));
    }
    m.done()
}

fn file_use(u: &FileUse) -> Value {
    let mut m = Map::default();
    m.put("source", s(&u.source))
        .opt_str("target", u.target.as_ref())
        .opt_str("uid", u.uid.as_ref())
        .opt_str("gid", u.gid.as_ref());
    if let Some(mode) = u.mode {
        m.put("mode", s(&format!("0o{mode:o}")));
    }
    m.done()
}

fn health(h: &HealthDef) -> Value {
    let mut m = Map::default();
    if !h.test.is_empty() {
        m.put("test", list(&h.test));
    }
    m.opt_str("interval", h.interval.as_ref())
        .opt_str("timeout", h.timeout.as_ref())
        .opt_str("start_period", h.start_period.as_ref())
        .opt_u64("retries", h.retries)
        .flag("disable", h.disable);
    m.done()
}

fn deploy(d: &DeployDef) -> Map {
    let mut m = Map::default();
    m.opt_str("mode", d.mode.as_ref())
        .opt_u64("replicas", d.replicas)
        .opt_str("endpoint_mode", d.endpoint_mode.as_ref())
        .map("labels", &d.labels);
    let mut placement = Map::default();
    if !d.constraints.is_empty() {
        placement.put("constraints", list(&d.constraints));
    }
    if !d.preferences.is_empty() {
        let prefs = d
            .preferences
            .iter()
            .map(|p| std::mem::take(Map::default().put("spread", s(p))).done());
        placement.put("preferences", Value::Sequence(prefs.collect()));
    }
    placement.opt_u64("max_replicas_per_node", d.max_replicas_per_node);
    m.sub("placement", placement);
    let mut resources = Map::default();
    resources
        .sub("limits", resources_map(&d.limits))
        .sub("reservations", resources_map(&d.reservations));
    m.sub("resources", resources);
    if let Some(r) = &d.restart_policy {
        m.put("restart_policy", restart(r));
    }
    for (key, u) in [
        ("update_config", &d.update_config),
        ("rollback_config", &d.rollback_config),
    ] {
        if let Some(u) = u {
            m.put(key, update(u));
        }
    }
    m
}

fn resources_map(r: &ResourcesDef) -> Map {
    let mut m = Map::default();
    m.opt_str("cpus", r.cpus.as_ref())
        .opt_str("memory", r.memory.as_ref());
    m
}

fn restart(r: &RestartDef) -> Value {
    let mut m = Map::default();
    m.opt_str("condition", r.condition.as_ref())
        .opt_str("delay", r.delay.as_ref())
        .opt_u64("max_attempts", r.max_attempts)
        .opt_str("window", r.window.as_ref());
    m.done()
}

fn update(u: &UpdateDef) -> Value {
    let mut m = Map::default();
    m.opt_u64("parallelism", u.parallelism)
        .opt_str("delay", u.delay.as_ref())
        .opt_str("failure_action", u.failure_action.as_ref())
        .opt_str("monitor", u.monitor.as_ref())
        .opt_str("max_failure_ratio", u.max_failure_ratio.as_ref())
        .opt_str("order", u.order.as_ref());
    m.done()
}

fn network(n: &NetworkDef) -> Value {
    let mut m = Map::default();
    m.opt_str("driver", n.driver.as_ref())
        .flag("attachable", n.attachable)
        .flag("external", n.external)
        .opt_str("name", n.name.as_ref())
        .map("labels", &n.labels)
        .map("driver_opts", &n.driver_opts);
    if let Some(subnet) = &n.subnet {
        let config = std::mem::take(Map::default().put("subnet", s(subnet))).done();
        m.sub(
            "ipam",
            std::mem::take(Map::default().put("config", Value::Sequence(vec![config]))),
        );
    }
    m.done()
}

fn volume(v: &VolumeDef) -> Value {
    let mut m = Map::default();
    m.opt_str("driver", v.driver.as_ref())
        .flag("external", v.external)
        .opt_str("name", v.name.as_ref())
        .map("labels", &v.labels)
        .map("driver_opts", &v.driver_opts);
    m.done()
}

fn file(f: &FileDef) -> Value {
    let mut m = Map::default();
    m.opt_str("file", f.file.as_ref())
        .flag("external", f.external)
        .opt_str("name", f.name.as_ref())
        .map("labels", &f.labels);
    m.done()
}
