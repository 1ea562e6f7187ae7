//! The live progress of `service create | update | scale | rollback` until the service
//! converges, as Docker prints it:
//!
//! ```text
//! overall progress: 3 out of 3 tasks
//! 1/3: running   [==================================================>]
//! verify: Waiting 5 seconds to verify that tasks are stable...
//! verify: Service converged
//! ```
//!
//! On a terminal the block is redrawn in place; otherwise each line is printed when it changes,
//! so that scripts and tests can read it. A slot whose task waits or failed shows the reason
//! instead of a bar (`1/3: no suitable node (...)`), and the display keeps waiting, as Docker's
//! does, until the service converges or the update pauses.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Result;
use mesh_cluster::orchestrator::is_task_dirty;
use mesh_cluster::state::{Node, Service, ServiceMode, Task, TaskState, UpdateState};

use super::client::{Conn, stdout_is_tty};
use crate::commands::Reported;

/// Docker polls the service this often.
const POLL: Duration = Duration::from_millis(500);
/// Docker's width for the state word (`preparing`).
const STATE_WIDTH: usize = 9;

/// What the display shows at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct View {
    pub overall: String,
    /// (key, line) per slot: `1/3` or a node id.
    pub lines: Vec<(String, String)>,
    pub converged: bool,
    /// The update stopped (paused): the display ends with this error.
    pub stopped: Option<String>,
    /// An update turned into a rollback: said once.
    pub note: Option<String>,
}

/// Docker's numbering of the states a task goes through on its way to `running`.
fn state_number(s: TaskState) -> Option<u64> {
    Some(match s {
        TaskState::New => 1,
        TaskState::Pending => 3,
        TaskState::Assigned => 4,
        TaskState::Accepted => 5,
        TaskState::Preparing => 6,
        TaskState::Ready => 7,
        TaskState::Starting => 8,
        TaskState::Running => 9,
        _ => return None,
    })
}

/// Docker's progress bar (jsonmessage): 50 columns, `=` up to the state, then `>`.
pub(crate) fn bar(state: TaskState) -> String {
    let Some(n) = state_number(state) else {
        return String::new();
    };
    let filled = ((n * 100 / 9) / 2).min(50) as usize;
    format!(
        "[{}>{}]",
        "=".repeat(filled),
        " ".repeat(50usize.saturating_sub(filled))
    )
}

/// Docker cuts errors on the progress lines at 75 characters.
fn trunc_error(e: &str) -> String {
    let e = e.replace('\n', " ");
    if e.chars().count() > 75 {
        let mut s: String = e.chars().take(74).collect();
        s.push('…');
        s
    } else {
        e
    }
}

fn newest<'a>(tasks: impl Iterator<Item = &'a Task>) -> Option<&'a Task> {
    tasks.max_by(|a, b| (a.meta.created_at, &a.id).cmp(&(b.meta.created_at, &b.id)))
}

/// The line of one slot and whether its task runs the service's current spec.
fn slot_line(
    key: &str,
    t: &Task,
    service: &Service,
    nodes: &BTreeMap<&str, &Node>,
) -> (String, bool) {
    let node = t
        .node_id
        .as_ref()
        .and_then(|n| nodes.get(n.as_str()).copied());
    let current = !is_task_dirty(service, t, node);
    let running = t.status.state == TaskState::Running && t.desired_state == TaskState::Running;
    let line = if !t.status.err.is_empty() && !running {
        format!("{key}: {}", trunc_error(&t.status.err))
    } else {
        let word = t.status.state.as_str();
        format!("{key}: {word:<STATE_WIDTH$} {}", bar(t.status.state))
            .trim_end()
            .to_owned()
    };
    (line, running && current)
}

