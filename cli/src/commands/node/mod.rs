//! `meshctl node ls | ps | inspect | update | promote | demote | rm`. `self` names the node
//! that answers (`node inspect self`, `node ps` without a node), as docker's.

mod docker;

use std::fmt::Write as _;
use std::io::Write;

use anyhow::Result;
use clap::Subcommand;
use mesh_api::{NodeUpdate, Reply, Request};
use mesh_cluster::state::{Availability, Node, NodeRole, NodeState, Reachability};

use super::{Target, call, unexpected};
use crate::format::{FilterArg, parse_filter_arg, write_inspect, write_list};
use docker::{NODE_LIST, node_filters, node_json, node_matches, node_row};

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// List the swarm's nodes.
    #[command(alias = "list")]
    Ls {
        /// Only IDs.
        #[arg(long, short)]
        quiet: bool,
        /// `id=`, `label=` (engine labels), `node.label=KEY[=VALUE]`, `membership=`, `name=`,
        /// `role=manager|worker` (repeatable).
        #[arg(long, short, value_parser = parse_filter_arg)]
        filter: Vec<FilterArg>,
        /// A Go template ('{{.Hostname}} {{.Status}}', 'table {{.ID}}\t{{.Hostname}}'), or `json`.
        #[arg(long)]
        format: Option<String>,
    },
    /// List the tasks on one or more nodes (default: this node).
    Ps {
        /// Full IDs and errors.
        #[arg(long)]
        no_trunc: bool,
        /// Only task IDs.
        #[arg(long, short)]
        quiet: bool,
        /// `desired-state=`, `id=`, `label=`, `name=`, `node=` (repeatable).
        #[arg(long, short, value_parser = parse_filter_arg)]
        filter: Vec<FilterArg>,
        /// A Go template (`{{.Name}} {{.CurrentState}}`), or `json`.
        #[arg(long)]
        format: Option<String>,
        /// Nodes by id, hostname or `self`.
        nodes: Vec<String>,
    },
    /// Show nodes in detail: docker's JSON, `--pretty`, or `--format`.
    Inspect {
        #[arg(long)]
        pretty: bool,
        /// A Go template such as '{{.Description.Hostname}}', or `json`.
        #[arg(long, short)]
        format: Option<String>,
        /// Nodes by id, hostname or `self`.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Change a node's availability or labels.
    Update {
        /// active, pause or drain.
        #[arg(long)]
        availability: Option<String>,
        /// Add or change a label: key=value.
        #[arg(long = "label-add")]
        label_add: Vec<String>,
        /// Remove a label by key.
        #[arg(long = "label-rm")]
        label_rm: Vec<String>,
        node: String,
    },
    /// Make nodes managers.
    Promote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Make managers workers.
    Demote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Remove nodes from the swarm.
    #[command(alias = "remove")]
    Rm {
        #[arg(long, short)]
        force: bool,
        #[arg(required = true)]
        nodes: Vec<String>,
    },
}

pub fn parse_availability(s: &str) -> Result<Availability, String> {
    match s {
        "active" => Ok(Availability::Active),
        "pause" => Ok(Availability::Pause),
        "drain" => Ok(Availability::Drain),
        other => Err(format!(
            "invalid availability {other:?}: use active, pause or drain"
        )),
    }
}

/// `k=v` (or `k`, an empty value) of `--label-add`.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').unwrap_or((s, ""));
    if k.is_empty() {
        return Err(format!("invalid label {s:?}: expected key=value"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

pub(crate) fn state_word(s: NodeState) -> &'static str {
    match s {
        NodeState::Unknown => "Unknown",
        NodeState::Down => "Down",
        NodeState::Ready => "Ready",
        NodeState::Disconnected => "Disconnected",
    }
}

pub(crate) fn availability_word(a: Availability) -> &'static str {
    match a {
        Availability::Active => "Active",
        Availability::Pause => "Pause",
        Availability::Drain => "Drain",
    }
}

/// `Leader`, `Reachable`, `Unreachable`, or empty for a worker.
pub fn manager_status_word(n: &Node) -> &'static str {
    match &n.manager_status {
        None => "",
        Some(m) if m.leader => "Leader",
        Some(m) => match m.reachability {
            Reachability::Reachable => "Reachable",
            Reachability::Unreachable => "Unreachable",
            Reachability::Unknown => "Unknown",
        },
    }
}

fn sorted(nodes: &[Node]) -> Vec<&Node> {
    let mut v: Vec<&Node> = nodes.iter().collect();
    v.sort_by(|a, b| (&a.description.hostname, &a.id).cmp(&(&b.description.hostname, &b.id)));
    v
}

