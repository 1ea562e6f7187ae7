//! Packet tests of fragmented UDP through translated flows (`ebpf/lib/frag.h`): the first
//! fragment is balanced (or matched) and translated with its UDP header, the later ones follow
//! it by (source, destination, IP id, protocol). Each row's expected output is the whole frame,
//! built from the translated datagram cut the same way, every checksum computed afresh.

use std::net::Ipv4Addr;

use super::{
    BRIDGE_MAC, CALLER, CALLER_MAC, CLIENT, CLIENT_MAC, Expect, NODE, Row, TASK_A_NET,
    TASK_A_NET_MAC, TASK_B, TASK_B_MAC, TASK_C, TASK_C_MAC, TC_ACT_OK, TC_ACT_REDIRECT,
    UNDERLAY_MAC, VETH_MAC, VIP, XDP_PASS, XDP_TX, check_root, eth, fold, harness, in_fresh_netns,
    ipv4, run_rows, sum16, truncations, udp, vxlan, vxlan_out,
};

const MF: u16 = 0x2000;

/// A UDP datagram's segment (header and data), its checksum over the whole datagram.
fn datagram(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, len: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    udp(src, dst, sport, dport, &data, true)[20..].to_vec()
}

/// Bytes `from..to` of `seg` as the IPv4 fragment (IP id `id`) that carries them.
fn fragment(src: Ipv4Addr, dst: Ipv4Addr, id: u16, seg: &[u8], from: usize, to: usize) -> Vec<u8> {
    let more = if to < seg.len() { MF } else { 0 };
    let mut ip = ipv4(src, dst, 17, more | (from / 8) as u16, &seg[from..to]);
    ip[4..6].copy_from_slice(&id.to_be_bytes());
    ip[10..12].copy_from_slice(&[0, 0]);
    let c = !fold(sum16(&ip[..20]));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip
}

/// Where the three fragments of a 600-byte segment are cut (multiples of 8).
const CUTS: [(usize, usize); 3] = [(0, 200), (200, 400), (400, 600)];

/// Rows for the three fragments of `sent` (as it arrives) and `want` (as it must leave), framed
/// by `frame_in`/`frame_out`, with IP id `id`.
#[expect(
    clippy::too_many_arguments,
    reason = "a row's two frames, each with its addresses"
)]
fn three_fragments(
    what: &'static [&'static str; 3],
    id: u16,
    sent: (Ipv4Addr, Ipv4Addr, &[u8]),
    want: (Ipv4Addr, Ipv4Addr, &[u8]),
    frame_in: impl Fn(&[u8]) -> Vec<u8>,
    frame_out: impl Fn(&[u8]) -> Vec<u8>,
    verdict: u32,
    rows: &mut Vec<Row>,
) {
    for (i, (from, to)) in CUTS.into_iter().enumerate() {
        rows.push(Row {
            what: what[i],
            input: frame_in(&fragment(sent.0, sent.1, id, sent.2, from, to)),
            verdict,
            expect: Expect::Exactly(frame_out(&fragment(want.0, want.1, id, want.2, from, to))),
        });
    }
}

