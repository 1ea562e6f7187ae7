//! The map programmer's pure core: desired state in, map operations out (openraft's `Engine`
//! habit). [`plan`] compares what the maps hold ([`Programmed`]) with a [`DesiredMesh`] and
//! returns the new [`Programmed`] and the [`Op`]s that get there, writing only differences.
//! Ids (backends, rings, counter slots) stay stable while their object lives, and an id freed in
//! a plan is not handed out again in the same plan, so no map entry is reused while something may
//! still point at it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use mesh_ebpf::abi::{
    MESH_FE_HOST, MESH_FE_NO_BACKEND, MESH_MAX_BACKENDS, MESH_MAX_RINGS, MESH_MAX_SERVICES,
    MESH_RING_SIZE, MESH_VXLAN_PORT,
};

use crate::maglev::MaglevRing;
use crate::model::{DesiredMesh, Protocol, PublishMode};

/// What a frontend is reached by: a published port, or a VIP on a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FrontendKey {
    Port { protocol: Protocol, port: u16 },
    Vip { vni: u32, addr: Ipv4Addr },
}

/// One backend entry: a task address and port (0 for VIPs: ports are kept) and how to reach it.
/// Any change (a new MAC or node for the same address) makes a new entry, so conntrack that
/// pointed at the old one is swept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendRow {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub mac: [u8; 6],
    pub vtep: Ipv4Addr,
    pub local: bool,
}

impl BackendRow {
    /// The name its Maglev permutation is derived from.
    fn name(&self) -> String {
        format!("{}:{}", self.addr, self.port)
    }
}

/// The value of a frontend entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontendRow {
    pub service_slot: u32,
    /// The ring (none when the frontend has no backend).
    pub ring: Option<u32>,
    /// `MESH_FE_*`.
    pub flags: u32,
}

/// What the maps hold, as far as user space knows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Programmed {
    pub backends: BTreeMap<BackendRow, u32>,
    /// Each ring's backends (sorted); `None` when unknown (adopted from pinned maps).
    pub rings: BTreeMap<u32, Option<Vec<BackendRow>>>,
    pub frontends: BTreeMap<FrontendKey, FrontendRow>,
    pub services: BTreeMap<String, u32>,
}

impl Programmed {
    /// The state found in maps pinned by an earlier meshd: their backends keep their ids (so
    /// their flows survive), frontends and rings are rewritten by the next plan.
    pub fn adopt(
        backends: impl IntoIterator<Item = (u32, BackendRow)>,
        frontends: impl IntoIterator<Item = (FrontendKey, Option<u32>)>,
    ) -> Self {
        let mut p = Self::default();
        for (id, row) in backends {
            p.backends.insert(row, id);
        }
        for (key, ring) in frontends {
            if let Some(r) = ring {
                p.rings.insert(r, None);
            }
            p.frontends.insert(
                key,
                FrontendRow {
                    service_slot: u32::MAX,
                    ring,
                    flags: 0,
                },
            );
        }
        p
    }
}

/// One map operation, in the order [`plan`] returns them: counters reset, backends written,
/// rings filled, frontends written, then removals, then conntrack of removed backends swept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    ResetStats {
        slot: u32,
    },
    PutBackend {
        id: u32,
        row: BackendRow,
    },
    /// Every slot of the ring: backend ids.
    PutRing {
        ring: u32,
        slots: Vec<u32>,
    },
    PutFrontend {
        key: FrontendKey,
        row: FrontendRow,
    },
    DelFrontend {
        key: FrontendKey,
    },
    DelBackend {
        id: u32,
    },
    SweepConntrack {
        backend_ids: BTreeSet<u32>,
    },
}

/// A desired state the data plane refuses; nothing was changed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("service id must not be empty")]
    EmptyServiceId,
    #[error("service {0:?} is listed twice; service ids must be unique")]
    DuplicateService(String),
    #[error("service {service:?}: port {published}->{target}/{protocol}: ports must be 1-65535")]
    ZeroPort {
        service: String,
        protocol: Protocol,
        published: u16,
        target: u16,
    },
    #[error(
        "service {service:?}: published port {port}/{protocol} is already published by service {other:?}; a (protocol, port) belongs to one service"
    )]
    PortTaken {
        service: String,
        protocol: Protocol,
        port: u16,
        other: String,
    },
    #[error("service {0:?}: port 4789/udp is the overlay's VXLAN port and cannot be published")]
    VxlanPort(String),
    #[error("service {service:?}: VIP {addr} on VNI {vni} is already the VIP of service {other:?}")]
    VipTaken {
        service: String,
        vni: u32,
        addr: Ipv4Addr,
        other: String,
    },
    #[error("too many {what}: {count} (this data plane holds at most {max})")]
    TooMany {
        what: &'static str,
        count: usize,
        max: u32,
    },
}

