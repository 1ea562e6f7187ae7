//! The control plane measured: API throughput (`service create --replicas 0`, `secret create`)
//! from many concurrent clients of the project's API crate with 1 and 3 managers, the time from
//! N `service create` calls to every task answering through the mesh, leader failover (kill,
//! next acknowledged write, restart), and meshd's scheduler on swarmkit's benchmark size. The big
//! lab is `biglab`. Each lab is its own `meshctl lab up`, one after the other on the same
//! prefix and /24, removed when its guard drops.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mesh_api::{BlobCreate, BlobData, BlobKind, ImageOptions, Reply, Request, status::NodeStatus};
use mesh_cluster::state::{PortConfig, ServiceMode, ServiceSpec};

use super::{HTTPD, log};
use crate::lab::Lab;
use crate::report::Figure;
use crate::report::control::{
    Control, CreateToServing, Failover, Scheduler, Throughput, next_write_after,
};
use crate::sys::{self, http_get, in_netns};

use super::biglab;
use super::scheduler;

/// Where `lab up` keeps each node's state (its `meshd.sock`, `meshd.pid`).
const STATE_ROOT: &str = "/var/lib/meshd-lab";
/// The first published port of the create-to-serving services (one port each).
const FIRST_PORT: u16 = 20000;
/// How long one API call may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What `--control` runs, and how big.
#[derive(Clone, Debug)]
pub struct ControlConfig {
    /// Concurrent API clients of the throughput runs.
    pub clients: usize,
    /// Seconds of each throughput run.
    pub seconds: f64,
    /// Services of the create-to-serving run.
    pub services: usize,
    /// Leader kills of the failover run.
    pub kills: usize,
    /// Nodes and managers of the big lab.
    pub big_nodes: usize,
    pub big_managers: usize,
}

/// A lab of `nodes` nodes and `managers` managers, torn down on drop.
pub(super) struct SizedLab {
    pub prefix: String,
    pub net: [u8; 3],
    meshctl: PathBuf,
}

impl SizedLab {
    /// `meshctl lab up --nodes N --managers M` (tc data path). The guard exists before `up`
    /// runs, so a lab that failed half-way is removed too.
    pub fn up(
        meshctl: &Path,
        prefix: &str,
        net: [u8; 3],
        (nodes, managers): (usize, usize),
    ) -> Result<Self> {
        let leftovers = Lab::namespaces(prefix);
        if !leftovers.is_empty() {
            bail!(
                "namespaces of a lab {prefix:?} exist already ({}): another bench running? If \
                 not, remove them with `meshctl lab down --prefix {prefix}`",
                leftovers.join(", ")
            );
        }
        log(&format!(
            "control: meshctl lab up --nodes {nodes} --managers {managers} --prefix {prefix}"
        ));
        let lab = Self {
            prefix: prefix.to_owned(),
            net,
            meshctl: meshctl.to_owned(),
        };
        let subnet = format!("{}.{}.{}.0/24", net[0], net[1], net[2]);
        sys::run(
            Command::new(&lab.meshctl).args([
                "lab",
                "up",
                "--nodes",
                &nodes.to_string(),
                "--managers",
                &managers.to_string(),
                "--prefix",
                prefix,
                "--subnet",
                &subnet,
            ]),
            Duration::from_mins(15),
        )
        .context("meshctl lab up")?;
        Ok(lab)
    }

    /// Node `i`'s API socket.
    pub fn socket(&self, i: usize) -> PathBuf {
        Path::new(STATE_ROOT)
            .join(&self.prefix)
            .join(format!("n{i}/meshd.sock"))
    }