/// The display for `service` given its tasks and the nodes (pure).
pub(crate) fn view(service: &Service, tasks: &[Task], nodes: &[Node]) -> View {
    let nodes: BTreeMap<&str, &Node> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let wanted = |t: &&Task| t.desired_state <= TaskState::Running;
    let mut lines = Vec::new();
    let mut running = 0u64;
    let total;
    let mut extra = false;
    match service.spec.mode {
        ServiceMode::Replicated { replicas } => {
            total = replicas;
            for slot in 1..=replicas {
                let key = format!("{slot}/{replicas}");
                let in_slot = || tasks.iter().filter(move |t| t.slot == slot);
                let Some(t) = newest(in_slot().filter(wanted)).or_else(|| newest(in_slot())) else {
                    lines.push((key.clone(), format!("{key}:")));
                    continue;
                };
                let (line, ok) = slot_line(&key, t, service, &nodes);
                running += u64::from(ok);
                lines.push((key, line));
            }
            extra = tasks
                .iter()
                .any(|t| t.slot > replicas && t.desired_state == TaskState::Running);
        }
        ServiceMode::Global => {
            let mut by_node: BTreeMap<&str, Vec<&Task>> = BTreeMap::new();
            for t in tasks.iter().filter(wanted) {
                if let Some(n) = &t.node_id {
                    by_node.entry(n.as_str()).or_default().push(t);
                }
            }
            total = by_node.len() as u64;
            for (node, list) in by_node {
                let key = node[..node.len().min(12)].to_owned();
                let t = newest(list.into_iter()).expect("a node's list is not empty");
                let (line, ok) = slot_line(&key, t, service, &nodes);
                running += u64::from(ok);
                lines.push((key, line));
            }
        }
    }
    let status = service.update_status.as_ref();
    let state = status.map(|u| u.state);
    let updating = matches!(
        state,
        Some(UpdateState::Updating | UpdateState::RollbackStarted)
    );
    let stopped = match state {
        Some(UpdateState::Paused | UpdateState::RollbackPaused) => {
            status.map(|u| u.message.clone())
        }
        _ => None,
    };
    let note = match state {
        Some(UpdateState::RollbackStarted | UpdateState::RollbackCompleted) => {
            status.map(|u| format!("rollback: {}", u.message))
        }
        _ => None,
    };
    View {
        overall: format!("overall progress: {running} out of {total} tasks"),
        lines,
        converged: running == total && !extra && !updating && stopped.is_none(),
        stopped,
        note,
    }
}

/// Prints the display as it changes.
struct Screen {
    tty: bool,
    quiet: bool,
    /// Lines drawn by the last redraw (terminal).
    drawn: usize,
    /// What was last printed per key (no terminal).
    printed: BTreeMap<String, String>,
    notes: Vec<String>,
}

impl Screen {
    fn show(&mut self, out: &mut impl Write, v: &View, verify: Option<&str>) -> Result<()> {
        if self.quiet {
            return Ok(());
        }
        if let Some(n) = &v.note
            && !self.notes.contains(n)
        {
            self.notes.push(n.clone());
        }
        if self.tty {
            let mut lines: Vec<&str> = vec![v.overall.as_str()];
            lines.extend(v.lines.iter().map(|(_, l)| l.as_str()));
            lines.extend(self.notes.iter().map(String::as_str));
            lines.extend(verify);
            if self.drawn > 0 {
                write!(out, "\x1b[{}A", self.drawn)?;
            }
            for l in &lines {
                writeln!(out, "\x1b[2K{l}")?;
            }
            for _ in lines.len()..self.drawn {
                writeln!(out, "\x1b[2K")?;
            }
            if self.drawn > lines.len() {
                write!(out, "\x1b[{}A", self.drawn - lines.len())?;
            }
            self.drawn = lines.len();
        } else {
            let mut changed = vec![("overall".to_owned(), v.overall.clone())];
            changed.extend(v.lines.iter().filter(|(_, l)| !l.ends_with(':')).cloned());
            changed.extend(self.notes.iter().map(|n| (n.clone(), n.clone())));
            if let Some(l) = verify {
                changed.push(("verify".to_owned(), l.to_owned()));
            }
            for (key, line) in changed {
                if self.printed.get(&key) != Some(&line) {
                    writeln!(out, "{line}")?;
                    self.printed.insert(key, line);
                }
            }
        }
        out.flush()?;
        Ok(())
    }
}

