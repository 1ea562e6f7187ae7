//! The orchestrator driven through whole scenarios: a simulated cluster where `plan` (orchestrator,
//! allocator, scheduler) runs after every change and a fake agent runs what nodes are given.
//! Every plan is checked to be a fixed point: planning again on its result changes nothing.

use std::collections::BTreeMap;

use super::*;
use crate::plan::plan;
use crate::scheduler::tests::node;
use crate::state::{FailureAction, NodeRole, RestartCondition, UpdateOrder};

struct Sim {
    s: ClusterState,
    now: Millis,
    next_id: u64,
    index: u64,
    wake_at: Option<Millis>,
}

impl Sim {
    fn new(nodes: &[&str]) -> Self {
        let mut s = ClusterState::default();
        for n in nodes {
            s.nodes.insert(Id::from(*n), node(n));
        }
        Self {
            s,
            now: 1_000,
            next_id: 0,
            index: 0,
            wake_at: None,
        }
    }

    fn apply(&mut self, ops: Vec<Op>) {
        self.index += 1;
        let tx = Tx { at: self.now, ops };
        self.s
            .apply(&tx, self.index)
            .unwrap_or_else(|e| panic!("{e}: {tx:?}"));
    }

    /// One plan, applied; true when it changed something.
    fn plan(&mut self) -> bool {
        let mut n = self.next_id;
        let mut ids = || {
            n += 1;
            Id::from(format!("t{n:04}"))
        };
        let p = plan(&self.s, self.now, &mut ids);
        let changed = !p.tx.ops.is_empty();
        self.apply(p.tx.ops);
        let again = plan(&self.s, self.now, &mut ids);
        assert!(
            again.tx.ops.is_empty(),
            "not a fixed point: {:#?}",
            again.tx.ops
        );
        self.next_id = n;
        self.wake_at = p.wake_at.or(again.wake_at);
        changed
    }

    /// The agents of nodes that are not down: start what is assigned and meant to run, stop what
    /// is meant to stop.
    fn agent(&mut self) -> bool {
        let mut ops = Vec::new();
        for t in self.s.tasks.values() {
            let Some(node) = t.node_id.as_ref().and_then(|n| self.s.nodes.get(n)) else {
                continue;
            };
            if node.status.state == NodeState::Down || t.status.state.is_terminal() {
                continue;
            }
            let next =
                if t.desired_state > TaskState::Running && t.status.state >= TaskState::Assigned {
                    TaskState::Shutdown
                } else if t.desired_state == TaskState::Running
                    && (TaskState::Assigned..TaskState::Running).contains(&t.status.state)
                {
                    TaskState::Running
                } else {
                    continue;
                };
            let mut t = t.clone();
            t.status.state = next;
            t.status.timestamp = self.now;
            ops.push(Op::Put(Object::Task(t)));
        }
        let changed = !ops.is_empty();
        self.apply(ops);
        changed
    }

    fn run(&mut self) {
        for _ in 0..50 {
            let planned = self.plan();
            let acted = self.agent();
            if !planned && !acted {
                return;
            }
        }
        panic!("the cluster did not settle");
    }

    /// Lets time pass, waking as the orchestrator asked.
    fn wait(&mut self, ms: Millis) {
        let end = self.now + ms;
        self.run();
        while let Some(w) = self.wake_at.filter(|w| *w <= end) {
            self.now = w;
            self.run();
        }
        self.now = end;
        self.run();
    }

    fn create(&mut self, name: &str, change: impl FnOnce(&mut ServiceSpec)) -> Id {
        let mut spec = ServiceSpec {
            name: name.into(),
            ..ServiceSpec::default()
        };
        spec.task.container.image = "busybox:1".into();
        spec.task.restart.delay_ms = 0;
        change(&mut spec);
        crate::spec::validate_service_spec(&spec).unwrap();
        let s = new_service(spec, Id::from(name));
        self.apply(vec![Op::Put(Object::Service(s))]);
        self.run();
        Id::from(name)
    }

