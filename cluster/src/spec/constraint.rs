//! Placement constraints: `node.labels.zone==east`, `node.role!=manager`, as Swarm matches them
//! (values compare case-insensitively; a missing label is the empty string).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use super::SpecError;
use crate::state::{Ipv4Cidr, Node, NodeRole};

const KEYS: &str = "node.id, node.hostname, node.role, node.ip, node.platform.os, \
                    node.platform.arch, node.labels.<label> or engine.labels.<label>";

/// What a constraint looks at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConstraintKey {
    NodeId,
    NodeHostname,
    NodeRole,
    /// The node's advertised address; the value is an address or a prefix.
    NodeIp,
    PlatformOs,
    PlatformArch,
    NodeLabel(String),
    EngineLabel(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConstraintOp {
    Eq,
    Ne,
}

/// One parsed `KEY==VALUE` or `KEY!=VALUE`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Constraint {
    pub key: ConstraintKey,
    pub op: ConstraintOp,
    pub value: String,
}

fn bad(input: &str, why: &str) -> SpecError {
    SpecError::new(format!(
        "invalid constraint {input:?}: {why}; expected KEY==VALUE or KEY!=VALUE where KEY is {KEYS}"
    ))
}

/// Swarm's value characters: letters, digits, and `:-_ .*()?+[]\^$|/`.
fn valid_value(v: &str) -> bool {
    !v.is_empty()
        && v.chars().all(|c| {
            c.is_ascii_alphanumeric() || c.is_whitespace() || ":-_.*()?+[]\\^$|/".contains(c)
        })
}

/// Label names as Swarm's key pattern has them: a letter or `_` first, then letters, digits, `-_.`.
fn valid_label(l: &str) -> bool {
    let mut chars = l.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix))
    .then(|| &s[prefix.len()..])
}

impl FromStr for Constraint {
    type Err = SpecError;

    fn from_str(input: &str) -> Result<Self, SpecError> {
        let eq = input.find("==");
        let ne = input.find("!=");
        let (at, op) = match (eq, ne) {
            (Some(e), Some(n)) if n < e => (n, ConstraintOp::Ne),
            (Some(e), _) => (e, ConstraintOp::Eq),
            (None, Some(n)) => (n, ConstraintOp::Ne),
            (None, None) if input.contains('=') => {
                return Err(bad(input, "a single = is not an operator (use == or !=)"));
            }
            (None, None) => return Err(bad(input, "there is no == or != operator")),
        };
        let key = input[..at].trim();
        let value = input[at + 2..].trim();
        let key = if let Some(label) = strip_prefix_ci(key, "node.labels.") {
            if !valid_label(label) {
                return Err(bad(input, &format!("label name {label:?} is invalid")));
            }
            ConstraintKey::NodeLabel(label.to_owned())
        } else if let Some(label) = strip_prefix_ci(key, "engine.labels.") {
            if !valid_label(label) {
                return Err(bad(input, &format!("label name {label:?} is invalid")));
            }
            ConstraintKey::EngineLabel(label.to_owned())
        } else {
            match key.to_ascii_lowercase().as_str() {
                "node.id" => ConstraintKey::NodeId,
                "node.hostname" => ConstraintKey::NodeHostname,
                "node.role" => ConstraintKey::NodeRole,
                "node.ip" => ConstraintKey::NodeIp,
                "node.platform.os" => ConstraintKey::PlatformOs,
                "node.platform.arch" => ConstraintKey::PlatformArch,
                "" => return Err(bad(input, "the key is empty")),
                _ => return Err(bad(input, &format!("unknown key {key:?}"))),
            }
        };
        if !valid_value(value) {
            return Err(bad(
                input,
                &format!(
                    "value {value:?} is empty or has characters other than letters, digits and \
                     :-_ .*()?+[]\\^$|/"
                ),
            ));
        }
        match key {
            ConstraintKey::NodeRole
                if !value.eq_ignore_ascii_case("manager")
                    && !value.eq_ignore_ascii_case("worker") =>
            {
                return Err(bad(input, "node.role is manager or worker"));
            }
            ConstraintKey::NodeIp
                if value.parse::<Ipv4Addr>().is_err() && value.parse::<Ipv4Cidr>().is_err() =>
            {
                return Err(bad(input, "node.ip takes an IPv4 address or prefix"));
            }
            _ => {}
        }
        Ok(Constraint {
            key,
            op,
            value: value.to_owned(),
        })
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            ConstraintKey::NodeId => f.write_str("node.id")?,
            ConstraintKey::NodeHostname => f.write_str("node.hostname")?,
            ConstraintKey::NodeRole => f.write_str("node.role")?,
            ConstraintKey::NodeIp => f.write_str("node.ip")?,
            ConstraintKey::PlatformOs => f.write_str("node.platform.os")?,
            ConstraintKey::PlatformArch => f.write_str("node.platform.arch")?,
            ConstraintKey::NodeLabel(l) => write!(f, "node.labels.{l}")?,
            ConstraintKey::EngineLabel(l) => write!(f, "engine.labels.{l}")?,
        }
        let op = match self.op {
            ConstraintOp::Eq => "==",
            ConstraintOp::Ne => "!=",
        };
        write!(f, "{op}{}", self.value)
    }
}

