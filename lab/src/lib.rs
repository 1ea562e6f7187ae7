//! `mesh-lab`, behind `meshctl lab`: many nodes on one machine. Namespaces `P-n1..P-nN`,
//! `P-client` and `P-reg` hang off a bridge in `P-sw` with underlay addresses from a /24 of
//! 198.18.0.0/15 and no route out; every node runs its own Docker engine and its own `meshd`,
//! and `P-reg` runs the registry the nodes pull the lab's images from. `P-client` runs the
//! upstream resolver the nodes' DNS forwards to (unbound, `upstream`). [`down`] removes every
//! trace, also of a lab whose `up` was killed half-way.
//!
//! The lab drives the kernel only through iproute2 (`ip`), a shell in the switch namespace and
//! `nsenter`/`unshare` for the engines and the registry (and mounts one tmpfs for its state): it
//! links neither netlink nor aya, so that `meshctl` stays a thin client.

pub mod cluster;
mod engine;
mod image;
mod plan;
mod registry;
mod teardown;
mod upstream;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use image::ensure_images;
pub use image::{DATABASE_IMAGE, LAB_IMAGES, REGISTRY_IMAGE, TEST_IMAGE};
pub use plan::{LabPlan, Member, PlanError, REGISTRY_PORT, STATE_ROOT, state_dir};
pub use teardown::down;
pub use upstream::UPSTREAM_NAME;

/// What `lab up` records in `<state dir>/lab.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LabState {
    pub plan: LabPlan,
    /// Set once `up` finished; a lab without it was interrupted and is cleaned before reuse.
    pub complete: bool,
    /// The meshd binary and extra arguments `up` used (for `lab start`).
    #[serde(default)]
    pub meshd: Option<PathBuf>,
    #[serde(default)]
    pub meshd_args: Vec<String>,
    /// The data path the nodes run (`tc` or `xdp`).
    #[serde(default = "default_datapath")]
    pub datapath: String,
}

fn default_datapath() -> String {
    "tc".to_owned()
}