    /// Node `i`'s meshd, if it runs.
    pub fn meshd_pid(&self, i: usize) -> Option<i32> {
        let p = Path::new(STATE_ROOT)
            .join(&self.prefix)
            .join(format!("n{i}/meshd.pid"));
        let pid: i32 = std::fs::read_to_string(p).ok()?.trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline)
            .contains("meshd")
            .then_some(pid)
    }

    /// Node `i`'s hostname (its namespace's name).
    pub fn hostname(&self, i: usize) -> String {
        format!("{}-n{i}", self.prefix)
    }

    pub fn node_addr(&self, i: usize) -> Ipv4Addr {
        let [a, b, c] = self.net;
        Ipv4Addr::new(a, b, c, 10 + u8::try_from(i).unwrap_or(u8::MAX))
    }

    pub fn image(&self) -> String {
        let [a, b, c] = self.net;
        format!("{a}.{b}.{c}.5:5000/meshd/busybox")
    }

    /// `meshctl lab ARGS --prefix P`.
    pub fn lab(&self, args: &[&str]) -> Result<String> {
        sys::run(
            Command::new(&self.meshctl)
                .arg("lab")
                .args(args)
                .args(["--prefix", &self.prefix]),
            Duration::from_mins(1),
        )
    }

    /// `ip netns exec PREFIX-MEMBER ARGS`.
    pub fn exec(&self, member: &str, args: &[&str]) -> Result<String> {
        sys::run(
            Command::new("ip")
                .args(["netns", "exec", &format!("{}-{member}", self.prefix)])
                .args(args),
            Duration::from_secs(30),
        )
    }
}

impl Drop for SizedLab {
    fn drop(&mut self) {
        eprintln!("[bench] removing lab {}", self.prefix);
        match Command::new(&self.meshctl)
            .args(["lab", "down", "--prefix", &self.prefix])
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "[bench] meshctl lab down --prefix {} failed: {}",
                self.prefix,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("[bench] running meshctl lab down: {e}"),
        }
    }
}

/// One API call with the bench's timeout; the reply without its warnings.
pub(super) async fn call(client: &mesh_api::transport::Client, req: &Request) -> Result<Reply> {
    let reply = client.call_with_timeout(req, CALL_TIMEOUT).await?;
    Ok(reply.into_parts().0)
}

/// A node's own status (its raft role, its gossip view).
pub(super) async fn status(client: &mesh_api::transport::Client) -> Result<NodeStatus> {
    match call(client, &Request::Status).await? {
        Reply::Status(s) => Ok(*s),
        other => bail!("status answered {other:?}"),
    }
}

/// The tokio runtime the API clients run on (the rest of the bench is threads).
pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting a tokio runtime")
}

/// Runs the whole control scenario into `results.control`: each part that fails is a failed
/// figure or a note, and the rest still runs. Errs only when interrupted.
pub fn run_control(
    cfg: &super::Config,
    ctl: &ControlConfig,
    notes: &mut Vec<String>,
) -> Result<Control> {
    let rt = runtime()?;
    let mut control = Control::default();
    log("control: scheduler, 10,000 tasks on 1,000 nodes");
    match scheduler::time_schedule(3) {
        Ok((seconds, runs)) => {
            control.scheduler = Some(Scheduler::of(
                scheduler::TASKS,
                scheduler::NODES,
                seconds,
                runs,
            ));
        }
        Err(e) => notes.push(format!("scheduler not measured: {e:#}")),
    }
    for managers in [1, 3] {
        sys::check_interrupt()?;
        if let Err(e) = managers_lab(cfg, ctl, &rt, managers, &mut control) {
            sys::check_interrupt()?;
            let note = format!("control lab with {managers} managers failed: {e:#}");
            log(&note);
            notes.push(note);
        }
    }
    sys::check_interrupt()?;
    match biglab::big_lab(cfg, ctl, &rt) {
        Ok(b) => control.big_lab = Some(b),
        Err(e) => {
            sys::check_interrupt()?;
            let note = format!("big lab failed: {e:#}");
            log(&note);
            notes.push(note);
        }
    }
    Ok(control)
}