    fn service(&self, id: &Id) -> &Service {
        &self.s.services[id]
    }

    fn update(&mut self, id: &Id, change: impl FnOnce(&mut ServiceSpec)) {
        let current = self.service(id).clone();
        let mut spec = current.spec.clone();
        change(&mut spec);
        let s = update_service(&current, spec).unwrap();
        self.apply(vec![Op::Put(Object::Service(s))]);
    }

    fn set_node(&mut self, id: &str, change: impl FnOnce(&mut crate::state::Node)) {
        let mut n = self.s.nodes[&Id::from(id)].clone();
        change(&mut n);
        self.apply(vec![Op::Put(Object::Node(n))]);
    }

    /// The task's status as its agent would report it.
    fn report(&mut self, task: &Id, state: TaskState, err: &str) {
        let mut t = self.s.tasks[task].clone();
        t.status.state = state;
        t.status.err = err.into();
        t.status.timestamp = self.now;
        self.apply(vec![Op::Put(Object::Task(t))]);
    }

    fn tasks(&self, service: &Id) -> Vec<&Task> {
        self.s.tasks_of(service).collect()
    }

    /// Running tasks per node.
    fn running(&self, service: &Id) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for t in self.tasks(service) {
            if t.desired_state == TaskState::Running && t.status.state == TaskState::Running {
                *out.entry(t.node_id.clone().unwrap().to_string())
                    .or_default() += 1;
            }
        }
        out
    }

    fn running_in_slot(&self, service: &Id, slot: u64) -> Vec<&Task> {
        self.tasks(service)
            .into_iter()
            .filter(|t| t.slot == slot && t.status.state == TaskState::Running && runnable(t))
            .collect()
    }

    fn images_running(&self, service: &Id) -> Vec<String> {
        let mut out: Vec<String> = self
            .tasks(service)
            .into_iter()
            .filter(|t| t.status.state == TaskState::Running && runnable(t))
            .map(|t| t.spec.container.image.clone())
            .collect();
        out.sort();
        out
    }

    fn update_state(&self, id: &Id) -> Option<(UpdateState, String)> {
        self.service(id)
            .update_status
            .as_ref()
            .map(|u| (u.state, u.message.clone()))
    }
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

#[test]
fn replicas_spread_scale_down_and_up() {
    let mut sim = Sim::new(&["a", "b", "c"]);
    let web = sim.create("web", |s| s.mode = ServiceMode::Replicated { replicas: 5 });
    assert_eq!(sim.running(&web), counts(&[("a", 2), ("b", 2), ("c", 1)]));
    let slots: Vec<u64> = sim.tasks(&web).iter().map(|t| t.slot).collect();
    assert_eq!(slots.len(), 5);
    assert!((1..=5).all(|n| slots.contains(&n)));

    sim.update(&web, |s| s.mode = ServiceMode::Replicated { replicas: 1 });
    sim.run();
    assert_eq!(sim.running_in_slot(&web, 1).len(), 1);
    let stopped: Vec<u64> = sim
        .tasks(&web)
        .iter()
        .filter(|t| t.desired_state == TaskState::Shutdown && t.status.state == TaskState::Shutdown)
        .map(|t| t.slot)
        .collect();
    assert_eq!(
        stopped.len(),
        4,
        "the highest slots are shut down and kept as history"
    );
    assert!(stopped.iter().all(|s| *s >= 2));
    // Scaling is not an update: no update status.
    assert_eq!(sim.update_state(&web), None);

    sim.update(&web, |s| s.mode = ServiceMode::Replicated { replicas: 3 });
    sim.run();
    for slot in 1..=3 {
        assert_eq!(sim.running_in_slot(&web, slot).len(), 1, "slot {slot}");
    }
}

