//! One scenario's figures: TCP, UDP, small packets, new connections and latency, each from
//! the same client through the scenario's endpoint.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};

use super::{Config, Endpoint, UDP_PAYLOAD, log};
use crate::bpfstats;
use crate::lab::Lab;
use crate::parse;
use crate::report::{Figure, Metric, Results, Scenario, ScenarioResult, median};
use crate::sys::{self, http_get, in_netns, retry, sample_rss};

/// Every figure of one scenario. Errs only when interrupted.
pub(super) fn measure(
    cfg: &Config,
    lab: &Lab,
    s: Scenario,
    ep: &Endpoint,
    pids: &BTreeMap<usize, i32>,
    load: &mut BTreeMap<usize, u64>,
    results: &mut Results,
) -> Result<ScenarioResult> {
    let name = s.name();
    let addr = SocketAddr::from((ep.host, ep.http));
    let client = lab.ns_file("client");
    let check = retry(Duration::from_secs(20), || {
        in_netns(&client, || http_get(addr, Duration::from_secs(1)))?
    });
    sys::check_interrupt()?;
    if let Err(e) = check {
        log(&format!("{name}: no answer through {addr}: {e:#}"));
        return Ok(ScenarioResult::failed(
            s,
            &format!("no HTTP answer through {addr} within 20 s: {e:#}"),
        ));
    }
    let (low, high) = s.client_ports();
    sys::output(
        lab.command("client", "sysctl").args([
            "-q",
            "-w",
            &format!("net.ipv4.ip_local_port_range={low} {high}"),
        ]),
        Duration::from_secs(10),
    )
    .with_context(|| format!("{name}: the client's source ports"))?;
    let mut r = ScenarioResult::new(s);
    let host = ep.host.to_string();
    let put = |r: &mut ScenarioResult, m: Metric, f: Figure| record(name, r, m, f);

    for (m, extra) in [(Metric::Tcp1, &[][..]), (Metric::Tcp4, &["-P", "4"][..])] {
        let f = profiled(cfg, s, &mut r, m, |r| {
            repeated(cfg, &mut r.samples, m, || {
                iperf(cfg, lab, &host, ep.iperf, extra).map(|i| i.bits_per_second / 1e9)
            })
        })?;
        put(&mut r, m, f);
    }
    udp(cfg, lab, &host, ep, &mut r, put)?;

    let url = format!("http://{addr}/");
    // One run only: back-to-back runs of new connections exhaust n1's source ports for
    // HAProxy and iptables (TIME_WAIT, MASQUERADE), which would measure that instead.
    let conns = profiled(cfg, s, &mut r, Metric::ConnPerSec, |_| {
        let (conns, peak) = sample_rss(pids, || {
            wrk(cfg, lab, &url, cfg.wrk_threads, cfg.wrk_connections, false)
        });
        sys::check_interrupt()?;
        for (n, k) in peak {
            let e = load.entry(n).or_default();
            *e = (*e).max(k);
        }
        if let Ok(w) = &conns
            && (w.socket_errors > 0 || w.non_2xx > 0)
        {
            results.notes.push(format!(
                "{name}: the conn/s run saw {} socket errors and {} non-2xx answers in {} requests",
                w.socket_errors, w.non_2xx, w.requests
            ));
        }
        Ok(Figure::from(conns.map(|w| w.requests_per_sec)))
    })?;
    put(&mut r, Metric::ConnPerSec, conns);
    latency(cfg, lab, &url, &mut r, put)?;
    Ok(r)
}

/// Logs a figure as it is measured and keeps it.
fn record(name: &str, r: &mut ScenarioResult, m: Metric, f: Figure) {
    log(&format!("{name}: {} {}", m.header(), shown(m, &f)));
    r.figures.insert(m, f);
}

/// Figure `f` of metric `m` as the log prints it.
pub(super) fn shown(m: Metric, f: &Figure) -> String {
    match f {
        Figure::Value(v) => m.format(*v),
        Figure::NotApplicable(_) => "N/A".to_owned(),
        Figure::Failed(e) => format!("failed: {e}"),
    }
}

/// The UDP figures: a fixed rate of full datagrams, then 64-byte ones as fast as iperf3 goes
/// (N/A where UDP cannot go). Errs only when interrupted.
fn udp(
    cfg: &Config,
    lab: &Lab,
    host: &str,
    ep: &Endpoint,
    r: &mut ScenarioResult,
    put: impl Fn(&mut ScenarioResult, Metric, Figure),
) -> Result<()> {
    if let Some(why) = ep.no_udp {
        for m in [Metric::UdpRate, Metric::UdpLoss, Metric::Pps64] {
            put(r, m, Figure::NotApplicable(why.to_owned()));
        }
    } else {
        let udp = iperf(
            cfg,
            lab,
            host,
            ep.iperf,
            &["-u", "-b", &cfg.udp_rate, "-l", UDP_PAYLOAD],
        );
        sys::check_interrupt()?;
        match udp {
            Ok(u) => {
                put(r, Metric::UdpRate, Figure::Value(u.bits_per_second / 1e6));
                put(
                    r,
                    Metric::UdpLoss,
                    u.lost_percent.map_or_else(
                        || Figure::Failed("no loss figure".to_owned()),
                        Figure::Value,
                    ),
                );
            }
            Err(e) => {
                put(r, Metric::UdpRate, Figure::Failed(format!("{e:#}")));
                put(r, Metric::UdpLoss, Figure::Failed(format!("{e:#}")));
            }
        }
        let small = iperf(cfg, lab, host, ep.iperf, &["-u", "-b", "0", "-l", "64"]);
        sys::check_interrupt()?;
        put(
            r,
            Metric::Pps64,
            small
                .and_then(|u| u.received_pps.context("no packet count"))
                .map(|p| p / 1e3)
                .into(),
        );
    }
    Ok(())
}