/// One lab of `managers` managers (3 nodes, or as many as managers): throughput of creates and
/// writes; then with 1 manager the create-to-serving run, with 3 the failover run.
fn managers_lab(
    cfg: &super::Config,
    ctl: &ControlConfig,
    rt: &tokio::runtime::Runtime,
    managers: usize,
    control: &mut Control,
) -> Result<()> {
    let lab = SizedLab::up(
        &cfg.meshctl,
        &cfg.prefix,
        cfg.net,
        (managers.max(3), managers),
    )?;
    let sockets: Vec<PathBuf> = (1..=managers).map(|i| lab.socket(i)).collect();
    rt.block_on(wait_for_leader(&sockets))?;
    let image = lab.image();
    log(&format!(
        "control ({managers} managers): service create --replicas 0, {} clients, {} s",
        ctl.clients, ctl.seconds
    ));
    let t = rt.block_on(hammer(&sockets, ctl.clients, ctl.seconds, move |i| {
        let mut spec = ServiceSpec {
            name: format!("idle-{i}"),
            mode: ServiceMode::Replicated { replicas: 0 },
            ..ServiceSpec::default()
        };
        spec.task.container.image.clone_from(&image);
        Request::ServiceCreate {
            spec,
            image: ImageOptions::default(),
        }
    }));
    log(&format!("control: {t:?}"));
    control
        .creates
        .push(Throughput::of(managers, ctl.clients, t.0, t.1, t.2));
    sys::check_interrupt()?;
    log(&format!(
        "control ({managers} managers): secret create, {} clients, {} s",
        ctl.clients, ctl.seconds
    ));
    let t = rt.block_on(hammer(&sockets, ctl.clients, ctl.seconds, |i| {
        Request::BlobCreate(BlobCreate {
            kind: BlobKind::Secret,
            name: format!("w-{i}"),
            labels: BTreeMap::new(),
            data: BlobData(b"bench".to_vec()),
        })
    }));
    log(&format!("control: {t:?}"));
    control
        .writes
        .push(Throughput::of(managers, ctl.clients, t.0, t.1, t.2));
    sys::check_interrupt()?;
    if managers == 1 {
        control.create_to_serving = Some(create_to_serving(&lab, ctl, rt, &sockets)?);
    } else {
        control.failover = Some(failover(&lab, ctl, rt, managers)?);
    }
    Ok(())
}