impl LabState {
    pub fn load(prefix: &str) -> Option<Self> {
        let text = fs::read_to_string(state_dir(prefix).join("lab.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn save(&self) -> Result<()> {
        let dir = self.plan.state_dir();
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("lab.json"), serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }
}

/// Options of `lab up` beyond the plan.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// The `meshd` binary to run in every node.
    pub meshd: PathBuf,
    /// Extra arguments for every `meshd`.
    pub meshd_args: Vec<String>,
    /// `tc` or `xdp`. With `xdp` the switch ports run a native XDP program, as a NIC that
    /// accepts `XDP_TX` frames would (a veth only accepts them then); with `tc` they run none,
    /// because XDP on a veth splits GSO packets and would slow every other path.
    pub datapath: String,
    /// Form one swarm of the nodes (`false`: meshd runs outside any swarm, so it sets up
    /// nothing of the overlay or the mesh).
    pub swarm: bool,
    /// `swarm init --default-routing` (None: the swarm's default, VXLAN).
    pub default_routing: Option<mesh_cluster::net::Routing>,
}

/// Builds the lab and starts `meshd` everywhere. A lab already up is an error; the remains of an
/// interrupted one are removed first.
pub fn up(plan: &LabPlan, opts: &UpOptions) -> Result<()> {
    preflight(opts)?;
    if !["tc", "xdp"].contains(&opts.datapath.as_str()) {
        bail!("invalid --datapath {:?}: use tc or xdp", opts.datapath);
    }
    if let Some(state) = LabState::load(&plan.prefix)
        && state.complete
        && lab_processes(&state.plan).len() == state.plan.nodes
    {
        {
            bail!(
                "lab {:?} is already up ({} nodes, {} manager(s)); see `meshctl lab ls`, or run `meshctl lab down{}` first",
                plan.prefix,
                state.plan.nodes,
                state.plan.managers,
                prefix_flag(&plan.prefix)
            );
        }
    }
    if !leftovers(&plan.prefix).is_empty() || state_dir(&plan.prefix).exists() {
        eprintln!(
            "lab {:?}: removing what an earlier, unfinished lab left behind",
            plan.prefix
        );
        down(&plan.prefix)?;
    }
    let images = ensure_images()?;

    teardown::mount_state(&plan.state_dir())?;
    let mut state = LabState {
        plan: plan.clone(),
        complete: false,
        meshd: Some(opts.meshd.clone()),
        meshd_args: opts.meshd_args.clone(),
        datapath: opts.datapath.clone(),
    };
    state.save()?;
    build_network(plan, opts.datapath == "xdp").context("building the lab network")?;
    upstream::start(plan)?;
    let pushing = start_engines_and_registry(plan, &images)?;
    upstream::wait_ready(plan)?;
    for i in plan.node_indexes() {
        start_meshd(plan, i, opts)?;
    }
    for i in plan.node_indexes() {
        wait_for_socket(plan, i)?;
    }
    // One swarm: init on n1, managers then workers join it.
    if opts.swarm {
        cluster::form(plan, opts.default_routing)
            .and_then(|()| cluster::wait_ready(plan, Duration::from_mins(1)))
            .with_context(|| {
                format!(
                    "forming the lab's swarm (logs: {}/n*/meshd.log; `meshctl lab down{}` removes the lab)",
                    plan.state_dir().display(),
                    prefix_flag(&plan.prefix)
                )
            })?;
    }
    registry::finish_push(plan, pushing)?;
    state.complete = true;
    state.save()?;
    Ok(())
}

/// Starts the registry and every node's engine at once, and waits for them; the pushes of the
/// lab images it starts once the registry listens run on while the meshds start and the swarm
/// forms ([`registry::finish_push`] waits for them).
fn start_engines_and_registry(
    plan: &LabPlan,
    images: &[image::ExportedImage],
) -> Result<registry::Pushing> {
    registry::write_tls(plan).context("making the lab CA and the registry's certificate")?;
    let mut reg = registry::spawn(plan)?;
    let mut engines = Vec::new();
    for i in plan.node_indexes() {
        engines.push((i, engine::spawn(plan, i)?));
    }
    registry::wait_ready(plan, &mut reg)?;
    let pushing = registry::start_push(plan, images)?;
    for (i, child) in &mut engines {
        engine::wait_ready(plan, *i, child)?;
    }
    Ok(pushing)
}

/// The node indexes `member` names: `nI`, or every node for `all`.
fn nodes_named(plan: &LabPlan, member: &str) -> Result<Vec<usize>> {
    if member == "all" {
        return Ok(plan.node_indexes().collect());
    }
    match plan.member(member)? {
        Member::Node(i) => Ok(vec![i]),
        Member::Client => bail!(
            "the client runs no meshd; name a node (n1..n{})",
            plan.nodes
        ),
    }
}

/// `lab stop`: stops a node's meshd (SIGTERM and a wait, or SIGKILL); its state stays on disk.
pub fn stop(prefix: &str, member: &str, kill: bool) -> Result<()> {
    use nix::sys::signal::{Signal, kill as send};
    use nix::unistd::Pid;
    let state = LabState::load(prefix)
        .with_context(|| format!("no lab {prefix:?} (start one with `meshctl lab up`)"))?;
    let nodes = nodes_named(&state.plan, member)?;
    let procs: Vec<LabProcess> = lab_processes(&state.plan)
        .into_iter()
        .filter(|p| nodes.contains(&p.node))
        .collect();
    let signal = if kill {
        Signal::SIGKILL
    } else {
        Signal::SIGTERM
    };
    for p in &procs {
        let _ = send(Pid::from_raw(p.pid), signal);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while procs.iter().any(|p| alive(p.pid)) {
        if Instant::now() > deadline {
            for p in procs.iter().filter(|p| alive(p.pid)) {
                let _ = send(Pid::from_raw(p.pid), Signal::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// `lab start`: starts a stopped node's meshd again with the arguments `up` gave it, and waits
/// for its socket.
pub fn start(prefix: &str, member: &str) -> Result<()> {
    let state = LabState::load(prefix)
        .with_context(|| format!("no lab {prefix:?} (start one with `meshctl lab up`)"))?;
    let nodes = nodes_named(&state.plan, member)?;
    let running: Vec<usize> = lab_processes(&state.plan).iter().map(|p| p.node).collect();
    let opts = UpOptions {
        meshd: state
            .meshd
            .clone()
            .context("this lab was made by an older meshctl; run `meshctl lab down` and `up`")?,
        meshd_args: state.meshd_args.clone(),
        datapath: state.datapath.clone(),
        // A restarted meshd finds its swarm (or none) in its own state.
        swarm: true,
        default_routing: None,
    };
    for &i in &nodes {
        if running.contains(&i) {
            bail!(
                "meshd on {} is running; stop it first",
                state.plan.node_ns(i)
            );
        }
    }
    for &i in &nodes {
        start_meshd(&state.plan, i, &opts)?;
    }
    for &i in &nodes {
        wait_for_socket(&state.plan, i)?;
    }
    Ok(())
}

fn prefix_flag(prefix: &str) -> String {
    if prefix == "mesh" {
        String::new()
    } else {
        format!(" --prefix {prefix}")
    }
}

fn preflight(opts: &UpOptions) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the lab needs root (it creates network namespaces)");
    }
    if !opts.meshd.exists() {
        bail!(
            "meshd not found at {}: build it with `cargo build --bins`",
            opts.meshd.display()
        );
    }
    if Command::new("ip").arg("-V").output().is_err() {
        bail!("`ip` not found: run ./scripts/deps.sh (it installs iproute2)");
    }
    Ok(())
}

/// Where older meshctls pinned the switch ports' XDP links (`down` still removes it).
pub(crate) fn old_switch_pins(prefix: &str) -> PathBuf {
    Path::new("/sys/fs/bpf/meshd").join(format!("{prefix}-sw"))
}

/// The object file `ip` loads on the switch ports with `--datapath xdp`.
fn switch_probe(plan: &LabPlan) -> PathBuf {
    plan.state_dir().join("switch-probe.o")
}

fn build_network(plan: &LabPlan, xdp_switch: bool) -> Result<()> {
    let sw = plan.switch_ns();
    ip(&["netns", "add", &sw])?;
    ip(&["-n", &sw, "link", "set", "lo", "up"])?;
    ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &sw, "link", "set", "br0", "up"])?;
    switch_without_netfilter(&sw).context("turning br_netfilter off in the lab's switch")?;
    let probe = switch_probe(plan);
    if xdp_switch {
        fs::write(&probe, &mesh_ebpf::PROBE.0)
            .with_context(|| format!("writing {}", probe.display()))?;
    }
    // (namespace, switch port, address) of every member and of the registry.
    let mut ports: Vec<(String, String, std::net::Ipv4Addr)> = plan
        .node_indexes()
        .map(|i| (plan.node_ns(i), format!("n{i}"), plan.node_addr(i)))
        .collect();
    ports.push((plan.client_ns(), "client".to_owned(), plan.client_addr()));
    ports.push((plan.registry_ns(), "reg".to_owned(), plan.registry_addr()));
    for (ns, port, addr) in &ports {
        let (ns, port) = (ns.as_str(), port.as_str());
        ip(&["netns", "add", ns])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n", &sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        ip(&["-n", &sw, "link", "set", port, "master", "br0", "up"])?;
        if xdp_switch {
            // Native XDP lives as long as the port: `down` deletes the namespace, and it.
            let obj = probe.to_str().context("the lab's state dir is not UTF-8")?;
            ip(&[
                "-n", &sw, "link", "set", "dev", port, "xdpdrv", "obj", obj, "sec", "xdp",
            ])
            .with_context(|| format!("attaching XDP to switch port {port}"))?;
        }
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
    }
    Ok(())
}

/// A switch runs no netfilter. Once dockerd has loaded `br_netfilter`, every new namespace starts
/// with `bridge-nf-call-*` on, and every frame crossing `br0` would go through the IP hooks
/// (about a tenth of the lab's throughput and connection rate, measured). Without the module the
/// files do not exist and there is nothing to turn off.
fn switch_without_netfilter(sw: &str) -> Result<()> {
    const SCRIPT: &str = "for k in iptables ip6tables arptables; do \
        f=/proc/sys/net/bridge/bridge-nf-call-$k; \
        if [ -e \"$f\" ]; then echo 0 > \"$f\" || exit 1; fi; done";
    ip(&["netns", "exec", sw, "sh", "-c", SCRIPT])
}

/// Where each lab node's meshd serves `/metrics` and `/healthz`, on the node's address (Docker's
/// `metrics-addr` port).
pub const METRICS_PORT: u16 = 9323;

fn start_meshd(plan: &LabPlan, i: usize, opts: &UpOptions) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let dir = plan.node_dir(i);
    fs::create_dir_all(&dir)?;
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(plan.node_log(i))?;
    let child = Command::new(&opts.meshd)
        .arg("--netns")
        .arg(plan.node_ns(i))
        .arg("--data-dir")
        .arg(&dir)
        .arg("--hostname")
        .arg(plan.node_ns(i))
        .arg("--advertise-addr")
        .arg(plan.node_addr(i).to_string())
        .arg("--datapath")
        .arg(&opts.datapath)
        .arg("--metrics-addr")
        .arg(format!("{}:{METRICS_PORT}", plan.node_addr(i)))
        .arg("--engine")
        .arg(plan.engine_host(i))
        .arg("--docker-api-socket")
        .arg(plan.docker_api_socket(i))
        .arg("--resolv-conf")
        .arg(plan.resolv_conf())
        .args(&opts.meshd_args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C on `meshctl lab up` does not take the nodes down.
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", opts.meshd.display()))?;
    fs::write(dir.join("meshd.pid"), child.id().to_string())?;
    Ok(())
}

fn wait_for_socket(plan: &LabPlan, i: usize) -> Result<()> {
    let sock = plan.node_socket(i);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
            return Ok(());
        }
        // By the pid we started: until it execs, the child's command line is still ours.
        let pid = fs::read_to_string(plan.node_dir(i).join("meshd.pid"))?;
        if !alive(pid.trim().parse()?) {
            bail!(
                "meshd on {} exited during start-up; its log {} ends with:\n{}",
                plan.node_ns(i),
                plan.node_log(i).display(),
                tail(&plan.node_log(i), 15)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "meshd on {} did not open {} within 20s; see {}",
        plan.node_ns(i),
        sock.display(),
        plan.node_log(i).display()
    )
}

pub(crate) fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A `meshd` of a lab, found in the process table.
#[derive(Debug)]
pub struct LabProcess {
    pub pid: i32,
    pub node: usize,
}

/// The `meshd` processes whose data dir lies in this lab's state folder.
pub fn lab_processes(plan: &LabPlan) -> Vec<LabProcess> {
    let mut found = Vec::new();
    for (pid, args) in processes() {
        let Some(dir) = arg_value(&args, "--data-dir") else {
            continue;
        };
        for i in plan.node_indexes() {
            if Path::new(dir) == plan.node_dir(i) {
                found.push(LabProcess { pid, node: i });
            }
        }
    }
    found
}

pub(crate) fn arg_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|p| args.get(p + 1))
        .map(String::as_str)
}

/// Every process with its command line.
pub(crate) fn processes() -> Vec<(i32, Vec<String>)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let raw = fs::read(e.path().join("cmdline")).ok()?;
            let args = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some((pid, args))
        })
        .collect()
}

