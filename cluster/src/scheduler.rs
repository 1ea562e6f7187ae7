//! The scheduler: places pending tasks on nodes, as Swarm's does. Filters (in Swarm's order, which
//! its error messages follow): the node is ready and active, has the reserved resources free, meets
//! the constraints, has the task's host-mode ports free, and is under the service's max replicas
//! per node. Among the nodes left, placement preferences spread tasks over label values (nested in
//! order), then the node with the fewest tasks of the service wins, then the one with the fewest
//! tasks, then the lowest node id. A task nothing fits stays pending with the reason in
//! `status.err`, as `no suitable node (scheduling constraints not satisfied on 3 nodes)`.
//!
//! Tasks with the same service and spec are placed as a group: the filters that cannot change
//! during a pass run once per group and node, and each placement pops the best node from a heap,
//! so a pass costs O(groups × nodes + tasks × log nodes).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use crate::Id;
use crate::spec::{Constraint, matches_all, parse_constraints};
use crate::state::{
    Availability, ClusterState, Millis, Node, NodeState, Object, Op, Protocol, PublishMode,
    Resources, Service, Task, TaskSpec, TaskState, Tx,
};

/// What Swarm says when a filter leaves no node, by filter, in pipeline order.
const READY: usize = 0;
const RESOURCES: usize = 1;
const CONSTRAINTS: usize = 2;
const HOST_PORTS: usize = 3;
const MAX_REPLICAS: usize = 4;

fn explain_filter(filter: usize, nodes: usize) -> String {
    let n = if nodes == 1 {
        "1 node".to_owned()
    } else {
        format!("{nodes} nodes")
    };
    match filter {
        READY => format!("{n} not available for new tasks"),
        RESOURCES => format!("insufficient resources on {n}"),
        CONSTRAINTS => format!("scheduling constraints not satisfied on {n}"),
        HOST_PORTS => format!("host-mode port already in use on {n}"),
        _ => "max replicas per node limit exceed".to_owned(),
    }
}

/// What the scheduler knows of a node during a pass.
struct NodeInfo<'a> {
    node: &'a Node,
    available: Resources,
    /// Tasks meant to run here (desired state running or ready).
    active: u32,
    active_by_service: HashMap<&'a Id, u32>,
    host_ports: HashSet<(Protocol, u16)>,
}

impl NodeInfo<'_> {
    fn of_service(&self, service: &Id) -> u32 {
        self.active_by_service.get(service).copied().unwrap_or(0)
    }
}

/// Tasks of one service with one spec, placed together.
struct Group<'a> {
    service: &'a Service,
    spec: &'a TaskSpec,
    constraints: Option<Vec<Constraint>>,
    host_ports: Vec<(Protocol, u16)>,
    tasks: Vec<&'a Task>,
}

impl<'a> Group<'a> {
    fn new(service: &'a Service, spec: &'a TaskSpec) -> Self {
        Self {
            service,
            spec,
            constraints: parse_constraints(&spec.placement.constraints).ok(),
            host_ports: host_ports(service),
            tasks: Vec::new(),
        }
    }

    /// The filters a pass cannot change: readiness and constraints.
    fn fixed_failure(&self, n: &NodeInfo) -> Option<usize> {
        let node = n.node;
        if node.status.state != NodeState::Ready || node.spec.availability != Availability::Active {
            return Some(READY);
        }
        if !self
            .constraints
            .as_ref()
            .is_some_and(|c| matches_all(c, node))
        {
            return Some(CONSTRAINTS);
        }
        None
    }

    /// The filters placements change: resources, host ports, max replicas. Each only gets worse
    /// as tasks are added, so a node that fails one is out for the rest of the group.
    fn moving_failure(&self, n: &NodeInfo) -> Option<usize> {
        let want = &self.spec.resources.reservations;
        if want.nano_cpus > n.available.nano_cpus || want.memory_bytes > n.available.memory_bytes {
            return Some(RESOURCES);
        }
        if self.host_ports.iter().any(|p| n.host_ports.contains(p)) {
            return Some(HOST_PORTS);
        }
        let max = self.spec.placement.max_replicas_per_node;
        if max > 0 && u64::from(n.of_service(&self.service.id)) >= max {
            return Some(MAX_REPLICAS);
        }
        None
    }