#[test]
fn global_services_follow_the_nodes() {
    let mut sim = Sim::new(&["a", "b"]);
    let g = sim.create("agent", |s| s.mode = ServiceMode::Global);
    assert_eq!(sim.running(&g), counts(&[("a", 1), ("b", 1)]));
    assert!(sim.tasks(&g).iter().all(|t| t.slot == 0));

    // A node that joins later gets one too.
    sim.apply(vec![Op::Put(Object::Node(node("c")))]);
    sim.run();
    assert_eq!(sim.running(&g), counts(&[("a", 1), ("b", 1), ("c", 1)]));

    // Drain: the task stops and is not replaced; pause keeps it.
    sim.set_node("a", |n| n.spec.availability = Availability::Drain);
    sim.set_node("b", |n| n.spec.availability = Availability::Pause);
    sim.run();
    assert_eq!(sim.running(&g), counts(&[("b", 1), ("c", 1)]));

    // Back to active: a new task.
    sim.set_node("a", |n| n.spec.availability = Availability::Active);
    sim.run();
    assert_eq!(sim.running(&g), counts(&[("a", 1), ("b", 1), ("c", 1)]));

    // Constraints pick the nodes.
    sim.set_node("c", |n| n.spec.role = NodeRole::Manager);
    let m = sim.create("mgr", |s| {
        s.mode = ServiceMode::Global;
        s.task.placement.constraints = vec!["node.role==manager".into()];
    });
    assert_eq!(sim.running(&m), counts(&[("c", 1)]));
}

#[test]
fn drain_moves_tasks_after_they_stop() {
    let mut sim = Sim::new(&["a", "b", "c"]);
    let web = sim.create("web", |s| s.mode = ServiceMode::Replicated { replicas: 3 });
    assert_eq!(sim.running(&web), counts(&[("a", 1), ("b", 1), ("c", 1)]));
    sim.set_node("a", |n| n.spec.availability = Availability::Drain);
    // Before the agent acts: the old task is asked to stop, its replacement waits, ready.
    sim.plan();
    let on_a: Vec<&Task> = sim
        .tasks(&web)
        .into_iter()
        .filter(|t| t.node_id == Some(Id::from("a")))
        .collect();
    assert_eq!(on_a.len(), 1);
    assert_eq!(on_a[0].desired_state, TaskState::Shutdown);
    let slot = on_a[0].slot;
    let waiting: Vec<&Task> = sim
        .tasks(&web)
        .into_iter()
        .filter(|t| t.slot == slot && t.desired_state == TaskState::Ready)
        .collect();
    assert_eq!(waiting.len(), 1);
    assert_ne!(waiting[0].node_id, Some(Id::from("a")));
    sim.run();
    assert_eq!(sim.running(&web), counts(&[("b", 2), ("c", 1)]));
    let history: Vec<&Task> = sim
        .tasks(&web)
        .into_iter()
        .filter(|t| t.slot == slot)
        .collect();
    assert_eq!(history.len(), 2, "the drained task stays as history");
}

#[test]
fn a_down_node_loses_its_tasks_at_once() {
    let mut sim = Sim::new(&["a", "b", "c"]);
    let web = sim.create("web", |s| s.mode = ServiceMode::Replicated { replicas: 3 });
    sim.set_node("c", |n| n.status.state = NodeState::Down);
    sim.run();
    assert_eq!(sim.running(&web), counts(&[("a", 2), ("b", 1)]));
    let orphan = sim
        .tasks(&web)
        .into_iter()
        .find(|t| t.node_id == Some(Id::from("c")))
        .unwrap();
    assert_eq!(orphan.status.state, TaskState::Orphaned);
    assert_eq!(orphan.status.message, "task orphaned: its node is down");
    assert_eq!(orphan.desired_state, TaskState::Shutdown);
}

