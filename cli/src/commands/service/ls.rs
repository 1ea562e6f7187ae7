//! `service ls`: the services with their mode, replicas, image and ports, filtered and
//! formatted as docker's.

use std::io::Write;

use anyhow::Result;
use mesh_api::{Reply, Request, ServiceSummary};
use mesh_cluster::spec::format_mode;
use serde_json::{Value, json};

use super::client::Conn;
use crate::commands::{Target, unexpected};
use crate::format::{FilterArg, Filters, ListFormat, write_list};

/// Docker's `service ls` table.
pub const SERVICE_LIST: ListFormat = ListFormat {
    table: "table {{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}",
    headers: &[
        ("ID", "ID"),
        ("Name", "NAME"),
        ("Mode", "MODE"),
        ("Replicas", "REPLICAS"),
        ("Image", "IMAGE"),
        ("Ports", "PORTS"),
    ],
};

/// The filters `service ls` (and `stack services`) take, checked before anything is asked.
pub fn service_filters(args: &[FilterArg]) -> Result<Filters> {
    let f = Filters::new(args, &["id", "label", "mode", "name"])?;
    f.check_values(
        "mode",
        &["replicated", "global", "replicated-job", "global-job"],
        |v| format!("Invalid filter: 'mode'='{v}'"),
    )?;
    Ok(f)
}

/// Does the service pass the filters? Name and id by prefix, as swarm's.
pub fn service_matches(f: &Filters, s: &ServiceSummary) -> bool {
    let svc = &s.service;
    f.any("id", |v| svc.id.as_str().starts_with(v))
        && f.any("name", |v| svc.spec.name.starts_with(v))
        && f.any("mode", |v| {
            v.eq_ignore_ascii_case(format_mode(svc.spec.mode))
        })
        && f.labels_match(&svc.spec.labels)
}

/// One row of `service ls`, docker's fields.
pub fn service_row(s: &ServiceSummary) -> Value {
    json!({
        "ID": s.service.id.short(),
        "Name": s.service.spec.name,
        "Mode": format_mode(s.service.spec.mode),
        "Replicas": s.replicas,
        "Image": short_image(&s.service.spec.task.container.image),
        "Ports": s.ports,
    })
}

/// `service ls` (`--quiet`, `--filter`, `--format`).
pub(super) fn run(
    target: &Target,
    quiet: bool,
    filter: &[FilterArg],
    format: Option<&str>,
    out: &mut impl Write,
) -> Result<()> {
    let f = service_filters(filter)?;
    let conn = Conn::new(target)?;
    let reply = conn.call(&Request::ServiceList)?;
    let Reply::Services(list) = reply else {
        return Err(unexpected(&reply));
    };
    let rows: Vec<Value> = list
        .iter()
        .filter(|s| service_matches(&f, s))
        .map(service_row)
        .collect();
    write_list(out, &SERVICE_LIST, format, quiet, &rows)
}

/// The image as `service ls` shows it: without a digest.
fn short_image(image: &str) -> &str {
    image.split_once('@').map_or(image, |(i, _)| i)
}
