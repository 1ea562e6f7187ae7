//! Packet tests: crafted frames through the real programs with `BPF_PROG_TEST_RUN` (aya's
//! `TestRun`), as fixture tables (Katran, Cilium's PKTGEN/CHECK): a sentence of intent, the input
//! frame, the expected verdict, and the expected output (unchanged, or checked field by field
//! with every checksum recomputed). Each test runs on a thread in a fresh network namespace (so
//! `bpf_fib_lookup` sees only the routes and neighbours the test made) with its own pin
//! directory, removed at the end. Needs root; skipped otherwise.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use aya::programs::{SchedClassifier, TestRun, TestRunOptions, Xdp};
use mesh_ebpf::abi::{self, MESH_CFG_READY, MESH_CFG_XDP, MESH_IF_TASK, MeshIface};

mod clientip;
mod conntrack_states;
mod egress;
mod fragments;
mod hairpin;
mod malformed;
mod nat_errors;
mod native;
mod vxlan_guard;

use crate::mesh::{FlowKind, Mesh, check_root};
use crate::model::{
    DesiredMesh, Protocol, PublishMode, PublishedPort, Service, Task, TaskAddress, Vip,
};

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x02];
const UNDERLAY_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x11];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x12];
const BRIDGE_MAC: [u8; 6] = [2, 0, 0, 0, 0x10, 0x11];
const TASK_A_MAC: [u8; 6] = [2, 0, 0, 0, 0x10, 0x21];
const TASK_A_NET_MAC: [u8; 6] = [2, 0, 0, 0, 0x11, 0x21];
const TASK_B_MAC: [u8; 6] = [2, 0, 0, 0, 0x10, 0x22];
const TASK_C_MAC: [u8; 6] = [2, 0, 0, 0, 0x10, 0x23];
const VETH_MAC: [u8; 6] = [2, 0, 0, 0, 0xee, 0x01];
const CALLER_MAC: [u8; 6] = [2, 0, 0, 0, 0x11, 0x30];

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 250, 2);
const NODE: Ipv4Addr = Ipv4Addr::new(198, 18, 250, 11);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 250, 12);
const NODE_INGRESS: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 11);
const TASK_A: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 21);
const TASK_A_NET: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 21);
const TASK_B: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 22);
const TASK_C: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 23);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 200);
const CALLER: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 30);

// ---- frame building and checking ----------------------------------------------------------

fn sum16(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn l4_sum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, seg: &[u8]) -> u16 {
    let mut ph = Vec::new();
    ph.extend(src.octets());
    ph.extend(dst.octets());
    ph.extend([0, proto]);
    ph.extend((seg.len() as u16).to_be_bytes());
    fold(sum16(&ph) + sum16(seg))
}

fn eth(dst: [u8; 6], src: [u8; 6], ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(dst);
    f.extend(src);
    f.extend(ty.to_be_bytes());
    f.extend(payload);
    f
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, frag: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend(((20 + payload.len()) as u16).to_be_bytes());
    h.extend([0x12, 0x34]);
    h.extend(frag.to_be_bytes());
    h.extend([64, proto, 0, 0]);
    h.extend(src.octets());
    h.extend(dst.octets());
    let c = !fold(sum16(&h));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend(payload);
    h
}

fn tcp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    flags: u8,
    data: &[u8],
) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend(sport.to_be_bytes());
    s.extend(dport.to_be_bytes());
    s.extend(seq.to_be_bytes());
    s.extend(0_u32.to_be_bytes());
    s.extend([0x50, flags]);
    s.extend(64240_u16.to_be_bytes());
    s.extend([0, 0, 0, 0]);
    s.extend(data);
    let c = !l4_sum(src, dst, 6, &s);
    s[16..18].copy_from_slice(&c.to_be_bytes());
    ipv4(src, dst, 6, 0, &s)
}

fn udp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    data: &[u8],
    with_csum: bool,
) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend(sport.to_be_bytes());
    s.extend(dport.to_be_bytes());
    s.extend(((8 + data.len()) as u16).to_be_bytes());
    s.extend([0, 0]);
    s.extend(data);
    if with_csum {
        let c = !l4_sum(src, dst, 17, &s);
        s[6..8].copy_from_slice(&c.to_be_bytes());
    }
    ipv4(src, dst, 17, 0, &s)
}

fn tcp_frame(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    eth(
        UNDERLAY_MAC,
        CLIENT_MAC,
        0x0800,
        &tcp(
            src,
            dst,
            sport,
            dport,
            1000,
            flags,
            b"GET / HTTP/1.0\r\n\r\n",
        ),
    )
}

/// The frame as a local veth hands it over with `CHECKSUM_PARTIAL`: its L4 checksum field holds
/// only the folded pseudo-header sum.
fn partial(mut f: Vec<u8>) -> Vec<u8> {
    let ip = &f[14..34];
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let proto = ip[9];
    let len = f.len() - 34;
    let mut ph = Vec::new();
    ph.extend(src.octets());
    ph.extend(dst.octets());
    ph.extend([0, proto]);
    ph.extend((len as u16).to_be_bytes());
    let off = 34 + if proto == 6 { 16 } else { 6 };
    f[off..off + 2].copy_from_slice(&fold(sum16(&ph)).to_be_bytes());
    f
}

fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut v = vec![0x08, 0, 0, 0];
    v.extend((vni << 8).to_be_bytes());
    v.extend(inner);
    let mut u = Vec::new();
    u.extend(50000_u16.to_be_bytes());
    u.extend(4789_u16.to_be_bytes());
    u.extend(((8 + v.len()) as u16).to_be_bytes());
    u.extend([0, 0]);
    u.extend(v);
    eth(UNDERLAY_MAC, PEER_MAC, 0x0800, &ipv4(PEER, NODE, 17, 0, &u))
}

/// The decoded headers of an Ethernet/IPv4/TCP-or-UDP frame, checksums verified.
#[derive(Debug)]
struct Seen {
    dmac: [u8; 6],
    smac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    l4: Vec<u8>,
}

fn decode(f: &[u8]) -> Seen {
    assert!(f.len() >= 34, "frame too short: {f:02x?}");
    assert_eq!(&f[12..14], &[8, 0], "not IPv4");
    let ip = &f[14..34];
    assert_eq!(
        fold(sum16(ip)),
        0xffff,
        "IP header checksum wrong: {ip:02x?}"
    );
    let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let l4 = &f[34..14 + tot];
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let proto = ip[9];
    let csum_ok = proto == 17 && l4[6..8] == [0, 0] || l4_sum(src, dst, proto, l4) == 0xffff;
    assert!(
        csum_ok,
        "L4 checksum wrong ({src} -> {dst}, proto {proto}): {l4:02x?}"
    );
    Seen {
        dmac: f[0..6].try_into().unwrap(),
        smac: f[6..12].try_into().unwrap(),
        src,
        dst,
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
        tcp_flags: if proto == 6 { l4[13] } else { 0 },
        l4: l4.to_vec(),
    }
}

