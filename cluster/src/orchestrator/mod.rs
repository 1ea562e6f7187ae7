//! The orchestrator: keeps every service at its desired state, as Swarm's orchestrators, restart
//! supervisor, updater, constraint enforcer and task reaper do together. [`reconcile`] is a pure
//! core: the state and the time in, the changes out (a [`Tx`]) with the next time it wants to be
//! called again. The control loop calls it on every state change and when that time comes; a
//! call on the state its own changes produced returns no changes.
//!
//! Tasks live in slots: `1..=replicas` for a replicated service, one per node for a global one.
//! A task is never restarted in place: a new task replaces it in its slot. Tasks that should stop
//! get desired state `shutdown` (the agent stops them; they stay as history, at most
//! [`TASK_HISTORY_LIMIT`] per slot); a replacement that must wait (restart delay, or a stop-first
//! update waiting for the old task to stop) is made with desired state `ready` and started
//! (desired `running`) once it may.

mod global;
mod replicated;
mod restart;
mod update;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use crate::Id;
use crate::spec::{Constraint, SpecError, matches_all, parse_constraints};
use crate::state::{
    Availability, ClusterState, Kind, Meta, Millis, NodeState, Object, Op, Service, ServiceMode,
    ServiceSpec, Task, TaskState, TaskStatus, Tx, UpdateState, UpdateStatus,
};

pub use update::is_task_dirty;

/// Tasks kept per slot (per node for global services), the live one included, as Swarm's
/// default `--task-history-limit`.
pub const TASK_HISTORY_LIMIT: usize = 5;

/// What a reconcile pass decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reconciled {
    pub tx: Tx,
    /// When to call again even if nothing changes (a restart delay, an update's delay or monitor
    /// period ends); `None`: only on the next state change.
    pub wake_at: Option<Millis>,
}

/// Where a task belongs: a replica number, or a node for global services.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum SlotKey {
    Replica(u64),
    Node(Id),
    /// A global service's task without a node (never made by this orchestrator).
    Unplaced,
}

/// How a task's node stands for the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NodeFit {
    Gone,
    Down,
    Drain,
    /// It no longer meets the service's constraints.
    Unfit,
    /// Tasks may stay; `eligible`: new tasks may come (ready and active).
    Keep {
        eligible: bool,
    },
}

/// Says why the constraint enforcer stopped a task, as Swarm's does.
const CONSTRAINT_REJECTED: &str = "task rejected by constraint enforcer";

/// One service's tasks, worked on locally until nothing changes, then turned into operations.
struct Work<'a> {
    state: &'a ClusterState,
    now: Millis,
    service: Service,
    constraints: Option<Vec<Constraint>>,
    /// Borrowed from the state until changed: a pass that changes nothing copies nothing.
    tasks: Vec<Cow<'a, Task>>,
    deleted: Vec<Id>,
    changed: bool,
    wake_at: Option<Millis>,
}

fn runnable(t: &Task) -> bool {
    t.desired_state <= TaskState::Running
}

/// The task stopped without being asked to (exited, failed, or was refused).
fn ended_on_its_own(t: &Task) -> bool {
    matches!(
        t.status.state,
        TaskState::Complete | TaskState::Failed | TaskState::Rejected
    )
}

/// Newest first: creation time, then the status's time, then id (for a total order).
fn newest_first(a: &Task, b: &Task) -> std::cmp::Ordering {
    (b.meta.created_at, b.status.timestamp, &b.id).cmp(&(
        a.meta.created_at,
        a.status.timestamp,
        &a.id,
    ))
}

impl<'a> Work<'a> {
    fn new(state: &'a ClusterState, now: Millis, service: &Service, tasks: Vec<&'a Task>) -> Self {
        Self {
            state,
            now,
            constraints: parse_constraints(&service.spec.task.placement.constraints).ok(),
            service: service.clone(),
            tasks: tasks.into_iter().map(Cow::Borrowed).collect(),
            deleted: Vec::new(),
            changed: false,
            wake_at: None,
        }
    }

    fn wake(&mut self, at: Millis) {
        if at > self.now {
            self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
        }
    }