#[test]
fn failed_tasks_are_replaced_after_the_delay() {
    let mut sim = Sim::new(&["a", "b"]);
    let web = sim.create("web", |s| {
        s.mode = ServiceMode::Replicated { replicas: 1 };
        s.task.restart.delay_ms = 5_000;
    });
    let first = sim.running_in_slot(&web, 1)[0].id.clone();
    sim.report(&first, TaskState::Failed, "task: non-zero exit (1)");
    sim.run();
    let tasks = sim.tasks(&web);
    assert_eq!(tasks.len(), 2);
    let old = &sim.s.tasks[&first];
    assert_eq!(
        (old.desired_state, old.status.state),
        (TaskState::Shutdown, TaskState::Failed)
    );
    let new = tasks.iter().find(|t| t.id != first).unwrap();
    assert_eq!(new.slot, 1, "a new task in the same slot");
    assert_eq!(new.desired_state, TaskState::Ready, "waiting for the delay");
    assert_eq!(sim.wake_at, Some(sim.now + 5_000));
    sim.wait(4_999);
    assert!(sim.running_in_slot(&web, 1).is_empty());
    sim.wait(1);
    assert_eq!(sim.running_in_slot(&web, 1).len(), 1);
}

#[test]
fn restart_conditions_and_max_attempts() {
    // on-failure: an exit 0 is not restarted, and the slot is not refilled.
    let mut sim = Sim::new(&["a"]);
    let job = sim.create("job", |s| {
        s.task.restart.condition = RestartCondition::OnFailure;
    });
    let t = sim.running_in_slot(&job, 1)[0].id.clone();
    sim.report(&t, TaskState::Complete, "");
    sim.run();
    assert_eq!(sim.tasks(&job).len(), 1);
    assert_eq!(sim.s.tasks[&t].desired_state, TaskState::Shutdown);

    // none: a failure is not restarted either.
    let once = sim.create("once", |s| {
        s.task.restart.condition = RestartCondition::None;
    });
    let t = sim.running_in_slot(&once, 1)[0].id.clone();
    sim.report(&t, TaskState::Failed, "boom");
    sim.run();
    assert_eq!(sim.tasks(&once).len(), 1);

    // max attempts 2: two replacements, then the slot stays down.
    let flaky = sim.create("flaky", |s| s.task.restart.max_attempts = 2);
    for round in 0..3 {
        let t = sim.running_in_slot(&flaky, 1);
        assert_eq!(t.len(), 1, "round {round}");
        let id = t[0].id.clone();
        sim.report(&id, TaskState::Failed, "boom");
        sim.run();
    }
    assert!(sim.running_in_slot(&flaky, 1).is_empty());
    assert_eq!(sim.tasks(&flaky).len(), 3);
}

#[test]
fn history_is_trimmed_to_five_per_slot() {
    let mut sim = Sim::new(&["a"]);
    let web = sim.create("web", |_| {});
    let mut seen = Vec::new();
    for _ in 0..8 {
        let id = sim.running_in_slot(&web, 1)[0].id.clone();
        seen.push(id.clone());
        sim.now += 10;
        sim.report(&id, TaskState::Failed, "boom");
        sim.run();
    }
    let tasks = sim.tasks(&web);
    assert_eq!(tasks.len(), TASK_HISTORY_LIMIT);
    // The oldest went first.
    assert!(!sim.s.tasks.contains_key(&seen[0]));
    assert!(sim.s.tasks.contains_key(&seen[7]));
}

#[test]
fn removing_a_service_stops_then_deletes_its_tasks() {
    let mut sim = Sim::new(&["a", "b"]);
    let web = sim.create("web", |s| s.mode = ServiceMode::Replicated { replicas: 3 });
    sim.set_node("b", |n| n.status.state = NodeState::Down);
    sim.run();
    let version = sim.service(&web).meta.version;
    sim.apply(vec![Op::Delete {
        kind: Kind::Service,
        id: web.clone(),
        version,
    }]);
    // First the tasks are asked to go (desired remove); the agent stops them; then they go.
    sim.plan();
    assert!(
        sim.s
            .tasks
            .values()
            .all(|t| t.desired_state == TaskState::Remove)
    );
    sim.run();
    assert!(sim.s.tasks.is_empty(), "{:?}", sim.s.tasks);
}