/// An ICMP error message (type, code, the 4 type-specific bytes) quoting `quote`.
fn icmp(ty: u8, code: u8, rest: u32, quote: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend(rest.to_be_bytes());
    m.extend(quote);
    let c = !fold(sum16(&m));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// The frame `xdp_vxlan_push` makes of `inner` toward the peer node, with the entropy source
/// port `sport` (a flow hash: the test takes it from the output).
fn vxlan_out(sport: u16, vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend(sport.to_be_bytes());
    u.extend(4789_u16.to_be_bytes());
    u.extend(((16 + inner.len()) as u16).to_be_bytes());
    u.extend([0, 0, 0x08, 0, 0, 0]);
    u.extend((vni << 8).to_be_bytes());
    u.extend(inner);
    let mut ip = ipv4(NODE, PEER, 17, 0, &u);
    // xdp_vxlan_push writes IP id 0: redo the header checksum for it.
    ip[4..6].copy_from_slice(&[0, 0]);
    ip[10..12].copy_from_slice(&[0, 0]);
    let c = !fold(sum16(&ip[..20]));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    eth(PEER_MAC, UNDERLAY_MAC, 0x0800, &ip)
}

// ---- the harness --------------------------------------------------------------------------

/// Runs `f` on a thread inside a fresh network namespace (gone when the thread ends).
fn in_fresh_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare(CLONE_NEWNET) affects only this thread, which owns nothing
        // namespace-bound yet.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        );
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run command");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A loaded mesh with the test tables, its pins removed on drop.
struct Harness {
    mesh: Option<Mesh>,
    pin_dir: PathBuf,
    /// The veth "underlay" in this namespace (for XDP's ingress ifindex and FIB).
    underlay_ifindex: u32,
}

impl Drop for Harness {
    fn drop(&mut self) {
        drop(self.mesh.take());
        Mesh::remove_pins(&self.pin_dir).expect("remove test pins");
    }
}

fn desired(with_task_a: bool) -> DesiredMesh {
    let task_a = Task {
        id: "a".into(),
        node_addr: PEER,
        local: false,
        endpoints: vec![
            TaskAddress {
                vni: 4096,
                addr: TASK_A,
                mac: TASK_A_MAC,
            },
            TaskAddress {
                vni: 4097,
                addr: TASK_A_NET,
                mac: TASK_A_NET_MAC,
            },
        ],
        draining: false,
    };
    let task_b = Task {
        id: "b".into(),
        node_addr: NODE,
        local: true,
        endpoints: vec![TaskAddress {
            vni: 4096,
            addr: TASK_B,
            mac: TASK_B_MAC,
        }],
        draining: false,
    };
    let task_c = Task {
        id: "c".into(),
        node_addr: PEER,
        local: false,
        endpoints: vec![TaskAddress {
            vni: 4096,
            addr: TASK_C,
            mac: TASK_C_MAC,
        }],
        draining: false,
    };
    let port = |protocol, published, target| PublishedPort {
        protocol,
        published,
        target,
        mode: PublishMode::Ingress,
    };
    DesiredMesh {
        services: vec![
            Service {
                id: "web".into(),
                ports: vec![port(Protocol::Tcp, 8080, 80)],
                vips: vec![Vip {
                    vni: 4097,
                    addr: VIP,
                }],
                tasks: if with_task_a { vec![task_a] } else { vec![] },
            },
            Service {
                id: "dns".into(),
                ports: vec![port(Protocol::Udp, 5353, 53)],
                vips: vec![],
                tasks: vec![task_b],
            },
            Service {
                id: "syslog".into(),
                ports: vec![port(Protocol::Udp, 5514, 514)],
                vips: vec![],
                tasks: vec![task_c],
            },
            Service {
                id: "empty".into(),
                ports: vec![port(Protocol::Tcp, 9000, 80), port(Protocol::Udp, 9001, 80)],
                vips: vec![],
                tasks: vec![],
            },
        ],
    }
}

fn harness(name: &str, xdp: bool) -> Harness {
    sh(&["ip", "link", "set", "lo", "up"]);
    sh(&[
        "ip",
        "link",
        "add",
        "mtu0",
        "address",
        "02:00:00:00:00:11",
        "type",
        "veth",
        "peer",
        "name",
        "mtu1",
    ]);
    sh(&["ip", "link", "set", "mtu1", "up"]);
    sh(&["ip", "addr", "add", "198.18.250.11/24", "dev", "mtu0"]);
    sh(&["ip", "link", "set", "mtu0", "up"]);
    sh(&[
        "ip",
        "neigh",
        "add",
        "198.18.250.12",
        "lladdr",
        "02:00:00:00:00:12",
        "dev",
        "mtu0",
        "nud",
        "permanent",
    ]);
    let underlay_ifindex = crate::netdev::ifindex("mtu0").unwrap();
    let pin_dir = PathBuf::from(format!(
        "/sys/fs/bpf/mt{}-dp-{name}",
        std::process::id() % 100_000
    ));
    Mesh::remove_pins(&pin_dir).ok();
    let kcfg = abi::MeshConfig {
        underlay_addr: NODE.octets(),
        ingress_addr: NODE_INGRESS.octets(),
        underlay_ifindex,
        // Any live ifindex: test runs return the redirect verdict without sending.
        ingress_bridge_ifindex: 1,
        ingress_vni: 4096,
        underlay_mac: UNDERLAY_MAC,
        bridge_mac: BRIDGE_MAC,
        flags: MESH_CFG_READY | if xdp { MESH_CFG_XDP } else { 0 },
        ingress_vxlan_ifindex: 0,
        tcp_timeout_ns: 3600 * 1_000_000_000,
        udp_timeout_ns: 300 * 1_000_000_000,
    };
    let mut h = Harness {
        mesh: None,
        pin_dir: pin_dir.clone(),
        underlay_ifindex,
    };
    let mut mesh = Mesh::unattached(&pin_dir, kcfg).expect("load programs");
    mesh.apply(&desired(true)).expect("apply test tables");
    // Test runs of tc programs see the loopback device: make it a task veth of network 4097.
    mesh.programs_mut()
        .set_iface(
            1,
            &MeshIface {
                vni: 4097,
                kind: MESH_IF_TASK,
                mac: VETH_MAC,
                pad: [0; 2],
            },
        )
        .unwrap();
    h.mesh = Some(mesh);
    h
}

impl Harness {
    fn mesh(&mut self) -> &mut Mesh {
        self.mesh.as_mut().unwrap()
    }

    /// Runs a tc program; `Err(errno)` when the kernel refuses the input (too short).
    fn tc(&mut self, prog: &str, input: &[u8]) -> Result<(u32, Vec<u8>), i32> {
        self.tc_on(prog, input, 0)
    }

    /// [`Harness::tc`] with the packet on interface `ifindex` (`skb->ifindex`; 0: loopback).
    fn tc_on(&mut self, prog: &str, input: &[u8], ifindex: u32) -> Result<(u32, Vec<u8>), i32> {
        // A `struct __sk_buff` up to its `ifindex` (offset 40), the rest zero.
        let mut ctx = vec![0_u8; 44];
        ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
        let p: &SchedClassifier = self
            .mesh()
            .programs_mut()
            .tc
            .program(prog)
            .unwrap()
            .try_into()
            .unwrap();
        let mut out = vec![0_u8; 4096];
        let r = p
            .test_run(TestRunOptions {
                data_in: Some(input),
                data_out: Some(&mut out),
                ctx_in: (ifindex > 1).then_some(ctx.as_slice()),
                ..TestRunOptions::default()
            })
            .map_err(|e| errno(&e))?;
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value, out))
    }

    fn xdp(&mut self, input: &[u8]) -> Result<(u32, Vec<u8>), i32> {
        let ifindex = self.underlay_ifindex;
        let p: &Xdp = self
            .mesh()
            .programs_mut()
            .xdp
            .program("xdp_mesh")
            .unwrap()
            .try_into()
            .unwrap();
        let mut ctx = Vec::new();
        for v in [0, input.len() as u32, 0, ifindex, 0, 0] {
            ctx.extend(v.to_ne_bytes());
        }
        let mut out = vec![0_u8; 4096];
        let r = p
            .test_run(TestRunOptions {
                data_in: Some(input),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                ..TestRunOptions::default()
            })
            .map_err(|e| errno(&e))?;
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value, out))
    }
}