#[test]
fn tc_programs_send_later_fragments_where_the_first_went() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| {
        let mut h = harness("tc-frag", false);
        let from_client = |f: &[u8]| eth(UNDERLAY_MAC, CLIENT_MAC, 0x0800, f);
        let query = datagram(CLIENT, NODE, 41000, 5353, 592);
        let at_task = datagram(CLIENT, TASK_B, 41000, 53, 592);
        let mut rows = Vec::new();
        three_fragments(
            &[
                "the first fragment of a datagram to a published UDP port is balanced and translated (its UDP checksum too)",
                "a middle fragment (no UDP header) follows the first",
                "the last fragment follows the first",
            ],
            0x4001,
            (CLIENT, NODE, &query),
            (CLIENT, TASK_B, &at_task),
            from_client,
            |f| eth(TASK_B_MAC, BRIDGE_MAC, 0x0800, f),
            TC_ACT_REDIRECT,
            &mut rows,
        );
        rows.push(Row {
            what: "a later fragment whose first fragment was not seen (another IP id) passes untouched",
            input: from_client(&fragment(CLIENT, NODE, 0x4002, &query, 200, 400)),
            verdict: TC_ACT_OK,
            expect: Expect::Unchanged,
        });
        rows.push(Row {
            what: "a later fragment to another address (the node's own traffic) passes untouched",
            input: from_client(&fragment(CLIENT, TASK_B, 0x4001, &query, 200, 400)),
            verdict: TC_ACT_OK,
            expect: Expect::Unchanged,
        });
        run_rows(&mut h, "tc_underlay_in", rows);
        truncations(
            &mut h,
            "tc_underlay_in",
            &from_client(&fragment(CLIENT, NODE, 0x4001, &query, 200, 400)),
            &[TC_ACT_OK],
        );

        // The answer, 600 bytes in three fragments, leaves the local task by its default route
        // (tc_task_in), back to the client.
        let answer = datagram(TASK_B, CLIENT, 53, 41000, 592);
        let at_client = datagram(NODE, CLIENT, 5353, 41000, 592);
        let mut rows = Vec::new();
        three_fragments(
            &[
                "the first fragment of a backend's reply is reversed toward the client",
                "a middle fragment of the reply follows it",
                "the last fragment of the reply follows it",
            ],
            0x5001,
            (TASK_B, CLIENT, &answer),
            (NODE, CLIENT, &at_client),
            |f| eth(VETH_MAC, TASK_B_MAC, 0x0800, f),
            |f| eth(CLIENT_MAC, UNDERLAY_MAC, 0x0800, f),
            TC_ACT_REDIRECT,
            &mut rows,
        );
        run_rows(&mut h, "tc_task_in", rows);

        // A VIP flow: the task's datagram to VIP:5000 and the backend's reply.
        let to_vip = datagram(CALLER, VIP, 33100, 5000, 592);
        let to_backend = datagram(CALLER, TASK_A_NET, 33100, 5000, 592);
        let mut rows = Vec::new();
        three_fragments(
            &[
                "the first fragment of a datagram to a VIP is balanced to a backend",
                "a middle fragment to the VIP follows it",
                "the last fragment to the VIP follows it",
            ],
            0x6001,
            (CALLER, VIP, &to_vip),
            (CALLER, TASK_A_NET, &to_backend),
            |f| eth(VETH_MAC, CALLER_MAC, 0x0800, f),
            |f| eth(TASK_A_NET_MAC, CALLER_MAC, 0x0800, f),
            TC_ACT_OK,
            &mut rows,
        );
        run_rows(&mut h, "tc_task_in", rows);
        let reply = datagram(TASK_A_NET, CALLER, 5000, 33100, 592);
        let from_vip = datagram(VIP, CALLER, 5000, 33100, 592);
        let mut rows = Vec::new();
        three_fragments(
            &[
                "the first fragment of the backend's reply reads as from the VIP",
                "a middle fragment of the reply follows it",
                "the last fragment of the reply follows it",
            ],
            0x7001,
            (TASK_A_NET, CALLER, &reply),
            (VIP, CALLER, &from_vip),
            |f| eth(CALLER_MAC, TASK_A_NET_MAC, 0x0800, f),
            |f| eth(CALLER_MAC, TASK_A_NET_MAC, 0x0800, f),
            TC_ACT_OK,
            &mut rows,
        );
        rows.push(Row {
            what: "a later reply fragment of another datagram passes untouched",
            input: eth(
                CALLER_MAC,
                TASK_A_NET_MAC,
                0x0800,
                &fragment(TASK_A_NET, CALLER, 0x7002, &reply, 400, 600),
            ),
            verdict: TC_ACT_OK,
            expect: Expect::Unchanged,
        });
        run_rows(&mut h, "tc_task_out", rows);
    });
}

