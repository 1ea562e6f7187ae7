//! [`Programs`]: the mesh's two objects, loaded and verified, and the one place that reads and
//! writes their (shared, pinned) maps: planned [`Op`]s in, ABI values out, decoded into the
//! plan's rows and [`FlowEntry`]s.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

use anyhow::{Context as _, anyhow};
use aya::maps::PerCpuValues;
use aya::programs::{SchedClassifier, Xdp};
use aya::{Ebpf, EbpfLoader};
use mesh_ebpf::abi::{
    self, MESH_BE_LOCAL, MESH_BE_VALID, MESH_CT_INGRESS, MESH_CT_INGRESS_REPLY, MESH_CT_VIP,
    MESH_CT_VIP_REPLY, MESH_MAX_BACKENDS, MESH_NODE_MEMBER, MESH_RING_SIZE, MeshBackend, MeshCt,
    MeshCtKey, MeshFrontend, MeshIface, MeshMacKey, MeshNetKey, MeshNode, MeshPortKey,
    MeshSvcStats, MeshVipKey,
};
use mesh_ebpf::maps::{
    Backends, Config, Conntrack, Drops, Ifaces, IngressTasks, MeshMap, Nodes, OverlayNets, Ports,
    Rings, Stats, Vips,
};

use crate::maps::{self, AyaKind, Handle};
use crate::mesh::{FlowEntry, FlowKind, ServiceCounters};
use crate::model::Protocol;
use crate::plan::{BackendRow, FrontendKey, Op, Programmed};

const TC_PROGRAMS: [&str; 4] = [
    "tc_underlay_in",
    "tc_bridge_in",
    "tc_task_in",
    "tc_task_out",
];

/// The mesh's programs, loaded (and verified) with their maps pinned under one directory.
pub(crate) struct Programs {
    pub(crate) tc: Ebpf,
    pub(crate) xdp: Ebpf,
    /// Where the maps are pinned (the socket programs' counters are found there).
    pin_dir: std::path::PathBuf,
}

impl Programs {
    pub(crate) fn load(pin_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(pin_dir.join("links")).with_context(|| {
            format!(
                "create pin directory {} (is bpffs mounted at /sys/fs/bpf?)",
                pin_dir.display()
            )
        })?;
        let mut tc = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .load(&mesh_ebpf::TC_LB.0)
            .context("load tc_lb.o")?;
        for name in TC_PROGRAMS {
            let p: &mut SchedClassifier = tc
                .program_mut(name)
                .ok_or_else(|| anyhow!("{name} missing from tc_lb.o"))?
                .try_into()?;
            p.load().with_context(|| format!("load (verify) {name}"))?;
        }
        let mut xdp = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .load(&mesh_ebpf::XDP_MESH.0)
            .context("load xdp_mesh.o")?;
        let p: &mut Xdp = xdp
            .program_mut("xdp_mesh")
            .ok_or_else(|| anyhow!("xdp_mesh missing from xdp_mesh.o"))?
            .try_into()?;
        p.load().context("load (verify) xdp_mesh")?;
        Ok(Self {
            tc,
            xdp,
            pin_dir: pin_dir.to_owned(),
        })
    }

    /// Map `M` (shared by both objects through its pin: opened in `tc_lb.o`'s).
    pub(crate) fn map<M>(&mut self) -> anyhow::Result<Handle<M, &mut aya::maps::MapData>>
    where
        M: MeshMap<Kind: AyaKind, Key: aya::Pod, Value: aya::Pod>,
        for<'a> Handle<M, &'a mut aya::maps::MapData>:
            TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
    {
        maps::open_mut::<M>(&mut self.tc)
    }

    pub(crate) fn read_config(&mut self) -> anyhow::Result<abi::MeshConfig> {
        Ok(self.map::<Config>()?.get(&0, 0)?)
    }

    pub(crate) fn set_config(&mut self, c: &abi::MeshConfig) -> anyhow::Result<()> {
        self.map::<Config>()?
            .set(0, c, 0)
            .with_context(|| format!("write {}", Config::NAME))
    }

    pub(crate) fn set_iface(&mut self, ifindex: u32, v: &MeshIface) -> anyhow::Result<()> {
        self.map::<Ifaces>()?
            .insert(ifindex, v, 0)
            .with_context(|| format!("write {}", Ifaces::NAME))
    }