fn errno(e: &aya::programs::ProgramError) -> i32 {
    let s = format!("{e:?}");
    if s.contains("InvalidInput") || s.contains("code: 22") {
        22
    } else {
        panic!("test run failed: {e:?}")
    }
}

/// What a row expects of the output frame.
enum Expect {
    Unchanged,
    Check(fn(&[u8])),
    /// This frame, byte for byte.
    Exactly(Vec<u8>),
}

struct Row {
    what: &'static str,
    input: Vec<u8>,
    verdict: u32,
    expect: Expect,
}

fn run_rows(h: &mut Harness, prog: &str, rows: Vec<Row>) {
    run_rows_on(h, prog, rows, 0);
}

/// [`run_rows`] with tc's packets on interface `ifindex` (0: loopback).
fn run_rows_on(h: &mut Harness, prog: &str, rows: Vec<Row>, ifindex: u32) {
    for row in rows {
        let (verdict, out) = if prog == "xdp_mesh" {
            h.xdp(&row.input)
        } else {
            h.tc_on(prog, &row.input, ifindex)
        }
        .unwrap_or_else(|e| panic!("{prog}: {}: kernel refused the input (errno {e})", row.what));
        assert_eq!(
            verdict, row.verdict,
            "{prog}: {}: verdict (output {out:02x?})",
            row.what
        );
        match row.expect {
            Expect::Unchanged => assert_eq!(out, row.input, "{prog}: {}: frame changed", row.what),
            Expect::Check(f) => f(&out),
            Expect::Exactly(want) => assert_eq!(
                out, want,
                "{prog}: {}: output frame (left) differs from the expected one (right)",
                row.what
            ),
        }
    }
}

/// Every prefix of `frame` through `prog`: no crash, and the verdict is pass (or drop), never a
/// forwarded half-frame.
fn truncations(h: &mut Harness, prog: &str, frame: &[u8], ok: &[u32]) {
    for len in 0..frame.len() {
        let input = &frame[..len];
        let r = if prog == "xdp_mesh" {
            h.xdp(input)
        } else {
            h.tc(prog, input)
        };
        match r {
            // The kernel refuses frames of an Ethernet header or less, and skb test runs of IPv4
            // frames without a whole IP header: nothing ran.
            Err(22) if len <= 14 || (prog != "xdp_mesh" && len < 34) => {}
            Err(e) => panic!("{prog}: truncated to {len} bytes: errno {e}"),
            Ok((v, out)) => {
                assert!(
                    ok.contains(&v),
                    "{prog}: truncated to {len} bytes: verdict {v}"
                );
                assert_eq!(
                    out, input,
                    "{prog}: truncated to {len} bytes: frame changed"
                );
            }
        }
    }
}

// ---- the tables ---------------------------------------------------------------------------