    fn is_global(&self) -> bool {
        self.service.spec.mode == ServiceMode::Global
    }

    fn slot_of(&self, t: &Task) -> SlotKey {
        if self.is_global() {
            t.node_id.clone().map_or(SlotKey::Unplaced, SlotKey::Node)
        } else {
            SlotKey::Replica(t.slot)
        }
    }

    /// Task indices by slot.
    fn slots(&self) -> BTreeMap<SlotKey, Vec<usize>> {
        let mut out: BTreeMap<SlotKey, Vec<usize>> = BTreeMap::new();
        for (i, t) in self.tasks.iter().enumerate() {
            out.entry(self.slot_of(t)).or_default().push(i);
        }
        out
    }

    fn node_fit(&self, node: &Id) -> NodeFit {
        let Some(n) = self.state.nodes.get(node) else {
            return NodeFit::Gone;
        };
        if n.status.state == NodeState::Down {
            return NodeFit::Down;
        }
        if n.spec.availability == Availability::Drain {
            return NodeFit::Drain;
        }
        if !self.constraints.as_ref().is_some_and(|c| matches_all(c, n)) {
            return NodeFit::Unfit;
        }
        NodeFit::Keep {
            eligible: n.status.state == NodeState::Ready
                && n.spec.availability == Availability::Active,
        }
    }

    fn set_desired(&mut self, i: usize, desired: TaskState) {
        // Desired states only move forward.
        if self.tasks[i].desired_state < desired {
            self.tasks[i].to_mut().desired_state = desired;
            self.changed = true;
        }
        self.settle_unassigned(i);
    }

    /// A task asked to stop that never reached a node has nothing to stop: it is shut down now.
    fn settle_unassigned(&mut self, i: usize) {
        let t = &self.tasks[i];
        if !runnable(t)
            && !t.status.state.is_terminal()
            && (t.node_id.is_none() || t.status.state < TaskState::Assigned)
        {
            let t = self.tasks[i].to_mut();
            t.status.state = TaskState::Shutdown;
            t.status.message = "shut down before it started".into();
            t.status.timestamp = self.now;
            self.changed = true;
        }
    }

    fn set_status(&mut self, i: usize, state: TaskState, message: &str, err: &str) {
        let now = self.now;
        let s = &self.tasks[i].status;
        if s.state != state || s.message != message || s.err != err {
            let s = &mut self.tasks[i].to_mut().status;
            *s = TaskStatus {
                timestamp: now,
                state,
                message: message.into(),
                err: err.into(),
                ..s.clone()
            };
            self.changed = true;
        }
    }

    /// A new task of the service's current spec in `slot`.
    fn create(&mut self, slot: &SlotKey, desired: TaskState, ids: &mut dyn FnMut() -> Id) -> usize {
        let s = &self.service;
        let (slot_number, node_id) = match slot {
            SlotKey::Replica(n) => (*n, None),
            SlotKey::Node(n) => (0, Some(n.clone())),
            SlotKey::Unplaced => (0, None),
        };
        self.tasks.push(Cow::Owned(Task {
            id: ids(),
            meta: Meta {
                version: 0,
                created_at: self.now,
                updated_at: self.now,
            },
            service_id: s.id.clone(),
            slot: slot_number,
            node_id,
            spec: s.spec.task.clone(),
            spec_version: s.meta.version,
            desired_state: desired,
            status: TaskStatus {
                timestamp: self.now,
                state: TaskState::New,
                message: "created".into(),
                ..TaskStatus::default()
            },
            networks: Vec::new(),
            start_at: self.now,
            restart_history: Vec::new(),
            endpoint: s.spec.endpoint.clone(),
        }));
        self.changed = true;
        self.tasks.len() - 1
    }

    /// Is this task on its way down on a node that will report it (so a replacement waits)?
    fn is_stopping(&self, t: &Task) -> bool {
        !runnable(t)
            && !t.status.state.is_terminal()
            && t.status.state >= TaskState::Assigned
            && t.node_id
                .as_ref()
                .is_some_and(|n| !matches!(self.node_fit(n), NodeFit::Gone | NodeFit::Down))
    }

