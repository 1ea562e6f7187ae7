//! The health check flags of `service create/update` (`--health-cmd`, `--health-interval`,
//! `--health-timeout`, `--health-start-period`, `--health-retries`, `--no-healthcheck`), applied
//! as the docker CLI applies them, and the check of a [`HealthConfig`] before it is stored.

use super::limits::MAX_HEALTH_TEST;
use super::{SpecError, parse_duration};
use crate::state::HealthConfig;

/// The test that turns off the image's health check.
pub const HEALTH_NONE: &str = "NONE";
/// A test run by the container's shell.
pub const HEALTH_CMD_SHELL: &str = "CMD-SHELL";
/// A test run as a command and its arguments.
pub const HEALTH_CMD: &str = "CMD";

/// The longest duration Docker takes: its durations are `int64` nanoseconds.
const MAX_DURATION_MS: u64 = i64::MAX as u64 / 1_000_000;

/// The health flags as given on the command line; `None`: not given.
#[derive(Clone, Copy, Debug, Default)]
pub struct HealthFlags<'a> {
    pub cmd: Option<&'a str>,
    pub interval: Option<&'a str>,
    pub timeout: Option<&'a str>,
    pub start_period: Option<&'a str>,
    pub retries: Option<&'a str>,
    pub no_healthcheck: bool,
}

impl HealthFlags<'_> {
    fn any_setting(&self) -> bool {
        self.cmd.is_some()
            || self.interval.is_some()
            || self.timeout.is_some()
            || self.start_period.is_some()
            || self.retries.is_some()
    }
}

fn duration(flag: &str, value: &str) -> Result<u64, SpecError> {
    let ms =
        parse_duration(value).map_err(|e| SpecError::new(format!("invalid --{flag}: {}", e.0)))?;
    if ms > MAX_DURATION_MS {
        return Err(SpecError::new(format!(
            "invalid --{flag} {value:?}: at most {MAX_DURATION_MS}ms (Docker counts in int64 nanoseconds)"
        )));
    }
    Ok(ms)
}

/// `current` with the flags applied, as `docker service update` does (`create` passes `None`):
/// `--no-healthcheck` alone makes the test `["NONE"]`; each other flag replaces its own field and
/// a `NONE` test is dropped; `--health-cmd ""` goes back to the image's test. A config left all
/// zero is `None` (the image's check), as Docker treats it.
pub fn apply_health(
    current: Option<&HealthConfig>,
    f: &HealthFlags,
) -> Result<Option<HealthConfig>, SpecError> {
    if f.no_healthcheck {
        if f.any_setting() {
            return Err(SpecError::new(
                "--no-healthcheck conflicts with --health-* options: give either --no-healthcheck \
                 or --health-cmd/--health-interval/--health-timeout/--health-start-period/--health-retries",
            ));
        }
        return Ok(Some(HealthConfig {
            test: vec![HEALTH_NONE.into()],
            ..HealthConfig::default()
        }));
    }
    if !f.any_setting() {
        return Ok(current.cloned());
    }
    let mut h = current.cloned().unwrap_or_default();
    if h.test.first().is_some_and(|t| t == HEALTH_NONE) {
        h.test.clear();
    }
    if let Some(v) = f.interval {
        h.interval_ms = duration("health-interval", v)?;
    }
    if let Some(v) = f.timeout {
        h.timeout_ms = duration("health-timeout", v)?;
    }
    if let Some(v) = f.start_period {
        h.start_period_ms = duration("health-start-period", v)?;
    }
    if let Some(v) = f.retries {
        h.retries = v.trim().parse().map_err(|_| {
            SpecError::new(format!(
                "invalid --health-retries {v:?}: expected a non-negative integer"
            ))
        })?;
    }
    if let Some(cmd) = f.cmd {
        h.test = if cmd.is_empty() {
            Vec::new()
        } else {
            vec![HEALTH_CMD_SHELL.into(), cmd.into()]
        };
    }
    check_health(&h)?;
    Ok((h != HealthConfig::default()).then_some(h))
}