#[test]
#[expect(clippy::too_many_lines, reason = "a fixture table reads as one table")]
fn tc_underlay_in_translates_published_ports_and_passes_the_rest() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| {
        let mut h = harness("tc-under", false);
        let syn = tcp_frame(CLIENT, NODE, 40000, 8080, 0x02);
        // The first fragment of a SYN (MF set): the kernel reassembles, we do not translate.
        let seg = tcp(
            CLIENT,
            NODE,
            40000,
            8080,
            1000,
            0x02,
            b"GET / HTTP/1.0\r\n\r\n",
        )[20..]
            .to_vec();
        let frag = eth(
            UNDERLAY_MAC,
            CLIENT_MAC,
            0x0800,
            &ipv4(CLIENT, NODE, 6, 0x2000, &seg),
        );
        let mut opts = tcp(CLIENT, NODE, 40001, 8080, 1, 0x02, b"");
        opts.splice(20..20, [1, 1, 1, 0]); // 4 bytes of IP options (NOPs + EOL)
        opts[0] = 0x46;
        let opts = eth(UNDERLAY_MAC, CLIENT_MAC, 0x0800, &opts);
        let rows = vec![
            Row {
                what: "a TCP SYN to a published port is DNATed to the task, keeps the client's address and port, and is redirected into the bridge",
                input: syn.clone(),
                verdict: TC_ACT_REDIRECT,
                expect: Expect::Check(|out| {
                    let s = decode(out);
                    assert_eq!((s.src, s.sport), (CLIENT, 40000), "no SNAT");
                    assert_eq!((s.dst, s.dport), (TASK_A, 80));
                    assert_eq!((s.dmac, s.smac), (TASK_A_MAC, BRIDGE_MAC));
                    assert!(s.l4.ends_with(b"GET / HTTP/1.0\r\n\r\n"), "payload kept");
                }),
            },
            Row {
                what: "the same flow again takes the same translation (conntrack)",
                input: syn.clone(),
                verdict: TC_ACT_REDIRECT,
                expect: Expect::Check(|out| {
                    let s = decode(out);
                    assert_eq!((s.dst, s.dport, s.sport), (TASK_A, 80, 40000));
                }),
            },
            Row {
                what: "a UDP datagram to a published port goes to its (local) task",
                input: eth(
                    UNDERLAY_MAC,
                    CLIENT_MAC,
                    0x0800,
                    &udp(CLIENT, NODE, 41000, 5353, b"query", true),
                ),
                verdict: TC_ACT_REDIRECT,
                expect: Expect::Check(|out| {
                    let s = decode(out);
                    assert_eq!(
                        (s.src, s.sport, s.dst, s.dport),
                        (CLIENT, 41000, TASK_B, 53)
                    );
                    assert_eq!(s.dmac, TASK_B_MAC);
                }),
            },
            Row {
                what: "a UDP datagram without checksum keeps none",
                input: eth(
                    UNDERLAY_MAC,
                    CLIENT_MAC,
                    0x0800,
                    &udp(CLIENT, NODE, 41001, 5353, b"q", false),
                ),
                verdict: TC_ACT_REDIRECT,
                expect: Expect::Check(|out| {
                    let s = decode(out);
                    assert_eq!(&s.l4[6..8], &[0, 0]);
                    assert_eq!(s.dst, TASK_B);
                }),
            },
            Row {
                what: "a port nobody published passes untouched",
                input: tcp_frame(CLIENT, NODE, 40000, 22, 0x02),
                verdict: TC_ACT_OK,
                expect: Expect::Unchanged,
            },
            Row {
                what: "a published port on another destination address passes untouched",
                input: tcp_frame(CLIENT, PEER, 40000, 8080, 0x02),
                verdict: TC_ACT_OK,
                expect: Expect::Unchanged,
            },
            Row {
                what: "UDP on a published TCP port passes untouched",
                input: eth(
                    UNDERLAY_MAC,
                    CLIENT_MAC,
                    0x0800,
                    &udp(CLIENT, NODE, 40000, 8080, b"x", true),
                ),
                verdict: TC_ACT_OK,
                expect: Expect::Unchanged,
            },
            Row {
                what: "ICMP passes untouched",
                input: eth(
                    UNDERLAY_MAC,
                    CLIENT_MAC,
                    0x0800,
                    &ipv4(CLIENT, NODE, 1, 0, &[8, 0, 0xf7, 0xff, 0, 0, 0, 0]),
                ),
                verdict: TC_ACT_OK,
                expect: Expect::Unchanged,
            },
            Row {
                what: "an IPv4 fragment passes to the kernel untouched (it reassembles)",
                input: frag,
                verdict: TC_ACT_OK,
                expect: Expect::Unchanged,
            },
            Row {
                what: "IPv4 with options passes untouched",
                input: opts,
                verdict: TC_ACT_OK,
                expect: Expect::Unchanged,
            },
            Row {
                what: "ARP passes untouched on the underlay",
                input: eth([0xff; 6], CLIENT_MAC, 0x0806, &[0; 28]),
                verdict: TC_ACT_OK,
                expect: Expect::Unchanged,
            },
            Row {
                what: "a published TCP port with no backend passes, so the node's stack answers RST",
                input: tcp_frame(CLIENT, NODE, 40000, 9000, 0x02),
                verdict: TC_ACT_OK,
                expect: Expect::Unchanged,
            },
            Row {
                what: "a published UDP port with no backend drops",
                input: eth(
                    UNDERLAY_MAC,
                    CLIENT_MAC,
                    0x0800,
                    &udp(CLIENT, NODE, 40000, 9001, b"x", true),
                ),
                verdict: TC_ACT_SHOT,
                expect: Expect::Check(|_| {}),
            },
        ];
        run_rows(&mut h, "tc_underlay_in", rows);
        truncations(
            &mut h,
            "tc_underlay_in",
            &tcp_frame(CLIENT, NODE, 45000, 8080, 0x02),
            &[TC_ACT_OK],
        );

        // The reply of the first flow (to the client itself), coming out of the ingress VXLAN
        // device, is reversed toward the client.
        let reply = eth(
            BRIDGE_MAC,
            TASK_A_MAC,
            0x0800,
            &tcp(TASK_A, CLIENT, 80, 40000, 7, 0x12, b""),
        );
        run_rows(
            &mut h,
            "tc_bridge_in",
            vec![
                Row {
                    what: "a remote backend's reply to the client is reversed and redirected out of the underlay",
                    input: reply,
                    verdict: TC_ACT_REDIRECT,
                    expect: Expect::Check(|out| {
                        let s = decode(out);
                        assert_eq!((s.src, s.sport), (NODE, 8080));
                        assert_eq!((s.dst, s.dport), (CLIENT, 40000));
                        assert_eq!((s.dmac, s.smac), (CLIENT_MAC, UNDERLAY_MAC));
                        assert_eq!(s.tcp_flags, 0x12);
                    }),
                },
                Row {
                    what: "traffic to the node's address without a flow passes (the node's own)",
                    input: eth(
                        BRIDGE_MAC,
                        TASK_A_MAC,
                        0x0800,
                        &tcp(TASK_A, NODE_INGRESS, 80, 49999, 7, 0x12, b""),
                    ),
                    verdict: TC_ACT_OK,
                    expect: Expect::Unchanged,
                },
            ],
        );
        truncations(
            &mut h,
            "tc_bridge_in",
            &eth(
                BRIDGE_MAC,
                TASK_A_MAC,
                0x0800,
                &tcp(TASK_A, CLIENT, 80, 40000, 7, 0x12, b""),
            ),
            &[TC_ACT_OK],
        );

        // Counters: the web service counted its packets and one connection.
        let stats = h.mesh().stats().unwrap();
        assert_eq!(stats["web"].connections, 1, "{stats:?}");
        assert!(stats["web"].packets >= 3, "{stats:?}");
        assert_eq!(stats["dns"].connections, 2, "{stats:?}");

        // Task a drains (withdrawn before it stops): nothing swept, its flow goes on, a new
        // connection does not reach it (the port has no other backend: none).
        let before = h.mesh().flows().unwrap();
        let mut drain = desired(true);
        drain.services[0].tasks[0].draining = true;
        let report = h.mesh().apply(&drain).unwrap();
        assert_eq!(report.swept, 0, "{report:?}");
        assert_eq!(h.mesh().flows().unwrap().len(), before.len());
        run_rows(
            &mut h,
            "tc_underlay_in",
            vec![
                Row {
                    what: "a draining backend's flow still reaches it",
                    input: tcp_frame(CLIENT, NODE, 40000, 8080, 0x10),
                    verdict: TC_ACT_REDIRECT,
                    expect: Expect::Check(|out| {
                        let s = decode(out);
                        assert_eq!((s.src, s.sport), (CLIENT, 40000));
                        assert_eq!((s.dst, s.dport), (TASK_A, 80));
                    }),
                },
                Row {
                    what: "a new connection does not reach a draining backend",
                    input: tcp_frame(CLIENT, NODE, 40050, 8080, 0x02),
                    verdict: TC_ACT_OK,
                    expect: Expect::Unchanged,
                },
            ],
        );

        // Task a leaves: its flows (both directions) are swept, nothing else.
        let before = h.mesh().flows().unwrap();
        assert!(
            before
                .iter()
                .any(|f| f.backend_addr() == TASK_A && f.kind == FlowKind::IngressReply)
        );
        let report = h.mesh().apply(&desired(false)).unwrap();
        assert_eq!(report.swept, 2, "one flow, two directions: {report:?}");
        let after = h.mesh().flows().unwrap();
        assert!(
            after.iter().all(|f| f.backend_addr() != TASK_A),
            "{after:?}"
        );
        assert_eq!(after.len(), before.len() - 2);
        // And new connections to 8080 now find no backend.
        run_rows(
            &mut h,
            "tc_underlay_in",
            vec![Row {
                what: "after its only backend left, the port has none",
                input: tcp_frame(CLIENT, NODE, 40000, 8080, 0x02),
                verdict: TC_ACT_OK,
                expect: Expect::Unchanged,
            }],
        );
    });
}

