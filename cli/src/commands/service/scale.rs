//! `service scale SERVICE=REPLICAS...`.

use std::io::Write;

use anyhow::{Result, bail};
use mesh_api::Request;
use mesh_cluster::spec::parse_replicas;

use super::client::Conn;
use super::flags::spec_err;
use super::progress;
use crate::commands::{Reported, Target};

/// Scales each service named, then follows them (unless `--detach`).
pub(super) fn run(
    target: &Target,
    scales: &[String],
    detach: bool,
    out: &mut impl Write,
) -> Result<()> {
    let mut parsed = Vec::new();
    for s in scales {
        let Some((name, n)) = s.split_once('=') else {
            bail!("invalid scale specifier {s:?}: expected the form SERVICE=REPLICAS");
        };
        let n = parse_replicas(n).map_err(spec_err)?;
        parsed.push((name.to_owned(), n));
    }
    let conn = Conn::new(target)?;
    let mut failed = Vec::new();
    let mut scaled = Vec::new();
    for (name, replicas) in parsed {
        match conn.call(&Request::ServiceScale {
            service: name.clone(),
            replicas,
        }) {
            Ok(_) => {
                writeln!(out, "{name} scaled to {replicas}")?;
                scaled.push(name);
            }
            Err(e) => failed.push(e.to_string()),
        }
    }
    out.flush()?;
    if !detach {
        for name in &scaled {
            progress::follow(&conn, name, false, out)?;
        }
    }
    if !failed.is_empty() {
        return Err(Reported(failed.join("\n")).into());
    }
    Ok(())
}
