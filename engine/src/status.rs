//! What the engine reports back: container states, list rows, lifecycle events and log lines,
//! and the pure translations from Docker's shapes into them.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::{EventMessage, EventMessageTypeEnum};

use crate::spec::LABEL_TASK;

/// Docker's container states folded into what the agent acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerStatus {
    /// Created, never started.
    Created,
    /// A process exists (Docker's running, paused, restarting: meshd sets no restart policy and
    /// never pauses, so the last two only come from someone else's hand).
    Running,
    /// The process ended; the container is kept for its exit code and logs.
    Exited,
    /// Docker gave up on it or is removing it.
    Dead,
}

impl ContainerStatus {
    /// Maps Docker's `State.Status` / list `State` word.
    pub fn from_docker(state: &str) -> Self {
        match state {
            "created" => Self::Created,
            "running" | "paused" | "restarting" | "stopping" => Self::Running,
            "exited" => Self::Exited,
            // "dead", "removing", and anything a later Docker invents: not a usable container.
            _ => Self::Dead,
        }
    }
}

/// A container's state from inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    pub status: ContainerStatus,
    /// Set once the process ended (`Exited` or `Dead`).
    pub exit_code: Option<i64>,
    /// Docker's error for the container (for example why it could not start), verbatim.
    pub error: Option<String>,
    pub oom_killed: bool,
    /// The main process while it runs: `/proc/PID/ns/net` is the container's namespace.
    pub pid: Option<u32>,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    /// The health check's verdict; `None` when the container has no health check.
    pub health: Option<HealthStatus>,
}

/// What Docker's health check says of a container that has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthStatus {
    /// Not decided yet: in the start period, or no check has passed or failed `retries` times.
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    /// Docker's word (`State.Health.Status`, the event's `health_status: WORD`); `None` for
    /// `none`, the empty word or anything else: no health check to wait for.
    pub fn from_docker(word: &str) -> Option<Self> {
        match word.trim() {
            "starting" => Some(Self::Starting),
            "healthy" => Some(Self::Healthy),
            "unhealthy" => Some(Self::Unhealthy),
            _ => None,
        }
    }

    /// The status line's suffix: `Up 5 seconds (healthy)`, `(health: starting)`, `(unhealthy)`.
    pub(crate) fn from_status_line(status: &str) -> Option<Self> {
        if status.ends_with("(health: starting)") {
            Some(Self::Starting)
        } else if status.ends_with("(unhealthy)") {
            Some(Self::Unhealthy)
        } else if status.ends_with("(healthy)") {
            Some(Self::Healthy)
        } else {
            None
        }
    }
}

impl ContainerState {
    pub(crate) fn from_docker(s: &bollard::models::ContainerState) -> Self {
        let status = s.status.as_ref().map_or(ContainerStatus::Dead, |st| {
            ContainerStatus::from_docker(st.as_ref())
        });
        let ended = matches!(status, ContainerStatus::Exited | ContainerStatus::Dead);
        Self {
            status,
            exit_code: if ended { s.exit_code } else { None },
            error: s.error.clone().filter(|e| !e.is_empty()),
            oom_killed: s.oom_killed.unwrap_or(false),
            pid: s.pid.and_then(|p| u32::try_from(p).ok()).filter(|&p| p > 0),
            started_at: s.started_at.as_deref().and_then(parse_docker_time),
            finished_at: s.finished_at.as_deref().and_then(parse_docker_time),
            health: s
                .health
                .as_ref()
                .and_then(|h| h.status)
                .and_then(|st| HealthStatus::from_docker(st.as_ref())),
        }
    }
}

/// One row of [`crate::Engine::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSummary {
    pub id: String,
    /// Without Docker's leading `/`.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub state: ContainerStatus,
    /// Known for exited containers (read from Docker's status line, the list has no field).
    pub exit_code: Option<i64>,
    /// The health check's verdict while it runs (from the status line too); `None` without one.
    pub health: Option<HealthStatus>,
}