    pub(crate) fn del_iface(&mut self, ifindex: u32) -> anyhow::Result<()> {
        self.map::<Ifaces>()?.remove(&ifindex).ok();
        Ok(())
    }

    /// Frames for the task MAC `mac` out of the ingress VXLAN device go to the veth `ifindex`.
    pub(crate) fn put_ingress_task(&mut self, mac: [u8; 6], ifindex: u32) -> anyhow::Result<()> {
        self.map::<IngressTasks>()?
            .insert(MeshMacKey { mac, pad: [0; 2] }, ifindex, 0)
            .with_context(|| format!("write {}", IngressTasks::NAME))
    }

    /// Forgets every task MAC handed to the veth `ifindex` (its MAC need not be known: after a
    /// restart, a veth that went meanwhile is only known by its interface).
    pub(crate) fn del_ingress_tasks_of(&mut self, ifindex: u32) -> anyhow::Result<()> {
        let mut map = self.map::<IngressTasks>()?;
        let keys: Vec<MeshMacKey> = map
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| *v == ifindex)
            .map(|(k, _)| k)
            .collect();
        for k in keys {
            map.remove(&k).ok();
        }
        Ok(())
    }

    /// Carries out one planned operation.
    pub(crate) fn run_op(&mut self, op: &Op) -> anyhow::Result<usize> {
        match op {
            Op::ResetStats { slot } => {
                let n = aya::util::nr_cpus().map_err(|(s, e)| anyhow!("{s}: {e}"))?;
                self.map::<Stats>()?.set(
                    *slot,
                    PerCpuValues::try_from(vec![MeshSvcStats::default(); n])?,
                    0,
                )?;
                // In the same step, before the slot's frontend exists: a socket translated
                // right after it appears is counted for its new service.
                crate::socklb::reset_pinned_slot(&self.pin_dir, *slot, n)?;
            }
            Op::PutBackend { id, row } => {
                self.map::<Backends>()?.set(*id, backend_value(row), 0)?;
            }
            Op::DelBackend { id } => {
                self.map::<Backends>()?
                    .set(*id, MeshBackend::default(), 0)?;
            }
            Op::PutRing { ring, slots } => {
                let base = ring * MESH_RING_SIZE;
                // One batch, else (a kernel without batches) one update per slot.
                let batched = self
                    .tc
                    .map(Rings::NAME)
                    .and_then(crate::batch::array_data)
                    .is_some_and(|d| crate::batch::put_array_run(d, base, slots).is_ok());
                if !batched {
                    let mut m = self.map::<Rings>()?;
                    for (i, id) in slots.iter().enumerate() {
                        m.set(base + i as u32, id, 0)?;
                    }
                }
            }
            Op::PutFrontend { key, row } => {
                let v = MeshFrontend {
                    svc_id: row.service_slot,
                    ring_id: row.ring.unwrap_or(u32::MAX),
                    flags: row.flags,
                };
                match key {
                    FrontendKey::Port { protocol, port } => {
                        self.map::<Ports>()?
                            .insert(port_key(*protocol, *port), v, 0)?;
                    }
                    FrontendKey::Vip { vni, addr } => {
                        self.map::<Vips>()?.insert(vip_key(*vni, *addr), v, 0)?;
                    }
                }
            }
            Op::DelFrontend { key } => match key {
                FrontendKey::Port { protocol, port } => {
                    self.map::<Ports>()?
                        .remove(&port_key(*protocol, *port))
                        .ok();
                }
                FrontendKey::Vip { vni, addr } => {
                    self.map::<Vips>()?.remove(&vip_key(*vni, *addr)).ok();
                }
            },
            Op::SweepConntrack { backend_ids } => return self.sweep(backend_ids),
        }
        Ok(0)
    }

    /// Removes every conntrack entry (both directions) of the given backends; counts them
    /// without their any-source twins (`is_any_source_twin`).
    fn sweep(&mut self, backend_ids: &BTreeSet<u32>) -> anyhow::Result<usize> {
        let mut m = self.map::<Conntrack>()?;
        let doomed: Vec<MeshCtKey> = m
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| backend_ids.contains(&v.backend_id))
            .map(|(k, _)| k)
            .collect();
        let mut n = 0;
        for k in &doomed {
            if m.remove(k).is_ok() && !is_any_source_twin(k) {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Conntrack entries now (the keys walked: fine at the sizes a node holds, read once a
    /// second).
    pub(crate) fn conntrack_entries(&mut self) -> anyhow::Result<u64> {
        Ok(self.map::<Conntrack>()?.keys().flatten().count() as u64)
    }

    pub(crate) fn flows(&mut self) -> anyhow::Result<Vec<FlowEntry>> {
        Ok(self
            .map::<Conntrack>()?
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(k, v)| decode_flow(&k, &v))
            .collect())
    }

    /// The state pinned maps hold from an earlier run.
    pub(crate) fn adopt(&mut self) -> anyhow::Result<Programmed> {
        let backends = self.map::<Backends>()?;
        let mut rows = Vec::new();
        for id in 0..MESH_MAX_BACKENDS {
            let b = backends.get(&id, 0)?;
            if b.flags & MESH_BE_VALID != 0 {
                rows.push((id, backend_row(&b)));
            }
        }
        let mut fronts = Vec::new();
        for (k, v) in self.map::<Ports>()?.iter().filter_map(Result::ok) {
            let protocol = if k.proto == 6 {
                Protocol::Tcp
            } else {
                Protocol::Udp
            };
            let key = FrontendKey::Port {
                protocol,
                port: u16::from_be_bytes(k.port),
            };
            fronts.push((key, ring_of(&v)));
        }
        for (k, v) in self.map::<Vips>()?.iter().filter_map(Result::ok) {
            let key = FrontendKey::Vip {
                vni: k.vni,
                addr: Ipv4Addr::from(k.addr),
            };
            fronts.push((key, ring_of(&v)));
        }
        Ok(Programmed::adopt(rows, fronts))
    }

    /// The addresses in `mesh_nodes`.
    pub(crate) fn cluster_nodes(&mut self) -> anyhow::Result<BTreeSet<Ipv4Addr>> {
        Ok(self
            .map::<Nodes>()?
            .keys()
            .map(|k| k.map(Ipv4Addr::from))
            .collect::<Result<_, _>>()?)
    }

    pub(crate) fn put_cluster_node(&mut self, addr: Ipv4Addr) -> anyhow::Result<()> {
        let member = MeshNode {
            flags: MESH_NODE_MEMBER,
        };
        self.map::<Nodes>()?
            .insert(addr.octets(), member, 0)
            .with_context(|| format!("write {} ({addr})", Nodes::NAME))
    }

    pub(crate) fn del_cluster_node(&mut self, addr: Ipv4Addr) -> anyhow::Result<()> {
        self.map::<Nodes>()?
            .remove(&addr.octets())
            .with_context(|| format!("remove {addr} from {}", Nodes::NAME))
    }

    /// The subnets in `mesh_overlay_nets`, with their VNIs.
    pub(crate) fn overlay_nets(&mut self) -> anyhow::Result<BTreeMap<MeshNetKey, u32>> {
        Ok(self
            .map::<OverlayNets>()?
            .iter()
            .collect::<Result<_, _>>()?)
    }

    pub(crate) fn put_overlay_net(&mut self, key: MeshNetKey, vni: u32) -> anyhow::Result<()> {
        self.map::<OverlayNets>()?
            .insert(key, vni, 0)
            .with_context(|| format!("write {} ({key:?})", OverlayNets::NAME))
    }

    pub(crate) fn del_overlay_net(&mut self, key: MeshNetKey) -> anyhow::Result<()> {
        self.map::<OverlayNets>()?
            .remove(&key)
            .with_context(|| format!("remove {key:?} from {}", OverlayNets::NAME))
    }

    /// Packets dropped for `reason` (`MESH_DROP_*`), summed over CPUs.
    pub(crate) fn dropped(&mut self, reason: u32) -> anyhow::Result<u64> {
        let per_cpu = self.map::<Drops>()?.get(&reason, 0)?;
        Ok(per_cpu.iter().map(|c| c.packets).sum())
    }

    pub(crate) fn stats(&mut self, slot: u32) -> anyhow::Result<ServiceCounters> {
        let per_cpu = self.map::<Stats>()?.get(&slot, 0)?;
        Ok(per_cpu
            .iter()
            .fold(ServiceCounters::default(), |a, c| ServiceCounters {
                packets: a.packets + c.packets,
                bytes: a.bytes + c.bytes,
                connections: a.connections + c.conns,
            }))
    }
}

#[cfg(test)]
impl Programs {
    /// Every conntrack entry, raw (flags included).
    pub(crate) fn ct_entries(&mut self) -> Vec<(MeshCtKey, MeshCt)> {
        self.map::<Conntrack>()
            .unwrap()
            .iter()
            .map(Result::unwrap)
            .collect()
    }

    /// Writes `count` entries made by `entry(i)`; returns how many the map holds after.
    pub(crate) fn ct_fill(
        &mut self,
        count: u32,
        entry: impl Fn(u32) -> (MeshCtKey, MeshCt),
    ) -> u64 {
        let mut map = self.map::<Conntrack>().unwrap();
        for i in 0..count {
            let (k, v) = entry(i);
            map.insert(k, v, 0).unwrap();
        }
        map.keys().count() as u64
    }

    /// Makes every conntrack entry `by_ns` older (as if idle that long).
    pub(crate) fn ct_age(&mut self, by_ns: u64) {
        let mut map = self.map::<Conntrack>().unwrap();
        let entries: Vec<(MeshCtKey, MeshCt)> = map.iter().map(Result::unwrap).collect();
        for (k, mut v) in entries {
            v.last_seen = v.last_seen.saturating_sub(by_ns);
            map.insert(k, v, 0).unwrap();
        }
    }
}

fn ring_of(v: &MeshFrontend) -> Option<u32> {
    (v.ring_id != u32::MAX).then_some(v.ring_id)
}

fn port_key(protocol: Protocol, port: u16) -> MeshPortKey {
    MeshPortKey {
        port: port.to_be_bytes(),
        proto: protocol.number(),
        pad: 0,
    }
}

fn vip_key(vni: u32, addr: Ipv4Addr) -> MeshVipKey {
    MeshVipKey {
        vni,
        addr: addr.octets(),
    }
}

fn backend_value(row: &BackendRow) -> MeshBackend {
    MeshBackend {
        addr: row.addr.octets(),
        vtep: row.vtep.octets(),
        port: row.port.to_be_bytes(),
        mac: row.mac,
        flags: MESH_BE_VALID | if row.local { MESH_BE_LOCAL } else { 0 },
    }
}

fn backend_row(b: &MeshBackend) -> BackendRow {
    BackendRow {
        addr: Ipv4Addr::from(b.addr),
        port: u16::from_be_bytes(b.port),
        mac: b.mac,
        vtep: Ipv4Addr::from(b.vtep),
        local: b.flags & MESH_BE_LOCAL != 0,
    }
}

/// A UDP reply entry's copy under source 0.0.0.0 (`ebpf/lib/clientip.h`: a task answering
/// from its address on another network), not a flow of its own.
fn is_any_source_twin(k: &MeshCtKey) -> bool {
    k.kind == MESH_CT_INGRESS_REPLY && k.saddr == [0; 4]
}

fn decode_flow(k: &MeshCtKey, v: &MeshCt) -> Option<FlowEntry> {
    if is_any_source_twin(k) {
        return None;
    }
    let kind = match k.kind {
        MESH_CT_INGRESS => FlowKind::Ingress,
        MESH_CT_INGRESS_REPLY => FlowKind::IngressReply,
        MESH_CT_VIP => FlowKind::Vip,
        MESH_CT_VIP_REPLY => FlowKind::VipReply,
        _ => return None,
    };
    let protocol = match k.proto {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        _ => return None,
    };
    let sa = |a: [u8; 4], p: [u8; 2]| SocketAddrV4::new(Ipv4Addr::from(a), u16::from_be_bytes(p));
    Some(FlowEntry {
        kind,
        protocol,
        from: sa(k.saddr, k.sport),
        to: sa(k.daddr, k.dport),
        new_from: sa(v.saddr, v.sport),
        new_to: sa(v.daddr, v.dport),
        backend_id: v.backend_id,
    })
}