/// Bytes as Docker's `units.BytesSize`: binary units, 4 significant digits.
pub fn bytes_size(b: i64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{}{}", sig4(v), UNITS[u])
}

/// `%.4g` without an exponent.
fn sig4(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let digits = v.abs().log10().floor() as i64 + 1;
    let decimals = usize::try_from((4 - digits).max(0)).unwrap_or(0);
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// A UTC calendar time: year, month, day, hour, minute, second, millisecond.
pub type Civil = (i64, i64, i64, u64, u64, u64, u64);

/// Milliseconds since the epoch as a UTC calendar time (Howard Hinnant's civil-from-days).
pub fn civil(ms: u64) -> Civil {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days.cast_signed() + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000)
}

/// Milliseconds since the epoch as Go prints a time: `2018-02-28 06:25:23.718 +0000 UTC`.
pub fn go_time(ms: u64) -> String {
    let (y, m, d, hh, mm, ss, millis) = civil(ms);
    // Go's ".999999999": the fraction without trailing zeros, none when zero.
    let frac = format!(".{millis:03}");
    let frac = frac.trim_end_matches('0').trim_end_matches('.');
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}{frac} +0000 UTC")
}

/// `node inspect --pretty`, as Docker's template lays it out.
pub fn pretty(n: &Node, ca_pem: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "ID:\t\t\t{}", n.id);
    if !n.spec.labels.is_empty() {
        let _ = writeln!(s, "Labels:");
        for (k, v) in &n.spec.labels {
            if v.is_empty() {
                let _ = writeln!(s, " - {k}");
            } else {
                let _ = writeln!(s, " - {k}={v}");
            }
        }
    }
    let _ = writeln!(s, "Hostname:              \t{}", n.description.hostname);
    let _ = writeln!(s, "Joined at:             \t{}", go_time(n.meta.created_at));
    let _ = writeln!(s, "Status:");
    let _ = writeln!(s, " State:\t\t\t{}", state_word(n.status.state));
    if !n.status.message.is_empty() {
        let _ = writeln!(s, " Message:              \t{}", n.status.message);
    }
    let _ = writeln!(
        s,
        " Availability:         \t{}",
        availability_word(n.spec.availability)
    );
    if let Some(a) = n.status.addr {
        let _ = writeln!(s, " Address:\t\t{a}");
    }
    if let Some(m) = &n.manager_status {
        let _ = writeln!(s, "Manager Status:");
        let _ = writeln!(s, " Address:\t\t{}", m.addr);
        let reach = match m.reachability {
            Reachability::Reachable => "Reachable",
            Reachability::Unreachable => "Unreachable",
            Reachability::Unknown => "Unknown",
        };
        let _ = writeln!(s, " Raft Status:\t\t{reach}");
        let _ = writeln!(s, " Leader:\t\t{}", if m.leader { "Yes" } else { "No" });
    }
    let _ = writeln!(s, "Platform:");
    let _ = writeln!(s, " Operating System:\t{}", n.description.os);
    let _ = writeln!(s, " Architecture:\t\t{}", n.description.arch);
    let _ = writeln!(s, "Resources:");
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    let cpus = n.description.resources.nano_cpus as f64 / 1e9;
    let _ = writeln!(s, " CPUs:\t\t\t{}", sig4(cpus));
    let _ = writeln!(
        s,
        " Memory:\t\t{}",
        bytes_size(n.description.resources.memory_bytes)
    );
    let _ = writeln!(s, "Engine Version:\t\t{}", n.description.engine_version);
    let _ = writeln!(s, "TLS Info:");
    let _ = writeln!(s, " TrustRoot:");
    let _ = writeln!(s, "{}", ca_pem.trim_end());
    if let Ok((subject, key)) = mesh_api::tls::issuer_info(ca_pem) {
        let _ = writeln!(s);
        let _ = writeln!(s, " Issuer Subject:\t{subject}");
        let _ = writeln!(s, " Issuer Public Key:\t{key}");
    }
    s
}

/// The node `q` names: `self` is the node that answers.
fn resolve(target: &Target, q: &str) -> Result<String> {
    if q != "self" {
        return Ok(q.to_owned());
    }
    match call(target, &Request::NodeList)? {
        Reply::Nodes(r) => Ok(r.self_id.to_string()),
        other => Err(unexpected(&other)),
    }
}

/// `node ls`.
fn ls(
    target: &Target,
    quiet: bool,
    filter: &[FilterArg],
    format: Option<&str>,
    out: &mut impl Write,
) -> Result<()> {
    let f = node_filters(filter)?;
    let reply = call(target, &Request::NodeList)?;
    let Reply::Nodes(r) = reply else {
        return Err(unexpected(&reply));
    };
    let rows: Vec<serde_json::Value> = sorted(&r.nodes)
        .into_iter()
        .filter(|n| node_matches(&f, n))
        .map(|n| node_row(n, &r.self_id))
        .collect();
    write_list(out, &NODE_LIST, format, quiet, &rows)
}

