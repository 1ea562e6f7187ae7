//! `service ls`: the services with their mode, replicas, image and ports.

use std::io::Write;

use anyhow::{Result, bail};
use mesh_api::{Reply, Request};
use mesh_cluster::spec::format_mode;

use super::client::Conn;
use crate::commands::{Target, unexpected};

/// `service ls` (`--quiet`, `--format json`).
pub(super) fn run(
    target: &Target,
    quiet: bool,
    format: Option<&str>,
    out: &mut impl Write,
) -> Result<()> {
    let json = match format {
        None => false,
        Some("json") => true,
        Some(other) => bail!("unsupported --format {other:?}: only json is supported"),
    };
    let conn = Conn::new(target)?;
    let reply = conn.call(&Request::ServiceList)?;
    let Reply::Services(list) = reply else {
        return Err(unexpected(&reply));
    };
    if quiet {
        for s in &list {
            writeln!(out, "{}", s.service.id.short())?;
        }
    } else if json {
        for s in &list {
            let v = serde_json::json!({
                "ID": s.service.id.short(),
                "Image": short_image(&s.service.spec.task.container.image),
                "Mode": format_mode(s.service.spec.mode),
                "Name": s.service.spec.name,
                "Ports": s.ports,
                "Replicas": s.replicas,
            });
            writeln!(out, "{v}")?;
        }
    } else {
        let mut rows = vec![
            ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"]
                .map(str::to_owned)
                .to_vec(),
        ];
        for s in &list {
            rows.push(vec![
                s.service.id.short().to_owned(),
                s.service.spec.name.clone(),
                format_mode(s.service.spec.mode).to_owned(),
                s.replicas.clone(),
                short_image(&s.service.spec.task.container.image).to_owned(),
                s.ports.clone(),
            ]);
        }
        crate::table::write(out, &rows)?;
    }
    Ok(())
}

/// The image as `service ls` shows it: without a digest.
fn short_image(image: &str) -> &str {
    image.split_once('@').map_or(image, |(i, _)| i)
}