impl ContainerSummary {
    pub(crate) fn from_docker(c: bollard::models::ContainerSummary) -> Self {
        let state = c.state.map_or(ContainerStatus::Dead, |s| {
            ContainerStatus::from_docker(s.as_ref())
        });
        let name = c
            .names
            .unwrap_or_default()
            .into_iter()
            .next()
            .map(|n| n.trim_start_matches('/').to_owned())
            .unwrap_or_default();
        Self {
            id: c.id.unwrap_or_default(),
            name,
            labels: c.labels.unwrap_or_default().into_iter().collect(),
            state,
            exit_code: c.status.as_deref().and_then(exit_code_from_status),
            health: c.status.as_deref().and_then(HealthStatus::from_status_line),
        }
    }
}

/// The exit code in Docker's human status line: `Exited (3) 2 minutes ago`.
pub(crate) fn exit_code_from_status(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest[..rest.find(')')?].parse().ok()
}

/// A lifecycle change of a container that carries the `meshd.task` label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub id: String,
    pub name: String,
    /// The `meshd.task` label.
    pub task_id: String,
    pub kind: ContainerEventKind,
    pub time: Option<SystemTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerEventKind {
    Start,
    /// The process ended; Docker sends the code with the event.
    Die {
        exit_code: Option<i64>,
    },
    /// The kernel's OOM killer hit the container (a `Die` follows).
    Oom,
    Destroy,
    /// The health check's verdict changed (Docker's `health_status: healthy|unhealthy`).
    Health(HealthStatus),
}

/// The Docker event actions [`crate::Engine::events`] asks for. dockerd matches
/// `health_status` loosely (any `health_status: ...` action), since Docker 1.13.
pub(crate) const EVENT_ACTIONS: [&str; 5] = ["start", "die", "oom", "destroy", "health_status"];

