//! Durations (`1m30s`), CPUs (`0.5`) and memory sizes (`512M`), as Docker reads them.

use super::SpecError;

const NANOS_PER_MS: u128 = 1_000_000;

/// A Go-style duration (`10s`, `1m30s`, `500ms`, `1.5h`, `0`) in whole milliseconds.
pub fn parse_duration(input: &str) -> Result<u64, SpecError> {
    let bad = |why: &str| {
        SpecError::new(format!(
            "invalid duration {input:?}: {why}; expected a number with a unit (h, m, s, ms, us, ns) \
             such as 10s, 1m30s, 500ms or 0"
        ))
    };
    let s = input.trim();
    if s == "0" {
        return Ok(0);
    }
    if s.starts_with('-') {
        return Err(bad("it cannot be negative"));
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return Err(bad("it is empty"));
    }
    let mut nanos: u128 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && frac.is_empty()) || frac.contains('.') {
            return Err(bad("a number is missing or malformed"));
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(bad("a unit is missing")),
            _ => return Err(bad(&format!("unknown unit {unit:?}"))),
        };
        let too_long = || bad("it is too long");
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_long())?
        };
        let mut part = whole.checked_mul(scale).ok_or_else(too_long)?;
        if !frac.is_empty() {
            let frac = &frac[..frac.len().min(18)];
            let value: u128 = frac.parse().map_err(|_| too_long())?;
            part += value * scale / 10u128.pow(frac.len() as u32);
        }
        nanos = nanos.checked_add(part).ok_or_else(too_long)?;
        rest = tail;
    }
    if !nanos.is_multiple_of(NANOS_PER_MS) {
        return Err(bad("it must be a whole number of milliseconds"));
    }
    u64::try_from(nanos / NANOS_PER_MS).map_err(|_| bad("it is too long"))
}

/// Go's display of a duration: `0s`, `500ms`, `1.5s`, `1m30s`, `1h0m0s`.
pub fn format_duration(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let (hours, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (secs, millis) = (rest / 1_000, rest % 1_000);
    let mut out = String::new();
    if hours > 0 {
        out = format!("{hours}h");
    }
    if hours > 0 || minutes > 0 {
        out = format!("{out}{minutes}m");
    }
    out.push_str(&secs.to_string());
    if millis > 0 {
        let frac = format!("{millis:03}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('s');
    out
}

/// CPUs as a decimal (`0.5`, `2`) in nano CPUs, as `--reserve-cpu`/`--limit-cpu` take them.
pub fn parse_cpus(input: &str) -> Result<i64, SpecError> {
    let bad = |why: &str| {
        SpecError::new(format!(
            "invalid CPU value {input:?}: {why}; expected a non-negative decimal number of CPUs \
             such as 0.5 or 2"
        ))
    };
    let s = input.trim();
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if s.starts_with('-') {
        return Err(bad("it cannot be negative"));
    }
    if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) {
        return Err(bad("it is not a number"));
    }
    if frac.len() > 9 {
        return Err(bad("it is more precise than 0.000000001"));
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad("it is too large"))?
    };
    let frac_nanos: i64 = if frac.is_empty() {
        0
    } else {
        frac.parse::<i64>().map_err(|_| bad("it is not a number"))?
            * 10i64.pow(9 - frac.len() as u32)
    };
    whole
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(frac_nanos))
        .ok_or_else(|| bad("it is too large"))
}

/// Nano CPUs as the shortest decimal: `0.5`, `2`.
pub fn format_cpus(nano: i64) -> String {
    let (whole, frac) = (nano / 1_000_000_000, (nano % 1_000_000_000).abs());
    if frac == 0 {
        whole.to_string()
    } else {
        let sign = if nano < 0 && whole == 0 { "-" } else { "" };
        let frac = format!("{frac:09}");
        format!("{sign}{whole}.{}", frac.trim_end_matches('0'))
    }
}

const MEMORY_UNITS: [(char, i64); 5] = [
    ('P', 1 << 50),
    ('T', 1 << 40),
    ('G', 1 << 30),
    ('M', 1 << 20),
    ('K', 1 << 10),
];

/// A memory size as Docker reads it (`512M`, `1g`, `1024k`, `1.5GiB`, plain bytes), in bytes.
pub fn parse_memory(input: &str) -> Result<i64, SpecError> {
    let bad = |why: &str| {
        SpecError::new(format!(
            "invalid memory size {input:?}: {why}; expected a number of bytes with an optional \
             unit b, k, m, g, t or p (such as 512M, 1G or 1024k)"
        ))
    };
    let s = input.trim();
    if s.starts_with('-') {
        return Err(bad("it cannot be negative"));
    }
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let unit = unit.trim_start().to_ascii_lowercase();
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(frac) || number.ends_with('.') {
        return Err(bad("it does not start with a number"));
    }
    // Docker's pattern: an optional unit letter, then optional `i` and `b` (`m`, `mb`, `mib`).
    let letter = unit.strip_suffix('b').unwrap_or(&unit);
    let letter = letter.strip_suffix('i').unwrap_or(letter);
    let scale: i64 = match letter {
        "" => 1,
        l => MEMORY_UNITS
            .iter()
            .find(|(u, _)| l.len() == 1 && l.starts_with(u.to_ascii_lowercase()))
            .map(|(_, n)| *n)
            .ok_or_else(|| bad(&format!("unknown unit {unit:?}")))?,
    };
    let too_large = || bad("it is too large");
    let whole: i64 = whole.parse().map_err(|_| too_large())?;
    let mut bytes = whole.checked_mul(scale).ok_or_else(too_large)?;
    if !frac.is_empty() {
        let frac = &frac[..frac.len().min(15)];
        let value: i128 = frac.parse().map_err(|_| too_large())?;
        let part = value * i128::from(scale) / 10i128.pow(frac.len() as u32);
        bytes = bytes
            .checked_add(i64::try_from(part).map_err(|_| too_large())?)
            .ok_or_else(too_large)?;
    }
    Ok(bytes)
}