/// What a lab with this prefix has left on the machine: its namespaces.
pub fn leftovers(prefix: &str) -> Vec<String> {
    namespaces()
        .into_iter()
        .filter(|ns| LabPlan::owns_namespace(prefix, ns))
        .collect()
}

fn namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output();
    out.map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
    })
    .unwrap_or_default()
}

/// Alive and not a zombie waiting for its parent.
pub(crate) fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().chars().next())
        })
        .flatten()
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// What `lab ls` shows: a table (header first) and whether `up` finished.
#[derive(Debug)]
pub struct Listing {
    /// One row per member, with its address, meshd's pid and its log.
    pub rows: Vec<Vec<String>>,
    /// `false`: this lab did not finish coming up.
    pub complete: bool,
    /// The lab images as nodes pull them from the lab registry.
    pub images: Vec<String>,
    /// The lab CA, which the registry's certificate chains to.
    pub ca_cert: PathBuf,
}

/// `lab ls`: one row per member, with its address, meshd's pid and its log (`None`: no lab).
pub fn list(prefix: &str) -> Option<Listing> {
    let state = LabState::load(prefix)?;
    let plan = &state.plan;
    let procs = lab_processes(plan);
    let mut rows = vec![vec![
        "MEMBER".to_owned(),
        "NAMESPACE".to_owned(),
        "ADDRESS".to_owned(),
        "ROLE".to_owned(),
        "MESHD".to_owned(),
        "ENGINE".to_owned(),
        "LOG".to_owned(),
    ]];
    for i in plan.node_indexes() {
        let pid = procs
            .iter()
            .find(|p| p.node == i)
            .map_or_else(|| "stopped".to_owned(), |p| format!("pid {}", p.pid));
        let engine = if engine::ping(&plan.engine_socket(i)) {
            plan.engine_host(i)
        } else {
            "not answering".to_owned()
        };
        rows.push(vec![
            format!("n{i}"),
            plan.node_ns(i),
            plan.node_addr(i).to_string(),
            role_of(plan, i, procs.iter().any(|p| p.node == i)),
            pid,
            engine,
            plan.node_log(i).display().to_string(),
        ]);
    }
    let dash = || "-".to_owned();
    rows.push(vec![
        "client".to_owned(),
        plan.client_ns(),
        plan.client_addr().to_string(),
        "client".to_owned(),
        dash(),
        dash(),
        dash(),
    ]);
    rows.push(vec![
        "registry".to_owned(),
        plan.registry_ns(),
        plan.registry_host(),
        "registry".to_owned(),
        dash(),
        dash(),
        plan.registry_log().display().to_string(),
    ]);
    Some(Listing {
        images: LAB_IMAGES
            .iter()
            .map(|(_, name)| plan.image(name))
            .collect(),
        ca_cert: plan.ca_cert(),
        rows,
        complete: state.complete,
    })
}