#[test]
#[expect(clippy::too_many_lines, reason = "a fixture table reads as one table")]
fn xdp_mesh_encapsulates_remote_backends_and_decapsulates_their_replies() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| {
        let mut h = harness("xdp", true);
        let syn = tcp_frame(CLIENT, NODE, 40000, 8080, 0x02);
        let rows = vec![
            Row {
                what: "a SYN for a remote backend leaves translated inside VXLAN (VNI 4096) to the backend's node, from the advertised address",
                input: syn.clone(),
                verdict: XDP_TX,
                expect: Expect::Check(|out| {
                    let outer = decode(out);
                    assert_eq!((outer.src, outer.dst, outer.dport), (NODE, PEER, 4789));
                    assert_eq!(
                        (outer.smac, outer.dmac),
                        (UNDERLAY_MAC, PEER_MAC),
                        "MACs from the FIB"
                    );
                    assert!(outer.sport >= 49152);
                    assert_eq!(&outer.l4[8..16], &[0x08, 0, 0, 0, 0, 0x10, 0, 0]);
                    assert_eq!(
                        out.len(),
                        50 + tcp_frame(CLIENT, NODE, 40000, 8080, 0x02).len()
                    );
                    let inner = decode(&out[50..]);
                    assert_eq!(
                        (inner.src, inner.sport, inner.dst, inner.dport),
                        (CLIENT, 40000, TASK_A, 80)
                    );
                    assert_eq!((inner.dmac, inner.smac), (TASK_A_MAC, BRIDGE_MAC));
                }),
            },
            Row {
                what: "a SYN with a half-done (CHECKSUM_PARTIAL) checksum from a local veth leaves with a full one",
                input: partial(tcp_frame(CLIENT, NODE, 40002, 8080, 0x02)),
                verdict: XDP_TX,
                expect: Expect::Check(|out| {
                    let inner = decode(&out[50..]);
                    assert_eq!(
                        (inner.src, inner.sport, inner.dst, inner.dport),
                        (CLIENT, 40002, TASK_A, 80)
                    );
                }),
            },
            Row {
                what: "a datagram with a half-done checksum for a local backend passes untouched (tc finishes it)",
                input: partial(eth(
                    UNDERLAY_MAC,
                    CLIENT_MAC,
                    0x0800,
                    &udp(CLIENT, NODE, 41003, 5353, b"odd", true),
                )),
                verdict: XDP_PASS,
                expect: Expect::Unchanged,
            },
            Row {
                what: "a datagram for a local backend passes (tc redirects it into the bridge)",
                input: eth(
                    UNDERLAY_MAC,
                    CLIENT_MAC,
                    0x0800,
                    &udp(CLIENT, NODE, 41000, 5353, b"q", true),
                ),
                verdict: XDP_PASS,
                expect: Expect::Unchanged,
            },
            Row {
                what: "a SYN to a published TCP port with no backend is answered with RST|ACK",
                input: tcp_frame(CLIENT, NODE, 40000, 9000, 0x02),
                verdict: XDP_TX,
                expect: Expect::Check(|out| {
                    let s = decode(out);
                    assert_eq!(out.len(), 54);
                    assert_eq!(
                        (s.src, s.sport, s.dst, s.dport),
                        (NODE, 9000, CLIENT, 40000)
                    );
                    assert_eq!((s.dmac, s.smac), (CLIENT_MAC, UNDERLAY_MAC));
                    assert_eq!(s.tcp_flags, 0x14, "RST|ACK");
                    let ack = u32::from_be_bytes(s.l4[8..12].try_into().unwrap());
                    assert_eq!(ack, 1000 + 18 + 1, "acks the SYN and its payload");
                }),
            },
            Row {
                what: "a datagram to a published UDP port with no backend drops",
                input: eth(
                    UNDERLAY_MAC,
                    CLIENT_MAC,
                    0x0800,
                    &udp(CLIENT, NODE, 40000, 9001, b"x", true),
                ),
                verdict: XDP_DROP,
                expect: Expect::Check(|_| {}),
            },
            Row {
                what: "a port nobody published passes untouched",
                input: tcp_frame(CLIENT, NODE, 40000, 22, 0x02),
                verdict: XDP_PASS,
                expect: Expect::Unchanged,
            },
            Row {
                what: "ICMP passes untouched",
                input: eth(
                    UNDERLAY_MAC,
                    CLIENT_MAC,
                    0x0800,
                    &ipv4(CLIENT, NODE, 1, 0, &[8, 0, 0xf7, 0xff, 0, 0, 0, 0]),
                ),
                verdict: XDP_PASS,
                expect: Expect::Unchanged,
            },
            Row {
                what: "a fragment passes untouched",
                input: eth(
                    UNDERLAY_MAC,
                    CLIENT_MAC,
                    0x0800,
                    &ipv4(CLIENT, NODE, 6, 0x0010, &[0; 24]),
                ),
                verdict: XDP_PASS,
                expect: Expect::Unchanged,
            },
            Row {
                what: "VXLAN of another network passes to the kernel's VXLAN device",
                input: vxlan(
                    4097,
                    &eth(
                        BRIDGE_MAC,
                        TASK_A_MAC,
                        0x0800,
                        &tcp(TASK_A, NODE_INGRESS, 80, 40000, 7, 0x12, b""),
                    ),
                ),
                verdict: XDP_PASS,
                expect: Expect::Unchanged,
            },
            Row {
                what: "the backend's VXLAN reply (to the client itself) is reversed, decapsulated and sent back to the client",
                input: vxlan(
                    4096,
                    &eth(
                        BRIDGE_MAC,
                        TASK_A_MAC,
                        0x0800,
                        &tcp(TASK_A, CLIENT, 80, 40000, 7, 0x12, b"hello"),
                    ),
                ),
                verdict: XDP_TX,
                expect: Expect::Check(|out| {
                    let s = decode(out);
                    assert_eq!(
                        (s.src, s.sport, s.dst, s.dport),
                        (NODE, 8080, CLIENT, 40000)
                    );
                    assert_eq!((s.dmac, s.smac), (CLIENT_MAC, UNDERLAY_MAC));
                    assert!(s.l4.ends_with(b"hello"));
                }),
            },
            Row {
                what: "a VXLAN reply whose inner checksum is half-done (the sender's kernel encapsulated a CHECKSUM_PARTIAL skb) leaves with a full one",
                input: vxlan(
                    4096,
                    &partial(eth(
                        BRIDGE_MAC,
                        TASK_A_MAC,
                        0x0800,
                        &tcp(TASK_A, CLIENT, 80, 40002, 7, 0x12, b"hello!!"),
                    )),
                ),
                verdict: XDP_TX,
                expect: Expect::Check(|out| {
                    let s = decode(out);
                    assert_eq!(
                        (s.src, s.sport, s.dst, s.dport),
                        (NODE, 8080, CLIENT, 40002)
                    );
                }),
            },
            Row {
                what: "a client's packet that another node sent to a task here passes (the kernel's VXLAN device delivers it)",
                input: vxlan(
                    4096,
                    &eth(
                        TASK_A_MAC,
                        BRIDGE_MAC,
                        0x0800,
                        &tcp(CLIENT, TASK_A, 40999, 80, 7, 0x02, b""),
                    ),
                ),
                verdict: XDP_PASS,
                expect: Expect::Unchanged,
            },
            Row {
                what: "VXLAN to the ingress network without a flow passes (the kernel delivers it)",
                input: vxlan(
                    4096,
                    &eth(
                        BRIDGE_MAC,
                        TASK_A_MAC,
                        0x0800,
                        &tcp(TASK_A, NODE_INGRESS, 80, 40999, 7, 0x12, b""),
                    ),
                ),
                verdict: XDP_PASS,
                expect: Expect::Unchanged,
            },
        ];
        run_rows(&mut h, "xdp_mesh", rows);
        truncations(
            &mut h,
            "xdp_mesh",
            &tcp_frame(CLIENT, NODE, 45001, 8080, 0x02),
            &[XDP_PASS],
        );
        truncations(
            &mut h,
            "xdp_mesh",
            &vxlan(
                4096,
                &eth(
                    BRIDGE_MAC,
                    TASK_A_MAC,
                    0x0800,
                    &tcp(TASK_A, CLIENT, 80, 40000, 7, 0x12, b""),
                ),
            ),
            &[XDP_PASS],
        );
        // The UDP flow XDP made for the local backend is there for tc to find.
        let flows = h.mesh().flows().unwrap();
        assert!(
            flows
                .iter()
                .any(|f| f.kind == FlowKind::Ingress && f.backend_addr() == TASK_B),
            "{flows:?}"
        );
    });
}