/// `node inspect`: every node found is printed, then the first one not found is the error.
fn inspect(
    target: &Target,
    as_text: bool,
    format: Option<&str>,
    nodes: &[String],
    out: &mut impl Write,
) -> Result<()> {
    let mut found = Vec::new();
    let mut first_error = None;
    for q in nodes {
        let node = match resolve(target, q) {
            Ok(n) => n,
            Err(e) => {
                first_error.get_or_insert(e);
                continue;
            }
        };
        match call(target, &Request::NodeInspect { node }) {
            Ok(Reply::Node(r)) => found.push(r),
            Ok(other) => return Err(unexpected(&other)),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if as_text {
        for (i, r) in found.iter().enumerate() {
            if i > 0 {
                writeln!(out)?;
            }
            write!(out, "{}", pretty(&r.node, &r.ca_pem))?;
        }
    } else {
        let docs: Vec<serde_json::Value> = found
            .iter()
            .map(|r| node_json(&r.node, &r.ca_pem))
            .collect();
        write_inspect(out, format, &docs)?;
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

pub fn run(target: &Target, cmd: NodeCommand, out: &mut impl Write) -> Result<i32> {
    match cmd {
        NodeCommand::Ls {
            quiet,
            filter,
            format,
        } => ls(target, quiet, &filter, format.as_deref(), out)?,
        NodeCommand::Ps {
            no_trunc,
            quiet,
            filter,
            format,
            nodes,
        } => {
            let how = super::service::PsOutput {
                no_trunc,
                quiet,
                format: format.as_deref(),
            };
            super::service::node_ps(target, &nodes, &filter, how, out)?;
        }
        NodeCommand::Inspect {
            pretty: as_text,
            format,
            nodes,
        } => inspect(target, as_text, format.as_deref(), &nodes, out)?,
        NodeCommand::Update {
            availability,
            label_add,
            label_rm,
            node,
        } => {
            let availability = availability
                .as_deref()
                .map(parse_availability)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let label_add = label_add
                .iter()
                .map(|l| parse_label(l))
                .collect::<Result<Vec<_>, _>>()
                .map_err(anyhow::Error::msg)?;
            call(
                target,
                &Request::NodeUpdate(NodeUpdate {
                    node: node.clone(),
                    availability,
                    role: None,
                    label_add,
                    label_rm,
                }),
            )?;
            writeln!(out, "{node}")?;
        }
        NodeCommand::Promote { nodes } => set_roles(target, &nodes, NodeRole::Manager, out)?,
        NodeCommand::Demote { nodes } => set_roles(target, &nodes, NodeRole::Worker, out)?,
        NodeCommand::Rm { force, nodes } => {
            for node in nodes {
                call(
                    target,
                    &Request::NodeRemove {
                        node: node.clone(),
                        force,
                    },
                )?;
                writeln!(out, "{node}")?;
            }
        }
    }
    Ok(0)
}

fn set_roles(
    target: &Target,
    nodes: &[String],
    role: NodeRole,
    out: &mut impl Write,
) -> Result<()> {
    for node in nodes {
        let reply = call(target, &Request::NodeInspect { node: node.clone() })?;
        let Reply::Node(r) = reply else {
            return Err(unexpected(&reply));
        };
        if r.node.spec.role == role {
            let word = if role == NodeRole::Manager {
                "manager"
            } else {
                "worker"
            };
            writeln!(out, "Node {node} is already a {word}.")?;
            continue;
        }
        call(
            target,
            &Request::NodeUpdate(NodeUpdate {
                node: node.clone(),
                role: Some(role),
                ..NodeUpdate::default()
            }),
        )?;
        match role {
            NodeRole::Manager => writeln!(out, "Node {node} promoted to a manager in the swarm.")?,
            NodeRole::Worker => writeln!(out, "Manager {node} demoted in the swarm.")?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use mesh_cluster::state::{ManagerStatus, Meta, NodeDescription, NodeSpec, NodeStatus};

    use mesh_cluster::Id;

    use super::*;

    fn node(id: &str, host: &str, manager: Option<(bool, Reachability)>) -> Node {
        Node {
            id: Id::from(id),
            meta: Meta {
                version: 3,
                created_at: 1_519_799_123_718,
                updated_at: 0,
            },
            spec: NodeSpec {
                role: if manager.is_some() {
                    NodeRole::Manager
                } else {
                    NodeRole::Worker
                },
                ..NodeSpec::default()
            },
            description: NodeDescription {
                hostname: host.into(),
                os: "linux".into(),
                arch: "x86_64".into(),
                engine_version: "20.10.24".into(),
                ..Default::default()
            },
            status: NodeStatus {
                state: NodeState::Ready,
                message: String::new(),
                addr: Some("198.18.0.11".parse().unwrap()),
            },
            manager_status: manager.map(|(leader, reachability)| ManagerStatus {
                raft_id: 1,
                addr: "198.18.0.11:2377".into(),
                reachability,
                leader,
            }),
            attachments: std::collections::BTreeMap::new(),
        }
    }

    #[test]
    fn node_ls_marks_self_and_manager_status() {
        let nodes = vec![
            node("bbb", "n2", Some((false, Reachability::Unreachable))),
            node("aaa", "n1", Some((true, Reachability::Reachable))),
            node("ccc", "n3", None),
        ];
        let rows: Vec<serde_json::Value> = sorted(&nodes)
            .into_iter()
            .map(|n| node_row(n, &Id::from("aaa")))
            .collect();
        assert_eq!(
            crate::format::render_list(&NODE_LIST, None, false, &rows).unwrap(),
            "ID        HOSTNAME   STATUS    AVAILABILITY   MANAGER STATUS   ENGINE VERSION\n\
             aaa *     n1         Ready     Active         Leader           20.10.24\n\
             bbb       n2         Ready     Active         Unreachable      20.10.24\n\
             ccc       n3         Ready     Active                          20.10.24\n"
        );
        let args = |l: &[&str]| {
            l.iter()
                .map(|s| parse_filter_arg(s).unwrap())
                .collect::<Vec<_>>()
        };
        let keep = |l: &[&str]| -> Vec<String> {
            let f = node_filters(&args(l)).unwrap();
            sorted(&nodes)
                .into_iter()
                .filter(|n| node_matches(&f, n))
                .map(|n| n.description.hostname.clone())
                .collect()
        };
        assert_eq!(keep(&["role=worker"]), ["n3"]);
        assert_eq!(keep(&["role=manager", "name=n"]), ["n1", "n2"]);
        assert_eq!(keep(&["id=b", "id=c", "membership=accepted"]), ["n2", "n3"]);
        assert!(keep(&["node.label=zone"]).is_empty());
        for (bad, want) in [
            ("role=boss", "Invalid role filter: 'boss'"),
            ("membership=maybe", "Invalid membership filter: 'maybe'"),
            ("colour=red", "Invalid filter 'colour'"),
        ] {
            let e = node_filters(&args(&[bad])).unwrap_err().to_string();
            assert_eq!(e, format!("Error response from daemon: {want}"));
        }
        let v = node_json(&nodes[1], "");
        assert_eq!(
            crate::format::render_inspect(Some("{{.Description.Hostname}} {{.Spec.Role}} {{.ManagerStatus.Leader}} {{json .Spec.Labels}}"), &[v]).unwrap(),
            "n1 manager true {}\n"
        );
    }

    #[test]
    fn sizes_times_and_arguments_print_as_docker_does() {
        assert_eq!(bytes_size(1_044_283_392), "995.9MiB");
        assert_eq!(bytes_size(1024), "1KiB");
        assert_eq!(bytes_size(500), "500B");
        assert_eq!(bytes_size(25_165_824_000), "23.44GiB");
        assert_eq!(
            go_time(1_519_799_123_718),
            "2018-02-28 06:25:23.718 +0000 UTC"
        );
        assert_eq!(go_time(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(go_time(951_782_400_700), "2000-02-29 00:00:00.7 +0000 UTC");
        assert_eq!(parse_label("a=b"), Ok(("a".into(), "b".into())));
        assert_eq!(parse_label("a"), Ok(("a".into(), String::new())));
        assert!(parse_label("=b").is_err());
        assert_eq!(parse_availability("drain"), Ok(Availability::Drain));
        assert!(
            parse_availability("off")
                .unwrap_err()
                .contains("active, pause or drain")
        );
    }

    #[test]
    fn pretty_inspect_has_docker_sections() {
        let text = pretty(
            &node("aaa", "n1", Some((true, Reachability::Reachable))),
            "",
        );
        for want in [
            "ID:\t\t\taaa\n",
            "Hostname:              \tn1\n",
            "Joined at:             \t2018-02-28 06:25:23.718 +0000 UTC\n",
            " State:\t\t\tReady\n",
            "Manager Status:\n",
            " Leader:\t\tYes\n",
            " Operating System:\tlinux\n",
            "Engine Version:\t\t20.10.24\n",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
    }
}
