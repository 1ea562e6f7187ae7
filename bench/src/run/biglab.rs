//! The big lab: N nodes (20 by default) on one switch. Once every node's gossip sees every
//! other alive, meshd's `VmRSS` is read on every node; then one worker is killed (its meshd
//! with SIGKILL, its link cut) and every other node's own status (`Request::Status` on its
//! socket, what `meshctl status` shows) is polled until its gossip no longer says the victim
//! is alive.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use mesh_api::status::PeerState;

use super::control::{ControlConfig, SizedLab, status};
use super::log;
use crate::report::control::BigLab;
use crate::sys;

/// How often each node's status is asked after the kill.
const POLL: Duration = Duration::from_millis(100);

/// Builds the big lab, measures, removes it.
pub(super) fn big_lab(
    cfg: &super::Config,
    ctl: &ControlConfig,
    rt: &tokio::runtime::Runtime,
) -> Result<BigLab> {
    let (nodes, managers) = (ctl.big_nodes, ctl.big_managers);
    if nodes < 3 {
        bail!("the big lab needs 3 nodes or more (--big-nodes {nodes})");
    }
    let lab = SizedLab::up(&cfg.meshctl, &cfg.prefix, cfg.net, (nodes, managers))?;
    let sockets: Vec<PathBuf> = (1..=nodes).map(|i| lab.socket(i)).collect();
    log(&format!(
        "big lab: {nodes} nodes up; waiting for every node to see every other alive"
    ));
    let settled = Instant::now();
    rt.block_on(wait_all_alive(&sockets, nodes))?;
    log(&format!(
        "big lab: gossip settled {:.1} s after lab up",
        settled.elapsed().as_secs_f64()
    ));
    let rss: Vec<(String, Option<u64>)> = (1..=nodes)
        .map(|i| (lab.hostname(i), lab.meshd_pid(i).and_then(sys::rss_kib)))
        .collect();
    let victim = nodes;
    let victim_host = lab.hostname(victim);
    let member = format!("n{victim}");
    log(&format!("big lab: killing {victim_host}"));
    lab.lab(&["stop", "--kill", &member])?;
    let killed_at = Instant::now();
    lab.exec(&member, &["ip", "link", "set", "eth0", "down"])?;
    let observers: Vec<(String, PathBuf)> = (1..nodes)
        .map(|i| (lab.hostname(i), lab.socket(i)))
        .collect();
    let seen = rt.block_on(seen_dead(&observers, &victim_host, killed_at));
    sys::check_interrupt()?;
    let b = BigLab::of((nodes, managers), victim_host, seen, rss);
    log(&format!(
        "big lab: every node saw the death after {:?} (median {:?})",
        b.all_seen_dead_s, b.median_seen_dead_s
    ));
    Ok(b)
}

/// Until every node's gossip lists `nodes - 1` peers, all alive (3 minutes at most).
async fn wait_all_alive(sockets: &[PathBuf], nodes: usize) -> Result<()> {
    let started = Instant::now();
    loop {
        let mut settled = 0;
        for s in sockets {
            let c = mesh_api::transport::Client::local(s);
            if let Ok(st) = status(&c).await
                && st.gossip.len() == nodes - 1
                && st.gossip.iter().all(|p| p.state == PeerState::Alive)
            {
                settled += 1;
            }
        }
        if settled == sockets.len() {
            return Ok(());
        }
        if started.elapsed() > Duration::from_mins(3) || sys::interrupted() {
            bail!(
                "{settled} of {} nodes see every other alive after 3 minutes",
                sockets.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Each observer polled every `POLL` until its gossip says `victim` is not alive (2 minutes
/// at most): when, in seconds after `killed_at`.
async fn seen_dead(
    observers: &[(String, PathBuf)],
    victim: &str,
    killed_at: Instant,
) -> Vec<(String, Option<f64>)> {
    let mut set = tokio::task::JoinSet::new();
    for (i, (host, socket)) in observers.iter().enumerate() {
        let (host, victim) = (host.clone(), victim.to_owned());
        let c = mesh_api::transport::Client::local(socket);
        set.spawn(async move {
            let mut seen = None;
            while killed_at.elapsed() < Duration::from_mins(2) && !sys::interrupted() {
                if let Ok(st) = status(&c).await
                    && st
                        .gossip
                        .iter()
                        .any(|p| p.hostname == victim && p.state != PeerState::Alive)
                {
                    // When the answer came: gossip said so by then (an upper bound, within
                    // one poll of the moment it changed).
                    seen = Some(killed_at.elapsed().as_secs_f64());
                    break;
                }
                tokio::time::sleep(POLL).await;
            }
            (i, host, seen)
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(r) = r {
            out.push(r);
        }
    }
    out.sort_by_key(|r| r.0);
    out.into_iter().map(|(_, h, s)| (h, s)).collect()
}
