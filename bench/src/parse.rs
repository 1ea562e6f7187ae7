//! Parsers of the tools' outputs (pure): iperf3 `--json`, wrk `--latency`, dnsperf.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;

/// What an iperf3 run measured at the receiver.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Iperf {
    /// Received bits per second.
    pub bits_per_second: f64,
    /// UDP only: lost datagrams in percent (iperf3's own count).
    pub lost_percent: Option<f64>,
    /// UDP only: datagrams received per second (received bytes / datagram size / seconds).
    pub received_pps: Option<f64>,
}

/// Parses `iperf3 -c ... --json`: the receiver's sums (`end.sum_received`), or iperf3's own
/// error.
pub fn iperf3(json: &str) -> Result<Iperf> {
    let v: Value = serde_json::from_str(json).context("iperf3 did not print JSON")?;
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        bail!("iperf3: {e}");
    }
    let r = &v["end"]["sum_received"];
    let bits_per_second = r["bits_per_second"]
        .as_f64()
        .context("iperf3 JSON has no end.sum_received.bits_per_second")?;
    let udp = v["start"]["test_start"]["protocol"].as_str() == Some("UDP");
    if !udp {
        return Ok(Iperf {
            bits_per_second,
            lost_percent: None,
            received_pps: None,
        });
    }
    let lost_percent = r["lost_percent"]
        .as_f64()
        .context("iperf3 UDP JSON has no lost_percent")?;
    let bytes = r["bytes"].as_f64().context("no end.sum_received.bytes")?;
    let seconds = r["seconds"]
        .as_f64()
        .context("no end.sum_received.seconds")?;
    let blksize = v["start"]["test_start"]["blksize"]
        .as_f64()
        .context("no start.test_start.blksize")?;
    if seconds <= 0.0 || blksize <= 0.0 {
        bail!("iperf3 reported {seconds} s with {blksize} B datagrams");
    }
    Ok(Iperf {
        bits_per_second,
        lost_percent: Some(lost_percent),
        received_pps: Some(bytes / blksize / seconds),
    })
}

/// What a wrk run measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Wrk {
    pub requests: u64,
    pub requests_per_sec: f64,
    /// From `--latency`'s distribution, in microseconds.
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// connect + read + write + timeout errors.
    pub socket_errors: u64,
    pub non_2xx: u64,
}

/// Parses wrk's text report.
pub fn wrk(text: &str) -> Result<Wrk> {
    let mut out = Wrk {
        requests: 0,
        requests_per_sec: f64::NAN,
        p50_us: None,
        p99_us: None,
        socket_errors: 0,
        non_2xx: 0,
    };
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            out.requests_per_sec = v.trim().parse().context("wrk Requests/sec")?;
        } else if let Some(v) = line.strip_prefix("50%") {
            out.p50_us = Some(duration_us(v.trim())?);
        } else if let Some(v) = line.strip_prefix("99%") {
            out.p99_us = Some(duration_us(v.trim())?);
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // connect 0, read 12, write 0, timeout 0
            for part in v.split(',') {
                let n = part.split_whitespace().nth(1).unwrap_or("0");
                out.socket_errors += n.parse::<u64>().context("wrk socket errors")?;
            }
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            out.non_2xx = v.trim().parse().context("wrk Non-2xx")?;
        } else if let Some((n, rest)) = line.split_once(" requests in ")
            && rest.contains("read")
        {
            out.requests = n.trim().parse().context("wrk request count")?;
        }
    }
    if out.requests_per_sec.is_nan() {
        bail!("wrk printed no Requests/sec: {}", text.trim());
    }
    Ok(out)
}

/// wrk's durations: `409.00us`, `2.00ms`, `1.02s`, `1.50m`.
pub fn duration_us(s: &str) -> Result<f64> {
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e6)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60e6)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600e6)
    } else {
        bail!("not a wrk duration: {s:?}");
    };
    let n: f64 = num
        .trim()
        .parse()
        .with_context(|| format!("not a wrk duration: {s:?}"))?;
    Ok(n * scale)
}

/// What a dnsperf run measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Dnsperf {
    pub queries_per_second: f64,
    pub sent: u64,
    pub completed: u64,
    pub lost_percent: f64,
    /// Answers with NOERROR.
    pub noerror: u64,
}

/// Parses dnsperf's statistics.
pub fn dnsperf(text: &str) -> Result<Dnsperf> {
    let mut qps = None;
    let (mut sent, mut completed, mut noerror) = (0, 0, 0);
    let mut lost_percent = 0.0;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Queries per second:") {
            qps = Some(v.trim().parse::<f64>().context("dnsperf QPS")?);
        } else if let Some(v) = line.strip_prefix("Queries sent:") {
            sent = first_number(v)?;
        } else if let Some(v) = line.strip_prefix("Queries completed:") {
            completed = first_number(v)?;
        } else if let Some(v) = line.strip_prefix("Queries lost:") {
            // `0 (0.00%)`
            lost_percent = v
                .split_once('(')
                .and_then(|(_, p)| p.split_once('%'))
                .map_or(Ok(0.0), |(p, _)| p.trim().parse::<f64>())
                .context("dnsperf lost percent")?;
        } else if let Some(v) = line.strip_prefix("Response codes:") {
            // `NOERROR 124022 (100.00%), NXDOMAIN 3 (0.00%)`
            for part in v.split(',') {
                let mut w = part.split_whitespace();
                if w.next() == Some("NOERROR") {
                    noerror = w.next().unwrap_or("0").parse().context("dnsperf NOERROR")?;
                }
            }
        }
    }
    let Some(queries_per_second) = qps else {
        bail!("dnsperf printed no statistics: {}", text.trim());
    };
    Ok(Dnsperf {
        queries_per_second,
        sent,
        completed,
        lost_percent,
        noerror,
    })
}