#[test]
fn xdp_mesh_sends_later_fragments_where_the_first_went() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| {
        let mut h = harness("xdp-frag", true);
        let from_client = |f: &[u8]| eth(UNDERLAY_MAC, CLIENT_MAC, 0x0800, f);
        let sent = datagram(CLIENT, NODE, 42000, 5514, 592);
        let at_task = datagram(CLIENT, TASK_C, 42000, 514, 592);
        // Encapsulated: the outer UDP source port is a flow hash, read from the output.
        for (i, (from, to)) in CUTS.into_iter().enumerate() {
            let input = from_client(&fragment(CLIENT, NODE, 0x4101, &sent, from, to));
            let (verdict, out) = h.xdp(&input).expect("test run");
            assert_eq!(verdict, XDP_TX, "fragment {i}: verdict ({out:02x?})");
            assert!(out.len() > 36, "fragment {i}: output {out:02x?}");
            let sport = u16::from_be_bytes([out[34], out[35]]);
            let inner = eth(
                TASK_C_MAC,
                BRIDGE_MAC,
                0x0800,
                &fragment(CLIENT, TASK_C, 0x4101, &at_task, from, to),
            );
            assert_eq!(
                out,
                vxlan_out(sport, 4096, &inner),
                "fragment {i} of a datagram to a published UDP port with a remote backend leaves translated inside VXLAN (the first balanced, the rest following it)"
            );
        }
        let local = datagram(CLIENT, NODE, 41000, 5353, 592);
        let rows = vec![
            Row {
                what: "a later fragment whose first fragment was not seen passes untouched",
                input: from_client(&fragment(CLIENT, NODE, 0x4102, &sent, 200, 400)),
                verdict: XDP_PASS,
                expect: Expect::Unchanged,
            },
            Row {
                what: "the first fragment of a datagram for a local backend passes (tc translates it)",
                input: from_client(&fragment(CLIENT, NODE, 0x4103, &local, 0, 200)),
                verdict: XDP_PASS,
                expect: Expect::Unchanged,
            },
            Row {
                what: "so does its later fragment",
                input: from_client(&fragment(CLIENT, NODE, 0x4103, &local, 200, 400)),
                verdict: XDP_PASS,
                expect: Expect::Unchanged,
            },
            Row {
                what: "a 1500-byte datagram for a remote backend, too big for the underlay once encapsulated, passes (tc hands it to the VXLAN device)",
                input: from_client(&udp(CLIENT, NODE, 42001, 5514, &[7; 1472], true)),
                verdict: XDP_PASS,
                expect: Expect::Unchanged,
            },
            Row {
                what: "a datagram 50 bytes smaller fits and is encapsulated",
                input: from_client(&udp(CLIENT, NODE, 42001, 5514, &[7; 1422], true)),
                verdict: XDP_TX,
                expect: Expect::Check(|out| assert_eq!(out.len(), 1514)),
            },
        ];
        run_rows(&mut h, "xdp_mesh", rows);

        // The remote backend's reply, fragmented inside VXLAN, back to the client.
        let reply = datagram(TASK_C, CLIENT, 514, 42000, 592);
        let at_client = datagram(NODE, CLIENT, 5514, 42000, 592);
        let mut rows = Vec::new();
        three_fragments(
            &[
                "the first fragment of a remote backend's reply is reversed, decapsulated and sent to the client",
                "a middle fragment of the reply follows it",
                "the last fragment of the reply follows it",
            ],
            0x5101,
            (TASK_C, CLIENT, &reply),
            (NODE, CLIENT, &at_client),
            |f| vxlan(4096, &eth(BRIDGE_MAC, TASK_C_MAC, 0x0800, f)),
            |f| eth(CLIENT_MAC, UNDERLAY_MAC, 0x0800, f),
            XDP_TX,
            &mut rows,
        );
        run_rows(&mut h, "xdp_mesh", rows);
        truncations(
            &mut h,
            "xdp_mesh",
            &from_client(&fragment(CLIENT, NODE, 0x4101, &sent, 200, 400)),
            &[XDP_PASS],
        );
    });
}
