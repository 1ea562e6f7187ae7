//! `service rm`: removes each service named.

use std::io::Write;

use anyhow::Result;
use mesh_api::Request;

use super::client::Conn;
use crate::commands::{Reported, Target};

pub(super) fn run(target: &Target, services: &[String], out: &mut impl Write) -> Result<()> {
    let conn = Conn::new(target)?;
    let mut failed = Vec::new();
    for s in services {
        match conn.call(&Request::ServiceRemove { service: s.clone() }) {
            Ok(_) => writeln!(out, "{s}")?,
            Err(e) => failed.push(e.to_string()),
        }
    }
    if !failed.is_empty() {
        return Err(Reported(failed.join("\n")).into());
    }
    Ok(())
}
