//! The scale scenario: 1, 100, 1,000 ... published services through one node, by meshd's tc
//! programs and maps and by kube-proxy's iptables layout.
//!
//! No meshd and no Docker: three namespaces of our own (`PREFIX-sc-client`, `PREFIX-sc-node`,
//! `PREFIX-sc-task`), the node's `eth0` wired straight to the client's, an ingress bridge in the
//! node with the backend namespace's veth on it (three addresses, one per backend), and
//! `mesh-dataplane`'s loader run from a thread in the node's namespace, fed a synthetic desired
//! state through the same planner meshd uses (`Mesh::apply`). Every packet crosses the real
//! programs and maps. The iptables rows load kube-proxy's chains for the same services with
//! `iptables-restore` into the same node after the mesh is removed (netfilter's connection
//! tracking, once loaded, would stay on for what follows).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mesh_dataplane::{Datapath, DesiredMesh, Mesh, MeshOptions};

use super::{Config, log};
use crate::bpfstats::{self, RunTimeStats};
use crate::parse;
use crate::report::Figure;
use crate::scale::{
    self, BACKEND_MAC, BACKENDS, IPTABLES_TARGET, MESH_TARGET, Scale, ScalePath, ScaleRow,
};
use crate::sys::{self, Spawned, TempDir, http_get, in_netns, retry};

const BRIDGE: &str = "mbr4096";
const BRIDGE_ADDR: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 2);
const BRIDGE_MAC: &str = "02:42:aa:03:00:01";
const TASK_VETH: &str = "mvi1";

/// The scale scenario's namespaces and bpffs pins, removed on drop (also on an error).
struct ScaleLab {
    prefix: String,
    client: Ipv4Addr,
    node: Ipv4Addr,
}

impl ScaleLab {
    fn ns(&self, member: &str) -> String {
        format!("{}-sc-{member}", self.prefix)
    }

    fn ns_file(&self, member: &str) -> PathBuf {
        PathBuf::from("/var/run/netns").join(self.ns(member))
    }

    fn pin_dir(&self) -> PathBuf {
        PathBuf::from(format!("/sys/fs/bpf/{}-scale", self.prefix))
    }

    fn members() -> [&'static str; 3] {
        ["client", "node", "task"]
    }

    fn up(prefix: &str, net: [u8; 3]) -> Result<Self> {
        let [a, b, c] = net;
        let lab = Self {
            prefix: prefix.to_owned(),
            client: Ipv4Addr::new(a, b, c, 2),
            node: Ipv4Addr::new(a, b, c, 11),
        };
        let existing: Vec<String> = Self::members()
            .iter()
            .map(|m| lab.ns(m))
            .filter(|ns| Path::new("/var/run/netns").join(ns).exists())
            .collect();
        if !existing.is_empty() {
            // Not ours to remove: leave them and say how.
            let names = existing.join(", ");
            std::mem::forget(lab);
            bail!(
                "namespaces {names} exist already: another scale run? If not, remove them with \
                 `ip netns del NAME`"
            );
        }
        lab.wire()?;
        Ok(lab)
    }