/// A frontend as the desired state asks for it.
struct WantFrontend {
    service: String,
    host: bool,
    /// The backends new flows are balanced over (the ring).
    rows: BTreeSet<BackendRow>,
    /// The backends of draining tasks: kept for their flows, in no ring.
    draining: BTreeSet<BackendRow>,
}

impl WantFrontend {
    /// Splits `rows` (each with its task's draining flag) into serving and draining; a row both
    /// serves.
    fn new(service: &str, host: bool, rows: impl Iterator<Item = (BackendRow, bool)>) -> Self {
        let (draining, serving): (Vec<_>, Vec<_>) = rows.partition(|(_, d)| *d);
        let rows: BTreeSet<BackendRow> = serving.into_iter().map(|(r, _)| r).collect();
        let draining = draining
            .into_iter()
            .map(|(r, _)| r)
            .filter(|r| !rows.contains(r))
            .collect();
        Self {
            service: service.to_owned(),
            host,
            rows,
            draining,
        }
    }

    /// Every backend the frontend needs in the backends table.
    fn backends(&self) -> impl Iterator<Item = &BackendRow> {
        self.rows.iter().chain(&self.draining)
    }
}

fn lowest_free(used: &BTreeSet<u32>, max: u32) -> Option<u32> {
    (0..max).find(|i| !used.contains(i))
}

/// Checks `desired` and lists its frontends.
fn frontends_of(
    desired: &DesiredMesh,
    ingress_vni: u32,
) -> Result<BTreeMap<FrontendKey, WantFrontend>, PlanError> {
    let mut seen = BTreeSet::new();
    let mut out: BTreeMap<FrontendKey, WantFrontend> = BTreeMap::new();
    for svc in &desired.services {
        if svc.id.is_empty() {
            return Err(PlanError::EmptyServiceId);
        }
        if !seen.insert(svc.id.clone()) {
            return Err(PlanError::DuplicateService(svc.id.clone()));
        }
        for p in &svc.ports {
            if p.published == 0 || p.target == 0 {
                return Err(PlanError::ZeroPort {
                    service: svc.id.clone(),
                    protocol: p.protocol,
                    published: p.published,
                    target: p.target,
                });
            }
            if p.protocol == Protocol::Udp && p.published == MESH_VXLAN_PORT {
                return Err(PlanError::VxlanPort(svc.id.clone()));
            }
            let key = FrontendKey::Port {
                protocol: p.protocol,
                port: p.published,
            };
            if let Some(other) = out.get(&key) {
                return Err(PlanError::PortTaken {
                    service: svc.id.clone(),
                    protocol: p.protocol,
                    port: p.published,
                    other: other.service.clone(),
                });
            }
            let host = p.mode == PublishMode::Host;
            let rows = svc.tasks.iter().filter(|t| !host || t.local).flat_map(|t| {
                t.endpoints
                    .iter()
                    .filter(|e| e.vni == ingress_vni)
                    .map(|e| {
                        let row = BackendRow {
                            addr: e.addr,
                            port: p.target,
                            mac: e.mac,
                            vtep: t.node_addr,
                            local: t.local,
                        };
                        (row, t.draining)
                    })
            });
            out.insert(key, WantFrontend::new(&svc.id, host, rows));
        }
        for v in &svc.vips {
            let key = FrontendKey::Vip {
                vni: v.vni,
                addr: v.addr,
            };
            if let Some(other) = out.get(&key) {
                return Err(PlanError::VipTaken {
                    service: svc.id.clone(),
                    vni: v.vni,
                    addr: v.addr,
                    other: other.service.clone(),
                });
            }
            let rows = svc.tasks.iter().flat_map(|t| {
                t.endpoints.iter().filter(|e| e.vni == v.vni).map(|e| {
                    let row = BackendRow {
                        addr: e.addr,
                        port: 0,
                        mac: e.mac,
                        vtep: t.node_addr,
                        local: t.local,
                    };
                    (row, t.draining)
                })
            });
            out.insert(key, WantFrontend::new(&svc.id, false, rows));
        }
    }
    // Host mode without a local task: no entry, so this node does not answer (one whose only
    // task drains keeps its entry, refusing new flows, for that task's flows).
    out.retain(|_, f| !(f.host && f.rows.is_empty() && f.draining.is_empty()));
    Ok(out)
}

