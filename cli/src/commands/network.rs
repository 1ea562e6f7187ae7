//! `meshctl network create | ls | inspect | rm`, with Docker's flags and output. Only the
//! `overlay` driver exists, and every network is swarm-scoped.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Result, bail};
use clap::Subcommand;
use mesh_api::{NetworkReply, Reply, Request};
use mesh_cluster::state::{Ipv4Cidr, Network, NetworkSpec};
use serde_json::{Value, json};

use super::service::inspect::rfc3339;
use super::{Reported, Target, call, unexpected};
use crate::format::{FilterArg, Filters, ListFormat, parse_filter_arg, write_inspect, write_list};

#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// Create an overlay network; prints its id.
    Create {
        /// The driver: only `overlay` exists.
        #[arg(long, short, default_value = "overlay")]
        driver: String,
        /// The network's subnet, such as 10.0.9.0/24 (default: the next free /24 of 10.0.0.0/8).
        #[arg(long)]
        subnet: Option<String>,
        /// Let standalone containers attach (recorded; meshd runs only service tasks).
        #[arg(long)]
        attachable: bool,
        /// Driver option: `mtu=N` (or `com.docker.network.driver.mtu=N`).
        #[arg(long = "opt", short = 'o')]
        opts: Vec<String>,
        /// Network label (key=value).
        #[arg(long)]
        label: Vec<String>,
        name: String,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Only IDs.
        #[arg(long, short)]
        quiet: bool,
        /// Full IDs.
        #[arg(long)]
        no_trunc: bool,
        /// `driver=`, `id=`, `label=KEY[=VALUE]`, `name=`, `scope=`, `type=custom|builtin`.
        #[arg(long, short, value_parser = parse_filter_arg)]
        filter: Vec<FilterArg>,
        /// A Go template ('{{.Name}} {{.Driver}}', 'table {{.ID}}\t{{.Name}}'), or `json`.
        #[arg(long)]
        format: Option<String>,
    },
    /// Show networks in detail: JSON, or `--format '{{json .IPAM.Config}}'`.
    Inspect {
        /// `json`, or a template such as '{{.Id}}' or '{{json .Options}}'.
        #[arg(long, short)]
        format: Option<String>,
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove one or more networks (refused while a service uses them).
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
}