#[test]
fn unsatisfiable_constraints_leave_tasks_pending_with_the_reason() {
    let mut sim = Sim::new(&["a", "b", "c"]);
    let web = sim.create("web", |s| {
        s.task.placement.constraints = vec!["node.labels.zone==west".into()];
    });
    let t = &sim.tasks(&web)[0];
    assert_eq!(t.status.state, TaskState::Pending);
    assert_eq!(
        t.status.err,
        "no suitable node (scheduling constraints not satisfied on 3 nodes)"
    );
    // The label appears: the task is placed.
    sim.set_node("b", |n| {
        n.spec.labels.insert("zone".into(), "west".into());
    });
    sim.run();
    assert_eq!(sim.running(&web), counts(&[("b", 1)]));
    // The label goes: the task is rejected and waits for a node again.
    sim.set_node("b", |n| {
        n.spec.labels.clear();
    });
    sim.run();
    let rejected = sim
        .tasks(&web)
        .into_iter()
        .find(|t| t.status.state == TaskState::Rejected)
        .unwrap();
    assert_eq!(
        rejected.status.err,
        "assigned node no longer meets constraints"
    );
    assert!(
        sim.tasks(&web)
            .iter()
            .any(|t| t.status.state == TaskState::Pending)
    );
}

#[test]
fn rolling_update_one_at_a_time_with_delay() {
    let mut sim = Sim::new(&["a", "b", "c"]);
    let web = sim.create("web", |s| {
        s.mode = ServiceMode::Replicated { replicas: 3 };
        s.update.delay_ms = 10_000;
    });
    sim.update(&web, |s| s.task.container.image = "busybox:2".into());
    sim.run();
    assert_eq!(
        sim.images_running(&web),
        ["busybox:1", "busybox:1", "busybox:2"]
    );
    assert_eq!(
        sim.update_state(&web),
        Some((UpdateState::Updating, "update in progress".into()))
    );
    sim.wait(9_999);
    assert_eq!(
        sim.images_running(&web),
        ["busybox:1", "busybox:1", "busybox:2"]
    );
    sim.wait(1);
    assert_eq!(
        sim.images_running(&web),
        ["busybox:1", "busybox:2", "busybox:2"]
    );
    sim.wait(10_000);
    assert_eq!(sim.images_running(&web), ["busybox:2"; 3]);
    // Completed once the monitor period (here delay + 1s, as Swarm) has passed.
    assert_eq!(sim.update_state(&web).unwrap().0, UpdateState::Updating);
    sim.wait(11_000);
    let status = sim.service(&web).update_status.clone().unwrap();
    assert_eq!(
        (status.state, status.message.as_str()),
        (UpdateState::Completed, "update completed")
    );
    assert!(status.completed_at.is_some());
    // Old tasks stay as history, shut down.
    for slot in 1..=3 {
        let in_slot: Vec<&Task> = sim
            .tasks(&web)
            .into_iter()
            .filter(|t| t.slot == slot)
            .collect();
        assert_eq!(in_slot.len(), 2);
        assert!(in_slot.iter().any(
            |t| t.spec.container.image == "busybox:1" && t.status.state == TaskState::Shutdown
        ));
    }
}

#[test]
fn parallelism_zero_updates_everything_at_once() {
    let mut sim = Sim::new(&["a", "b"]);
    let web = sim.create("web", |s| {
        s.mode = ServiceMode::Replicated { replicas: 4 };
        s.update.parallelism = 0;
    });
    sim.update(&web, |s| s.task.container.image = "busybox:2".into());
    sim.run();
    assert_eq!(sim.images_running(&web), ["busybox:2"; 4]);
}

#[test]
fn start_first_runs_the_new_task_before_stopping_the_old() {
    let mut sim = Sim::new(&["a"]);
    let web = sim.create("web", |s| s.update.order = UpdateOrder::StartFirst);
    sim.update(&web, |s| s.task.container.image = "busybox:2".into());
    sim.plan();
    sim.agent();
    // Both run for a moment.
    assert_eq!(sim.images_running(&web), ["busybox:1", "busybox:2"]);
    sim.run();
    assert_eq!(sim.images_running(&web), ["busybox:2"]);
}