#[test]
fn task_veth_programs_answer_arp_for_vips_and_balance_vip_traffic() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| {
        let mut h = harness("veth", false);
        let arp = |target: Ipv4Addr| {
            let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
            a.extend(CALLER_MAC);
            a.extend(CALLER.octets());
            a.extend([0; 6]);
            a.extend(target.octets());
            eth([0xff; 6], CALLER_MAC, 0x0806, &a)
        };
        let to_vip = eth(
            VETH_MAC,
            CALLER_MAC,
            0x0800,
            &tcp(CALLER, VIP, 33000, 5000, 1, 0x02, b""),
        );
        run_rows(
            &mut h,
            "tc_task_in",
            vec![
                Row {
                    what: "an ARP request for a VIP of the veth's network is answered back out of the veth",
                    input: arp(VIP),
                    verdict: TC_ACT_REDIRECT,
                    expect: Expect::Check(|out| {
                        assert_eq!(&out[0..6], &CALLER_MAC);
                        assert_eq!(&out[6..12], &VETH_MAC);
                        assert_eq!(&out[20..22], &[0, 2], "op = reply");
                        assert_eq!(&out[22..28], &VETH_MAC, "sha");
                        assert_eq!(&out[28..32], &VIP.octets(), "spa");
                        assert_eq!(&out[32..38], &CALLER_MAC, "tha");
                        assert_eq!(&out[38..42], &CALLER.octets(), "tpa");
                    }),
                },
                Row {
                    what: "an ARP request for any other address passes (the bridge floods it)",
                    input: arp(Ipv4Addr::new(10, 0, 1, 99)),
                    verdict: TC_ACT_OK,
                    expect: Expect::Unchanged,
                },
                Row {
                    what: "a SYN to VIP:port is DNATed to a backend, port kept, L2 to the backend's MAC",
                    input: to_vip.clone(),
                    verdict: TC_ACT_OK,
                    expect: Expect::Check(|out| {
                        let s = decode(out);
                        assert_eq!(
                            (s.src, s.sport, s.dst, s.dport),
                            (CALLER, 33000, TASK_A_NET, 5000)
                        );
                        assert_eq!((s.dmac, s.smac), (TASK_A_NET_MAC, CALLER_MAC));
                    }),
                },
                Row {
                    what: "traffic to a non-VIP address passes untouched",
                    input: eth(
                        VETH_MAC,
                        CALLER_MAC,
                        0x0800,
                        &tcp(CALLER, TASK_A_NET, 33001, 5000, 1, 0x02, b""),
                    ),
                    verdict: TC_ACT_OK,
                    expect: Expect::Unchanged,
                },
            ],
        );
        truncations(&mut h, "tc_task_in", &to_vip, &[TC_ACT_OK]);
        truncations(&mut h, "tc_task_in", &arp(VIP), &[TC_ACT_OK]);
        run_rows(
            &mut h,
            "tc_task_out",
            vec![
                Row {
                    what: "the backend's reply to the task is reversed to come from VIP:port",
                    input: eth(
                        CALLER_MAC,
                        TASK_A_NET_MAC,
                        0x0800,
                        &tcp(TASK_A_NET, CALLER, 5000, 33000, 9, 0x12, b""),
                    ),
                    verdict: TC_ACT_OK,
                    expect: Expect::Check(|out| {
                        let s = decode(out);
                        assert_eq!((s.src, s.sport, s.dst, s.dport), (VIP, 5000, CALLER, 33000));
                    }),
                },
                Row {
                    what: "other traffic to the task passes untouched",
                    input: eth(
                        CALLER_MAC,
                        TASK_A_NET_MAC,
                        0x0800,
                        &tcp(TASK_A_NET, CALLER, 5000, 33999, 9, 0x12, b""),
                    ),
                    verdict: TC_ACT_OK,
                    expect: Expect::Unchanged,
                },
            ],
        );
    });
}