/// Until some manager says it is the leader (or says who is).
async fn wait_for_leader(sockets: &[PathBuf]) -> Result<()> {
    let started = Instant::now();
    loop {
        for s in sockets {
            let c = mesh_api::transport::Client::local(s);
            if let Ok(st) = status(&c).await
                && st.raft.as_ref().is_some_and(|r| r.leader.is_some())
            {
                return Ok(());
            }
        }
        if started.elapsed() > Duration::from_mins(2) || sys::interrupted() {
            bail!("no manager knows a leader after 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `clients` concurrent clients, spread over `sockets`, each making calls `make(i)` (i unique)
/// one after the other for `seconds`. ((acknowledged, failed), wall seconds, first error).
async fn hammer(
    sockets: &[PathBuf],
    clients: usize,
    seconds: f64,
    make: impl Fn(u64) -> Request + Send + Sync + 'static,
) -> ((u64, u64), f64, Option<String>) {
    let make = Arc::new(make);
    let next = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for c in 0..clients {
        let client = mesh_api::transport::Client::local(&sockets[c % sockets.len()]);
        let (next, acked, failed, first_error, make) = (
            next.clone(),
            acked.clone(),
            failed.clone(),
            first_error.clone(),
            make.clone(),
        );
        calls.spawn(async move {
            while Instant::now() < deadline && !sys::interrupted() {
                let i = next.fetch_add(1, Ordering::Relaxed);
                match call(&client, &make(i)).await {
                    Ok(_) => acked.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        if let Ok(mut f) = first_error.lock() {
                            f.get_or_insert_with(|| format!("{e:#}"));
                        }
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        });
    }
    while calls.join_next().await.is_some() {}
    let err = first_error.lock().ok().and_then(|f| f.clone());
    (
        (
            acked.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
        ),
        started.elapsed().as_secs_f64(),
        err,
    )
}

/// N services of one replica each, a published port each (`FIRST_PORT + i` -> 80, busybox
/// httpd), created by concurrent clients; then the client asks every port through n1 until
/// every service has answered once.
fn create_to_serving(
    lab: &SizedLab,
    ctl: &ControlConfig,
    rt: &tokio::runtime::Runtime,
    sockets: &[PathBuf],
) -> Result<CreateToServing> {
    let n = ctl.services;
    log(&format!(
        "control: {n} service create (1 replica, -p {FIRST_PORT}+i:80) -> every one answers"
    ));
    let image = lab.image();
    let specs: Vec<ServiceSpec> = (0..n)
        .map(|i| {
            let mut spec = ServiceSpec {
                name: format!("serve-{i}"),
                ..ServiceSpec::default()
            };
            spec.task.container.image.clone_from(&image);
            spec.task.container.args = ["sh", "-c", HTTPD].map(str::to_owned).to_vec();
            spec.endpoint.ports.push(PortConfig {
                target_port: 80,
                published_port: FIRST_PORT + u16::try_from(i).unwrap_or(0),
                ..PortConfig::default()
            });
            spec
        })
        .collect();
    let t0 = Instant::now();
    let created = rt.block_on(create_all(sockets, ctl.clients, specs));
    let created_s = match created {
        Ok(()) => Figure::Value(t0.elapsed().as_secs_f64()),
        Err(e) => Figure::Failed(format!("{e:#}")),
    };
    log(&format!("control: creates acknowledged: {created_s:?}"));
    let n1 = lab.node_addr(1);
    let ports: Vec<u16> = (0..n)
        .map(|i| FIRST_PORT + u16::try_from(i).unwrap_or(0))
        .collect();
    let client_ns = PathBuf::from("/var/run/netns").join(format!("{}-client", lab.prefix));
    let firsts = in_netns(&client_ns, || first_answers(n1, &ports, t0))?;
    sys::check_interrupt()?;
    let r = CreateToServing::of(n, created_s, &firsts);
    log(&format!(
        "control: every service answers after {:?}",
        r.all_serving_s
    ));
    Ok(r)
}

/// Creates every spec through `clients` concurrent clients; the first error, if any.
async fn create_all(sockets: &[PathBuf], clients: usize, specs: Vec<ServiceSpec>) -> Result<()> {
    let queue = Arc::new(std::sync::Mutex::new(specs));
    let mut set = tokio::task::JoinSet::new();
    for c in 0..clients {
        let client = mesh_api::transport::Client::local(&sockets[c % sockets.len()]);
        let queue = queue.clone();
        set.spawn(async move {
            loop {
                let Some(spec) = queue.lock().ok().and_then(|mut q| q.pop()) else {
                    return anyhow::Ok(());
                };
                let name = spec.name.clone();
                call(
                    &client,
                    &Request::ServiceCreate {
                        spec,
                        image: ImageOptions::default(),
                    },
                )
                .await
                .with_context(|| format!("service create {name}"))?;
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

/// Asks `addr:port` for every port (16 threads, in the caller's namespace) until each answered
/// once or 5 minutes passed: each port's first answer, seconds after `t0`.
fn first_answers(addr: Ipv4Addr, ports: &[u16], t0: Instant) -> Vec<Option<f64>> {
    let firsts: Vec<std::sync::Mutex<Option<f64>>> =
        ports.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for w in 0..16 {
            let firsts = &firsts;
            s.spawn(move || {
                let mine: Vec<usize> = (0..ports.len()).filter(|i| i % 16 == w).collect();
                while t0.elapsed() < Duration::from_mins(5) && !sys::interrupted() {
                    let mut left = 0;
                    for &i in &mine {
                        let Ok(mut f) = firsts[i].lock() else {
                            continue;
                        };
                        if f.is_some() {
                            continue;
                        }
                        let a = SocketAddr::from((addr, ports[i]));
                        if http_get(a, Duration::from_millis(300)).is_ok() {
                            *f = Some(t0.elapsed().as_secs_f64());
                        } else {
                            left += 1;
                        }
                    }
                    if left == 0 {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
    });
    firsts
        .into_iter()
        .map(|f| f.into_inner().ok().flatten())
        .collect()
}

/// `ctl.kills` times: find the leader, kill it (`meshctl lab stop --kill`), time the next
/// acknowledged write through the survivors, start it again and wait for it to rejoin.
fn failover(
    lab: &SizedLab,
    ctl: &ControlConfig,
    rt: &tokio::runtime::Runtime,
    managers: usize,
) -> Result<Failover> {
    let mut kills = Vec::new();
    for k in 0..ctl.kills {
        sys::check_interrupt()?;
        let leader = rt.block_on(find_leader(lab, managers))?;
        let member = format!("n{leader}");
        lab.lab(&["stop", "--kill", &member])?;
        let killed_at = Instant::now();
        let survivors: Vec<PathBuf> = (1..=managers)
            .filter(|i| *i != leader)
            .map(|i| lab.socket(i))
            .collect();
        let writes = rt.block_on(writes_until_acknowledged(&survivors, k, killed_at));
        let fig = next_write_after(0.0, &writes).map_or_else(
            || Figure::Failed("no write acknowledged within 60 s".to_owned()),
            Figure::Value,
        );
        log(&format!("control: kill {} of n{leader}: {fig:?}", k + 1));
        kills.push(fig);
        lab.lab(&["start", &member])?;
        rt.block_on(wait_rejoined(lab, leader, managers))?;
    }
    Ok(Failover::of(
        managers,
        kills,
        "the leader's meshd killed (`meshctl lab stop --kill`, timed from its return, the \
         process gone); 8 clients write (`secret create`) through the other managers' sockets, \
         20 ms apart after a failure; the figure is the first write sent after the kill and \
         acknowledged; the killed manager is started again and rejoins before the next kill"
            .to_owned(),
    ))
}

/// The manager that says it is the leader (1-based), asked through each manager.
async fn find_leader(lab: &SizedLab, managers: usize) -> Result<usize> {
    let started = Instant::now();
    loop {
        for i in 1..=managers {
            let c = mesh_api::transport::Client::local(&lab.socket(i));
            if let Ok(st) = status(&c).await
                && st.raft.as_ref().is_some_and(|r| r.role == "leader")
            {
                return Ok(i);
            }
        }
        if started.elapsed() > Duration::from_mins(1) || sys::interrupted() {
            bail!("no manager is the leader after 1 minute");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// 8 writers through `sockets` until one write is acknowledged (or 60 s): every acknowledged
/// write's (sent, acknowledged) seconds after `killed_at`.
async fn writes_until_acknowledged(
    sockets: &[PathBuf],
    kill: usize,
    killed_at: Instant,
) -> Vec<(f64, f64)> {
    let done = Arc::new(AtomicBool::new(false));
    let mut set = tokio::task::JoinSet::new();
    for w in 0..8u64 {
        let client = mesh_api::transport::Client::local(
            &sockets[usize::try_from(w).unwrap_or(0) % sockets.len()],
        );
        let done = done.clone();
        set.spawn(async move {
            let mut acked = Vec::new();
            // Staggered, so that the writers' calls do not all wait on the same moment.
            tokio::time::sleep(Duration::from_millis(w * 3)).await;
            let mut i = 0u64;
            while !done.load(Ordering::SeqCst)
                && killed_at.elapsed() < Duration::from_mins(1)
                && !sys::interrupted()
            {
                i += 1;
                let req = Request::BlobCreate(BlobCreate {
                    kind: BlobKind::Secret,
                    name: format!("failover-{kill}-{w}-{i}"),
                    labels: BTreeMap::new(),
                    data: BlobData(b"bench".to_vec()),
                });
                let sent = killed_at.elapsed().as_secs_f64();
                if call(&client, &req).await.is_ok() {
                    acked.push((sent, killed_at.elapsed().as_secs_f64()));
                    done.store(true, Ordering::SeqCst);
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            acked
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r.unwrap_or_default());
    }
    all
}

/// Until the restarted manager `i` follows a leader that every manager agrees on.
async fn wait_rejoined(lab: &SizedLab, i: usize, managers: usize) -> Result<()> {
    let started = Instant::now();
    loop {
        let mut leaders = Vec::new();
        for m in 1..=managers {
            let c = mesh_api::transport::Client::local(&lab.socket(m));
            leaders.push(
                status(&c)
                    .await
                    .ok()
                    .and_then(|s| s.raft.and_then(|r| r.leader)),
            );
        }
        if leaders[i - 1].is_some() && leaders.iter().all(|l| *l == leaders[0]) {
            // A moment for the rejoined manager to catch up on the log.
            tokio::time::sleep(Duration::from_secs(1)).await;
            return Ok(());
        }
        if started.elapsed() > Duration::from_mins(2) || sys::interrupted() {
            bail!(
                "n{i} did not rejoin within 2 minutes of its restart (leaders seen: {leaders:?})"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
