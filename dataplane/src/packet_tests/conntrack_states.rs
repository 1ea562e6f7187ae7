//! Packet tests of conntrack's per-state timeouts for published-port TCP flows: a flow begun by
//! a bare SYN is marked SYN-only (both entries) until the client's ACK, and its SNAT port
//! may be taken by another flow once it has been idle longer than the SYN timeout (5 s); an
//! answered flow keeps its port; a FIN marks both entries closing. Idleness is made by ageing
//! the entries in the map, not by waiting.

use std::net::Ipv4Addr;

use mesh_ebpf::abi::{
    MESH_CT_INGRESS, MESH_CT_INGRESS_REPLY, MESH_CT_SYN_TIMEOUT_SEC, MESH_CTF_CLOSING,
    MESH_CTF_SYN_ONLY,
};

use super::{
    BRIDGE_MAC, Harness, NODE, NODE_INGRESS, TASK_A, TASK_A_MAC, TC_ACT_REDIRECT, check_root,
    decode, eth, harness, in_fresh_netns, tcp, tcp_frame,
};

const SYN: u8 = 0x02;
const SYN_ACK: u8 = 0x12;
const ACK: u8 = 0x10;
const FIN_ACK: u8 = 0x11;

fn client(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 250, last)
}

/// A SYN (or other flags) from `src:sport` to the published port 8080 through
/// `tc_underlay_in`: the SNAT source port it was given.
fn send(h: &mut Harness, src: Ipv4Addr, sport: u16, flags: u8) -> u16 {
    let (verdict, out) = h
        .tc("tc_underlay_in", &tcp_frame(src, NODE, sport, 8080, flags))
        .unwrap();
    assert_eq!(verdict, TC_ACT_REDIRECT, "{src}:{sport} flags {flags:#x}");
    let s = decode(&out);
    assert_eq!((s.src, s.dst, s.dport), (NODE_INGRESS, TASK_A, 80));
    s.sport
}

/// The backend's answer to SNAT port `port` through `tc_bridge_in`.
fn answer(h: &mut Harness, port: u16, flags: u8) {
    let frame = eth(
        BRIDGE_MAC,
        TASK_A_MAC,
        0x0800,
        &tcp(TASK_A, NODE_INGRESS, 80, port, 5000, flags, b""),
    );
    let (verdict, _) = h.tc("tc_bridge_in", &frame).unwrap();
    assert_eq!(
        verdict, TC_ACT_REDIRECT,
        "the answer to port {port} is reversed"
    );
}

/// The flags of the two entries of the flow from `src:sport` (forward, reverse).
fn flow_flags(h: &mut Harness, src: Ipv4Addr, sport: u16) -> (u32, u32) {
    let entries = h.mesh().programs_mut().ct_entries();
    let (_, fwd) = entries
        .iter()
        .find(|(k, _)| {
            k.kind == MESH_CT_INGRESS && k.saddr == src.octets() && k.sport == sport.to_be_bytes()
        })
        .expect("forward entry");
    let (_, rev) = entries
        .iter()
        .find(|(k, v)| {
            k.kind == MESH_CT_INGRESS_REPLY
                && v.daddr == src.octets()
                && v.dport == sport.to_be_bytes()
        })
        .expect("reverse entry");
    (fwd.flags, rev.flags)
}

fn state(flags: (u32, u32)) -> (u32, u32) {
    let s = MESH_CTF_SYN_ONLY | MESH_CTF_CLOSING;
    (flags.0 & s, flags.1 & s)
}

#[test]
fn published_tcp_flows_expire_by_state() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| {
        let mut h = harness("ctstate", false);
        let past_syn_timeout = (u64::from(MESH_CT_SYN_TIMEOUT_SEC) + 1) * 1_000_000_000;

        // An unanswered SYN: both entries SYN-only; its port is held while fresh.
        assert_eq!(
            send(&mut h, client(2), 40000, SYN),
            40000,
            "the client's port"
        );
        assert_eq!(
            state(flow_flags(&mut h, client(2), 40000)),
            (MESH_CTF_SYN_ONLY, MESH_CTF_SYN_ONLY)
        );
        assert_ne!(
            send(&mut h, client(3), 40000, SYN),
            40000,
            "a fresh SYN-only flow keeps its SNAT port"
        );
        // Idle past the SYN timeout: the port is free for another flow.
        h.mesh().programs_mut().ct_age(past_syn_timeout);
        assert_eq!(
            send(&mut h, client(4), 40000, SYN),
            40000,
            "a stale SYN-only flow's SNAT port is taken again"
        );

        // The backend's SYN-ACK leaves it SYN-only (spoofed SYNs are answered too); the
        // client's ACK establishes it: its port outlives the SYN timeout.
        let port = send(&mut h, client(5), 41000, SYN);
        answer(&mut h, port, SYN_ACK);
        assert_eq!(
            state(flow_flags(&mut h, client(5), 41000)),
            (MESH_CTF_SYN_ONLY, MESH_CTF_SYN_ONLY)
        );
        assert_eq!(send(&mut h, client(5), 41000, ACK), port);
        assert_eq!(state(flow_flags(&mut h, client(5), 41000)), (0, 0));
        h.mesh().programs_mut().ct_age(past_syn_timeout);
        assert_ne!(
            send(&mut h, client(6), port, SYN),
            port,
            "an established flow keeps its SNAT port past the SYN timeout"
        );
        assert_eq!(
            send(&mut h, client(5), 41000, ACK),
            port,
            "and its own packets keep their translation"
        );

        // A FIN from the client: both entries closing.
        assert_eq!(send(&mut h, client(5), 41000, FIN_ACK), port);
        assert_eq!(
            state(flow_flags(&mut h, client(5), 41000)),
            (MESH_CTF_CLOSING, MESH_CTF_CLOSING)
        );
    });
}