    /// The first failing filter in Swarm's order, for the explanation.
    fn failure(&self, n: &NodeInfo) -> Option<usize> {
        let mut failures = [self.fixed_failure(n), self.moving_failure(n)];
        failures.sort_unstable_by_key(|f| f.unwrap_or(usize::MAX));
        failures[0]
    }

    fn explain(&self, nodes: &[NodeInfo]) -> String {
        let mut counts = [0usize; 5];
        for n in nodes {
            if let Some(f) = self.failure(n) {
                counts[f] += 1;
            }
        }
        let mut order: Vec<usize> = (0..counts.len()).filter(|f| counts[*f] > 0).collect();
        order.sort_by_key(|f| Reverse(counts[*f]));
        if order.is_empty() {
            return "no suitable node".into();
        }
        let parts: Vec<String> = order
            .iter()
            .map(|f| explain_filter(*f, counts[*f]))
            .collect();
        format!("no suitable node ({})", parts.join("; "))
    }

    fn add(&self, n: &mut NodeInfo<'a>) {
        let want = &self.spec.resources.reservations;
        n.available.nano_cpus -= want.nano_cpus;
        n.available.memory_bytes -= want.memory_bytes;
        n.active += 1;
        *n.active_by_service.entry(&self.service.id).or_default() += 1;
        n.host_ports.extend(self.host_ports.iter().copied());
    }
}

fn host_ports(s: &Service) -> Vec<(Protocol, u16)> {
    s.spec
        .endpoint
        .ports
        .iter()
        .filter(|p| p.publish_mode == PublishMode::Host && p.published_port != 0)
        .map(|p| (p.protocol, p.published_port))
        .collect()
}

type HeapKey = Reverse<(u32, u32, usize)>;

fn key(nodes: &[NodeInfo], service: &Id, i: usize) -> HeapKey {
    Reverse((nodes[i].of_service(service), nodes[i].active, i))
}

/// Nodes arranged by placement preferences: one level per preference, one branch per label value.
enum Tree {
    Leaf(BinaryHeap<HeapKey>),
    Branches(Vec<Branch>),
}

struct Branch {
    value: String,
    /// Tasks of the service under this branch.
    tasks: u64,
    full: bool,
    tree: Tree,
}

fn label_value<'n>(node: &'n Node, descriptor: &str) -> &'n str {
    let labels = if let Some(l) = descriptor.strip_prefix("node.labels.") {
        node.spec.labels.get(l)
    } else if let Some(l) = descriptor.strip_prefix("engine.labels.") {
        node.description.engine_labels.get(l)
    } else {
        None
    };
    labels.map_or("", String::as_str)
}

fn build_tree(nodes: &[NodeInfo], service: &Id, candidates: &[usize], prefs: &[String]) -> Tree {
    let Some((descriptor, rest)) = prefs.split_first() else {
        return Tree::Leaf(candidates.iter().map(|i| key(nodes, service, *i)).collect());
    };
    let mut by_value: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for i in candidates {
        by_value
            .entry(label_value(nodes[*i].node, descriptor))
            .or_default()
            .push(*i);
    }
    Tree::Branches(
        by_value
            .into_iter()
            .map(|(value, members)| Branch {
                value: value.to_owned(),
                tasks: members
                    .iter()
                    .map(|i| u64::from(nodes[*i].of_service(service)))
                    .sum(),
                full: false,
                tree: build_tree(nodes, service, &members, rest),
            })
            .collect(),
    )
}

impl Tree {
    /// Places one task of `group`: the branch with the fewest of its tasks at each level, then
    /// the best node of the leaf. The node's info is updated; `None` when nothing fits.
    fn place<'a>(&mut self, nodes: &mut [NodeInfo<'a>], group: &Group<'a>) -> Option<usize> {
        match self {
            Tree::Leaf(heap) => {
                while let Some(Reverse((_, _, i))) = heap.pop() {
                    if group.moving_failure(&nodes[i]).is_none() {
                        group.add(&mut nodes[i]);
                        heap.push(key(nodes, &group.service.id, i));
                        return Some(i);
                    }
                }
                None
            }
            Tree::Branches(branches) => loop {
                let best = branches
                    .iter_mut()
                    .filter(|b| !b.full)
                    .min_by(|a, b| (a.tasks, &a.value).cmp(&(b.tasks, &b.value)))?;
                if let Some(i) = best.tree.place(nodes, group) {
                    best.tasks += 1;
                    return Some(i);
                }
                best.full = true;
            },
        }
    }
}