/// Computes the operations that turn `current` into `desired`. Validates everything first: an
/// error means no operation.
pub fn plan(
    current: &Programmed,
    desired: &DesiredMesh,
    ingress_vni: u32,
) -> Result<(Programmed, Vec<Op>), PlanError> {
    let want = frontends_of(desired, ingress_vni)?;
    let want_rows: BTreeSet<BackendRow> = want
        .values()
        .flat_map(WantFrontend::backends)
        .copied()
        .collect();
    let rings_needed = check_capacity(desired, &want, &want_rows)?;

    let mut next = Programmed::default();
    let mut ops = Vec::new();
    assign_service_slots(current, desired, &mut next, &mut ops)?;
    let removed = assign_backends(current, &want_rows, &mut next, &mut ops)?;
    plan_frontends(current, &want, rings_needed, &mut next, &mut ops)?;
    for key in current.frontends.keys() {
        if !want.contains_key(key) {
            ops.push(Op::DelFrontend { key: *key });
        }
    }
    // Last, once nothing points at them: removed backends and their conntrack.
    for id in &removed {
        ops.push(Op::DelBackend { id: *id });
    }
    if !removed.is_empty() {
        ops.push(Op::SweepConntrack {
            backend_ids: removed,
        });
    }
    Ok((next, ops))
}

/// Refuses a desired state the maps cannot hold; returns the number of rings it needs.
fn check_capacity(
    desired: &DesiredMesh,
    want: &BTreeMap<FrontendKey, WantFrontend>,
    want_rows: &BTreeSet<BackendRow>,
) -> Result<usize, PlanError> {
    if want_rows.len() > MESH_MAX_BACKENDS as usize {
        return Err(PlanError::TooMany {
            what: "backends",
            count: want_rows.len(),
            max: MESH_MAX_BACKENDS,
        });
    }
    let rings_needed = want.values().filter(|f| !f.rows.is_empty()).count();
    if rings_needed > MESH_MAX_RINGS as usize {
        return Err(PlanError::TooMany {
            what: "frontends with backends (published ports and VIPs)",
            count: rings_needed,
            max: MESH_MAX_RINGS,
        });
    }
    if desired.services.len() > MESH_MAX_SERVICES as usize {
        return Err(PlanError::TooMany {
            what: "services",
            count: desired.services.len(),
            max: MESH_MAX_SERVICES,
        });
    }
    Ok(rings_needed)
}

/// Keeps the counter slots of services that stay and gives new services a fresh (reset) one.
fn assign_service_slots(
    current: &Programmed,
    desired: &DesiredMesh,
    next: &mut Programmed,
    ops: &mut Vec<Op>,
) -> Result<(), PlanError> {
    let wanted_services: BTreeSet<&String> = desired.services.iter().map(|s| &s.id).collect();
    let mut used: BTreeSet<u32> = BTreeSet::new();
    for (id, slot) in &current.services {
        if wanted_services.contains(id) {
            next.services.insert(id.clone(), *slot);
            used.insert(*slot);
        }
    }
    let freed: BTreeSet<u32> = current
        .services
        .iter()
        .filter(|(id, _)| !wanted_services.contains(id))
        .map(|(_, s)| *s)
        .collect();
    for svc in &desired.services {
        if !next.services.contains_key(&svc.id) {
            let blocked: BTreeSet<u32> = used.union(&freed).copied().collect();
            let slot = lowest_free(&blocked, MESH_MAX_SERVICES).ok_or(PlanError::TooMany {
                what: "services (counter slots still draining)",
                count: desired.services.len() + freed.len(),
                max: MESH_MAX_SERVICES,
            })?;
            used.insert(slot);
            next.services.insert(svc.id.clone(), slot);
            ops.push(Op::ResetStats { slot });
        }
    }
    Ok(())
}