#[test]
fn stop_first_waits_for_the_old_task_to_stop() {
    let mut sim = Sim::new(&["a"]);
    let web = sim.create("web", |_| {});
    sim.update(&web, |s| s.task.container.image = "busybox:2".into());
    sim.plan();
    let new = sim
        .tasks(&web)
        .into_iter()
        .find(|t| t.spec.container.image == "busybox:2")
        .unwrap();
    assert_eq!(new.desired_state, TaskState::Ready);
    sim.agent(); // stops the old one
    sim.plan();
    sim.agent();
    assert_eq!(sim.images_running(&web), ["busybox:2"]);
}

#[test]
fn a_failing_update_pauses() {
    let mut sim = Sim::new(&["a", "b"]);
    let web = sim.create("web", |s| s.mode = ServiceMode::Replicated { replicas: 2 });
    sim.update(&web, |s| s.task.container.image = "busybox:bad".into());
    sim.plan();
    let new = sim
        .tasks(&web)
        .into_iter()
        .find(|t| t.spec.container.image == "busybox:bad")
        .unwrap()
        .id
        .clone();
    sim.report(&new, TaskState::Rejected, "No such image: busybox:bad");
    sim.run();
    let (state, message) = sim.update_state(&web).unwrap();
    assert_eq!(state, UpdateState::Paused);
    assert_eq!(
        message,
        format!("update paused due to failure or early termination of task {new}")
    );
    // The other slot was not touched.
    assert!(sim.images_running(&web).contains(&"busybox:1".to_owned()));
    // A new update starts again.
    sim.update(&web, |s| s.task.container.image = "busybox:2".into());
    sim.wait(20_000);
    assert_eq!(sim.images_running(&web), ["busybox:2", "busybox:2"]);
    assert_eq!(sim.update_state(&web).unwrap().0, UpdateState::Completed);
}

#[test]
fn a_failing_update_rolls_back() {
    let mut sim = Sim::new(&["a", "b"]);
    let web = sim.create("web", |s| {
        s.mode = ServiceMode::Replicated { replicas: 2 };
        s.update.failure_action = FailureAction::Rollback;
    });
    sim.update(&web, |s| s.task.container.image = "busybox:bad".into());
    sim.plan();
    let new = sim
        .tasks(&web)
        .into_iter()
        .find(|t| t.spec.container.image == "busybox:bad")
        .unwrap()
        .id
        .clone();
    sim.report(&new, TaskState::Failed, "task: non-zero exit (1)");
    sim.run();
    let (state, message) = sim.update_state(&web).unwrap();
    assert_eq!(state, UpdateState::RollbackStarted);
    assert_eq!(
        message,
        format!("update rolled back due to failure or early termination of task {new}")
    );
    assert_eq!(sim.service(&web).spec.task.container.image, "busybox:1");
    sim.wait(20_000);
    assert_eq!(sim.images_running(&web), ["busybox:1", "busybox:1"]);
    assert_eq!(
        sim.update_state(&web),
        Some((UpdateState::RollbackCompleted, "rollback completed".into()))
    );
}

#[test]
fn manual_rollback_and_api_checks() {
    let mut sim = Sim::new(&["a"]);
    let web = sim.create("web", |_| {});
    assert!(
        rollback_service(sim.service(&web), sim.now).is_err(),
        "no previous spec yet"
    );
    sim.update(&web, |s| s.task.container.image = "busybox:2".into());
    sim.wait(20_000);
    assert_eq!(sim.images_running(&web), ["busybox:2"]);
    let back = rollback_service(sim.service(&web), sim.now).unwrap();
    assert_eq!(
        back.update_status.as_ref().unwrap().message,
        "manually requested rollback"
    );
    sim.apply(vec![Op::Put(Object::Service(back))]);
    sim.wait(20_000);
    assert_eq!(sim.images_running(&web), ["busybox:1"]);
    assert_eq!(
        sim.update_state(&web).unwrap().0,
        UpdateState::RollbackCompleted
    );

    let current = sim.service(&web).clone();
    let mut global = current.spec.clone();
    global.mode = ServiceMode::Global;
    assert!(
        update_service(&current, global)
            .unwrap_err()
            .0
            .contains("mode change")
    );
    let mut renamed = current.spec.clone();
    renamed.name = "other".into();
    assert!(
        update_service(&current, renamed)
            .unwrap_err()
            .0
            .contains("renaming")
    );
    // An unchanged spec keeps the update status and the previous spec.
    assert_eq!(
        update_service(&current, current.spec.clone()).unwrap(),
        current
    );
}