/// Does this task wait for the scheduler?
fn is_pending(t: &Task) -> bool {
    t.status.state == TaskState::Pending && t.desired_state <= TaskState::Running
}

/// One scheduler pass: every pending task is assigned to a node (state `assigned`), or keeps
/// waiting with the reason in `status.err`. Global tasks come with their node already chosen; it
/// is checked like any other. Idempotent: a second pass over the result changes nothing.
pub fn schedule(state: &ClusterState, now: Millis) -> Tx {
    let mut nodes: Vec<NodeInfo> = state
        .nodes
        .values()
        .map(|node| NodeInfo {
            node,
            available: node.description.resources,
            active: 0,
            active_by_service: HashMap::new(),
            host_ports: HashSet::new(),
        })
        .collect();
    let index: HashMap<&Id, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (&n.node.id, i))
        .collect();
    let groups = group_pending_and_load_nodes(state, &mut nodes, &index);
    let mut tx = Tx {
        at: now,
        ops: Vec::new(),
    };
    for group in groups.into_values().flatten() {
        place_group(&group, &mut nodes, &index, now, &mut tx);
    }
    tx
}

/// Groups the pending tasks by service and spec; every placed task charges its node with its
/// resources, its service's activity and its host ports.
fn group_pending_and_load_nodes<'s>(
    state: &'s ClusterState,
    nodes: &mut [NodeInfo<'s>],
    index: &HashMap<&Id, usize>,
) -> BTreeMap<&'s Id, Vec<Group<'s>>> {
    let mut service_ports: HashMap<&Id, Vec<(Protocol, u16)>> = HashMap::new();
    let mut groups: BTreeMap<&Id, Vec<Group>> = BTreeMap::new();
    for t in state.tasks.values() {
        if is_pending(t) {
            let Some(service) = state.services.get(&t.service_id) else {
                continue;
            };
            let groups = groups.entry(&service.id).or_default();
            if let Some(g) = groups.iter_mut().find(|g| g.spec == &t.spec) {
                g.tasks.push(t);
            } else {
                let mut g = Group::new(service, &t.spec);
                g.tasks.push(t);
                groups.push(g);
            }
            continue;
        }
        // Placed tasks hold their resources until they end.
        let placed = t.status.state >= TaskState::Assigned && !t.status.state.is_terminal();
        let Some(&i) = t.node_id.as_ref().and_then(|n| index.get(n)) else {
            continue;
        };
        if !placed {
            continue;
        }
        let n = &mut nodes[i];
        n.available.nano_cpus -= t.spec.resources.reservations.nano_cpus;
        n.available.memory_bytes -= t.spec.resources.reservations.memory_bytes;
        if t.desired_state <= TaskState::Running {
            n.active += 1;
            *n.active_by_service.entry(&t.service_id).or_default() += 1;
        }
        let ports = service_ports.entry(&t.service_id).or_insert_with(|| {
            state
                .services
                .get(&t.service_id)
                .map(host_ports)
                .unwrap_or_default()
        });
        n.host_ports.extend(ports.iter().copied());
    }
    groups
}

/// Places one group's tasks: those with a node already chosen on it when it fits, the others
/// by the group's spread preferences; the ones left wait with the reason.
fn place_group<'s>(
    group: &Group<'s>,
    nodes: &mut [NodeInfo<'s>],
    index: &HashMap<&Id, usize>,
    now: Millis,
    tx: &mut Tx,
) {
    let mut tasks = group.tasks.clone();
    tasks.sort_by_key(|t| (t.slot, &t.id));
    let (preassigned, free): (Vec<&Task>, Vec<&Task>) =
        tasks.into_iter().partition(|t| t.node_id.is_some());
    for t in preassigned {
        let Some(&i) = t.node_id.as_ref().and_then(|n| index.get(n)) else {
            tx.ops
                .extend(wait(t, "no suitable node (the task's node is gone)", now));
            continue;
        };
        if group.failure(&nodes[i]).is_none() {
            group.add(&mut nodes[i]);
            tx.ops.push(assign(t, nodes[i].node, now));
        } else {
            let why = group.explain(&nodes[i..=i]);
            tx.ops.extend(wait(t, &why, now));
        }
    }
    if free.is_empty() {
        return;
    }
    let candidates: Vec<usize> = (0..nodes.len())
        .filter(|i| group.fixed_failure(&nodes[*i]).is_none())
        .collect();
    let prefs: Vec<String> = group
        .spec
        .placement
        .preferences
        .iter()
        .map(|p| p.spread.clone())
        .collect();
    let mut tree = build_tree(nodes, &group.service.id, &candidates, &prefs);
    let mut unplaced = Vec::new();
    for t in free {
        match tree.place(nodes, group) {
            Some(i) => tx.ops.push(assign(t, nodes[i].node, now)),
            None => unplaced.push(t),
        }
    }
    if !unplaced.is_empty() {
        let why = group.explain(nodes);
        tx.ops
            .extend(unplaced.into_iter().filter_map(|t| wait(t, &why, now)));
    }
}