/// A node's role as its meshd reports it (the plan's when it does not answer).
fn role_of(plan: &LabPlan, i: usize, running: bool) -> String {
    let planned = if plan.is_manager(i) {
        "manager"
    } else {
        "worker"
    };
    if !running {
        return planned.to_owned();
    }
    match cluster::info(plan, i) {
        Some(info) => match info.role {
            Some(mesh_cluster::state::NodeRole::Manager) => "manager".to_owned(),
            Some(mesh_cluster::state::NodeRole::Worker) => "worker".to_owned(),
            None => "(no swarm)".to_owned(),
        },
        None => planned.to_owned(),
    }
}

/// `lab exec MEMBER -- CMD`: runs CMD in the member's namespace, with meshctl's folder first on
/// `PATH`. On a node, `MESH_HOST` points `meshctl` at that node's meshd and `MESH_CERT_PATH` at
/// its certificates (for `--host tcp://...`).
pub fn exec(prefix: &str, member: &str, cmd: &[String]) -> Result<i32> {
    let state = LabState::load(prefix)
        .with_context(|| format!("no lab {prefix:?} (start one with `meshctl lab up`)"))?;
    let m = state.plan.member(member)?;
    let Some((program, args)) = cmd.split_first() else {
        bail!("lab exec needs a command after `--`");
    };
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &state.plan.member_ns(&m), program])
        .args(args);
    if let Member::Node(i) = m {
        c.env(
            "MESH_HOST",
            format!("unix://{}", state.plan.node_socket(i).display()),
        );
        c.env("MESH_CERT_PATH", state.plan.node_dir(i).join("certs"));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![dir];
        dirs.extend(std::env::split_paths(&path));
        if let Ok(joined) = std::env::join_paths(dirs) {
            c.env("PATH", joined);
        }
    }
    let status = c.status().context("running ip netns exec")?;
    Ok(status.code().unwrap_or(1))
}

pub(crate) fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args))
}

pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