/// Checks a health config as Docker would before it runs it: one of Docker's test forms, sizes
/// and durations it can hold.
pub fn check_health(h: &HealthConfig) -> Result<(), SpecError> {
    let bad = |why: String| {
        Err(SpecError::new(format!(
            "invalid health check test {:?}: {why}; expected [\"{HEALTH_CMD_SHELL}\", COMMAND], \
             [\"{HEALTH_CMD}\", ARG...], [\"{HEALTH_NONE}\"] or none (the image's)",
            h.test
        )))
    };
    match h.test.first().map(String::as_str) {
        None => {}
        Some(HEALTH_NONE) if h.test.len() == 1 => {}
        Some(HEALTH_NONE) => return bad("NONE takes no command".into()),
        Some(HEALTH_CMD_SHELL) if h.test.len() == 2 && !h.test[1].trim().is_empty() => {}
        Some(HEALTH_CMD_SHELL) => {
            return bad("CMD-SHELL takes exactly one non-empty command".into());
        }
        Some(HEALTH_CMD) if h.test.len() >= 2 && !h.test[1].is_empty() => {}
        Some(HEALTH_CMD) => return bad("CMD takes a command and its arguments".into()),
        Some(other) => return bad(format!("unknown test kind {other:?}")),
    }
    let size: usize = h.test.iter().map(String::len).sum();
    if size > MAX_HEALTH_TEST {
        return Err(SpecError::new(format!(
            "invalid health check test: {size} bytes long, at most {MAX_HEALTH_TEST} are accepted"
        )));
    }
    for (what, ms) in [
        ("interval", h.interval_ms),
        ("timeout", h.timeout_ms),
        ("start period", h.start_period_ms),
    ] {
        if ms > MAX_DURATION_MS {
            return Err(SpecError::new(format!(
                "invalid health check {what} {ms}ms: at most {MAX_DURATION_MS}ms"
            )));
        }
    }
    if i64::try_from(h.retries).is_err() {
        return Err(SpecError::new(format!(
            "invalid health check retries {}: at most {}",
            h.retries,
            i64::MAX
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(cmd: &str) -> HealthConfig {
        HealthConfig {
            test: vec![HEALTH_CMD_SHELL.into(), cmd.into()],
            ..HealthConfig::default()
        }
    }

    fn none() -> HealthConfig {
        HealthConfig {
            test: vec![HEALTH_NONE.into()],
            ..HealthConfig::default()
        }
    }

    /// Each row: intent, the config before, the flags, the config after.
    #[test]
    fn flags_apply_as_docker_applies_them() {
        let full = HealthConfig {
            interval_ms: 5_000,
            timeout_ms: 2_000,
            start_period_ms: 90_000,
            retries: 3,
            ..shell("wget -q -O- localhost || exit 1")
        };
        let rows: Vec<(
            &str,
            Option<HealthConfig>,
            HealthFlags,
            Option<HealthConfig>,
        )> = vec![
            (
                "no flag changes nothing",
                Some(shell("true")),
                HealthFlags::default(),
                Some(shell("true")),
            ),
            (
                "no flag on create is the image's check",
                None,
                HealthFlags::default(),
                None,
            ),
            (
                "every flag on create",
                None,
                HealthFlags {
                    cmd: Some("wget -q -O- localhost || exit 1"),
                    interval: Some("5s"),
                    timeout: Some("2s"),
                    start_period: Some("1m30s"),
                    retries: Some("3"),
                    no_healthcheck: false,
                },
                Some(full.clone()),
            ),
            (
                "one flag replaces only its field",
                Some(full.clone()),
                HealthFlags {
                    retries: Some("7"),
                    ..HealthFlags::default()
                },
                Some(HealthConfig {
                    retries: 7,
                    ..full.clone()
                }),
            ),
            (
                "--no-healthcheck alone is NONE",
                Some(full.clone()),
                HealthFlags {
                    no_healthcheck: true,
                    ..HealthFlags::default()
                },
                Some(none()),
            ),
            (
                "a setting after NONE drops NONE",
                Some(none()),
                HealthFlags {
                    interval: Some("1s"),
                    ..HealthFlags::default()
                },
                Some(HealthConfig {
                    interval_ms: 1_000,
                    ..HealthConfig::default()
                }),
            ),
            (
                "an empty command goes back to the image's test",
                Some(shell("true")),
                HealthFlags {
                    cmd: Some(""),
                    ..HealthFlags::default()
                },
                None,
            ),
            (
                "intervals without a command keep the image's test",
                None,
                HealthFlags {
                    timeout: Some("500ms"),
                    ..HealthFlags::default()
                },
                Some(HealthConfig {
                    timeout_ms: 500,
                    ..HealthConfig::default()
                }),
            ),
        ];
        for (intent, before, flags, want) in rows {
            let got =
                apply_health(before.as_ref(), &flags).unwrap_or_else(|e| panic!("{intent}: {e}"));
            assert_eq!(got, want, "{intent}");
        }
    }

    /// Each row: intent, the flags, words the refusal must contain.
    #[test]
    fn bad_flags_are_refused() {
        let rows = [
            (
                "NONE with a command",
                HealthFlags {
                    cmd: Some("true"),
                    no_healthcheck: true,
                    ..HealthFlags::default()
                },
                "conflicts with --health-*",
            ),
            (
                "NONE with retries",
                HealthFlags {
                    retries: Some("1"),
                    no_healthcheck: true,
                    ..HealthFlags::default()
                },
                "conflicts with --health-*",
            ),
            (
                "a duration without unit",
                HealthFlags {
                    interval: Some("30"),
                    ..HealthFlags::default()
                },
                "invalid --health-interval",
            ),
            (
                "a negative duration",
                HealthFlags {
                    timeout: Some("-1s"),
                    ..HealthFlags::default()
                },
                "cannot be negative",
            ),
            (
                "too long for Docker",
                HealthFlags {
                    start_period: Some("3000000h"),
                    ..HealthFlags::default()
                },
                "int64 nanoseconds",
            ),
            (
                "negative retries",
                HealthFlags {
                    retries: Some("-1"),
                    ..HealthFlags::default()
                },
                "invalid --health-retries",
            ),
            (
                "a blank command",
                HealthFlags {
                    cmd: Some("  "),
                    ..HealthFlags::default()
                },
                "CMD-SHELL takes exactly one",
            ),
        ];
        for (intent, flags, want) in rows {
            let e = apply_health(None, &flags).expect_err(intent).to_string();
            assert!(e.contains(want), "{intent}: {e}");
        }
    }

    #[test]
    fn stored_tests_take_dockers_forms() {
        let t = |test: &[&str]| HealthConfig {
            test: test.iter().map(|s| (*s).to_owned()).collect(),
            ..HealthConfig::default()
        };
        for ok in [
            &[][..],
            &["NONE"],
            &["CMD-SHELL", "true"],
            &["CMD", "/bin/check", "-q"],
        ] {
            check_health(&t(ok)).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        for (bad, want) in [
            (&["NONE", "x"][..], "NONE takes no command"),
            (&["CMD-SHELL"], "exactly one"),
            (&["CMD-SHELL", "a", "b"], "exactly one"),
            (&["CMD"], "a command and its arguments"),
            (&["SHELL", "x"], "unknown test kind"),
        ] {
            let e = check_health(&t(bad)).expect_err(want).to_string();
            assert!(
                e.contains(want) && e.contains("expected [\"CMD-SHELL\""),
                "{bad:?}: {e}"
            );
        }
        let huge = t(&["CMD-SHELL", &"x".repeat(MAX_HEALTH_TEST + 1)]);
        assert!(
            check_health(&huge)
                .unwrap_err()
                .to_string()
                .contains("at most")
        );
    }
}
