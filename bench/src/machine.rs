//! Where and when: the machine as /proc describes it, and UTC timestamps (no clock crate).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// The machine the figures were measured on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    pub mem_total_mib: u64,
}

impl Machine {
    /// Reads /proc/cpuinfo, /proc/sys/kernel/osrelease and /proc/meminfo.
    pub fn from_proc() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let (cpu_model, cores) = cpuinfo(&read("/proc/cpuinfo"));
        Self {
            cpu_model,
            cores,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            mem_total_mib: mem_total_kib(&read("/proc/meminfo")) / 1024,
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "{}, {} cores, kernel {}, {} MiB",
            self.cpu_model, self.cores, self.kernel, self.mem_total_mib
        )
    }
}

/// The first `model name` and the number of `processor` entries.
pub fn cpuinfo(text: &str) -> (String, usize) {
    let mut model = None;
    let mut cores = 0;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "processor" => cores += 1,
            "model name" if model.is_none() => model = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    (model.unwrap_or_else(|| "unknown CPU".to_owned()), cores)
}

/// `MemTotal:  16384000 kB` in KiB.
pub fn mem_total_kib(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `VmRSS:  12345 kB` from /proc/PID/status, in KiB.
pub fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Seconds since the epoch as (`2026-11-23T12:44:05Z`, `2026-11-23T124405Z` for file names).
pub fn utc(secs: u64) -> (String, String) {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (hour, min, sec) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let (year, month, day) = civil_from_days(days.cast_signed());
    let date = format!("{year:04}-{month:02}-{day:02}");
    (
        format!("{date}T{hour:02}:{min:02}:{sec:02}Z"),
        format!("{date}T{hour:02}{min:02}{sec:02}Z"),
    )
}

pub fn now_utc() -> (String, String) {
    utc(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()))
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_and_cores() {
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) \
                    CPU @ 2.20GHz\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) CPU @ \
                    2.20GHz\n";
        assert_eq!(
            cpuinfo(text),
            ("Intel(R) Xeon(R) CPU @ 2.20GHz".to_owned(), 2)
        );
        assert_eq!(cpuinfo(""), ("unknown CPU".to_owned(), 0));
    }

    #[test]
    fn memory_figures() {
        assert_eq!(
            mem_total_kib("MemTotal:        8147272 kB\nMemFree: 1 kB\n"),
            8_147_272
        );
        let status = "Name:\tmeshd\nVmPeak:\t 1000 kB\nVmRSS:\t   23456 kB\nThreads:\t9\n";
        assert_eq!(vm_rss_kib(status), Some(23_456));
        assert_eq!(vm_rss_kib("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn utc_timestamps() {
        assert_eq!(utc(0).0, "1970-01-01T00:00:00Z");
        // 2024-02-29 (a leap day) 13:14:15.
        assert_eq!(utc(1_709_212_455).0, "2024-02-29T13:14:15Z");
        assert_eq!(utc(1_709_212_455).1, "2024-02-29T131415Z");
        assert_eq!(utc(1_798_761_599).0, "2026-12-31T23:59:59Z");
    }
}