#[test]
fn a_constraint_change_alone_leaves_fitting_tasks_in_place() {
    let mut sim = Sim::new(&["a", "b"]);
    sim.set_node("a", |n| {
        n.spec.labels.insert("zone".into(), "east".into());
    });
    let web = sim.create("web", |s| s.mode = ServiceMode::Replicated { replicas: 2 });
    let before: Vec<Id> = sim.tasks(&web).iter().map(|t| t.id.clone()).collect();
    sim.update(&web, |s| {
        s.task.placement.constraints = vec!["node.labels.zone!=west".into()];
    });
    sim.wait(10_000);
    let after: Vec<Id> = sim.tasks(&web).iter().map(|t| t.id.clone()).collect();
    assert_eq!(before, after, "no task replaced");
    // A port change replaces tasks, as a spec change does.
    sim.update(&web, |s| {
        s.endpoint.ports =
            vec![crate::spec::parse_port("published=80,target=80,mode=host").unwrap()];
    });
    sim.wait(30_000);
    assert_eq!(sim.tasks(&web).len(), 4);
    assert!(
        sim.tasks(&web)
            .iter()
            .filter(|t| runnable(t))
            .all(|t| t.endpoint.ports.len() == 1)
    );
}

#[test]
fn reconcile_alone_is_a_fixed_point_too() {
    let mut sim = Sim::new(&["a", "b", "c"]);
    let web = sim.create("web", |s| s.mode = ServiceMode::Replicated { replicas: 6 });
    sim.create("g", |s| s.mode = ServiceMode::Global);
    sim.update(&web, |s| s.task.container.image = "busybox:2".into());
    sim.set_node("a", |n| n.status.state = NodeState::Down);
    let mut n = 0;
    let mut ids = || {
        n += 1;
        Id::from(format!("r{n}"))
    };
    let r = reconcile(&sim.s, sim.now, &mut ids);
    assert!(!r.tx.ops.is_empty());
    let mut s = sim.s.clone();
    s.apply(&r.tx, 1_000).unwrap();
    let again = reconcile(&s, sim.now, &mut ids);
    assert!(again.tx.ops.is_empty(), "{:#?}", again.tx.ops);
}

#[test]
fn tasks_get_addresses_ports_and_vips_through_plan() {
    use crate::alloc::{mac_for, new_network};
    use crate::state::{NetworkAttachmentConfig, NetworkSpec};
    let mut sim = Sim::new(&["a", "b", "c"]);
    for (id, name, ingress) in [("ing", "ingress", true), ("front", "front", false)] {
        let spec = NetworkSpec {
            name: name.into(),
            driver: "overlay".into(),
            ingress,
            ..NetworkSpec::default()
        };
        let n = new_network(&sim.s, spec, Id::from(id)).unwrap();
        sim.apply(vec![Op::Put(Object::Network(n))]);
    }
    let web = sim.create("web", |s| {
        s.mode = ServiceMode::Replicated { replicas: 3 };
        s.endpoint.ports = vec![crate::spec::parse_port("80").unwrap()];
        s.task.networks = vec![NetworkAttachmentConfig {
            target: Id::from("front"),
            aliases: vec![],
        }];
    });
    assert_eq!(sim.running(&web), counts(&[("a", 1), ("b", 1), ("c", 1)]));
    let svc = sim.service(&web);
    assert_eq!(svc.endpoint.ports[0].published_port, 30000);
    assert_eq!(
        svc.endpoint.virtual_ips.len(),
        2,
        "a VIP on front and on ingress"
    );
    assert!(sim.s.nodes.values().all(|n| n.attachments.len() == 2));
    let mut seen = std::collections::HashSet::new();
    for t in sim.tasks(&web) {
        assert_eq!(t.networks.len(), 2);
        for n in &t.networks {
            assert_eq!(n.mac, mac_for(n.addr));
            assert!(seen.insert(n.addr), "address {} given twice", n.addr);
        }
    }
    // An update replaces tasks one by one; live tasks never share an address.
    sim.update(&web, |s| s.task.container.image = "busybox:2".into());
    sim.wait(60_000);
    assert_eq!(sim.images_running(&web), ["busybox:2"; 3]);
    let mut live = std::collections::HashSet::new();
    for t in sim
        .tasks(&web)
        .into_iter()
        .filter(|t| !t.status.state.is_terminal())
    {
        for n in &t.networks {
            assert!(live.insert(n.addr), "address {} held twice", n.addr);
        }
    }
    assert_eq!(
        sim.service(&web).endpoint.ports[0].published_port,
        30000,
        "kept"
    );
}

