//! `service rollback`: back to the previous spec.

use std::io::Write;

use anyhow::Result;
use mesh_api::Request;

use super::client::Conn;
use super::progress;
use crate::commands::Target;

/// `service rollback`, with `--detach` and `--quiet`.
pub(super) fn run(
    target: &Target,
    service: &str,
    (detach, quiet): (bool, bool),
    out: &mut impl Write,
) -> Result<()> {
    let conn = Conn::new(target)?;
    conn.call(&Request::ServiceRollback {
        service: service.to_owned(),
    })?;
    writeln!(out, "{service}")?;
    out.flush()?;
    if !detach {
        progress::follow(&conn, service, quiet, out)?;
    }
    Ok(())
}