/// Keeps the ids of backends that stay and writes new ones; returns the ids of those removed.
fn assign_backends(
    current: &Programmed,
    want_rows: &BTreeSet<BackendRow>,
    next: &mut Programmed,
    ops: &mut Vec<Op>,
) -> Result<BTreeSet<u32>, PlanError> {
    let mut used: BTreeSet<u32> = BTreeSet::new();
    for (row, id) in &current.backends {
        if want_rows.contains(row) {
            next.backends.insert(*row, *id);
            used.insert(*id);
        }
    }
    let removed: BTreeSet<u32> = current
        .backends
        .iter()
        .filter(|(row, _)| !want_rows.contains(row))
        .map(|(_, id)| *id)
        .collect();
    for row in want_rows {
        if !next.backends.contains_key(row) {
            let blocked: BTreeSet<u32> = used.union(&removed).copied().collect();
            let id = lowest_free(&blocked, MESH_MAX_BACKENDS).ok_or(PlanError::TooMany {
                what: "backends (with those being removed)",
                count: want_rows.len() + removed.len(),
                max: MESH_MAX_BACKENDS,
            })?;
            used.insert(id);
            next.backends.insert(*row, id);
            ops.push(Op::PutBackend { id, row: *row });
        }
    }
    Ok(removed)
}

/// Ring ids in a plan: those kept, and those freed (not handed out again in the same plan).
struct RingIds {
    used: BTreeSet<u32>,
    freed: BTreeSet<u32>,
    /// For the error message.
    needed: usize,
}

impl RingIds {
    fn new(
        current: &Programmed,
        want: &BTreeMap<FrontendKey, WantFrontend>,
        needed: usize,
    ) -> Self {
        let mut used: BTreeSet<u32> = BTreeSet::new();
        for (key, f) in want {
            if let Some(FrontendRow { ring: Some(r), .. }) = current.frontends.get(key)
                && !f.rows.is_empty()
            {
                used.insert(*r);
            }
        }
        let freed = current
            .rings
            .keys()
            .copied()
            .filter(|r| !used.contains(r))
            .collect();
        Self {
            used,
            freed,
            needed,
        }
    }

    /// The frontend's current ring, else the lowest free one.
    fn for_frontend(&mut self, current: Option<&FrontendRow>) -> Result<u32, PlanError> {
        if let Some(FrontendRow { ring: Some(r), .. }) = current {
            return Ok(*r);
        }
        let blocked: BTreeSet<u32> = self.used.union(&self.freed).copied().collect();
        let r = lowest_free(&blocked, MESH_MAX_RINGS).ok_or(PlanError::TooMany {
            what: "rings (with those being freed)",
            count: self.needed + self.freed.len(),
            max: MESH_MAX_RINGS,
        })?;
        self.used.insert(r);
        Ok(r)
    }
}

/// Fills the rings and writes the frontends that changed (all rings before any frontend, so a
/// frontend never points at a ring not yet filled).
fn plan_frontends(
    current: &Programmed,
    want: &BTreeMap<FrontendKey, WantFrontend>,
    rings_needed: usize,
    next: &mut Programmed,
    ops: &mut Vec<Op>,
) -> Result<(), PlanError> {
    let mut rings = RingIds::new(current, want, rings_needed);
    let mut fe_ops = Vec::new();
    for (key, f) in want {
        let ring = if f.rows.is_empty() {
            None
        } else {
            let ring = rings.for_frontend(current.frontends.get(key))?;
            let rows: Vec<BackendRow> = f.rows.iter().copied().collect();
            if current.rings.get(&ring) != Some(&Some(rows.clone())) {
                ops.push(Op::PutRing {
                    ring,
                    slots: ring_slots(&rows, &next.backends),
                });
            }
            next.rings.insert(ring, Some(rows));
            Some(ring)
        };
        let row = FrontendRow {
            service_slot: next.services[&f.service],
            ring,
            flags: frontend_flags(f),
        };
        if current.frontends.get(key) != Some(&row) {
            fe_ops.push(Op::PutFrontend { key: *key, row });
        }
        next.frontends.insert(*key, row);
    }
    ops.extend(fe_ops);
    Ok(())
}