    /// client eth0 <-> node eth0; node bridge with the task's veth.
    fn wire(&self) -> Result<()> {
        let (client, node, task) = (self.ns("client"), self.ns("node"), self.ns("task"));
        for ns in [&client, &node, &task] {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        let mac = BACKEND_MAC.map(|b| format!("{b:02x}")).join(":");
        let (c, n) = (self.client.to_string(), self.node.to_string());
        for args in [
            &[
                "-n", &node, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
                "netns", &client,
            ][..],
            &[
                "-n",
                &client,
                "addr",
                "add",
                &format!("{c}/24"),
                "dev",
                "eth0",
            ],
            &["-n", &client, "link", "set", "eth0", "up"],
            &[
                "-n",
                &node,
                "addr",
                "add",
                &format!("{n}/24"),
                "dev",
                "eth0",
            ],
            &["-n", &node, "link", "set", "eth0", "up"],
            &[
                "-n", &node, "link", "add", BRIDGE, "address", BRIDGE_MAC, "type", "bridge",
            ],
            &[
                "-n",
                &node,
                "addr",
                "add",
                &format!("{BRIDGE_ADDR}/16"),
                "dev",
                BRIDGE,
            ],
            &["-n", &node, "link", "set", BRIDGE, "up"],
            &[
                "-n", &node, "link", "add", TASK_VETH, "type", "veth", "peer", "name", "eth0",
                "netns", &task,
            ],
            &[
                "-n", &node, "link", "set", TASK_VETH, "master", BRIDGE, "up",
            ],
            &["-n", &task, "link", "set", "eth0", "address", &mac, "up"],
            &[
                "-n",
                &task,
                "route",
                "add",
                "default",
                "via",
                &BRIDGE_ADDR.to_string(),
                "dev",
                "eth0",
                "onlink",
            ],
        ] {
            ip(args)?;
        }
        for j in 0..BACKENDS {
            let a = format!("{}/16", scale::backend_addr(j));
            ip(&["-n", &task, "addr", "add", &a, "dev", "eth0"])?;
        }
        Ok(())
    }
}

impl Drop for ScaleLab {
    fn drop(&mut self) {
        if let Err(e) = Mesh::remove_pins(&self.pin_dir()) {
            log(&format!(
                "scale: removing {}: {e:#}",
                self.pin_dir().display()
            ));
        }
        for m in Self::members() {
            let ns = self.ns(m);
            // Processes still inside (servers) were ours and are stopped before this runs.
            let _ = Command::new("ip")
                .args(["netns", "del", &ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn ip(args: &[&str]) -> Result<()> {
    sys::run(Command::new("ip").args(args), Duration::from_secs(10)).map(drop)
}

/// Runs the scale scenario for every size in `cfg.scale_sizes`. Errs only when interrupted or
/// when the namespaces cannot be built; a size that fails is a failed row with the reason.
pub fn scale(cfg: &Config) -> Result<Scale> {
    let mut sizes = cfg.scale_sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let lab = ScaleLab::up(&cfg.prefix, cfg.net)?;
    let tmp = TempDir::new("mesh-bench-scale")?;
    let mut server = Command::new("ip");
    server
        .args(["netns", "exec", &lab.ns("task")])
        .arg(&cfg.server)
        .args([
            "--port",
            &MESH_TARGET.to_string(),
            "--port",
            &IPTABLES_TARGET.to_string(),
        ]);
    let mut server = Spawned::start(&mut server, &tmp.path().join("server.log"))?;
    sys::sleep(Duration::from_millis(300))?;
    server.check_running()?;

    let mut out = Scale {
        wiring: format!(
            "client {} -> node {} :PORT of the last service; {BACKENDS} backends per service, \
             addresses of one namespace behind the node's bridge",
            lab.client, lab.node
        ),
        rows: Vec::new(),
    };
    let node_file = lab.ns_file("node");
    let mesh = {
        let (node, pins) = (lab.node, lab.pin_dir());
        in_netns(&node_file, move || -> Result<Mesh> {
            Mesh::remove_pins(&pins)?;
            let mut m = Mesh::load(MeshOptions::new("eth0", node, Datapath::Tc, &pins))?;
            m.attach_network_bridge(BRIDGE, scale::INGRESS_VNI, BRIDGE_ADDR)?;
            Ok(m)
        })?
        .context("loading the mesh in the scale node")?
    };
    let mut mesh = Some(mesh);
    for &n in &sizes {
        sys::check_interrupt()?;
        let m = mesh.take().context("the mesh is gone")?;
        let (m, row) = mesh_size(cfg, &lab, m, n)?;
        mesh = Some(m);
        out.rows.push(row);
    }
    if let Some(m) = mesh {
        in_netns(&node_file, move || m.remove())?.context("removing the scale node's mesh")?;
    }
    lab_forwarding(&lab)?;
    for &n in &sizes {
        sys::check_interrupt()?;
        out.rows.push(iptables_size(cfg, &lab, n)?);
    }
    drop(server);
    Ok(out)
}

/// Programs `n` services into the mesh (from empty) and measures them.
fn mesh_size(cfg: &Config, lab: &ScaleLab, mut m: Mesh, n: usize) -> Result<(Mesh, ScaleRow)> {
    log(&format!("scale: mesh, {n} services"));
    let desired = scale::desired_mesh(n, lab.node);
    let (m, programmed) = in_netns(&lab.ns_file("node"), move || {
        let cleared = m.apply(&DesiredMesh::default());
        let started = Instant::now();
        let r = cleared.and_then(|_| m.apply(&desired));
        let ms = started.elapsed().as_secs_f64() * 1e3;
        (m, r.map(|_| ms))
    })?;
    let program_ms = Figure::from(programmed);
    if let Figure::Failed(why) = &program_ms {
        log(&format!("scale: mesh, {n} services: {why}"));
        let mut row = ScaleRow::failed(ScalePath::Mesh, n, why);
        row.program_ms = program_ms.clone();
        return Ok((m, row));
    }
    let mut row = measure(cfg, lab, ScalePath::Mesh, n)?;
    row.program_ms = program_ms;
    if matches!(row.conn_per_s, Figure::Value(_)) {
        match bpf_cost(cfg, lab, scale::target_port(ScalePath::Mesh, n)) {
            Ok(cost) => row.bpf = cost,
            Err(e) => {
                sys::check_interrupt()?;
                log(&format!(
                    "scale: mesh, {n} services: no per-packet cost: {e:#}"
                ));
            }
        }
    }
    Ok((m, row))
}

/// Loads kube-proxy's layout for `n` services into the node (replacing its tables) and
/// measures them.
fn iptables_size(cfg: &Config, lab: &ScaleLab, n: usize) -> Result<ScaleRow> {
    log(&format!("scale: iptables, {n} services"));
    let rules = scale::kube_proxy_restore(n);
    let started = Instant::now();
    let loaded = restore(&lab.ns("node"), &rules);
    let ms = started.elapsed().as_secs_f64() * 1e3;
    sys::check_interrupt()?;
    if let Err(e) = loaded {
        return Ok(ScaleRow::failed(ScalePath::Iptables, n, &format!("{e:#}")));
    }
    let mut row = measure(cfg, lab, ScalePath::Iptables, n)?;
    row.program_ms = Figure::Value(ms);
    Ok(row)
}

fn restore(ns: &str, rules: &str) -> Result<()> {
    use std::io::Write as _;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "iptables-restore", "-w"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting iptables-restore")?;
    child
        .stdin
        .take()
        .context("iptables-restore's stdin")?
        .write_all(rules.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "iptables-restore ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Forwarding on in the node (iptables' DNAT forwards; the mesh does not use it).
fn lab_forwarding(lab: &ScaleLab) -> Result<()> {
    let node = lab.ns("node");
    sys::run(
        Command::new("ip").args([
            "netns",
            "exec",
            &node,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
            &format!("net.ipv4.conf.{BRIDGE}.forwarding=1"),
        ]),
        Duration::from_secs(10),
    )
    .map(drop)
}

/// conn/s and p50 to the last service's port, after one answer.
fn measure(cfg: &Config, lab: &ScaleLab, path: ScalePath, n: usize) -> Result<ScaleRow> {
    let port = scale::target_port(path, n);
    let addr = SocketAddr::from((lab.node, port));
    let check = retry(Duration::from_secs(10), || {
        in_netns(&lab.ns_file("client"), || {
            http_get(addr, Duration::from_secs(1))
        })?
    });
    sys::check_interrupt()?;
    if let Err(e) = check {
        let why = format!("no HTTP answer through {addr} within 10 s: {e:#}");
        log(&format!("scale: {} {n}: {why}", path.name()));
        return Ok(ScaleRow::failed(path, n, &why));
    }
    let url = format!("http://{addr}/");
    let conns = wrk(cfg, lab, &url, cfg.wrk_threads, cfg.wrk_connections, false);
    sys::check_interrupt()?;
    let lat = wrk(cfg, lab, &url, 1, 1, true);
    sys::check_interrupt()?;
    Ok(ScaleRow {
        path,
        services: n,
        program_ms: Figure::Failed("not measured".to_owned()),
        conn_per_s: Figure::from(conns.map(|w| w.requests_per_sec)),
        p50_us: Figure::from(lat.and_then(|w| w.p50_us.context("wrk printed no 50%"))),
        bpf: Vec::new(),
    })
}

/// What the node's programs cost per run during a conn/s run with the kernel's run-time
/// statistics on (only the programs attached in the node, not other labs' instances).
fn bpf_cost(cfg: &Config, lab: &ScaleLab, port: u16) -> Result<Vec<bpfstats::ProgCost>> {
    let mut links = String::new();
    let dir = lab.pin_dir().join("links");
    for pin in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let o = Command::new("bpftool")
            .args(["-j", "link", "show", "pinned"])
            .arg(pin?.path())
            .output()
            .context("bpftool link show")?;
        links.push_str(&String::from_utf8_lossy(&o.stdout));
    }
    let ids = scale::attached_prog_ids(&links)?;
    if ids.is_empty() {
        bail!(
            "no program found behind the links pinned in {}",
            dir.display()
        );
    }
    let ours = |v: Vec<bpfstats::ProgStats>| -> Vec<bpfstats::ProgStats> {
        v.into_iter().filter(|p| ids.contains(&p.id)).collect()
    };
    let stats = RunTimeStats::enable()?;
    let before = ours(bpfstats::snapshot()?);
    let url = format!("http://{}:{port}/", lab.node);
    let run = wrk(cfg, lab, &url, cfg.wrk_threads, cfg.wrk_connections, false);
    let after = ours(bpfstats::snapshot()?);
    drop(stats);
    sys::check_interrupt()?;
    run?;
    Ok(bpfstats::cost(&before, &after))
}

fn wrk(
    cfg: &Config,
    lab: &ScaleLab,
    url: &str,
    threads: u32,
    connections: u32,
    latency: bool,
) -> Result<parse::Wrk> {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lab.ns("client"), "wrk"]);
    super::measure::wrk_run(cfg, c, url, threads, connections, latency)
}