/// p50 and p99 of one connection at a time. Errs only when interrupted.
fn latency(
    cfg: &Config,
    lab: &Lab,
    url: &str,
    r: &mut ScenarioResult,
    put: impl Fn(&mut ScenarioResult, Metric, Figure),
) -> Result<()> {
    let lat = wrk(cfg, lab, url, 1, 1, true);
    sys::check_interrupt()?;
    match lat {
        Ok(w) => {
            let f = |v: Option<f64>| {
                v.map_or_else(
                    || Figure::Failed("no latency distribution".to_owned()),
                    Figure::Value,
                )
            };
            put(r, Metric::LatP50, f(w.p50_us));
            put(r, Metric::LatP99, f(w.p99_us));
        }
        Err(e) => {
            put(r, Metric::LatP50, Figure::Failed(format!("{e:#}")));
            put(r, Metric::LatP99, Figure::Failed(format!("{e:#}")));
        }
    }
    Ok(())
}

/// `figure(r)`, and with `--profile` on a mesh scenario the eBPF programs' cost during it (in
/// `r.bpf`; a failed snapshot is a note there, never a failed figure).
fn profiled(
    cfg: &Config,
    s: Scenario,
    r: &mut ScenarioResult,
    m: Metric,
    figure: impl FnOnce(&mut ScenarioResult) -> Result<Figure>,
) -> Result<Figure> {
    let on = cfg.profile
        && matches!(
            s,
            Scenario::MeshTc | Scenario::MeshLocal | Scenario::MeshXdp
        );
    let before = if on { bpfstats::snapshot().ok() } else { None };
    let f = figure(r)?;
    if let Some(before) = before
        && let Ok(after) = bpfstats::snapshot()
    {
        r.bpf.insert(m, bpfstats::cost(&before, &after));
    }
    Ok(f)
}

/// `one` run `cfg.repeat` times: the median of the runs that gave a number (every run kept in
/// `samples[m]`), or the first failure when none did. Errs only when interrupted.
pub(super) fn repeated(
    cfg: &Config,
    samples: &mut BTreeMap<Metric, Vec<f64>>,
    m: Metric,
    mut one: impl FnMut() -> Result<f64>,
) -> Result<Figure> {
    let mut runs = Vec::new();
    let mut failure = None;
    for _ in 0..cfg.repeat.max(1) {
        let f = Figure::from(one());
        sys::check_interrupt()?;
        match f {
            Figure::Value(v) => runs.push(v),
            other => {
                failure.get_or_insert(other);
            }
        }
    }
    let figure = median(&runs).map_or_else(
        || failure.unwrap_or_else(|| Figure::Failed("no run".to_owned())),
        Figure::Value,
    );
    samples.insert(m, runs);
    Ok(figure)
}

/// `iperf3 -c HOST -p PORT -t N -O 1 --json EXTRA` from the client; a busy server is asked
/// again.
fn iperf(cfg: &Config, lab: &Lab, host: &str, port: u16, extra: &[&str]) -> Result<parse::Iperf> {
    iperf_run(cfg, || lab.command("client", "iperf3"), host, port, extra)
}

/// `iperf3 -c HOST -p PORT -t N -O 1 --json EXTRA` as command `iperf3()` makes it (iperf3 in
/// the client's namespace); a busy server is asked again.
pub(super) fn iperf_run(
    cfg: &Config,
    iperf3: impl Fn() -> std::process::Command,
    host: &str,
    port: u16,
    extra: &[&str],
) -> Result<parse::Iperf> {
    let secs = cfg.iperf_seconds.to_string();
    let mut last = None;
    for _ in 0..3 {
        let o = sys::output(
            iperf3()
                .args(["-c", host, "-p", &port.to_string(), "-t", &secs])
                .args(["-O", "1", "--json", "--connect-timeout", "3000"])
                .args(extra),
            Duration::from_secs(cfg.iperf_seconds + 30),
        )?;
        match parse::iperf3(&String::from_utf8_lossy(&o.stdout)) {
            Ok(r) => return Ok(r),
            Err(e) if e.to_string().contains("busy") => {
                last = Some(e);
                sys::sleep(Duration::from_secs(1))?;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("iperf3 gave no result")))
}

/// `wrk` from the client, every request on a new connection (`Connection: close`).
fn wrk(
    cfg: &Config,
    lab: &Lab,
    url: &str,
    threads: u32,
    connections: u32,
    latency: bool,
) -> Result<parse::Wrk> {
    wrk_run(
        cfg,
        lab.command("client", "wrk"),
        url,
        threads,
        connections,
        latency,
    )
}

/// `wrk` as command `c` (wrk in the client's namespace), every request on a new connection.
pub(super) fn wrk_run(
    cfg: &Config,
    mut c: std::process::Command,
    url: &str,
    threads: u32,
    connections: u32,
    latency: bool,
) -> Result<parse::Wrk> {
    c.args([
        "-t",
        &threads.to_string(),
        "-c",
        &connections.to_string(),
        "-d",
        &format!("{}s", cfg.wrk_seconds),
        "-H",
        "Connection: close",
    ]);
    if latency {
        c.arg("--latency");
    }
    c.arg(url);
    let o = sys::output(&mut c, Duration::from_secs(cfg.wrk_seconds + 30))?;
    parse::wrk(&String::from_utf8_lossy(&o.stdout)).with_context(|| {
        format!(
            "wrk {url} ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )
    })
}
