//! [`PacketProbe`]: `ebpf/probe.c` attached to an interface, counting packets per IP protocol.
//! The smallest end-to-end proof that a clang-built object loads through aya, attaches in
//! native mode, and that its maps read back with the layout of `mesh_abi.h`.

use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use mesh_ebpf::abi::MeshCounter;
use mesh_ebpf::maps::ProbeCounters;

use crate::maps;

/// The probe program, loaded and attached to one interface until dropped.
pub struct PacketProbe {
    ebpf: Ebpf,
}

impl PacketProbe {
    /// Attaches `xdp_probe` to `iface` in the calling thread's network namespace, in native
    /// (driver) mode.
    pub fn attach(iface: &str) -> anyhow::Result<Self> {
        let mut ebpf = EbpfLoader::new().load(&mesh_ebpf::PROBE.0)?;
        Self::program(&mut ebpf)?.attach(iface, XdpMode::Driver)?;
        Ok(Self { ebpf })
    }

    fn program(ebpf: &mut Ebpf) -> anyhow::Result<&mut Xdp> {
        let prog: &mut Xdp = ebpf
            .program_mut("xdp_probe")
            .ok_or_else(|| anyhow::anyhow!("xdp_probe missing from probe.o"))?
            .try_into()?;
        prog.load()?;
        Ok(prog)
    }

    /// Packets and bytes seen for IP protocol `proto`, summed over CPUs.
    pub fn count(&self, proto: u8) -> anyhow::Result<MeshCounter> {
        let per_cpu = maps::open::<ProbeCounters>(&self.ebpf)?.get(&u32::from(proto), 0)?;
        Ok(per_cpu
            .iter()
            .fold(MeshCounter::default(), |a, c| MeshCounter {
                packets: a.packets + c.packets,
                bytes: a.bytes + c.bytes,
            }))
    }
}