/// Follows `service` until it converges (or its update stops).
pub(super) fn follow(conn: &Conn, service: &str, quiet: bool, out: &mut impl Write) -> Result<()> {
    let mut screen = Screen {
        tty: stdout_is_tty(),
        quiet,
        drawn: 0,
        printed: BTreeMap::new(),
        notes: Vec::new(),
    };
    let fetch = || -> Result<(Service, View)> {
        let r = conn.tasks(vec![service.to_owned()])?;
        let s =
            r.services.into_iter().next().ok_or_else(|| {
                anyhow::Error::from(Reported(format!("no such service: {service}")))
            })?;
        let v = view(&s, &r.tasks, &r.nodes);
        Ok((s, v))
    };
    // A global service has no tasks for a moment after it is made: give the orchestrator a beat.
    let started = Instant::now();
    loop {
        let (s, v) = fetch()?;
        let settling = v.lines.is_empty()
            && matches!(s.spec.mode, ServiceMode::Global)
            && started.elapsed() < Duration::from_secs(2);
        screen.show(out, &v, None)?;
        if let Some(e) = &v.stopped {
            return Err(Reported(format!("Error: {e}")).into());
        }
        if !v.converged || settling {
            std::thread::sleep(POLL);
            continue;
        }
        // Converged: watch it for the monitor period before saying so.
        let monitor = if v.note.is_some() {
            s.spec.rollback.monitor_ms
        } else {
            s.spec.update.monitor_ms
        };
        let seconds = monitor.div_ceil(1000);
        let since = Instant::now();
        let mut stable = true;
        while since.elapsed() < Duration::from_millis(monitor) {
            let left = seconds.saturating_sub(since.elapsed().as_secs());
            let verify =
                format!("verify: Waiting {left} seconds to verify that tasks are stable...");
            // Without a terminal the countdown is said once.
            let verify = if screen.tty {
                verify
            } else {
                format!("verify: Waiting {seconds} seconds to verify that tasks are stable...")
            };
            screen.show(out, &v, Some(&verify))?;
            std::thread::sleep(POLL.min(Duration::from_millis(monitor)));
            let (_, again) = fetch()?;
            if !again.converged {
                screen.show(out, &again, Some("verify: Detected task failure"))?;
                screen.printed.remove("verify");
                stable = false;
                break;
            }
        }
        if stable {
            let (_, last) = fetch()?;
            screen.show(out, &last, Some("verify: Service converged"))?;
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use mesh_cluster::Id;
    use mesh_cluster::state::{EndpointSpec, Meta, ServiceSpec, TaskStatus};

    use super::*;

    fn service(mode: ServiceMode) -> Service {
        let mut spec = ServiceSpec {
            name: "web".into(),
            mode,
            ..ServiceSpec::default()
        };
        spec.task.container.image = "meshd/busybox:latest".into();
        mesh_cluster::orchestrator::new_service(spec, Id::from("svc"))
    }

    fn task(s: &Service, id: &str, slot: u64, state: TaskState, err: &str) -> Task {
        Task {
            id: Id::from(id),
            meta: Meta::default(),
            service_id: s.id.clone(),
            slot,
            node_id: Some(Id::from("node1node1node1")),
            spec: s.spec.task.clone(),
            spec_version: 0,
            desired_state: TaskState::Running,
            status: TaskStatus {
                state,
                err: err.into(),
                ..TaskStatus::default()
            },
            networks: vec![],
            start_at: 0,
            restart_history: vec![],
            endpoint: EndpointSpec::default(),
        }
    }

    #[test]
    fn bars_as_docker_draws_them() {
        assert_eq!(bar(TaskState::Running), format!("[{}>]", "=".repeat(50)));
        assert_eq!(
            bar(TaskState::Preparing),
            format!("[{}>{}]", "=".repeat(33), " ".repeat(17))
        );
        assert_eq!(bar(TaskState::Failed), "");
    }

    #[test]
    fn replicated_progress_counts_running_slots_and_shows_errors() {
        let s = service(ServiceMode::Replicated { replicas: 3 });
        let tasks = vec![
            task(&s, "a", 1, TaskState::Running, ""),
            task(&s, "b", 2, TaskState::Preparing, ""),
            task(
                &s,
                "c",
                3,
                TaskState::Pending,
                "no suitable node (scheduling constraints not satisfied on 3 nodes)",
            ),
        ];
        let v = view(&s, &tasks, &[]);
        assert_eq!(v.overall, "overall progress: 1 out of 3 tasks");
        assert_eq!(
            v.lines[0].1,
            format!("1/3: running   [{}>]", "=".repeat(50))
        );
        assert!(v.lines[1].1.starts_with("2/3: preparing [====="));
        assert_eq!(
            v.lines[2].1,
            "3/3: no suitable node (scheduling constraints not satisfied on 3 nodes)"
        );
        assert!(!v.converged);
        let all: Vec<Task> = ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, id)| task(&s, id, i as u64 + 1, TaskState::Running, ""))
            .collect();
        let v = view(&s, &all, &[]);
        assert_eq!(v.overall, "overall progress: 3 out of 3 tasks");
        assert!(v.converged);
        let none = service(ServiceMode::Replicated { replicas: 0 });
        let v = view(&none, &[], &[]);
        assert_eq!(v.overall, "overall progress: 0 out of 0 tasks");
        assert!(v.converged);
    }

    #[test]
    fn global_progress_has_a_line_per_node() {
        let s = service(ServiceMode::Global);
        let mut t = task(&s, "a", 0, TaskState::Running, "");
        t.node_id = Some(Id::from("ft6x8eqn2t7hxxxxxxxxxxxxx"));
        let v = view(&s, &[t], &[]);
        assert_eq!(v.lines[0].0, "ft6x8eqn2t7h");
        assert!(v.lines[0].1.starts_with("ft6x8eqn2t7h: running   [="));
        assert!(v.converged);
    }
}