    fn rolling_back(&self) -> bool {
        matches!(
            self.service.update_status.as_ref().map(|u| u.state),
            Some(UpdateState::RollbackStarted | UpdateState::RollbackPaused)
        )
    }

    /// The slots the service should fill now, in order.
    fn live_slots(&self) -> Vec<SlotKey> {
        match self.service.spec.mode {
            ServiceMode::Replicated { replicas } => (1..=replicas).map(SlotKey::Replica).collect(),
            ServiceMode::Global => global::eligible_nodes(self),
        }
    }

    /// May the slot's tasks stay (and be restarted there)?
    fn slot_kept(&self, slot: &SlotKey) -> bool {
        match (slot, self.service.spec.mode) {
            (SlotKey::Replica(n), ServiceMode::Replicated { replicas }) => {
                (1..=replicas).contains(n)
            }
            (SlotKey::Node(n), ServiceMode::Global) => {
                matches!(self.node_fit(n), NodeFit::Keep { .. })
            }
            _ => false,
        }
    }

    /// One pass of every rule; `changed` says whether another is needed.
    fn pass(&mut self, ids: &mut dyn FnMut() -> Id) {
        self.constraints = parse_constraints(&self.service.spec.task.placement.constraints).ok();
        self.wake_at = None;
        self.enforce_nodes(ids);
        restart::handle_ended(self, ids);
        self.stop_extra();
        self.fill(ids);
        update::advance(self, ids);
        restart::start_ready(self);
    }

    /// Tasks whose node went down, away, into drain, or out of the constraints.
    fn enforce_nodes(&mut self, ids: &mut dyn FnMut() -> Id) {
        for i in 0..self.tasks.len() {
            let t = &self.tasks[i];
            if t.status.state.is_terminal() {
                continue;
            }
            let Some(node) = t.node_id.clone() else {
                continue;
            };
            let was_runnable = runnable(t);
            let fit = self.node_fit(&node);
            match fit {
                NodeFit::Gone | NodeFit::Down => {
                    let why = if fit == NodeFit::Gone {
                        "task orphaned: its node was removed"
                    } else {
                        "task orphaned: its node is down"
                    };
                    self.set_status(i, TaskState::Orphaned, why, "");
                    self.set_desired(i, TaskState::Shutdown);
                }
                NodeFit::Drain if was_runnable => self.set_desired(i, TaskState::Shutdown),
                NodeFit::Unfit if was_runnable => {
                    self.set_status(
                        i,
                        TaskState::Rejected,
                        CONSTRAINT_REJECTED,
                        "assigned node no longer meets constraints",
                    );
                    self.set_desired(i, TaskState::Shutdown);
                }
                _ => continue,
            }
            if was_runnable {
                let slot = self.slot_of(&self.tasks[i]);
                replicated::relocate(self, &slot, ids);
            }
        }
    }

    /// Scale down and strays: runnable tasks outside the live slots stop (the highest replica
    /// numbers go first, since slots are always `1..=replicas`), and a slot never keeps two
    /// runnable tasks of the current spec.
    fn stop_extra(&mut self) {
        for (slot, members) in self.slots() {
            let kept = match &slot {
                SlotKey::Node(_) => true, // node problems are `enforce_nodes`'s
                other => self.slot_kept(other),
            };
            let mut clean: Vec<usize> = Vec::new();
            for i in members {
                if !runnable(&self.tasks[i]) {
                    continue;
                }
                if !kept {
                    self.set_desired(i, TaskState::Shutdown);
                } else if !self.is_dirty(&self.tasks[i]) {
                    clean.push(i);
                }
            }
            clean.sort_by(|a, b| newest_first(&self.tasks[*a], &self.tasks[*b]));
            for i in clean.into_iter().skip(1) {
                self.set_desired(i, TaskState::Shutdown);
            }
        }
    }

    /// A live slot with no runnable task gets a new one, unless its last task ended and the
    /// restart policy said no (during a rollback such a slot is filled too, as Swarm does).
    fn fill(&mut self, ids: &mut dyn FnMut() -> Id) {
        let slots = self.slots();
        for slot in self.live_slots() {
            let members = slots.get(&slot).map_or(&[][..], Vec::as_slice);
            if members.iter().any(|i| runnable(&self.tasks[*i])) {
                continue;
            }
            if self.is_dead(members) && !self.rolling_back() {
                continue;
            }
            self.create(&slot, TaskState::Running, ids);
        }
    }