impl ContainerEvent {
    /// `None` for anything that is not one of the four container events of a task container.
    pub(crate) fn from_docker(m: &EventMessage) -> Option<Self> {
        if m.typ != Some(EventMessageTypeEnum::CONTAINER) {
            return None;
        }
        let actor = m.actor.as_ref()?;
        let attrs = actor.attributes.as_ref()?;
        let kind = match m.action.as_deref()? {
            "start" => ContainerEventKind::Start,
            "die" => ContainerEventKind::Die {
                exit_code: attrs.get("exitCode").and_then(|c| c.parse().ok()),
            },
            "oom" => ContainerEventKind::Oom,
            "destroy" => ContainerEventKind::Destroy,
            other => match other.strip_prefix("health_status:") {
                Some(word) => ContainerEventKind::Health(HealthStatus::from_docker(word)?),
                None => return None,
            },
        };
        let time = m
            .time_nano
            .and_then(|n| u64::try_from(n).ok())
            .map(|n| UNIX_EPOCH + Duration::from_nanos(n));
        Some(Self {
            id: actor.id.clone()?,
            name: attrs.get("name").cloned().unwrap_or_default(),
            task_id: attrs.get(LABEL_TASK)?.clone(),
            kind,
            time,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One line a container wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub stream: LogStream,
    /// Docker's RFC 3339 timestamp, when asked for.
    pub timestamp: Option<String>,
    /// The line without its newline.
    pub text: String,
}

/// Splits one frame of Docker's log stream into lines. Docker sends one frame per log entry,
/// but a frame may hold several lines, and a line longer than 16 KiB arrives in pieces (each
/// with its own timestamp): those pieces come out as separate lines.
pub(crate) fn log_lines(stream: LogStream, frame: &[u8], timestamps: bool) -> Vec<LogLine> {
    let text = String::from_utf8_lossy(frame);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    text.split('\n')
        .map(|line| {
            let (timestamp, text) = match line.split_once(' ') {
                Some((ts, rest)) if timestamps => (Some(ts.to_owned()), rest),
                _ => (None, line),
            };
            LogLine {
                stream,
                timestamp,
                text: text.strip_suffix('\r').unwrap_or(text).to_owned(),
            }
        })
        .collect()
}

/// Parses Docker's RFC 3339 times (`2024-05-07T21:09:36.123456789Z`, or with a `+hh:mm`
/// offset). Docker's zero time (year 1) and anything before 1970 mean "never": `None`.
pub(crate) fn parse_docker_time(s: &str) -> Option<SystemTime> {
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        // Keep nanosecond precision; pad or cut to nine digits.
        let mut n: u32 = 0;
        for i in 0..9 {
            n = n * 10
                + frac
                    .as_bytes()
                    .get(i)
                    .filter(|_| i < digits)
                    .map_or(0, |d| u32::from(d - b'0'));
        }
        nanos = n;
        rest = &frac[digits..];
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let h: i64 = rest[1..3].parse().ok()?;
            let m: i64 = rest[4..6].parse().ok()?;
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bollard::models::EventActor;

    use super::*;

    #[test]
    fn docker_states_fold_into_four() {
        use ContainerStatus::*;
        for (docker, ours) in [
            ("created", Created),
            ("running", Running),
            ("paused", Running),
            ("restarting", Running),
            ("exited", Exited),
            ("dead", Dead),
            ("removing", Dead),
            ("", Dead),
        ] {
            assert_eq!(ContainerStatus::from_docker(docker), ours, "{docker:?}");
        }
    }

    #[test]
    fn inspect_state_keeps_exit_code_only_once_ended() {
        let mut s = bollard::models::ContainerState {
            status: Some(bollard::models::ContainerStateStatusEnum::RUNNING),
            pid: Some(42),
            exit_code: Some(0),
            error: Some(String::new()),
            started_at: Some("2024-05-07T21:09:36.5Z".into()),
            finished_at: Some("0001-01-01T00:00:00Z".into()),
            ..Default::default()
        };
        let st = ContainerState::from_docker(&s);
        assert_eq!(st.status, ContainerStatus::Running);
        assert_eq!(
            (st.pid, st.exit_code, st.error.as_deref()),
            (Some(42), None, None)
        );
        assert!(st.started_at.is_some());
        assert_eq!(st.finished_at, None);

        s.status = Some(bollard::models::ContainerStateStatusEnum::EXITED);
        s.pid = Some(0);
        s.exit_code = Some(3);
        s.error = Some("boom".into());
        let st = ContainerState::from_docker(&s);
        assert_eq!(
            (st.pid, st.exit_code, st.error.as_deref()),
            (None, Some(3), Some("boom"))
        );
    }

    #[test]
    fn exit_codes_come_from_the_status_line() {
        assert_eq!(exit_code_from_status("Exited (3) 2 minutes ago"), Some(3));
        assert_eq!(
            exit_code_from_status("Exited (137) About a minute ago"),
            Some(137)
        );
        assert_eq!(exit_code_from_status("Up 5 seconds"), None);
        assert_eq!(exit_code_from_status("Created"), None);
        assert_eq!(exit_code_from_status("Exited (x"), None);
    }

    #[test]
    fn health_comes_from_inspect_and_the_status_line() {
        use bollard::models::{Health, HealthStatusEnum};
        let mut s = bollard::models::ContainerState {
            status: Some(bollard::models::ContainerStateStatusEnum::RUNNING),
            ..Default::default()
        };
        assert_eq!(ContainerState::from_docker(&s).health, None);
        for (docker, ours) in [
            (HealthStatusEnum::STARTING, Some(HealthStatus::Starting)),
            (HealthStatusEnum::HEALTHY, Some(HealthStatus::Healthy)),
            (HealthStatusEnum::UNHEALTHY, Some(HealthStatus::Unhealthy)),
            (HealthStatusEnum::NONE, None),
            (HealthStatusEnum::EMPTY, None),
        ] {
            s.health = Some(Health {
                status: Some(docker),
                ..Default::default()
            });
            assert_eq!(ContainerState::from_docker(&s).health, ours, "{docker:?}");
        }
        let line = HealthStatus::from_status_line;
        assert_eq!(line("Up 5 seconds (healthy)"), Some(HealthStatus::Healthy));
        assert_eq!(
            line("Up 2 seconds (health: starting)"),
            Some(HealthStatus::Starting)
        );
        assert_eq!(
            line("Up 1 minute (unhealthy)"),
            Some(HealthStatus::Unhealthy)
        );
        assert_eq!(line("Up 1 minute"), None);
        assert_eq!(line("Exited (0) 3 seconds ago"), None);
    }

    #[test]
    fn list_rows_lose_the_leading_slash() {
        let row = ContainerSummary::from_docker(bollard::models::ContainerSummary {
            id: Some("abc".into()),
            names: Some(vec!["/web.1.t1".into()]),
            labels: Some(HashMap::from([(LABEL_TASK.to_owned(), "t1".to_owned())])),
            state: Some(bollard::models::ContainerSummaryStateEnum::EXITED),
            status: Some("Exited (1) 3 seconds ago".into()),
            ..Default::default()
        });
        assert_eq!(row.name, "web.1.t1");
        assert_eq!(row.state, ContainerStatus::Exited);
        assert_eq!(row.exit_code, Some(1));
        assert_eq!(row.labels[LABEL_TASK], "t1");
    }

    fn event(action: &str, attrs: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            typ: Some(EventMessageTypeEnum::CONTAINER),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some("cid".into()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
            }),
            time_nano: Some(1_700_000_000_123_456_789),
            ..Default::default()
        }
    }

    #[test]
    fn events_map_to_task_lifecycle() {
        let task = [(LABEL_TASK, "t1"), ("name", "web.1.t1")];
        let die = [(LABEL_TASK, "t1"), ("name", "web.1.t1"), ("exitCode", "3")];
        let e = ContainerEvent::from_docker(&event("die", &die)).unwrap();
        assert_eq!(e.kind, ContainerEventKind::Die { exit_code: Some(3) });
        assert_eq!(
            (e.id.as_str(), e.name.as_str(), e.task_id.as_str()),
            ("cid", "web.1.t1", "t1")
        );
        assert_eq!(
            e.time,
            Some(UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789))
        );
        let kind = |a| ContainerEvent::from_docker(&event(a, &task)).map(|e| e.kind);
        assert_eq!(kind("start"), Some(ContainerEventKind::Start));
        assert_eq!(kind("oom"), Some(ContainerEventKind::Oom));
        assert_eq!(kind("destroy"), Some(ContainerEventKind::Destroy));
        assert_eq!(kind("exec_start: sh"), None);
        assert_eq!(
            kind("health_status: healthy"),
            Some(ContainerEventKind::Health(HealthStatus::Healthy))
        );
        assert_eq!(
            kind("health_status: unhealthy"),
            Some(ContainerEventKind::Health(HealthStatus::Unhealthy))
        );
        assert_eq!(kind("health_status: bogus"), None);
        // Not a task container.
        assert_eq!(
            ContainerEvent::from_docker(&event("start", &[("name", "x")])),
            None
        );
        let mut image = event("start", &task);
        image.typ = Some(EventMessageTypeEnum::IMAGE);
        assert_eq!(ContainerEvent::from_docker(&image), None);
    }