impl Constraint {
    /// Does `node` satisfy this constraint?
    pub fn matches(&self, node: &Node) -> bool {
        let equal = match &self.key {
            ConstraintKey::NodeIp => {
                let Some(addr) = node.status.addr else {
                    return self.op == ConstraintOp::Ne;
                };
                match self.value.parse::<Ipv4Addr>() {
                    Ok(ip) => ip == addr,
                    Err(_) => self
                        .value
                        .parse::<Ipv4Cidr>()
                        .is_ok_and(|cidr| cidr.contains(addr)),
                }
            }
            key => {
                let actual = match key {
                    ConstraintKey::NodeId => node.id.as_str(),
                    ConstraintKey::NodeHostname => node.description.hostname.as_str(),
                    ConstraintKey::NodeRole => match node.spec.role {
                        NodeRole::Manager => "manager",
                        NodeRole::Worker => "worker",
                    },
                    ConstraintKey::PlatformOs => node.description.os.as_str(),
                    ConstraintKey::PlatformArch => node.description.arch.as_str(),
                    ConstraintKey::NodeLabel(l) => {
                        node.spec.labels.get(l).map_or("", String::as_str)
                    }
                    ConstraintKey::EngineLabel(l) => node
                        .description
                        .engine_labels
                        .get(l)
                        .map_or("", String::as_str),
                    ConstraintKey::NodeIp => unreachable!(),
                };
                actual.eq_ignore_ascii_case(&self.value)
            }
        };
        equal == (self.op == ConstraintOp::Eq)
    }
}

/// Parses every expression of a service's `--constraint`s.
pub fn parse_constraints(exprs: &[String]) -> Result<Vec<Constraint>, SpecError> {
    exprs.iter().map(|e| e.parse()).collect()
}

/// Does `node` satisfy all of `constraints`?
pub fn matches_all(constraints: &[Constraint], node: &Node) -> bool {
    constraints.iter().all(|c| c.matches(node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Id;
    use crate::spec::TestRng;
    use crate::state::{Meta, NodeDescription, NodeSpec, NodeStatus};

    fn node() -> Node {
        Node {
            id: Id::from("n1abc"),
            meta: Meta::default(),
            spec: NodeSpec {
                role: NodeRole::Manager,
                labels: [("zone".into(), "East".into())].into(),
                ..NodeSpec::default()
            },
            description: NodeDescription {
                hostname: "node-1".into(),
                os: "linux".into(),
                arch: "x86_64".into(),
                engine_labels: [("disk".into(), "ssd".into())].into(),
                ..NodeDescription::default()
            },
            status: NodeStatus {
                addr: Some("198.18.0.2".parse().unwrap()),
                ..NodeStatus::default()
            },
            manager_status: None,
            attachments: std::collections::BTreeMap::default(),
        }
    }

    #[test]
    fn constraints_match_as_swarms() {
        let n = node();
        let rows: &[(&str, bool)] = &[
            ("node.id==n1abc", true),
            ("node.id!=n1abc", false),
            ("node.hostname==node-1", true),
            ("node.hostname!=node-2", true),
            ("node.role==manager", true),
            ("node.role == worker", false),
            ("node.labels.zone==east", true), // values compare case-insensitively
            ("node.labels.zone!=east", false),
            ("node.labels.rack==", false), // empty value is refused below, not matched
            ("node.labels.rack!=a1", true), // a missing label is ""
            ("NODE.LABELS.zone==east", true),
            ("node.platform.os==linux", true),
            ("node.platform.arch!=x86_64", false),
            ("engine.labels.disk==ssd", true),
            ("node.ip==198.18.0.2", true),
            ("node.ip==198.18.0.0/15", true),
            ("node.ip!=10.0.0.0/8", true),
        ];
        for (expr, want) in rows {
            match expr.parse::<Constraint>() {
                Ok(c) => assert_eq!(c.matches(&n), *want, "{expr}"),
                Err(e) => assert!(expr.ends_with("=="), "{expr}: {e}"),
            }
        }
    }

    #[test]
    fn bad_constraints_say_why() {
        let rows: &[(&str, &str)] = &[
            ("node.labels.zone=east", "single ="),
            ("node.labels.zone", "no == or !="),
            ("node.name==x", "unknown key \"node.name\""),
            ("==x", "key is empty"),
            ("node.role==boss", "manager or worker"),
            ("node.labels.zone==", "value \"\""),
            ("node.labels.zone==a=b", "value"),
            ("node.labels.==x", "label name"),
            ("node.ip==somewhere", "IPv4"),
        ];
        for (expr, want) in rows {
            let err = expr.parse::<Constraint>().unwrap_err().to_string();
            assert!(err.contains(want), "{expr}: {err}");
            assert!(err.contains("KEY==VALUE"), "{expr}: {err}");
        }
    }

    #[test]
    fn constraints_round_trip() {
        let mut rng = TestRng::new(3);
        let keys = [
            "node.id",
            "node.hostname",
            "node.role",
            "node.platform.os",
            "node.platform.arch",
            "node.labels.zone",
            "engine.labels.x_y",
            "node.ip",
        ];
        for _ in 0..3_000 {
            let key = *rng.pick(&keys);
            let value = match key {
                "node.role" => rng.pick(&["manager", "worker"]).to_string(),
                "node.ip" => format!("10.{}.0.0/16", rng.below(256)),
                _ => format!("v{}", rng.noise(b"abcXYZ019-_.:/ ", 10).trim()),
            };
            let op = rng.pick(&["==", "!=", " == ", " != "]);
            let c: Constraint = format!("{key}{op}{value}").parse().unwrap();
            assert_eq!(c.to_string().parse::<Constraint>(), Ok(c.clone()));
        }
        for _ in 0..crate::spec::fuzz_cases(5_000) {
            let s = rng.noise(b"node.labelsidhostrole=!= abc", 24);
            if let Ok(c) = s.parse::<Constraint>() {
                assert_eq!(c.to_string().parse::<Constraint>(), Ok(c), "{s:?}");
            }
        }
    }
}