fn first_number(s: &str) -> Result<u64> {
    s.split_whitespace()
        .next()
        .unwrap_or("")
        .parse()
        .with_context(|| format!("expected a number in {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = include_str!("../fixtures/iperf3-tcp.json");
    const UDP: &str = include_str!("../fixtures/iperf3-udp.json");
    const UDP64: &str = include_str!("../fixtures/iperf3-udp64.json");
    const REFUSED: &str = include_str!("../fixtures/iperf3-refused.json");
    const WRK: &str = include_str!("../fixtures/wrk-latency.txt");
    const DNSPERF: &str = include_str!("../fixtures/dnsperf.txt");

    #[test]
    fn iperf3_tcp_takes_the_receivers_rate() {
        let r = iperf3(TCP).unwrap();
        assert!((r.bits_per_second - 7_464_314_269.540_19).abs() < 1.0);
        assert_eq!(r.lost_percent, None);
        assert_eq!(r.received_pps, None);
    }

    #[test]
    fn iperf3_udp_has_loss_and_received_packets() {
        let r = iperf3(UDP).unwrap();
        assert!((r.bits_per_second - 464_385_996.4).abs() < 1.0);
        assert!((r.lost_percent.unwrap() - 9.783_631).abs() < 1e-5);
        let small = iperf3(UDP64).unwrap();
        // 9_393_856 bytes of 64-byte datagrams in 2.00173 s.
        let pps = small.received_pps.unwrap();
        assert!((pps - 9_393_856.0 / 64.0 / 2.001_73).abs() < 0.01, "{pps}");
    }

    #[test]
    fn iperf3_errors_are_errors() {
        let e = iperf3(REFUSED).unwrap_err().to_string();
        assert!(e.contains("Connection refused"), "{e}");
        assert!(iperf3("iperf3: error - unable to connect").is_err());
    }

    #[test]
    fn wrk_report_with_latency() {
        let w = wrk(WRK).unwrap();
        assert_eq!(w.requests, 1770);
        assert!((w.requests_per_sec - 884.40).abs() < 1e-9);
        assert!((w.p50_us.unwrap() - 409.0).abs() < 1e-6);
        assert!((w.p99_us.unwrap() - 4060.0).abs() < 1e-6);
        assert_eq!((w.socket_errors, w.non_2xx), (0, 0));
    }

    #[test]
    fn wrk_errors_and_missing_latency() {
        let text = "Running 3s test @ http://198.18.200.11:8080/\n  2 threads and 16 connections\n  \
                    Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     1.10ms  \
                    0.50ms  12.00ms   80.00%\n  30500 requests in 3.00s, 3.20MB read\n  Socket \
                    errors: connect 2, read 30, write 0, timeout 1\n  Non-2xx or 3xx responses: \
                    4\nRequests/sec:  10166.67\nTransfer/sec:      1.07MB\n";
        let w = wrk(text).unwrap();
        assert_eq!(w.requests, 30500);
        assert_eq!(w.socket_errors, 33);
        assert_eq!(w.non_2xx, 4);
        assert_eq!(w.p50_us, None);
        assert!(wrk("unable to connect to 198.18.200.11:8999 Connection refused").is_err());
    }

    #[test]
    fn wrk_durations() {
        for (text, us) in [
            ("38.00us", 38.0),
            ("2.50ms", 2500.0),
            ("1.02s", 1_020_000.0),
            ("1.50m", 90_000_000.0),
        ] {
            assert!((duration_us(text).unwrap() - us).abs() < 1e-6, "{text}");
        }
        assert!(duration_us("12").is_err());
        assert!(duration_us("fast").is_err());
    }

    #[test]
    fn dnsperf_statistics() {
        let d = dnsperf(DNSPERF).unwrap();
        assert!((d.queries_per_second - 62_003.435_581).abs() < 1e-6);
        assert_eq!(
            (d.sent, d.completed, d.noerror),
            (124_022, 124_022, 124_022)
        );
        assert!(d.lost_percent.abs() < 1e-12);
        let lossy = "  Queries sent:         1000\n  Queries completed:    900 (90.00%)\n  \
                     Queries lost:         100 (10.00%)\n  Response codes:       NOERROR 890 \
                     (98.89%), SERVFAIL 10 (1.11%)\n  Queries per second:   450.5\n";
        let d = dnsperf(lossy).unwrap();
        assert!((d.lost_percent - 10.0).abs() < 1e-12);
        assert_eq!(d.noerror, 890);
        assert!(dnsperf("[Fatal] no such file").is_err());
    }
}
