//! The lab's nodes as one swarm: `swarm init` on n1 (advertising its underlay address), managers
//! n2..nM and workers after them joined with the matching tokens, then a wait until `node ls`
//! shows every node `Ready`. Talks to each node's meshd over its socket, as `meshctl` would.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mesh_api::transport::Client;
use mesh_api::{Info, InitRequest, JoinRequest, Reply, Request};
use mesh_cluster::state::{NodeRole, NodeState};

use super::LabPlan;

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Inits the swarm on n1 (with `default_routing`, if given) and joins every other node.
pub fn form(plan: &LabPlan, default_routing: Option<mesh_cluster::net::Routing>) -> Result<()> {
    runtime()?.block_on(async {
        let n1 = Client::local(&plan.node_socket(1));
        let manager_addr = format!("{}:2377", plan.node_addr(1));
        let init = n1
            .call(&Request::Init(InitRequest {
                advertise_addr: Some(plan.node_addr(1)),
                default_routing,
                ..InitRequest::default()
            }))
            .await
            .with_context(|| format!("swarm init on {}", plan.node_ns(1)))?;
        let Reply::Init(init) = init else {
            bail!("unexpected answer to swarm init: {init:?}");
        };
        let manager_token = match n1
            .call(&Request::JoinToken {
                role: NodeRole::Manager,
                rotate: false,
            })
            .await
            .context("swarm join-token manager on n1")?
        {
            Reply::JoinToken(t) => t.token,
            other => bail!("unexpected answer to join-token: {other:?}"),
        };
        for i in plan.node_indexes().skip(1) {
            let token = if plan.is_manager(i) {
                manager_token.clone()
            } else {
                init.worker_token.clone()
            };
            Client::local(&plan.node_socket(i))
                .call_with_timeout(
                    &Request::Join(JoinRequest {
                        token,
                        remote: manager_addr.clone(),
                        advertise_addr: Some(plan.node_addr(i)),
                        listen_addr: None,
                    }),
                    Duration::from_mins(2),
                )
                .await
                .with_context(|| format!("swarm join on {}", plan.node_ns(i)))?;
        }
        anyhow::Ok(())
    })
}

/// Waits until n1's `node ls` shows `nodes` nodes, all `Ready`.
pub fn wait_ready(plan: &LabPlan, timeout: Duration) -> Result<()> {
    runtime()?.block_on(async {
        let n1 = Client::local(&plan.node_socket(1));
        let deadline = Instant::now() + timeout;
        loop {
            let last = match n1
                .call_with_timeout(&Request::NodeList, Duration::from_secs(5))
                .await
            {
                Ok(Reply::Nodes(r)) => {
                    let ready = r
                        .nodes
                        .iter()
                        .filter(|n| n.status.state == NodeState::Ready)
                        .count();
                    if r.nodes.len() == plan.nodes && ready == plan.nodes {
                        return Ok(());
                    }
                    format!("{ready} of {} nodes Ready", plan.nodes)
                }
                Ok(other) => format!("unexpected answer: {other:?}"),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                bail!("the lab's nodes were not all Ready within {timeout:?}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// What node `i`'s meshd says about itself (None when it does not answer).
pub fn info(plan: &LabPlan, i: usize) -> Option<Info> {
    let rt = runtime().ok()?;
    rt.block_on(async {
        match Client::local(&plan.node_socket(i))
            .call_with_timeout(&Request::Info, Duration::from_secs(2))
            .await
        {
            Ok(Reply::Info(info)) => Some(info),
            _ => None,
        }
    })
}