/// `key=value` (or `key`, an empty value).
fn key_value(what: &str, s: &str) -> Result<(String, String)> {
    let (k, v) = s.split_once('=').unwrap_or((s, ""));
    if k.trim().is_empty() {
        bail!("invalid {what} {s:?}: expected key=value");
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// The spec `network create` sends (pure: every flag parsed, nothing sent yet).
pub fn create_spec(
    name: &str,
    driver: &str,
    subnet: Option<&str>,
    attachable: bool,
    opts: &[String],
    labels: &[String],
) -> Result<NetworkSpec> {
    if driver != "overlay" {
        bail!("unsupported network driver {driver:?}: only overlay exists");
    }
    let subnet = subnet
        .map(|s| s.parse::<Ipv4Cidr>().map_err(anyhow::Error::msg))
        .transpose()?;
    let mut options = BTreeMap::new();
    for o in opts {
        let (k, v) = key_value("--opt", o)?;
        options.insert(k, v);
    }
    let mut label_map = BTreeMap::new();
    for l in labels {
        let (k, v) = key_value("label", l)?;
        label_map.insert(k, v);
    }
    Ok(NetworkSpec {
        name: name.to_owned(),
        driver: driver.to_owned(),
        subnet,
        attachable,
        ingress: false,
        labels: label_map,
        options,
    })
}

/// The `Options` of `network inspect`: the driver options, the VXLAN id as Docker lists it.
fn options(n: &Network) -> Value {
    let mut m = serde_json::Map::new();
    m.insert(
        "com.docker.network.driver.overlay.vxlanid_list".into(),
        json!(n.vni.to_string()),
    );
    for (k, v) in &n.spec.options {
        let key = if k == mesh_cluster::net::MTU_OPTION {
            mesh_cluster::net::DOCKER_MTU_OPTION
        } else {
            k.as_str()
        };
        m.insert(key.to_owned(), json!(v));
    }
    Value::Object(m)
}

/// A network as `docker network inspect` prints it. `gateway` is the address on it of the
/// node that answered (each node is its own tasks' gateway); the subnet's first host when that
/// node has none yet.
pub fn network_json(n: &Network, gateway: Option<std::net::Ipv4Addr>) -> Value {
    let gateway = gateway.unwrap_or_else(|| n.subnet.host(1));
    json!({
        "Name": n.spec.name,
        "Id": n.id.as_str(),
        "Created": rfc3339(n.meta.created_at),
        "Scope": "swarm",
        "Driver": n.spec.driver,
        "EnableIPv6": false,
        "IPAM": {
            "Driver": "default",
            "Options": null,
            "Config": [{"Subnet": n.subnet.to_string(), "Gateway": gateway.to_string()}],
        },
        "Internal": false,
        "Attachable": n.spec.attachable,
        "Ingress": n.spec.ingress,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Options": options(n),
        "Labels": n.spec.labels,
    })
}

/// Docker's `network ls` table.
const NETWORK_LIST: ListFormat = ListFormat {
    table: "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
    headers: &[
        ("ID", "NETWORK ID"),
        ("Name", "NAME"),
        ("Driver", "DRIVER"),
        ("Scope", "SCOPE"),
        ("IPv6", "IPV6"),
        ("Internal", "INTERNAL"),
        ("Labels", "LABELS"),
        ("CreatedAt", "CREATED AT"),
    ],
};

/// The filters of `network ls`, checked before anything is asked.
fn network_filters(args: &[FilterArg]) -> Result<Filters> {
    let f = Filters::new(args, &["driver", "id", "label", "name", "scope", "type"])?;
    f.check_values("type", &["custom", "builtin"], |v| {
        format!("Invalid filter: 'type'='{v}'")
    })?;
    Ok(f)
}

/// Docker's network filters: `name` and `id` match anywhere in the name or id, `driver` and
/// `scope` exactly. Every network here is a user-made (`custom`) swarm overlay.
fn network_matches(f: &Filters, n: &Network) -> bool {
    f.any("driver", |v| v == n.spec.driver)
        && f.any("id", |v| n.id.as_str().contains(v))
        && f.any("name", |v| n.spec.name.contains(v))
        && f.any("scope", |v| v == "swarm")
        && f.any("type", |v| v == "custom")
        && f.labels_match(&n.spec.labels)
}

/// One row of `network ls`, docker's fields.
fn network_row(n: &Network, no_trunc: bool) -> Value {
    let labels: Vec<String> = n
        .spec
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    json!({
        "ID": if no_trunc { n.id.as_str() } else { n.id.short() },
        "Name": n.spec.name,
        "Driver": n.spec.driver,
        "Scope": "swarm",
        "IPv6": "false",
        "Internal": "false",
        "Labels": labels.join(","),
        "CreatedAt": super::node::go_time(n.meta.created_at),
    })
}

pub fn run(target: &Target, cmd: NetworkCommand, out: &mut impl Write) -> Result<i32> {
    match cmd {
        NetworkCommand::Create {
            driver,
            subnet,
            attachable,
            opts,
            label,
            name,
        } => {
            let spec = create_spec(&name, &driver, subnet.as_deref(), attachable, &opts, &label)?;
            match call(target, &Request::NetworkCreate { spec })? {
                Reply::NetworkCreated { id } => writeln!(out, "{id}")?,
                other => return Err(unexpected(&other)),
            }
        }
        NetworkCommand::Ls {
            quiet,
            no_trunc,
            filter,
            format,
        } => {
            let f = network_filters(&filter)?;
            let reply = call(target, &Request::NetworkList)?;
            let Reply::Networks(list) = reply else {
                return Err(unexpected(&reply));
            };
            let rows: Vec<Value> = list
                .iter()
                .filter(|n| network_matches(&f, n))
                .map(|n| network_row(n, no_trunc))
                .collect();
            write_list(out, &NETWORK_LIST, format.as_deref(), quiet, &rows)?;
        }
        NetworkCommand::Inspect { format, networks } => {
            let mut found: Vec<Value> = Vec::new();
            let mut first_error = None;
            for q in &networks {
                match call(target, &Request::NetworkInspect { network: q.clone() }) {
                    Ok(Reply::Network(r)) => {
                        let NetworkReply { network, gateway } = *r;
                        found.push(network_json(&network, gateway));
                    }
                    Ok(other) => return Err(unexpected(&other)),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            write_inspect(out, format.as_deref(), &found)?;
            if let Some(e) = first_error {
                return Err(e);
            }
        }
        NetworkCommand::Rm { networks } => {
            let mut failed = Vec::new();
            for n in &networks {
                match call(target, &Request::NetworkRemove { network: n.clone() }) {
                    Ok(_) => writeln!(out, "{n}")?,
                    Err(e) => failed.push(e.to_string()),
                }
            }
            if !failed.is_empty() {
                return Err(Reported(failed.join("\n")).into());
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use mesh_cluster::Id;
    use mesh_cluster::state::Meta;

    use super::*;

    fn render(t: &str, v: &Value) -> Result<String> {
        crate::format::render_inspect(Some(t), std::slice::from_ref(v))
            .map(|s| s.trim_end_matches('\n').to_owned())
    }

    #[test]
    fn create_flags_make_the_spec_and_bad_ones_are_refused() {
        let s = create_spec(
            "front",
            "overlay",
            Some("10.0.9.0/24"),
            true,
            &["mtu=1400".into()],
            &["team=web".into()],
        )
        .unwrap();
        assert_eq!(s.subnet.unwrap().to_string(), "10.0.9.0/24");
        assert!(s.attachable && !s.ingress);
        assert_eq!(s.options["mtu"], "1400");
        assert_eq!(s.labels["team"], "web");
        for (driver, subnet, opt, want) in [
            (
                "bridge",
                None,
                "mtu=1",
                "unsupported network driver \"bridge\"",
            ),
            (
                "overlay",
                Some("10.0.9/24"),
                "mtu=1",
                "invalid subnet \"10.0.9/24\"",
            ),
            (
                "overlay",
                Some("10.0.9.0"),
                "mtu=1",
                "expected an IPv4 prefix",
            ),
            ("overlay", None, "=1", "invalid --opt \"=1\""),
        ] {
            let e = create_spec("x", driver, subnet, false, &[opt.into()], &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn inspect_and_ls_look_like_dockers() {
        let mut spec = create_spec("front", "overlay", None, false, &[], &[]).unwrap();
        spec.options.insert("mtu".into(), "1400".into());
        let n = Network {
            id: Id::from("ngbknb89dzyxdas81emw0jz63"),
            meta: Meta {
                version: 3,
                created_at: 1_519_799_123_718,
                updated_at: 0,
            },
            spec,
            subnet: "10.0.1.0/24".parse().unwrap(),
            vni: 4097,
        };
        let v = network_json(&n, Some("10.0.1.3".parse().unwrap()));
        assert_eq!(
            render("{{json .IPAM.Config}}", &v).unwrap(),
            r#"[{"Subnet":"10.0.1.0/24","Gateway":"10.0.1.3"}]"#
        );
        assert_eq!(
            render("{{json .Options}}", &v).unwrap(),
            r#"{"com.docker.network.driver.overlay.vxlanid_list":"4097","com.docker.network.driver.mtu":"1400"}"#
        );
        assert_eq!(
            render("{{.Scope}} {{.Driver}} {{.Created}}", &v).unwrap(),
            "swarm overlay 2018-02-28T06:25:23.718000000Z"
        );
        assert_eq!(v["Ingress"], json!(false));
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys[..4], ["Name", "Id", "Created", "Scope"]);
        let gw = network_json(&n, None);
        assert_eq!(gw["IPAM"]["Config"][0]["Gateway"], json!("10.0.1.1"));

        let rows = [network_row(&n, false)];
        assert_eq!(
            crate::format::render_list(&NETWORK_LIST, None, false, &rows).unwrap(),
            "NETWORK ID     NAME      DRIVER    SCOPE\nngbknb89dzyx   front     overlay   swarm\n"
        );

        let filter = |list: &[&str]| {
            let args: Vec<FilterArg> = list.iter().map(|s| parse_filter_arg(s).unwrap()).collect();
            network_filters(&args).map(|f| network_matches(&f, &n))
        };
        assert!(filter(&["name=ron", "driver=overlay", "scope=swarm", "type=custom"]).unwrap());
        assert!(!filter(&["name=back"]).unwrap());
        assert!(!filter(&["type=builtin"]).unwrap());
        assert!(!filter(&["label=team"]).unwrap());
        assert_eq!(
            filter(&["type=odd"]).unwrap_err().to_string(),
            "Error response from daemon: Invalid filter: 'type'='odd'"
        );
        assert_eq!(
            filter(&["colour=red"]).unwrap_err().to_string(),
            "Error response from daemon: Invalid filter 'colour'"
        );
    }
}
