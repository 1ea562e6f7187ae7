//! Packet tests of conntrack's per-state timeouts for published-port TCP flows: a flow begun by
//! a bare SYN is marked SYN-only (both entries) until the client's ACK, and its reply tuple (or,
//! where the flow is translated to the node's address, its SNAT port) may be taken by another
//! flow once it has been idle longer than the SYN timeout (5 s); a FIN marks both entries
//! closing. Idleness is made by ageing the entries in the map, not by waiting.

use std::net::Ipv4Addr;

use mesh_ebpf::abi::{
    MESH_CT_INGRESS, MESH_CT_INGRESS_REPLY, MESH_CT_SYN_TIMEOUT_SEC, MESH_CTF_CLOSING,
    MESH_CTF_SYN_ONLY,
};

use super::{
    BRIDGE_MAC, Harness, NODE, NODE_INGRESS, TASK_A, TASK_A_MAC, TC_ACT_REDIRECT, check_root,
    decode, desired, eth, harness, in_fresh_netns, tcp, tcp_frame,
};
use crate::model::{Protocol, PublishMode, PublishedPort};

const SYN: u8 = 0x02;
const SYN_ACK: u8 = 0x12;
const ACK: u8 = 0x10;
const FIN_ACK: u8 = 0x11;

fn client(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 250, last)
}

/// A SYN (or other flags) from `src:sport` to the published port 8080 through
/// `tc_underlay_in`: it reaches the backend from the client's own address and port.
fn send(h: &mut Harness, src: Ipv4Addr, sport: u16, flags: u8) {
    let (verdict, out) = h
        .tc("tc_underlay_in", &tcp_frame(src, NODE, sport, 8080, flags))
        .unwrap();
    assert_eq!(verdict, TC_ACT_REDIRECT, "{src}:{sport} flags {flags:#x}");
    let s = decode(&out);
    assert_eq!((s.src, s.sport, s.dst, s.dport), (src, sport, TASK_A, 80));
}

/// The backend's answer to `dst:port` (coming out of the ingress VXLAN device) through
/// `tc_bridge_in`.
fn answer(h: &mut Harness, dst: Ipv4Addr, port: u16, flags: u8) {
    let frame = eth(
        BRIDGE_MAC,
        TASK_A_MAC,
        0x0800,
        &tcp(TASK_A, dst, 80, port, 5000, flags, b""),
    );
    let (verdict, _) = h.tc("tc_bridge_in", &frame).unwrap();
    assert_eq!(
        verdict, TC_ACT_REDIRECT,
        "the answer to {dst}:{port} is reversed"
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

        // An unanswered SYN: both entries SYN-only, stale after the SYN timeout (its reply
        // tuple is free again: a new SYN from the same address and port takes it).
        send(&mut h, client(2), 40000, SYN);
        assert_eq!(
            state(flow_flags(&mut h, client(2), 40000)),
            (MESH_CTF_SYN_ONLY, MESH_CTF_SYN_ONLY)
        );
        h.mesh().programs_mut().ct_age(past_syn_timeout);
        send(&mut h, client(2), 40000, SYN);

        // The backend's SYN-ACK leaves it SYN-only (spoofed SYNs are answered too); the
        // client's ACK establishes it.
        send(&mut h, client(5), 41000, SYN);
        answer(&mut h, client(5), 41000, SYN_ACK);
        assert_eq!(
            state(flow_flags(&mut h, client(5), 41000)),
            (MESH_CTF_SYN_ONLY, MESH_CTF_SYN_ONLY)
        );
        send(&mut h, client(5), 41000, ACK);
        assert_eq!(state(flow_flags(&mut h, client(5), 41000)), (0, 0));
        h.mesh().programs_mut().ct_age(past_syn_timeout);
        answer(&mut h, client(5), 41000, ACK);

        // A FIN from the client: both entries closing.
        send(&mut h, client(5), 41000, FIN_ACK);
        assert_eq!(
            state(flow_flags(&mut h, client(5), 41000)),
            (MESH_CTF_CLOSING, MESH_CTF_CLOSING)
        );

        // The client's port again (a new connection on the closed one's entries): SYN-only,
        // not closing, until the client's ACK.
        send(&mut h, client(5), 41000, SYN);
        assert_eq!(
            state(flow_flags(&mut h, client(5), 41000)),
            (MESH_CTF_SYN_ONLY, MESH_CTF_SYN_ONLY)
        );
        send(&mut h, client(5), 41000, ACK);
        assert_eq!(state(flow_flags(&mut h, client(5), 41000)), (0, 0));
    });
}

/// A SYN from `src:sport` to the published port `published` (8080 or 8081, both to task a's
/// port 80): the source the backend sees.
fn send_to(h: &mut Harness, src: Ipv4Addr, sport: u16, published: u16) -> (Ipv4Addr, u16) {
    let (verdict, out) = h
        .tc(
            "tc_underlay_in",
            &tcp_frame(src, NODE, sport, published, SYN),
        )
        .unwrap();
    assert_eq!(verdict, TC_ACT_REDIRECT, "{src}:{sport} to {published}");
    let s = decode(&out);
    assert_eq!((s.dst, s.dport), (TASK_A, 80));
    (s.src, s.sport)
}

#[test]
fn a_taken_reply_tuple_is_snated_and_syn_only_flows_hold_snat_ports_briefly() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| {
        let mut h = harness("ctsnat", false);
        let mut two_ports = desired(true);
        two_ports.services[0].ports.push(PublishedPort {
            protocol: Protocol::Tcp,
            published: 8081,
            target: 80,
            mode: PublishMode::Ingress,
        });
        h.mesh().apply(&two_ports).unwrap();
        let past_syn_timeout = (u64::from(MESH_CT_SYN_TIMEOUT_SEC) + 1) * 1_000_000_000;

        // The same client address and port to both ports of one backend: the second flow's
        // reply tuple (task -> client) is the first's, so it is SNATed (the client's port first).
        assert_eq!(send_to(&mut h, client(2), 40000, 8080), (client(2), 40000));
        assert_eq!(
            send_to(&mut h, client(2), 40000, 8081),
            (NODE_INGRESS, 40000),
            "SNATed, keeping the client's port while free"
        );
        // Another client does the same: the SNAT port is held by a fresh SYN-only flow.
        assert_eq!(send_to(&mut h, client(3), 40000, 8080), (client(3), 40000));
        let (addr, port) = send_to(&mut h, client(3), 40000, 8081);
        assert_eq!(addr, NODE_INGRESS);
        assert_ne!(port, 40000, "a fresh SYN-only flow keeps its SNAT port");
        // Idle past the SYN timeout: the port is free for another flow.
        h.mesh().programs_mut().ct_age(past_syn_timeout);
        assert_eq!(send_to(&mut h, client(4), 40000, 8080), (client(4), 40000));
        assert_eq!(
            send_to(&mut h, client(4), 40000, 8081),
            (NODE_INGRESS, 40000),
            "a stale SYN-only flow's SNAT port is taken again"
        );
    });
}