/// Bytes in the largest unit that divides them exactly: `512M`, `1G`, `1536`.
pub fn format_memory(bytes: i64) -> String {
    for (unit, size) in MEMORY_UNITS {
        if bytes != 0 && bytes % size == 0 {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::TestRng;

    #[test]
    fn durations_read_as_go_writes_them() {
        let rows: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("10s", Some(10_000)),
            ("1m30s", Some(90_000)),
            ("500ms", Some(500)),
            ("1.5h", Some(5_400_000)),
            ("1h0m0s", Some(3_600_000)),
            ("2000us", Some(2)),
            (" 5s ", Some(5_000)),
            ("", None),
            ("10", None),    // no unit
            ("-1s", None),   // negative
            ("1d", None),    // unknown unit
            ("500us", None), // below a millisecond
            ("1..5s", None), // malformed number
            ("s", None),     // no number
            ("99999999999999999999999h", None),
        ];
        for (input, want) in rows {
            assert_eq!(
                parse_duration(input).ok(),
                *want,
                "parse_duration({input:?})"
            );
        }
        let err = parse_duration("10").unwrap_err().to_string();
        assert!(err.contains("\"10\"") && err.contains("1m30s"), "{err}");
    }

    #[test]
    fn durations_display_as_go() {
        for (ms, want) in [
            (0, "0s"),
            (500, "500ms"),
            (1_500, "1.5s"),
            (10_000, "10s"),
            (90_000, "1m30s"),
            (3_600_000, "1h0m0s"),
            (3_661_001, "1h1m1.001s"),
        ] {
            assert_eq!(format_duration(ms), want);
        }
    }

    #[test]
    fn cpus_and_memory_tables() {
        let cpus: &[(&str, Option<i64>)] = &[
            ("0.5", Some(500_000_000)),
            ("2", Some(2_000_000_000)),
            (".25", Some(250_000_000)),
            ("0.000000001", Some(1)),
            ("0", Some(0)),
            ("-1", None),
            ("abc", None),
            ("1.2.3", None),
            ("0.0000000001", None),
            ("", None),
        ];
        for (input, want) in cpus {
            assert_eq!(parse_cpus(input).ok(), *want, "parse_cpus({input:?})");
        }
        let memory: &[(&str, Option<i64>)] = &[
            ("512M", Some(512 << 20)),
            ("512m", Some(512 << 20)),
            ("1G", Some(1 << 30)),
            ("1gb", Some(1 << 30)),
            ("1GiB", Some(1 << 30)),
            ("1024k", Some(1 << 20)),
            ("100", Some(100)),
            ("100b", Some(100)),
            ("1.5g", Some(3 << 29)),
            ("1 G", Some(1 << 30)),
            ("-1M", None),
            ("M", None),
            ("12X", None),
            ("1Mx", None),
            ("", None),
        ];
        for (input, want) in memory {
            assert_eq!(parse_memory(input).ok(), *want, "parse_memory({input:?})");
        }
        assert_eq!(format_memory(512 << 20), "512M");
        assert_eq!(format_memory(1536), "1536");
        assert_eq!(format_cpus(500_000_000), "0.5");
    }

    #[test]
    fn units_round_trip() {
        let mut rng = TestRng::new(7);
        for _ in 0..2_000 {
            let ms = match rng.below(3) {
                0 => rng.below(1_000),
                1 => rng.below(100) * 1_000,
                _ => rng.next() >> 24,
            };
            assert_eq!(parse_duration(&format_duration(ms)), Ok(ms), "{ms}");
            let nano = (rng.next() >> 8).cast_signed();
            assert_eq!(parse_cpus(&format_cpus(nano)), Ok(nano), "{nano}");
            let bytes = (rng.next() >> (4 + rng.below(50))).cast_signed();
            assert_eq!(parse_memory(&format_memory(bytes)), Ok(bytes), "{bytes}");
        }
        // Noise never panics, and whatever parses displays back to itself.
        for _ in 0..crate::spec::fuzz_cases(5_000) {
            let s = rng.noise(b"0123456789.hmsunkMGgb-+ ", 8);
            if let Ok(ms) = parse_duration(&s) {
                assert_eq!(parse_duration(&format_duration(ms)), Ok(ms), "{s:?}");
            }
            if let Ok(n) = parse_cpus(&s) {
                assert_eq!(parse_cpus(&format_cpus(n)), Ok(n), "{s:?}");
            }
            if let Ok(b) = parse_memory(&s) {
                assert_eq!(parse_memory(&format_memory(b)), Ok(b), "{s:?}");
            }
        }
    }
}