    /// The slot's newest task ended on its own and was not replaced.
    fn is_dead(&self, members: &[usize]) -> bool {
        members
            .iter()
            .map(|i| &self.tasks[*i])
            .min_by(|a, b| newest_first(a, b))
            .is_some_and(|t| ended_on_its_own(t) && t.status.message != CONSTRAINT_REJECTED)
    }

    fn is_dirty(&self, t: &Task) -> bool {
        let node = t.node_id.as_ref().and_then(|n| self.state.nodes.get(n));
        is_task_dirty(&self.service, t, node)
    }

    /// Swarm's task reaper: at most [`TASK_HISTORY_LIMIT`] tasks per slot; older ones that have
    /// finished are deleted.
    fn trim_history(&mut self) {
        let mut gone = Vec::new();
        for members in self.slots().into_values() {
            if members.len() <= TASK_HISTORY_LIMIT {
                continue;
            }
            let mut members = members;
            members.sort_by(|a, b| newest_first(&self.tasks[*a], &self.tasks[*b]));
            gone.extend(members.into_iter().skip(TASK_HISTORY_LIMIT).filter(|i| {
                let t = &self.tasks[*i];
                !runnable(t) && t.status.state.is_terminal()
            }));
        }
        gone.sort_unstable();
        for i in gone.into_iter().rev() {
            let t = self.tasks.remove(i);
            self.deleted.push(t.id.clone());
        }
    }

    /// Sets the update status, keeping what it was started with.
    fn set_update_state(&mut self, state: UpdateState, message: String) {
        let now = self.now;
        let status = self.service.update_status.get_or_insert(UpdateStatus {
            state,
            started_at: now,
            completed_at: None,
            message: String::new(),
        });
        status.state = state;
        status.message = message;
        if matches!(
            state,
            UpdateState::Completed | UpdateState::RollbackCompleted
        ) {
            status.completed_at = Some(now);
        }
        self.changed = true;
    }

    fn emit(self, base: &ClusterState, ops: &mut Vec<Op>) {
        if base.services.get(&self.service.id) != Some(&self.service)
            && base.services.contains_key(&self.service.id)
        {
            ops.push(Op::Put(Object::Service(self.service)));
        }
        emit_tasks(base, self.tasks, self.deleted, ops);
    }
}

fn emit_tasks(base: &ClusterState, tasks: Vec<Cow<Task>>, deleted: Vec<Id>, ops: &mut Vec<Op>) {
    for t in tasks {
        if let Cow::Owned(t) = t
            && base.tasks.get(&t.id) != Some(&t)
        {
            ops.push(Op::Put(Object::Task(t)));
        }
    }
    for id in deleted {
        let version = base.version_of(Kind::Task, &id);
        if version != 0 {
            ops.push(Op::Delete {
                kind: Kind::Task,
                id,
                version,
            });
        }
    }
}

/// Runs the rules over one service until nothing changes. Every rule only moves tasks forward
/// (desired states never go back, new tasks fill what is missing), so this ends quickly; the
/// bound guards against a rule that would not.
fn settle(work: &mut Work, ids: &mut dyn FnMut() -> Id) {
    for _ in 0..16 {
        work.changed = false;
        work.pass(ids);
        if !work.changed {
            break;
        }
    }
    debug_assert!(!work.changed, "service {} did not settle", work.service.id);
    work.trim_history();
}

