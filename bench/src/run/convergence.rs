//! How fast the mesh follows the cluster: a new service reaching every node, a node's death.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{CONVERGENCE_PORT, HTTPD, log};
use crate::lab::Lab;
use crate::report::{Convergence, Figure, recovery};
use crate::sys::{self, http_get, in_netns, retry};

/// A request every 20 ms from the client to `addr`, on a thread in the client's namespace,
/// until dropped.
struct RequestLoop {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<(Instant, bool)>>>,
    handle: Option<JoinHandle<Result<()>>>,
}

impl RequestLoop {
    fn start(client: PathBuf, addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (s, out) = (stop.clone(), samples.clone());
        let handle = sys::spawn_in_netns(client, move || {
            while !s.load(Ordering::SeqCst) && !sys::interrupted() {
                let at = Instant::now();
                let ok = http_get(addr, Duration::from_millis(250)).is_ok();
                out.lock().map(|mut v| v.push((at, ok))).ok();
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self {
            stop,
            samples,
            handle: Some(handle),
        }
    }

    /// Successes in a row at the end.
    fn tail_successes(&self) -> usize {
        self.samples
            .lock()
            .map_or(0, |v| v.iter().rev().take_while(|s| s.1).count())
    }

    fn finish(mut self) -> Result<Vec<(Instant, bool)>> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join()
                .map_err(|_| anyhow::anyhow!("the request loop panicked"))??;
        }
        Ok(self.samples.lock().map(|v| v.clone()).unwrap_or_default())
    }
}

impl Drop for RequestLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// `service create --replicas 3 -p` until every node answers; then a node holding a task is
/// killed (meshd killed with SIGKILL, its link cut) while requests loop through n1.
pub(super) fn convergence(lab: &Lab) -> Result<Convergence> {
    let client = lab.ns_file("client");
    let nodes: Vec<SocketAddr> = (1..=3)
        .map(|i| SocketAddr::from((lab.node_addr(i), CONVERGENCE_PORT)))
        .collect();
    log("convergence: service create --replicas 3 -p 9080:80");
    let image = lab.image();
    let t0 = Instant::now();
    lab.meshctl(&[
        "service",
        "create",
        "-d",
        "--name",
        "conv",
        "--replicas",
        "3",
        "-p",
        &format!("{CONVERGENCE_PORT}:80"),
        &image,
        "sh",
        "-c",
        HTTPD,
    ])?;
    let firsts = in_netns(&client, || {
        let mut firsts: Vec<Option<f64>> = vec![None; nodes.len()];
        while firsts.iter().any(Option::is_none)
            && t0.elapsed() < Duration::from_mins(1)
            && !sys::interrupted()
        {
            for (i, a) in nodes.iter().enumerate() {
                if firsts[i].is_none() && http_get(*a, Duration::from_millis(300)).is_ok() {
                    firsts[i] = Some(t0.elapsed().as_secs_f64());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        firsts
    })?;
    sys::check_interrupt()?;
    let per_node_s: Vec<(String, Figure)> = firsts
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let fig = f.map_or_else(
                || Figure::Failed("no successful request within 60 s".to_owned()),
                Figure::Value,
            );
            (format!("n{}", i + 1), fig)
        })
        .collect();
    let all = if firsts.iter().all(Option::is_some) {
        Figure::Value(firsts.iter().flatten().copied().fold(0.0, f64::max))
    } else {
        Figure::Failed("not every node answered within 60 s".to_owned())
    };
    log(&format!(
        "convergence: every node answers after {all:?} ({per_node_s:?})"
    ));

    let (kill, detail) = match node_kill(lab, &client) {
        Ok(v) => v,
        Err(e) => {
            sys::check_interrupt()?;
            (Figure::Failed(format!("{e:#}")), String::new())
        }
    };
    log(&format!("convergence: node kill: {kill:?} {detail}"));
    Ok(Convergence {
        create_to_all_nodes_s: all,
        per_node_s,
        node_kill_recovery_s: kill,
        node_kill_detail: detail,
    })
}

fn node_kill(lab: &Lab, client: &Path) -> Result<(Figure, String)> {
    let tasks = retry(Duration::from_mins(1), || {
        let t = lab.tasks("conv")?;
        if t.len() == 3 {
            Ok(t)
        } else {
            bail!("{} of 3 conv tasks running", t.len())
        }
    })?;
    // A node other than n1 (the manager, which the requests go through).
    let victim = tasks
        .iter()
        .map(|t| t.node)
        .filter(|n| *n != 1)
        .max()
        .context("every conv task runs on n1")?;
    let on: Vec<String> = tasks.iter().map(|t| format!("n{}", t.node)).collect();
    let probe = RequestLoop::start(
        client.to_owned(),
        SocketAddr::from((lab.node_addr(1), CONVERGENCE_PORT)),
    );
    // Requests succeed before the kill.
    let started = Instant::now();
    while probe.tail_successes() < 20 {
        if started.elapsed() > Duration::from_secs(20) {
            bail!("requests through n1 did not succeed 20 times in a row before the kill");
        }
        sys::sleep(Duration::from_millis(50))?;
    }
    log(&format!(
        "convergence: conv tasks on {}; killing n{victim}",
        on.join(", ")
    ));
    let kill_at = Instant::now();
    let member = format!("n{victim}");
    lab.lab(&["stop", "--kill", &member])?;
    lab.exec(&member, &["ip", "link", "set", "eth0", "down"])?;
    // Until 30 in a row succeed (10 are the criterion; 30 rule out luck with the hash).
    loop {
        sys::sleep(Duration::from_millis(100))?;
        let waited = kill_at.elapsed();
        if probe.tail_successes() >= 30 && waited >= Duration::from_secs(3) {
            break;
        }
        if waited > Duration::from_mins(1) {
            break;
        }
    }
    let samples: Vec<(f64, bool)> = probe
        .finish()?
        .into_iter()
        .map(|(at, ok)| {
            let t = match at.checked_duration_since(kill_at) {
                Some(d) => d.as_secs_f64(),
                None => -(kill_at - at).as_secs_f64(),
            };
            (t, ok)
        })
        .collect();
    let r = recovery(&samples, 10);
    let span = match (r.first_failure_s, r.last_failure_s) {
        (Some(a), Some(b)) => format!(", failures from +{a:.2} s to +{b:.2} s"),
        _ => String::new(),
    };
    let detail = format!(
        "n{victim} killed (tasks on {}); {} of {} requests through n1 failed{span}",
        on.join(", "),
        r.failed,
        r.total
    );
    let fig = r.recovered_s.map_or_else(
        || Figure::Failed(format!("requests did not recover within 60 s ({detail})")),
        Figure::Value,
    );
    Ok((fig, detail))
}
