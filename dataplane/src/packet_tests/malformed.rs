//! Packet tests of what a hostile or broken sender puts on the underlay: IPv6 and VLAN-tagged
//! frames, IPv4 and TCP headers whose lengths lie (`tot_len` longer or shorter than the packet,
//! an IHL or a TCP `doff` below their minimum or past the end), and a conntrack map filled to
//! its size. Nothing malformed is translated (the kernel drops or delivers it as it would
//! without us); a full map evicts its least recently used entries (it is an LRU map), so a new
//! flow is still translated and nothing is counted as refused.

use std::net::Ipv4Addr;

use mesh_ebpf::abi::{MESH_CT_INGRESS, MESH_CT_SIZE, MeshCt, MeshCtKey};

use super::{
    CLIENT, CLIENT_MAC, Expect, NODE, Row, TC_ACT_OK, TC_ACT_REDIRECT, UNDERLAY_MAC, XDP_PASS,
    check_root, decode, eth, fold, harness, in_fresh_netns, run_rows, sum16, tcp, tcp_frame,
};
use crate::mesh::DROP_CT_FULL;

/// A SYN to the published port 8080, as an IPv4 packet (no Ethernet header).
fn syn_packet() -> Vec<u8> {
    tcp(CLIENT, NODE, 40000, 8080, 1, 0x02, b"")
}

/// `packet` (IPv4) in an Ethernet frame, its header checksum made right again.
fn framed(mut packet: Vec<u8>) -> Vec<u8> {
    let ihl = usize::from(packet[0] & 0x0f).max(5) * 4;
    packet[10..12].copy_from_slice(&[0, 0]);
    let c = !fold(sum16(&packet[..ihl.min(packet.len())]));
    packet[10..12].copy_from_slice(&c.to_be_bytes());
    eth(UNDERLAY_MAC, CLIENT_MAC, 0x0800, &packet)
}

fn with_tot_len(len: u16) -> Vec<u8> {
    let mut p = syn_packet();
    p[2..4].copy_from_slice(&len.to_be_bytes());
    framed(p)
}

fn with_first_byte(b: u8) -> Vec<u8> {
    let mut p = syn_packet();
    p[0] = b;
    framed(p)
}

fn with_doff(doff: u8) -> Vec<u8> {
    let mut p = syn_packet();
    p[20 + 12] = doff << 4;
    framed(p)
}

/// The SYN's TCP segment to port 8080, in IPv6 (`2001:db8::2` to `2001:db8::11`).
fn ipv6_syn() -> Vec<u8> {
    let seg = syn_packet()[20..].to_vec();
    let mut p = vec![0x60, 0, 0, 0];
    p.extend((seg.len() as u16).to_be_bytes());
    p.extend([6, 64]);
    p.extend([
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
    ]);
    p.extend([
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11,
    ]);
    p.extend(seg);
    eth(UNDERLAY_MAC, CLIENT_MAC, 0x86dd, &p)
}

/// The SYN in an 802.1Q frame, VLAN 100.
fn vlan_syn() -> Vec<u8> {
    let mut p = vec![0, 100, 0x08, 0x00];
    p.extend(syn_packet());
    eth(UNDERLAY_MAC, CLIENT_MAC, 0x8100, &p)
}

fn rows(pass: u32) -> Vec<Row> {
    let syn_len = syn_packet().len() as u16;
    let untouched = |what: &'static str, input: Vec<u8>| Row {
        what,
        input,
        verdict: pass,
        expect: Expect::Unchanged,
    };
    vec![
        untouched(
            "an IPv6 SYN to a published port passes untouched",
            ipv6_syn(),
        ),
        untouched(
            "a VLAN-tagged SYN to a published port passes untouched",
            vlan_syn(),
        ),
        untouched(
            "a tot_len longer than the packet passes untouched (the kernel drops it)",
            with_tot_len(syn_len + 100),
        ),
        untouched(
            "a tot_len shorter than its headers passes untouched",
            with_tot_len(20),
        ),
        untouched("a tot_len of 0 passes untouched", with_tot_len(0)),
        untouched(
            "an IHL of 4 (below the minimum) passes untouched",
            with_first_byte(0x44),
        ),
        untouched(
            "an IHL of 15 (past the end) passes untouched",
            with_first_byte(0x4f),
        ),
        untouched("IP version 5 passes untouched", with_first_byte(0x55)),
        untouched(
            "a TCP doff of 4 (below the minimum) passes untouched",
            with_doff(4),
        ),
        untouched(
            "a TCP doff of 15 (past the end) passes untouched",
            with_doff(15),
        ),
    ]
}

#[test]
fn malformed_frames_pass_untouched_through_tc_and_xdp() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| {
        let mut h = harness("tc-bad", false);
        // The well-formed SYN is translated: the rows' frames differ from it only where they lie.
        let (verdict, _) = h.tc("tc_underlay_in", &framed(syn_packet())).unwrap();
        assert_eq!(verdict, TC_ACT_REDIRECT, "the well-formed SYN");
        run_rows(&mut h, "tc_underlay_in", rows(TC_ACT_OK));
    });
    in_fresh_netns(|| {
        let mut h = harness("xdp-bad", true);
        run_rows(&mut h, "xdp_mesh", rows(XDP_PASS));
    });
}

#[test]
fn a_full_conntrack_map_evicts_and_new_flows_still_translate() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| {
        let mut h = harness("ct-full", false);
        let filled = h.mesh().programs_mut().ct_fill(MESH_CT_SIZE, |i| {
            let key = MeshCtKey {
                saddr: Ipv4Addr::from(0x0a80_0000 | i).octets(),
                daddr: NODE.octets(),
                sport: 1024_u16.to_be_bytes(),
                dport: 8080_u16.to_be_bytes(),
                proto: 6,
                kind: MESH_CT_INGRESS,
                pad: [0; 2],
            };
            (key, MeshCt::default())
        });
        // An LRU map starts evicting a little before its size (per-CPU free lists).
        assert!(
            filled > u64::from(MESH_CT_SIZE) * 99 / 100,
            "the map holds {filled} of {MESH_CT_SIZE}"
        );
        let (verdict, out) = h
            .tc(
                "tc_underlay_in",
                &tcp_frame(CLIENT, NODE, 40000, 8080, 0x02),
            )
            .unwrap();
        assert_eq!(verdict, TC_ACT_REDIRECT, "a new flow on a full map");
        assert_eq!(decode(&out).dport, 80);
        let drops = h.mesh().drops().unwrap();
        assert!(
            drops.contains(&(DROP_CT_FULL, 0)),
            "an LRU map never refuses: {drops:?}"
        );
    });
}
