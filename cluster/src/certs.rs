//! Node certificate lifetimes as pure functions: how long the CA signs for (`swarm init|update
//! --cert-expiry`, with Swarm's default and minimum), and when a node renews its certificate
//! (at a random point between 50% and 80% of its lifetime, as swarmkit's `ca/config.go`, and at
//! once in the last 20%). The clock and the random draw are arguments, so tests choose them.

use std::time::Duration;

use crate::naming::human_duration;
use crate::spec::{format_duration, parse_duration};

/// Swarm's default node certificate expiry: 90 days.
pub const DEFAULT_CERT_EXPIRY_MS: u64 = 90 * 24 * 3_600_000;
/// Swarm's minimum: 1 hour.
pub const MIN_CERT_EXPIRY_MS: u64 = 3_600_000;
/// How far back a certificate's `not_before` is set, so that a node whose clock is a little
/// behind the manager's still accepts it. The renewal schedule measures from the issue time.
pub const CERT_BACKDATE_SECS: i64 = 60;
/// The share of a certificate's lifetime after which it is renewed at the earliest, ...
pub const RENEW_FROM: f64 = 0.5;
/// ... at the latest (after this, at once).
pub const RENEW_BY: f64 = 0.8;

/// The serde default of `ClusterInfo::cert_expiry_ms` (a cluster made before certificates
/// expired gets Swarm's default).
pub fn default_cert_expiry_ms() -> u64 {
    DEFAULT_CERT_EXPIRY_MS
}

/// Parses `--cert-expiry` (a Go duration such as `2160h`, `90m`) and checks it against the
/// minimum `min_ms` (Swarm's 1 hour unless a test lowered it).
pub fn parse_cert_expiry(input: &str, min_ms: u64) -> Result<u64, String> {
    let ms = parse_duration(input).map_err(|e| format!("invalid --cert-expiry: {}", e.0))?;
    check_cert_expiry(ms, min_ms)
}

/// Checks a certificate expiry against the minimum `min_ms` (Swarm's message).
pub fn check_cert_expiry(ms: u64, min_ms: u64) -> Result<u64, String> {
    if ms < min_ms {
        return Err(format!(
            "invalid --cert-expiry {}: minimum certificate expiry time is: {}",
            format_duration(ms),
            format_duration(min_ms)
        ));
    }
    // The CA writes the date as a 4-digit year: keep far below year 9999.
    if ms > 100 * 365 * 24 * 3_600_000 {
        return Err(format!(
            "invalid --cert-expiry {}: at most 100 years (876000h) is accepted",
            format_duration(ms)
        ));
    }
    Ok(ms)
}

/// What `swarm inspect --pretty` shows: Docker's `Expiry Duration: 3 months`.
pub fn human_expiry(ms: u64) -> String {
    human_duration(ms)
}

/// When a certificate is valid: unix seconds, as the certificate says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

impl Validity {
    /// When it was issued (`not_before` less the backdate, never after `not_after`).
    pub fn issued(&self) -> i64 {
        (self.not_before + CERT_BACKDATE_SECS).min(self.not_after)
    }

    pub fn expired(&self, now: i64) -> bool {
        now > self.not_after
    }
}

/// How long to wait, from `now`, before renewing a certificate valid over `v`: until a point
/// between 50% and 80% of its lifetime chosen by `jitter` (in `[0, 1)`, drawn once per
/// certificate), and not at all once that point, or the last 20%, is reached.
pub fn renewal_delay(v: Validity, now: i64, jitter: f64) -> Duration {
    let issued = v.issued();
    let lifetime = (v.not_after - issued).max(0);
    #[expect(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        reason = "a lifetime in seconds is far below 2^52; the share is rounded down to a second"
    )]
    let at = |share: f64| issued + (lifetime as f64 * share) as i64;
    let jitter = jitter.clamp(0.0, 1.0);
    let target = at(RENEW_FROM + (RENEW_BY - RENEW_FROM) * jitter).min(at(RENEW_BY));
    Duration::from_secs(u64::try_from(target - now).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_parses_and_is_bounded_as_swarm() {
        assert_eq!(
            parse_cert_expiry("2160h", MIN_CERT_EXPIRY_MS),
            Ok(DEFAULT_CERT_EXPIRY_MS)
        );
        assert_eq!(parse_cert_expiry("1h", MIN_CERT_EXPIRY_MS), Ok(3_600_000));
        let e = parse_cert_expiry("59m", MIN_CERT_EXPIRY_MS).unwrap_err();
        assert_eq!(
            e,
            "invalid --cert-expiry 59m0s: minimum certificate expiry time is: 1h0m0s"
        );
        let e = parse_cert_expiry("90d", MIN_CERT_EXPIRY_MS).unwrap_err();
        assert!(
            e.contains("invalid --cert-expiry") && e.contains("unknown unit"),
            "{e}"
        );
        assert!(parse_cert_expiry("", MIN_CERT_EXPIRY_MS).is_err());
        assert!(parse_cert_expiry("0", MIN_CERT_EXPIRY_MS).is_err());
        assert!(parse_cert_expiry("1000000h", MIN_CERT_EXPIRY_MS).is_err());
        // A test may lower the minimum.
        assert_eq!(parse_cert_expiry("30s", 1_000), Ok(30_000));
    }

    #[test]
    fn expiry_prints_as_docker_info() {
        assert_eq!(human_expiry(DEFAULT_CERT_EXPIRY_MS), "3 months");
        assert_eq!(human_expiry(MIN_CERT_EXPIRY_MS), "About an hour");
    }

    #[test]
    fn renewal_falls_between_half_and_four_fifths_of_the_lifetime() {
        // Issued at 1000 (backdated by a minute), valid 1000 s.
        let v = Validity {
            not_before: 1000 - CERT_BACKDATE_SECS,
            not_after: 2000,
        };
        assert_eq!(v.issued(), 1000);
        assert_eq!(renewal_delay(v, 1000, 0.0), Duration::from_secs(500));
        assert_eq!(renewal_delay(v, 1000, 0.5), Duration::from_secs(650));
        assert_eq!(renewal_delay(v, 1000, 0.999_999), Duration::from_secs(799));
        // Out-of-range jitter stays inside the window.
        assert_eq!(renewal_delay(v, 1000, 7.0), Duration::from_secs(800));
        assert_eq!(renewal_delay(v, 1000, -1.0), Duration::from_secs(500));
        // Later in the lifetime, the wait is shorter; past the point, none.
        assert_eq!(renewal_delay(v, 1400, 0.0), Duration::from_secs(100));
        assert_eq!(renewal_delay(v, 1600, 0.0), Duration::ZERO);
        // In the last 20%, or expired: at once, whatever the draw.
        assert_eq!(renewal_delay(v, 1850, 0.9), Duration::ZERO);
        assert_eq!(renewal_delay(v, 2500, 0.9), Duration::ZERO);
        assert!(v.expired(2001) && !v.expired(2000));
    }

    #[test]
    fn a_certificate_with_no_lifetime_renews_at_once() {
        let v = Validity {
            not_before: 100,
            not_after: 100,
        };
        assert_eq!(v.issued(), 100);
        assert_eq!(renewal_delay(v, 100, 0.5), Duration::ZERO);
    }
}
