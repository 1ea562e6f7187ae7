//! One connection to meshd for the subcommands that make several calls, and small helpers
//! they share.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Result;
use mesh_api::transport::Client;
use mesh_api::{ApiError, Reply, Request, ServiceTasksReply};

use crate::commands::{Target, connect, reported, runtime, unexpected};

/// One connection to meshd for a command that makes several calls.
pub(super) struct Conn {
    pub(super) rt: tokio::runtime::Runtime,
    pub(super) client: Client,
}

impl Conn {
    pub(super) fn new(target: &Target) -> Result<Self> {
        let rt = runtime()?;
        let client = {
            let _guard = rt.enter();
            connect(target)?
        };
        Ok(Self { rt, client })
    }

    pub(super) fn call_raw(&self, req: &Request) -> Result<Reply, ApiError> {
        self.rt
            .block_on(self.client.call_with_timeout(req, Duration::from_secs(30)))
    }

    pub(super) fn call(&self, req: &Request) -> Result<Reply> {
        self.call_raw(req).map_err(|e| reported(&self.client, &e))
    }

    pub(super) fn tasks(&self, services: Vec<String>) -> Result<ServiceTasksReply> {
        match self.call(&Request::ServiceTasks { services })? {
            Reply::ServiceTasks(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    pub(super) fn inspect(&self, service: &str) -> Result<mesh_cluster::state::Service> {
        match self.call(&Request::ServiceInspect {
            service: service.to_owned(),
        })? {
            Reply::Service(s) => Ok(*s),
            other => Err(unexpected(&other)),
        }
    }
}

pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Is stdout a terminal (live redraws) or not (one line per change)?
pub(super) fn stdout_is_tty() -> bool {
    std::io::stdout().is_terminal()
}
