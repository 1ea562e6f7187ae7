//! meshd's DNS beside unbound (dnsperf from inside the task).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{Config, DNS_NAME, UNBOUND_PORT, log};
use crate::config;
use crate::lab::{Lab, Task};
use crate::parse;
use crate::report::Dns;
use crate::sys::{self, Spawned, retry, sample_rss};

/// dnsperf inside the task against meshd (its nameserver: n2's ingress address, port 53) and
/// against unbound on the same address (port 5353, in n2's namespace), for the same A record.
pub(super) fn dns(
    cfg: &Config,
    lab: &Lab,
    task: &Task,
    tmp: &Path,
    pids: &BTreeMap<usize, i32>,
    load: &mut BTreeMap<usize, u64>,
) -> Result<Dns> {
    let resolv = std::fs::read_to_string(format!("/proc/{}/root/etc/resolv.conf", task.pid))
        .context("reading the task's resolv.conf")?;
    let server: Ipv4Addr = resolv
        .lines()
        .find_map(|l| l.strip_prefix("nameserver"))
        .and_then(|a| a.trim().parse().ok())
        .context("no nameserver in the task's resolv.conf")?;
    let vips = lab.meshctl(&[
        "service",
        "inspect",
        "--format",
        "{{json .Endpoint.VirtualIPs}}",
        DNS_NAME,
    ])?;
    let vip: Ipv4Addr = serde_json::from_str::<serde_json::Value>(vips.trim())?[0]["Addr"]
        .as_str()
        .and_then(|a| a.split('/').next()?.parse().ok())
        .with_context(|| format!("no VIP in {vips}"))?;
    let queries = tmp.join("queries.txt");
    std::fs::write(&queries, format!("{DNS_NAME} A\n"))?;
    let how = format!(
        "dnsperf -c 4 -T 1 -l {} inside the task; meshd on {server}:53 (n2), unbound (local-data, {} threads) on {server}:{UNBOUND_PORT} in n2",
        cfg.dns_seconds,
        unbound_threads()
    );

    let ask = |port: u16| -> Result<()> {
        let out = sys::run(
            task.nsenter("dig").args([
                "+short",
                "+time=1",
                "+tries=1",
                "-p",
                &port.to_string(),
                &format!("@{server}"),
                DNS_NAME,
                "A",
            ]),
            Duration::from_secs(5),
        )?;
        if out.trim() == vip.to_string() {
            Ok(())
        } else {
            bail!(
                "{server}:{port} answered {:?} for {DNS_NAME}, not {vip}",
                out.trim()
            )
        }
    };
    let perf = |port: u16| -> Result<parse::Dnsperf> {
        let o = sys::output(
            task.nsenter("dnsperf")
                .args(["-s", &server.to_string(), "-p", &port.to_string(), "-d"])
                .arg(&queries)
                .args(["-l", &cfg.dns_seconds.to_string(), "-c", "4", "-T", "1"]),
            Duration::from_secs(cfg.dns_seconds + 30),
        )?;
        let d = parse::dnsperf(&String::from_utf8_lossy(&o.stdout))
            .with_context(|| format!("dnsperf: {}", String::from_utf8_lossy(&o.stderr).trim()))?;
        if d.noerror == 0 {
            bail!("dnsperf got no NOERROR answers");
        }
        Ok(d)
    };

    log(&format!("dns: meshd on {server}:53, {DNS_NAME} -> {vip}"));
    let meshd = retry(Duration::from_secs(15), || ask(53)).and_then(|()| {
        let (d, peak) = sample_rss(pids, || perf(53));
        for (n, k) in peak {
            let e = load.entry(n).or_default();
            *e = (*e).max(k);
        }
        d
    });
    sys::check_interrupt()?;
    log(&format!("dns: meshd {meshd:?}"));

    let dir = tmp.join("unbound");
    std::fs::create_dir_all(&dir)?;
    let conf = dir.join("unbound.conf");
    std::fs::write(
        &conf,
        config::unbound(&dir, server, UNBOUND_PORT, unbound_threads(), DNS_NAME, vip),
    )?;
    let unbound = (|| {
        let mut u = Spawned::start(
            lab.command("n2", "unbound").arg("-d").arg("-c").arg(&conf),
            &dir.join("unbound.log"),
        )?;
        retry(Duration::from_secs(10), || {
            u.check_running()?;
            ask(UNBOUND_PORT)
        })?;
        perf(UNBOUND_PORT)
    })();
    sys::check_interrupt()?;
    log(&format!("dns: unbound {unbound:?}"));
    Ok(Dns {
        name: DNS_NAME.to_owned(),
        meshd_lost_percent: meshd.as_ref().ok().map(|d| d.lost_percent),
        unbound_lost_percent: unbound.as_ref().ok().map(|d| d.lost_percent),
        meshd_qps: meshd.map(|d| d.queries_per_second).into(),
        unbound_qps: unbound.map(|d| d.queries_per_second).into(),
        how,
    })
}

/// As many threads as meshd's DNS receivers (the cores, at most 4).
fn unbound_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}