    #[test]
    fn log_frames_split_into_lines() {
        let lines = log_lines(LogStream::Stdout, b"hi\nthere\n", false);
        let texts: Vec<_> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["hi", "there"]);
        let l = &log_lines(
            LogStream::Stderr,
            b"2024-05-07T21:09:36.1Z oops here\n",
            true,
        )[0];
        assert_eq!(l.stream, LogStream::Stderr);
        assert_eq!(l.timestamp.as_deref(), Some("2024-05-07T21:09:36.1Z"));
        assert_eq!(l.text, "oops here");
        assert_eq!(
            log_lines(LogStream::Stdout, b"partial", false)[0].text,
            "partial"
        );
        assert_eq!(log_lines(LogStream::Stdout, b"\n", false)[0].text, "");
    }

    #[test]
    fn docker_times_parse() {
        let t = |s| parse_docker_time(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap());
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(Duration::ZERO));
        assert_eq!(
            t("2024-05-07T21:09:36Z"),
            Some(Duration::new(1_715_116_176, 0))
        );
        assert_eq!(
            t("2024-05-07T21:09:36.123456789Z"),
            Some(Duration::new(1_715_116_176, 123_456_789))
        );
        assert_eq!(
            t("2024-05-07T21:09:36.5Z"),
            Some(Duration::new(1_715_116_176, 500_000_000))
        );
        assert_eq!(
            t("2024-05-07T23:09:36+02:00"),
            Some(Duration::new(1_715_116_176, 0))
        );
        assert_eq!(
            t("2000-02-29T00:00:00Z"),
            Some(Duration::new(951_782_400, 0))
        );
        assert_eq!(t("0001-01-01T00:00:00Z"), None);
        assert_eq!(t("yesterday"), None);
        assert_eq!(t("2024-13-07T21:09:36Z"), None);
        assert_eq!(t("2024-05-07T21:09:36"), None);
        assert_eq!(t("2024-05-07T21:09:36.Z"), None);
    }
}