/// An updated task that fails within `--update-monitor` of the last start (a health check that
/// turned unhealthy) triggers the failure action; one that fails after it is only replaced.
#[test]
fn failures_count_during_the_update_monitor_only() {
    let mut sim = Sim::new(&["a"]);
    let web = sim.create("web", |s| {
        s.mode = ServiceMode::Replicated { replicas: 1 };
        s.update.failure_action = FailureAction::Rollback;
        s.update.monitor_ms = 5_000;
    });
    sim.update(&web, |s| s.task.container.image = "busybox:2".into());
    sim.run();
    assert_eq!(sim.images_running(&web), ["busybox:2"]);
    sim.wait(2_000);
    assert_eq!(sim.update_state(&web).unwrap().0, UpdateState::Updating);
    let new = sim.running_in_slot(&web, 1)[0].id.clone();
    sim.report(&new, TaskState::Failed, "dockerexec: unhealthy container");
    sim.run();
    assert_eq!(
        sim.update_state(&web).unwrap().0,
        UpdateState::RollbackStarted
    );
    sim.wait(20_000);
    assert_eq!(sim.images_running(&web), ["busybox:1"]);

    // Past the monitor period the update is over: a failure is replaced, nothing rolls back.
    sim.update(&web, |s| s.task.container.image = "busybox:3".into());
    sim.wait(6_000);
    assert_eq!(sim.update_state(&web).unwrap().0, UpdateState::Completed);
    let new = sim.running_in_slot(&web, 1)[0].id.clone();
    sim.report(&new, TaskState::Failed, "dockerexec: unhealthy container");
    sim.run();
    assert_eq!(sim.update_state(&web).unwrap().0, UpdateState::Completed);
    assert_eq!(sim.images_running(&web), ["busybox:3"]);
}

/// A new task that stays `starting` (its health check has not passed) holds its slot in flight:
/// the next batch waits for it to run.
#[test]
fn an_update_waits_for_new_tasks_to_run() {
    let mut sim = Sim::new(&["a", "b"]);
    let web = sim.create("web", |s| s.mode = ServiceMode::Replicated { replicas: 2 });
    sim.update(&web, |s| s.task.container.image = "busybox:2".into());
    sim.plan();
    let new: Vec<Id> = sim
        .tasks(&web)
        .into_iter()
        .filter(|t| t.spec.container.image == "busybox:2")
        .map(|t| t.id.clone())
        .collect();
    assert_eq!(new.len(), 1, "parallelism 1: one slot at a time");
    sim.report(&new[0], TaskState::Starting, "");
    // Time passes with no agent to move the task on (`wait` would run it).
    sim.now += 30_000;
    sim.plan();
    let started: Vec<&Task> = sim
        .tasks(&web)
        .into_iter()
        .filter(|t| t.spec.container.image == "busybox:2")
        .collect();
    assert_eq!(
        started.len(),
        1,
        "no second batch while the first is starting"
    );
    sim.run(); // the agent reports it running: the next batch goes
    assert_eq!(sim.images_running(&web), ["busybox:2", "busybox:2"]);
}