/// Task `t` assigned to `node`.
fn assign(t: &Task, node: &Node, now: Millis) -> Op {
    let mut t = t.clone();
    t.node_id = Some(node.id.clone());
    t.status.state = TaskState::Assigned;
    t.status.message = "scheduler assigned task to node".into();
    t.status.err.clear();
    t.status.timestamp = now;
    Op::Put(Object::Task(t))
}

/// Task `t` waiting because of `why`; nothing when it already says so.
fn wait(t: &Task, why: &str, now: Millis) -> Option<Op> {
    (t.status.err != why).then(|| {
        let mut t = t.clone();
        why.clone_into(&mut t.status.err);
        t.status.timestamp = now;
        Op::Put(Object::Task(t))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::state::{Meta, NodeRole, NodeSpec, ServiceSpec, SpreadPreference, TaskStatus};

    pub(crate) fn node(id: &str) -> Node {
        let resources = Resources {
            nano_cpus: 4_000_000_000,
            memory_bytes: 8 << 30,
        };
        crate::synthetic::ready_node(
            Id::from(id),
            NodeSpec::default(),
            format!("host-{id}"),
            resources,
        )
    }

    fn service(id: &str) -> Service {
        let mut spec = ServiceSpec {
            name: id.into(),
            ..ServiceSpec::default()
        };
        spec.task.container.image = "busybox".into();
        Service {
            id: Id::from(id),
            meta: Meta::default(),
            spec,
            previous_spec: None,
            endpoint: crate::state::Endpoint::default(),
            update_status: None,
            stack: None,
            registry_auth: None,
        }
    }

    fn pending(s: &Service, n: u64) -> Vec<Task> {
        (1..=n)
            .map(|slot| Task {
                id: Id::from(format!("{}-{slot:03}", s.id)),
                meta: Meta::default(),
                service_id: s.id.clone(),
                slot,
                node_id: None,
                spec: s.spec.task.clone(),
                spec_version: 0,
                desired_state: TaskState::Running,
                status: TaskStatus {
                    state: TaskState::Pending,
                    ..TaskStatus::default()
                },
                networks: vec![],
                start_at: 0,
                restart_history: vec![],
                endpoint: crate::state::EndpointSpec::default(),
            })
            .collect()
    }

    struct World {
        state: ClusterState,
    }

    impl World {
        fn new(nodes: &[&str]) -> Self {
            let mut state = ClusterState::default();
            for n in nodes {
                state.nodes.insert(Id::from(*n), node(n));
            }
            Self { state }
        }
        fn node(&mut self, id: &str) -> &mut Node {
            self.state.nodes.get_mut(&Id::from(id)).unwrap()
        }
        fn add(&mut self, s: &Service, replicas: u64) {
            self.state.services.insert(s.id.clone(), s.clone());
            for t in pending(s, replicas) {
                self.state.tasks.insert(t.id.clone(), t);
            }
        }
        /// Runs a pass, applies it, checks that another pass changes nothing.
        fn schedule(&mut self) {
            let tx = schedule(&self.state, 100);
            self.state.apply(&tx, 1).unwrap();
            let again = schedule(&self.state, 101);
            assert!(again.ops.is_empty(), "not idempotent: {:?}", again.ops);
        }
        /// Tasks of `service` per node id, in node order; `-` for unplaced.
        fn spread(&self, service: &str) -> BTreeMap<String, usize> {
            let mut out = BTreeMap::new();
            for t in self.state.tasks_of(&Id::from(service)) {
                let k = t
                    .node_id
                    .as_ref()
                    .map_or("-".to_owned(), ToString::to_string);
                *out.entry(k).or_default() += 1;
            }
            out
        }
        fn errors(&self, service: &str) -> Vec<String> {
            self.state
                .tasks_of(&Id::from(service))
                .filter(|t| t.node_id.is_none())
                .map(|t| t.status.err.clone())
                .collect()
        }
    }

    fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn five_replicas_on_three_nodes_spread_two_two_one() {
        let mut w = World::new(&["a", "b", "c"]);
        w.add(&service("web"), 5);
        w.schedule();
        assert_eq!(w.spread("web"), counts(&[("a", 2), ("b", 2), ("c", 1)]));
        let t = w.state.tasks.values().next().unwrap();
        assert_eq!(t.status.state, TaskState::Assigned);
        assert_eq!(t.status.message, "scheduler assigned task to node");
    }

    #[test]
    fn fewest_of_the_service_then_fewest_overall() {
        let mut w = World::new(&["a", "b", "c"]);
        w.add(&service("one"), 1); // lands on a
        w.schedule();
        w.add(&service("two"), 2); // b and c: a already has a task
        w.schedule();
        assert_eq!(w.spread("two"), counts(&[("b", 1), ("c", 1)]));
        w.add(&service("three"), 3); // one on each
        w.schedule();
        assert_eq!(w.spread("three"), counts(&[("a", 1), ("b", 1), ("c", 1)]));
    }

    #[test]
    fn availability_and_readiness() {
        let mut w = World::new(&["a", "b", "c", "d"]);
        w.node("a").spec.availability = Availability::Drain;
        w.node("b").spec.availability = Availability::Pause;
        w.node("c").status.state = NodeState::Down;
        w.add(&service("web"), 3);
        w.schedule();
        assert_eq!(w.spread("web"), counts(&[("d", 3)]));
        w.node("d").spec.availability = Availability::Drain;
        w.add(&service("late"), 1);
        w.schedule();
        assert_eq!(
            w.errors("late"),
            ["no suitable node (4 nodes not available for new tasks)"]
        );
    }

    #[test]
    fn constraints_and_their_explanation() {
        let mut w = World::new(&["a", "b", "c"]);
        w.node("a").spec.role = NodeRole::Manager;
        w.node("b").spec.labels.insert("zone".into(), "east".into());
        let mut s = service("web");
        s.spec.task.placement.constraints = vec!["node.labels.zone==east".into()];
        w.add(&s, 2);
        let mut m = service("mgr");
        m.spec.task.placement.constraints = vec!["node.role==manager".into()];
        w.add(&m, 1);
        let mut never = service("never");
        never.spec.task.placement.constraints = vec!["node.labels.zone==west".into()];
        w.add(&never, 2);
        w.schedule();
        assert_eq!(w.spread("web"), counts(&[("b", 2)]));
        assert_eq!(w.spread("mgr"), counts(&[("a", 1)]));
        assert_eq!(
            w.errors("never"),
            ["no suitable node (scheduling constraints not satisfied on 3 nodes)"; 2]
        );
    }

    #[test]
    fn reservations_count_what_is_already_there() {
        let mut w = World::new(&["a", "b", "c"]);
        let mut big = service("big");
        big.spec.task.resources.reservations.memory_bytes = 5 << 30; // of 8G per node
        w.add(&big, 4);
        w.schedule();
        assert_eq!(
            w.spread("big"),
            counts(&[("a", 1), ("b", 1), ("c", 1), ("-", 1)])
        );
        assert_eq!(
            w.errors("big"),
            ["no suitable node (insufficient resources on 3 nodes)"]
        );
        // The failing filters are listed most first, as Swarm does.
        w.node("c").spec.availability = Availability::Drain;
        let mut t = w
            .state
            .tasks
            .values()
            .find(|t| t.node_id.is_none())
            .unwrap()
            .clone();
        t.status.err.clear();
        w.state.tasks.insert(t.id.clone(), t);
        w.schedule();
        assert_eq!(
            w.errors("big"),
            [
                "no suitable node (insufficient resources on 2 nodes; 1 node not available for new tasks)"
            ]
        );
        // A task that ended frees its reservation.
        let done = w
            .state
            .tasks
            .values()
            .find(|t| t.node_id == Some(Id::from("a")))
            .unwrap();
        let mut done = done.clone();
        done.status.state = TaskState::Failed;
        w.state.tasks.insert(done.id.clone(), done);
        w.schedule();
        assert_eq!(w.spread("big"), counts(&[("a", 2), ("b", 1), ("c", 1)]));
    }

    #[test]
    fn max_replicas_per_node_and_host_ports() {
        let mut w = World::new(&["a", "b"]);
        let mut s = service("web");
        s.spec.task.placement.max_replicas_per_node = 1;
        w.add(&s, 3);
        w.schedule();
        assert_eq!(w.spread("web"), counts(&[("a", 1), ("b", 1), ("-", 1)]));
        assert_eq!(
            w.errors("web"),
            ["no suitable node (max replicas per node limit exceed)"]
        );

        let mut w = World::new(&["a", "b"]);
        let mut h = service("host");
        h.spec.endpoint.ports =
            vec![crate::spec::parse_port("published=80,target=80,mode=host").unwrap()];
        w.add(&h, 3);
        w.schedule();
        assert_eq!(w.spread("host"), counts(&[("a", 1), ("b", 1), ("-", 1)]));
        assert_eq!(
            w.errors("host"),
            ["no suitable node (host-mode port already in use on 2 nodes)"]
        );
    }

    #[test]
    fn spread_preferences_nest_in_order() {
        // Two zones; east has three nodes over two racks, west one node.
        let mut w = World::new(&["e1", "e2", "e3", "w1"]);
        for (n, zone, rack) in [
            ("e1", "east", "r1"),
            ("e2", "east", "r1"),
            ("e3", "east", "r2"),
            ("w1", "west", "r3"),
        ] {
            w.node(n).spec.labels.insert("zone".into(), zone.into());
            w.node(n).spec.labels.insert("rack".into(), rack.into());
        }
        let mut s = service("web");
        s.spec.task.placement.preferences = vec![
            SpreadPreference {
                spread: "node.labels.zone".into(),
            },
            SpreadPreference {
                spread: "node.labels.rack".into(),
            },
        ];
        w.add(&s, 8);
        w.schedule();
        // 4 per zone; in east, 2 per rack.
        assert_eq!(
            w.spread("web"),
            counts(&[("e1", 1), ("e2", 1), ("e3", 2), ("w1", 4)])
        );
        // Nodes without the label form their own branch.
        w.state.nodes.insert(Id::from("x"), node("x"));
        let mut s2 = service("api");
        s2.spec.task.placement.preferences = vec![SpreadPreference {
            spread: "node.labels.zone".into(),
        }];
        w.add(&s2, 3);
        w.schedule();
        let spread = w.spread("api");
        assert_eq!(spread.get("x"), Some(&1), "{spread:?}");
        assert_eq!(spread.get("w1"), Some(&1), "{spread:?}");
    }

    #[test]
    fn preassigned_global_tasks_are_checked_on_their_node() {
        let mut w = World::new(&["a", "b"]);
        w.node("b").spec.availability = Availability::Pause;
        let s = service("g");
        w.state.services.insert(s.id.clone(), s.clone());
        for (i, n) in ["a", "b"].iter().enumerate() {
            let mut t = pending(&s, 1).remove(0);
            t.id = Id::from(format!("g{i}"));
            t.slot = 0;
            t.node_id = Some(Id::from(*n));
            w.state.tasks.insert(t.id.clone(), t);
        }
        w.schedule();
        let a = &w.state.tasks[&Id::from("g0")];
        let b = &w.state.tasks[&Id::from("g1")];
        assert_eq!(a.status.state, TaskState::Assigned);
        assert_eq!(b.status.state, TaskState::Pending);
        assert_eq!(
            b.status.err,
            "no suitable node (1 node not available for new tasks)"
        );
    }

    #[test]
    fn ties_are_broken_the_same_way_every_time() {
        let run = || {
            let mut w = World::new(&["n3", "n1", "n2", "n4"]);
            w.add(&service("web"), 6);
            w.schedule();
            w.state
                .tasks
                .values()
                .map(|t| format!("{}@{}", t.id, t.node_id.as_ref().unwrap()))
                .collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(
            first[..4],
            ["web-001@n1", "web-002@n2", "web-003@n3", "web-004@n4"]
        );
        assert_eq!(first, run());
    }
}