/// Tasks of a removed service: asked to stop, then deleted once stopped.
fn remove_orphans(state: &ClusterState, now: Millis, tasks: Vec<&Task>, ops: &mut Vec<Op>) {
    let mut kept = Vec::new();
    let mut deleted = Vec::new();
    for t in tasks {
        let mut t = t.clone();
        if t.desired_state < TaskState::Remove {
            t.desired_state = TaskState::Remove;
        }
        if !t.status.state.is_terminal() {
            let node = t.node_id.as_ref().and_then(|n| state.nodes.get(n));
            let (state_now, message) = match node {
                _ if t.node_id.is_none() || t.status.state < TaskState::Assigned => {
                    (TaskState::Shutdown, "shut down before it started")
                }
                None => (TaskState::Orphaned, "task orphaned: its node was removed"),
                Some(n) if n.status.state == NodeState::Down => {
                    (TaskState::Orphaned, "task orphaned: its node is down")
                }
                Some(_) => (t.status.state, ""),
            };
            if state_now != t.status.state {
                t.status.state = state_now;
                t.status.message = message.into();
                t.status.timestamp = now;
            }
        }
        if t.status.state.is_terminal() {
            deleted.push(t.id);
        } else {
            kept.push(Cow::Owned(t));
        }
    }
    emit_tasks(state, kept, deleted, ops);
}

/// One orchestrator pass over the whole cluster (see the module's description). `ids` makes the
/// ids of new tasks.
pub fn reconcile(state: &ClusterState, now: Millis, ids: &mut dyn FnMut() -> Id) -> Reconciled {
    let mut by_service: HashMap<&Id, Vec<&Task>> = HashMap::new();
    for t in state.tasks.values() {
        by_service.entry(&t.service_id).or_default().push(t);
    }
    let mut out = Reconciled {
        tx: Tx {
            at: now,
            ops: Vec::new(),
        },
        wake_at: None,
    };
    for service in state.services.values() {
        let tasks = by_service.remove(&service.id).unwrap_or_default();
        let mut work = Work::new(state, now, service, tasks);
        settle(&mut work, ids);
        if let Some(w) = work.wake_at {
            out.wake_at = Some(out.wake_at.map_or(w, |o: Millis| o.min(w)));
        }
        work.emit(state, &mut out.tx.ops);
    }
    let mut orphans: Vec<(&Id, Vec<&Task>)> = by_service.into_iter().collect();
    orphans.sort_by_key(|(id, _)| *id);
    for (_, tasks) in orphans {
        remove_orphans(state, now, tasks, &mut out.tx.ops);
    }
    out
}

/// A new service as `service create` stores it (the allocator fills its endpoint).
pub fn new_service(spec: ServiceSpec, id: Id) -> Service {
    Service {
        id,
        meta: Meta::default(),
        spec,
        previous_spec: None,
        endpoint: crate::state::Endpoint::default(),
        update_status: None,
        stack: None,
        registry_auth: None,
    }
}

/// `service update`: the service with `spec` in place, the old spec kept for `--rollback`, and
/// the update status cleared so that the orchestrator starts a rolling update if tasks must
/// change. Refuses a rename or a change of mode (replicated/global), as Swarm does.
pub fn update_service(current: &Service, spec: ServiceSpec) -> Result<Service, SpecError> {
    if spec.name != current.spec.name {
        return Err(SpecError::new(format!(
            "renaming services is not supported (service {:?} cannot become {:?})",
            current.spec.name, spec.name
        )));
    }
    if matches!(spec.mode, ServiceMode::Global) != matches!(current.spec.mode, ServiceMode::Global)
    {
        return Err(SpecError::new(
            "service mode change is not allowed: remove the service and create it again",
        ));
    }
    let mut s = current.clone();
    if spec != current.spec {
        s.previous_spec = Some(std::mem::replace(&mut s.spec, spec));
        s.update_status = None;
    }
    Ok(s)
}

/// `service update --rollback`: back to the previous spec (which becomes the previous one in
/// turn), rolled out with the rollback config.
pub fn rollback_service(current: &Service, now: Millis) -> Result<Service, SpecError> {
    let Some(previous) = current.previous_spec.clone() else {
        return Err(SpecError::new(format!(
            "service {} does not have a previous spec to roll back to",
            current.spec.name
        )));
    };
    let mut s = current.clone();
    s.previous_spec = Some(std::mem::replace(&mut s.spec, previous));
    s.update_status = Some(UpdateStatus {
        state: UpdateState::RollbackStarted,
        started_at: now,
        completed_at: None,
        message: "manually requested rollback".into(),
    });
    Ok(s)
}

#[cfg(test)]
mod tests;
