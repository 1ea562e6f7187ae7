//! `service logs`: the logs of a service or a task, streamed from meshd.

use std::io::Write;

use anyhow::Result;
use futures::StreamExt;
use mesh_api::{LogsRequest, Request, StreamItem};

use super::client::Conn;
use crate::commands::{Target, reported};

/// `service logs`, with `--tail`, `--follow`, `--timestamps` and `--no-trunc`.
pub(super) fn run(
    target: &Target,
    what: String,
    tail: &str,
    (follow, timestamps, no_trunc): (bool, bool, bool),
    out: &mut impl Write,
) -> Result<()> {
    let tail = match tail {
        "all" => None,
        n => Some(n.parse::<usize>().map_err(|_| {
            anyhow::anyhow!("invalid --tail {n:?}: expected a number of lines or all")
        })?),
    };
    let conn = Conn::new(target)?;
    let req = Request::ServiceLogs(LogsRequest {
        target: what,
        tail,
        follow,
        timestamps,
        no_trunc,
    });
    logs(&conn, &req, out)
}

/// `service logs`: Docker's `SERVICE.SLOT.TASK@NODE    | line`, container stderr on stderr.
fn logs(conn: &Conn, req: &Request, out: &mut impl Write) -> Result<()> {
    conn.rt.block_on(async {
        let mut items = conn
            .client
            .stream(req)
            .await
            .map_err(|e| reported(&conn.client, &e))?;
        let mut err = std::io::stderr();
        while let Some(item) = items.next().await {
            match item.map_err(|e| reported(&conn.client, &e))? {
                StreamItem::Logs(records) => {
                    for r in records {
                        let line = match &r.timestamp {
                            Some(ts) => format!("{ts} {}    | {}", r.context, r.text),
                            None => format!("{}    | {}", r.context, r.text),
                        };
                        if r.stderr {
                            writeln!(err, "{line}")?;
                        } else {
                            writeln!(out, "{line}")?;
                        }
                    }
                    out.flush()?;
                }
                StreamItem::Warning(w) => writeln!(err, "warning: {w}")?,
            }
        }
        anyhow::Ok(())
    })
}