/// The Maglev ring of `rows`, as backend ids.
fn ring_slots(rows: &[BackendRow], backend_ids: &BTreeMap<BackendRow, u32>) -> Vec<u32> {
    let names: Vec<String> = rows.iter().map(BackendRow::name).collect();
    MaglevRing::new(&names, MESH_RING_SIZE)
        .slots()
        .iter()
        .map(|&i| backend_ids[&rows[i as usize]])
        .collect()
}

fn frontend_flags(f: &WantFrontend) -> u32 {
    let mut flags = 0;
    if f.rows.is_empty() {
        flags |= MESH_FE_NO_BACKEND;
    }
    if f.host {
        flags |= MESH_FE_HOST;
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PublishedPort, Service, Task, TaskAddress, Vip};

    fn task(n: u8, local: bool) -> Task {
        Task {
            id: format!("t{n}"),
            node_addr: Ipv4Addr::new(198, 18, 0, 10 + n),
            local,
            endpoints: vec![
                TaskAddress {
                    vni: 4096,
                    addr: Ipv4Addr::new(10, 255, 1, n),
                    mac: [2, 0, 0, 0, 0, n],
                },
                TaskAddress {
                    vni: 4097,
                    addr: Ipv4Addr::new(10, 0, 1, n),
                    mac: [2, 0, 0, 0, 1, n],
                },
            ],
            draining: false,
        }
    }

    fn draining(mut t: Task) -> Task {
        t.draining = true;
        t
    }

    fn web(tasks: Vec<Task>) -> Service {
        Service {
            id: "web".into(),
            ports: vec![PublishedPort {
                protocol: Protocol::Tcp,
                published: 8080,
                target: 80,
                mode: PublishMode::Ingress,
            }],
            vips: vec![Vip {
                vni: 4097,
                addr: Ipv4Addr::new(10, 0, 1, 200),
            }],
            tasks,
        }
    }

    fn mesh(services: Vec<Service>) -> DesiredMesh {
        DesiredMesh { services }
    }

    fn count(ops: &[Op], f: impl Fn(&Op) -> bool) -> usize {
        ops.iter().filter(|o| f(o)).count()
    }

    #[test]
    fn first_plan_writes_backends_rings_and_frontends() {
        let (state, ops) = plan(
            &Programmed::default(),
            &mesh(vec![web(vec![task(1, true), task(2, false)])]),
            4096,
        )
        .unwrap();
        assert_eq!(count(&ops, |o| matches!(o, Op::ResetStats { .. })), 1);
        assert_eq!(
            count(&ops, |o| matches!(o, Op::PutBackend { .. })),
            4,
            "2 ingress + 2 VIP backends"
        );
        assert_eq!(count(&ops, |o| matches!(o, Op::PutRing { .. })), 2);
        assert_eq!(count(&ops, |o| matches!(o, Op::PutFrontend { .. })), 2);
        assert_eq!(state.frontends.len(), 2);
        for op in &ops {
            if let Op::PutRing { slots, .. } = op {
                assert_eq!(slots.len(), MESH_RING_SIZE as usize);
            }
        }
        // The ingress backend carries the target port, the VIP backend keeps ports (0).
        assert!(
            state
                .backends
                .keys()
                .any(|b| b.port == 80 && b.addr == Ipv4Addr::new(10, 255, 1, 1))
        );
        assert!(
            state
                .backends
                .keys()
                .any(|b| b.port == 0 && b.addr == Ipv4Addr::new(10, 0, 1, 2))
        );
    }

    #[test]
    fn the_same_state_again_writes_nothing() {
        let d = mesh(vec![web(vec![task(1, true), task(2, false)])]);
        let (state, _) = plan(&Programmed::default(), &d, 4096).unwrap();
        let (again, ops) = plan(&state, &d, 4096).unwrap();
        assert!(ops.is_empty(), "{ops:?}");
        assert_eq!(again, state);
    }

    #[test]
    fn a_backend_leaving_is_invalidated_and_its_conntrack_swept() {
        let (state, _) = plan(
            &Programmed::default(),
            &mesh(vec![web(vec![task(1, true), task(2, false)])]),
            4096,
        )
        .unwrap();
        let gone: BTreeSet<u32> = state
            .backends
            .iter()
            .filter(|(b, _)| b.vtep == Ipv4Addr::new(198, 18, 0, 12))
            .map(|(_, id)| *id)
            .collect();
        let (next, ops) = plan(&state, &mesh(vec![web(vec![task(1, true)])]), 4096).unwrap();
        assert_eq!(count(&ops, |o| matches!(o, Op::PutRing { .. })), 2);
        assert_eq!(count(&ops, |o| matches!(o, Op::PutBackend { .. })), 0);
        assert_eq!(
            count(&ops, |o| matches!(o, Op::PutFrontend { .. })),
            0,
            "same ring ids"
        );
        assert_eq!(count(&ops, |o| matches!(o, Op::DelBackend { .. })), 2);
        assert_eq!(ops.last(), Some(&Op::SweepConntrack { backend_ids: gone }));
        assert_eq!(next.backends.len(), 2);
        // Removals come after every write.
        let first_del = ops
            .iter()
            .position(|o| matches!(o, Op::DelBackend { .. }))
            .unwrap();
        assert!(
            ops[first_del..]
                .iter()
                .all(|o| matches!(o, Op::DelBackend { .. } | Op::SweepConntrack { .. }))
        );
    }

    #[test]
    fn freed_ids_are_not_reused_in_the_same_plan() {
        let (state, _) = plan(
            &Programmed::default(),
            &mesh(vec![web(vec![task(1, true)])]),
            4096,
        )
        .unwrap();
        let old: BTreeSet<u32> = state.backends.values().copied().collect();
        let (next, _) = plan(&state, &mesh(vec![web(vec![task(3, true)])]), 4096).unwrap();
        assert!(next.backends.values().all(|id| !old.contains(id)));
    }

    #[test]
    fn a_service_without_tasks_publishes_no_backend_and_host_mode_without_local_task_nothing() {
        let mut s = web(vec![task(2, false)]);
        s.ports.push(PublishedPort {
            protocol: Protocol::Udp,
            published: 5353,
            target: 53,
            mode: PublishMode::Host,
        });
        let (state, _) = plan(&Programmed::default(), &mesh(vec![s.clone()]), 4096).unwrap();
        assert!(!state.frontends.contains_key(&FrontendKey::Port {
            protocol: Protocol::Udp,
            port: 5353
        }));
        s.tasks.clear();
        let (state, ops) = plan(&state, &mesh(vec![s]), 4096).unwrap();
        let fe = state.frontends[&FrontendKey::Port {
            protocol: Protocol::Tcp,
            port: 8080,
        }];
        assert_eq!(fe.flags, MESH_FE_NO_BACKEND);
        assert_eq!(fe.ring, None);
        assert!(ops.iter().any(|o| matches!(o, Op::SweepConntrack { .. })));
    }

    /// A draining task's backends stay (its flows' conntrack entries stay valid) but leave the
    /// rings; once it is gone, they go and their conntrack is swept.
    #[test]
    fn a_draining_task_keeps_its_backends_out_of_the_rings_until_gone() {
        let (state, _) = plan(
            &Programmed::default(),
            &mesh(vec![web(vec![task(1, true), task(2, false)])]),
            4096,
        )
        .unwrap();
        let ids = state.backends.clone();
        let d = mesh(vec![web(vec![task(1, true), draining(task(2, false))])]);
        let (next, ops) = plan(&state, &d, 4096).unwrap();
        assert_eq!(count(&ops, |o| matches!(o, Op::PutRing { .. })), 2);
        assert!(
            ops.iter().all(|o| matches!(o, Op::PutRing { .. })),
            "only the rings change: {ops:?}"
        );
        assert_eq!(next.backends, ids, "every backend kept, same ids");
        for rows in next.rings.values() {
            let rows = rows.clone().unwrap();
            assert!(rows.iter().all(|r| r.local), "{rows:?}");
        }
        // Every task draining: no backend for new flows, the backends still there.
        let d = mesh(vec![web(vec![
            draining(task(1, true)),
            draining(task(2, false)),
        ])]);
        let (all, ops) = plan(&next, &d, 4096).unwrap();
        assert!(
            all.frontends
                .values()
                .all(|f| f.flags == MESH_FE_NO_BACKEND && f.ring.is_none())
        );
        assert_eq!(all.backends, ids);
        assert!(
            !ops.iter()
                .any(|o| matches!(o, Op::DelBackend { .. } | Op::SweepConntrack { .. }))
        );
        // Host mode with its only local task draining keeps its entry, refusing new flows.
        let mut s = web(vec![draining(task(1, true))]);
        s.ports[0].mode = PublishMode::Host;
        let (host, _) = plan(&Programmed::default(), &mesh(vec![s]), 4096).unwrap();
        let key = FrontendKey::Port {
            protocol: Protocol::Tcp,
            port: 8080,
        };
        assert_eq!(
            host.frontends[&key].flags,
            MESH_FE_HOST | MESH_FE_NO_BACKEND
        );
        // Gone: its backends are removed and their flows swept.
        let (gone, ops) = plan(&next, &mesh(vec![web(vec![task(1, true)])]), 4096).unwrap();
        assert_eq!(gone.backends.len(), 2);
        assert!(
            matches!(ops.last(), Some(Op::SweepConntrack { backend_ids }) if backend_ids.len() == 2)
        );
    }

    #[test]
    fn host_mode_uses_only_local_tasks() {
        let mut s = web(vec![task(1, true), task(2, false)]);
        s.ports[0].mode = PublishMode::Host;
        let (state, _) = plan(&Programmed::default(), &mesh(vec![s]), 4096).unwrap();
        let fe = state.frontends[&FrontendKey::Port {
            protocol: Protocol::Tcp,
            port: 8080,
        }];
        assert_eq!(fe.flags, MESH_FE_HOST);
        let rows = state.rings[&fe.ring.unwrap()].clone().unwrap();
        assert_eq!(rows.len(), 1);
        assert!(rows[0].local);
    }

    #[test]
    fn bad_input_is_refused_whole() {
        let a = web(vec![task(1, true)]);
        let mut b = web(vec![task(2, true)]);
        b.id = "api".into();
        b.vips.clear();
        assert!(matches!(
            plan(
                &Programmed::default(),
                &mesh(vec![a.clone(), b.clone()]),
                4096
            ),
            Err(PlanError::PortTaken { port: 8080, .. })
        ));
        b.ports[0].published = 9090;
        b.vips = a.vips.clone();
        assert!(matches!(
            plan(
                &Programmed::default(),
                &mesh(vec![a.clone(), b.clone()]),
                4096
            ),
            Err(PlanError::VipTaken { .. })
        ));
        b.vips.clear();
        b.ports[0].protocol = Protocol::Udp;
        b.ports[0].published = 4789;
        let e = plan(
            &Programmed::default(),
            &mesh(vec![a.clone(), b.clone()]),
            4096,
        )
        .unwrap_err();
        assert!(e.to_string().contains("4789/udp"), "{e}");
        b.ports[0].published = 0;
        assert!(matches!(
            plan(&Programmed::default(), &mesh(vec![a.clone(), b]), 4096),
            Err(PlanError::ZeroPort { .. })
        ));
        assert!(matches!(
            plan(&Programmed::default(), &mesh(vec![a.clone(), a]), 4096),
            Err(PlanError::DuplicateService(_))
        ));
    }

    #[test]
    fn adopted_state_keeps_backend_ids_and_rewrites_frontends() {
        let d = mesh(vec![web(vec![task(1, true)])]);
        let (state, _) = plan(&Programmed::default(), &d, 4096).unwrap();
        let adopted = Programmed::adopt(
            state.backends.iter().map(|(r, id)| (*id, *r)),
            state.frontends.iter().map(|(k, f)| (*k, f.ring)).chain([(
                FrontendKey::Port {
                    protocol: Protocol::Udp,
                    port: 1,
                },
                None,
            )]),
        );
        let (next, ops) = plan(&adopted, &d, 4096).unwrap();
        assert_eq!(next.backends, state.backends);
        assert_eq!(count(&ops, |o| matches!(o, Op::PutBackend { .. })), 0);
        assert_eq!(count(&ops, |o| matches!(o, Op::PutRing { .. })), 2);
        assert!(ops.contains(&Op::DelFrontend {
            key: FrontendKey::Port {
                protocol: Protocol::Udp,
                port: 1
            }
        }));
    }
}
