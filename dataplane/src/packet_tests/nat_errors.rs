//! Packet tests of ICMP errors that answer translated flows (`ebpf/lib/icmp.h`): each row's
//! expected output is the whole frame, built independently with every checksum computed afresh.

use std::net::Ipv4Addr;

use super::{
    BRIDGE_MAC, CALLER, CALLER_MAC, CLIENT, CLIENT_MAC, Expect, NODE, Row, TASK_A, TASK_A_MAC,
    TASK_A_NET, TASK_A_NET_MAC, TASK_B, TASK_B_MAC, TC_ACT_OK, TC_ACT_REDIRECT, UNDERLAY_MAC,
    VETH_MAC, VIP, XDP_PASS, XDP_TX, check_root, eth, harness, icmp, in_fresh_netns, ipv4,
    run_rows, tcp, tcp_frame, truncations, udp, vxlan, vxlan_out,
};

/// A router on the client's side of the underlay.
const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 18, 250, 1);

const UNREACH: u8 = 3;
const HOST_UNREACH: u8 = 1;
const PORT_UNREACH: u8 = 3;
const FRAG_NEEDED: u8 = 4;

/// An ICMP error from `src` to `dst` quoting `quote`, as an IPv4 packet.
fn icmp_ip(src: Ipv4Addr, dst: Ipv4Addr, code: u8, rest: u32, quote: &[u8]) -> Vec<u8> {
    ipv4(src, dst, 1, 0, &icmp(UNREACH, code, rest, quote))
}

/// The reply the backend sent in the web flow (`TASK_A:80 -> CLIENT:40000`: the client's address is kept), as it left
/// the node toward the client, and as the backend sent it.
fn web_reply(translated: bool) -> Vec<u8> {
    if translated {
        tcp(NODE, CLIENT, 8080, 40000, 7, 0x12, b"")
    } else {
        tcp(TASK_A, CLIENT, 80, 40000, 7, 0x12, b"")
    }
}

/// The client's packet of the web flow, as it arrived and as it left toward the backend.
fn web_request(translated: bool) -> Vec<u8> {
    if translated {
        tcp(
            CLIENT,
            TASK_A,
            40000,
            80,
            1000,
            0x10,
            b"GET / HTTP/1.0\r\n\r\n",
        )
    } else {
        tcp(
            CLIENT,
            NODE,
            40000,
            8080,
            1000,
            0x10,
            b"GET / HTTP/1.0\r\n\r\n",
        )
    }
}

#[test]
#[expect(clippy::too_many_lines, reason = "a fixture table reads as one table")]
fn tc_programs_translate_icmp_errors_of_translated_flows_back() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| {
        let mut h = harness("tc-icmp", false);
        let dns_query = |to_task: bool| {
            if to_task {
                udp(CLIENT, TASK_B, 41000, 53, b"query", true)
            } else {
                udp(CLIENT, NODE, 41000, 5353, b"query", true)
            }
        };
        // The flows the errors answer: web (TCP, remote task a) and dns (UDP, local task b).
        let setup = vec![
            Row {
                what: "a SYN opens the web flow",
                input: tcp_frame(CLIENT, NODE, 40000, 8080, 0x02),
                verdict: TC_ACT_REDIRECT,
                expect: Expect::Check(|_| {}),
            },
            Row {
                what: "a query opens the dns flow",
                input: eth(UNDERLAY_MAC, CLIENT_MAC, 0x0800, &dns_query(false)),
                verdict: TC_ACT_REDIRECT,
                expect: Expect::Check(|_| {}),
            },
        ];
        run_rows(&mut h, "tc_underlay_in", setup);
        let unknown_reply = tcp(NODE, CLIENT, 8080, 40999, 7, 0x12, b"");
        let rows = vec![
            Row {
                what: "fragmentation needed from the client's path, about a reply, goes to the backend about what it sent, from the client's address (the only peer it knows)",
                input: eth(
                    UNDERLAY_MAC,
                    CLIENT_MAC,
                    0x0800,
                    &icmp_ip(ROUTER, NODE, FRAG_NEEDED, 1400, &web_reply(true)),
                ),
                verdict: TC_ACT_REDIRECT,
                expect: Expect::Exactly(eth(
                    TASK_A_MAC,
                    BRIDGE_MAC,
                    0x0800,
                    &icmp_ip(CLIENT, TASK_A, FRAG_NEEDED, 1400, &web_reply(false)),
                )),
            },
            Row {
                what: "host unreachable quoting 8 bytes of TCP (no checksum quoted) is translated, the quote's checksum left as it was",
                input: eth(
                    UNDERLAY_MAC,
                    CLIENT_MAC,
                    0x0800,
                    &icmp_ip(ROUTER, NODE, HOST_UNREACH, 0, &web_reply(true)[..28]),
                ),
                verdict: TC_ACT_REDIRECT,
                expect: Expect::Exactly(eth(
                    TASK_A_MAC,
                    BRIDGE_MAC,
                    0x0800,
                    &icmp_ip(CLIENT, TASK_A, HOST_UNREACH, 0, &web_reply(false)[..28]),
                )),
            },
            Row {
                what: "port unreachable from the client, about a UDP reply, goes to the local backend",
                input: eth(
                    UNDERLAY_MAC,
                    CLIENT_MAC,
                    0x0800,
                    &icmp_ip(
                        CLIENT,
                        NODE,
                        PORT_UNREACH,
                        0,
                        &udp(NODE, CLIENT, 5353, 41000, b"answer", true),
                    ),
                ),
                verdict: TC_ACT_REDIRECT,
                expect: Expect::Exactly(eth(
                    TASK_B_MAC,
                    BRIDGE_MAC,
                    0x0800,
                    &icmp_ip(
                        CLIENT,
                        TASK_B,
                        PORT_UNREACH,
                        0,
                        &udp(TASK_B, CLIENT, 53, 41000, b"answer", true),
                    ),
                )),
            },
            Row {
                what: "an error quoting a flow the mesh does not know passes untouched",
                input: eth(
                    UNDERLAY_MAC,
                    CLIENT_MAC,
                    0x0800,
                    &icmp_ip(ROUTER, NODE, FRAG_NEEDED, 1400, &unknown_reply),
                ),
                verdict: TC_ACT_OK,
                expect: Expect::Unchanged,
            },
            Row {
                what: "an error too short to quote ports passes untouched",
                input: eth(
                    UNDERLAY_MAC,
                    CLIENT_MAC,
                    0x0800,
                    &icmp_ip(ROUTER, NODE, FRAG_NEEDED, 1400, &web_reply(true)[..24]),
                ),
                verdict: TC_ACT_OK,
                expect: Expect::Unchanged,
            },
        ];
        run_rows(&mut h, "tc_underlay_in", rows);
        truncations(
            &mut h,
            "tc_underlay_in",
            &eth(
                UNDERLAY_MAC,
                CLIENT_MAC,
                0x0800,
                &icmp_ip(ROUTER, NODE, FRAG_NEEDED, 1400, &web_reply(true)),
            ),
            &[TC_ACT_OK],
        );

        // A local backend's errors leave it by its default route, into tc_task_in.
        let rows = vec![Row {
            what: "port unreachable from a local backend, about a query, reaches the client about what it sent, from the published address",
            input: eth(
                VETH_MAC,
                TASK_B_MAC,
                0x0800,
                &icmp_ip(TASK_B, CLIENT, PORT_UNREACH, 0, &dns_query(true)),
            ),
            verdict: TC_ACT_REDIRECT,
            expect: Expect::Exactly(eth(
                CLIENT_MAC,
                UNDERLAY_MAC,
                0x0800,
                &icmp_ip(NODE, CLIENT, PORT_UNREACH, 0, &dns_query(false)),
            )),
        }];
        run_rows(&mut h, "tc_task_in", rows);
        // A remote backend's come out of the ingress VXLAN device.
        let rows = vec![
            Row {
                what: "port unreachable from the backend, about a query, reaches the client about what it sent, from the published address",
                input: eth(
                    BRIDGE_MAC,
                    TASK_B_MAC,
                    0x0800,
                    &icmp_ip(TASK_B, CLIENT, PORT_UNREACH, 0, &dns_query(true)),
                ),
                verdict: TC_ACT_REDIRECT,
                expect: Expect::Exactly(eth(
                    CLIENT_MAC,
                    UNDERLAY_MAC,
                    0x0800,
                    &icmp_ip(NODE, CLIENT, PORT_UNREACH, 0, &dns_query(false)),
                )),
            },
            Row {
                what: "fragmentation needed from the backend's side reaches the client with the MTU kept",
                input: eth(
                    BRIDGE_MAC,
                    TASK_A_MAC,
                    0x0800,
                    &icmp_ip(TASK_A, CLIENT, FRAG_NEEDED, 1450, &web_request(true)),
                ),
                verdict: TC_ACT_REDIRECT,
                expect: Expect::Exactly(eth(
                    CLIENT_MAC,
                    UNDERLAY_MAC,
                    0x0800,
                    &icmp_ip(NODE, CLIENT, FRAG_NEEDED, 1450, &web_request(false)),
                )),
            },
            Row {
                what: "host unreachable from the backend's side reaches the client",
                input: eth(
                    BRIDGE_MAC,
                    TASK_A_MAC,
                    0x0800,
                    &icmp_ip(TASK_A, CLIENT, HOST_UNREACH, 0, &web_request(true)),
                ),
                verdict: TC_ACT_REDIRECT,
                expect: Expect::Exactly(eth(
                    CLIENT_MAC,
                    UNDERLAY_MAC,
                    0x0800,
                    &icmp_ip(NODE, CLIENT, HOST_UNREACH, 0, &web_request(false)),
                )),
            },
        ];
        run_rows(&mut h, "tc_bridge_in", rows);
    });
}

#[test]
fn task_veth_programs_translate_icmp_errors_of_vip_flows_back() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| {
        let mut h = harness("veth-icmp", false);
        let to_vip = |sport, proto_udp: bool| {
            if proto_udp {
                udp(CALLER, VIP, sport, 5000, b"ping", true)
            } else {
                tcp(CALLER, VIP, sport, 5000, 1, 0x02, b"")
            }
        };
        let setup = vec![
            Row {
                what: "a SYN opens a VIP flow",
                input: eth(VETH_MAC, CALLER_MAC, 0x0800, &to_vip(33000, false)),
                verdict: TC_ACT_OK,
                expect: Expect::Check(|_| {}),
            },
            Row {
                what: "a datagram opens a UDP VIP flow",
                input: eth(VETH_MAC, CALLER_MAC, 0x0800, &to_vip(33100, true)),
                verdict: TC_ACT_OK,
                expect: Expect::Check(|_| {}),
            },
        ];
        run_rows(&mut h, "tc_task_in", setup);
        let sent = udp(CALLER, TASK_A_NET, 33100, 5000, b"ping", true);
        let sent_tcp = tcp(CALLER, TASK_A_NET, 33000, 5000, 1, 0x02, b"");
        run_rows(
            &mut h,
            "tc_task_out",
            vec![
                Row {
                    what: "port unreachable from the backend reaches the task as if from the VIP, about what it sent to the VIP",
                    input: eth(
                        CALLER_MAC,
                        TASK_A_NET_MAC,
                        0x0800,
                        &icmp_ip(TASK_A_NET, CALLER, PORT_UNREACH, 0, &sent),
                    ),
                    verdict: TC_ACT_OK,
                    expect: Expect::Exactly(eth(
                        CALLER_MAC,
                        TASK_A_NET_MAC,
                        0x0800,
                        &icmp_ip(VIP, CALLER, PORT_UNREACH, 0, &to_vip(33100, true)),
                    )),
                },
                Row {
                    what: "fragmentation needed from the backend reaches the task as if from the VIP",
                    input: eth(
                        CALLER_MAC,
                        TASK_A_NET_MAC,
                        0x0800,
                        &icmp_ip(TASK_A_NET, CALLER, FRAG_NEEDED, 1400, &sent_tcp),
                    ),
                    verdict: TC_ACT_OK,
                    expect: Expect::Exactly(eth(
                        CALLER_MAC,
                        TASK_A_NET_MAC,
                        0x0800,
                        &icmp_ip(VIP, CALLER, FRAG_NEEDED, 1400, &to_vip(33000, false)),
                    )),
                },
            ],
        );
        let reply_from_vip = tcp(VIP, CALLER, 5000, 33000, 9, 0x12, b"");
        let reply_sent = tcp(TASK_A_NET, CALLER, 5000, 33000, 9, 0x12, b"");
        run_rows(
            &mut h,
            "tc_task_in",
            vec![Row {
                what: "host unreachable from the task about a reply from the VIP goes to the backend about what it sent (the task is the source either way)",
                input: eth(
                    VETH_MAC,
                    CALLER_MAC,
                    0x0800,
                    &icmp_ip(CALLER, VIP, HOST_UNREACH, 0, &reply_from_vip),
                ),
                verdict: TC_ACT_OK,
                expect: Expect::Exactly(eth(
                    TASK_A_NET_MAC,
                    CALLER_MAC,
                    0x0800,
                    &icmp_ip(CALLER, TASK_A_NET, HOST_UNREACH, 0, &reply_sent),
                )),
            }],
        );
    });
}

#[test]
#[expect(clippy::too_many_lines, reason = "a fixture table reads as one table")]
fn xdp_mesh_translates_icmp_errors_of_published_flows_back() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| {
        let mut h = harness("xdp-icmp", true);
        let setup = vec![
            Row {
                what: "a SYN opens the web flow (remote backend)",
                input: tcp_frame(CLIENT, NODE, 40000, 8080, 0x02),
                verdict: XDP_TX,
                expect: Expect::Check(|_| {}),
            },
            Row {
                what: "a query opens the dns flow (local backend)",
                input: eth(
                    UNDERLAY_MAC,
                    CLIENT_MAC,
                    0x0800,
                    &udp(CLIENT, NODE, 41000, 5353, b"query", true),
                ),
                verdict: XDP_PASS,
                expect: Expect::Unchanged,
            },
        ];
        run_rows(&mut h, "xdp_mesh", setup);

        // The outer UDP source port is a flow hash: read it from the output, check the rest.
        let frag_needed = eth(
            UNDERLAY_MAC,
            CLIENT_MAC,
            0x0800,
            &icmp_ip(ROUTER, NODE, FRAG_NEEDED, 1400, &web_reply(true)),
        );
        let (verdict, out) = h.xdp(&frag_needed).expect("test run");
        assert_eq!(
            verdict, XDP_TX,
            "fragmentation needed: verdict ({out:02x?})"
        );
        assert!(out.len() > 36, "fragmentation needed: output {out:02x?}");
        let sport = u16::from_be_bytes([out[34], out[35]]);
        let inner = eth(
            TASK_A_MAC,
            BRIDGE_MAC,
            0x0800,
            &icmp_ip(CLIENT, TASK_A, FRAG_NEEDED, 1400, &web_reply(false)),
        );
        assert_eq!(
            out,
            vxlan_out(sport, 4096, &inner),
            "fragmentation needed from the client's path, about a reply, leaves inside VXLAN to the backend's node, translated"
        );
        assert!(sport >= 49152, "entropy port {sport}");

        let rows = vec![
            Row {
                what: "an error about a flow with a local backend passes (tc_underlay_in translates it)",
                input: eth(
                    UNDERLAY_MAC,
                    CLIENT_MAC,
                    0x0800,
                    &icmp_ip(
                        CLIENT,
                        NODE,
                        PORT_UNREACH,
                        0,
                        &udp(NODE, CLIENT, 5353, 41000, b"answer", true),
                    ),
                ),
                verdict: XDP_PASS,
                expect: Expect::Unchanged,
            },
            Row {
                what: "port unreachable from a remote backend inside VXLAN is translated, decapsulated and sent back to the client",
                input: vxlan(
                    4096,
                    &eth(
                        BRIDGE_MAC,
                        TASK_A_MAC,
                        0x0800,
                        &icmp_ip(TASK_A, CLIENT, PORT_UNREACH, 0, &web_request(true)),
                    ),
                ),
                verdict: XDP_TX,
                expect: Expect::Exactly(eth(
                    CLIENT_MAC,
                    UNDERLAY_MAC,
                    0x0800,
                    &icmp_ip(NODE, CLIENT, PORT_UNREACH, 0, &web_request(false)),
                )),
            },
            Row {
                what: "host unreachable from a remote backend's side reaches the client",
                input: vxlan(
                    4096,
                    &eth(
                        BRIDGE_MAC,
                        TASK_A_MAC,
                        0x0800,
                        &icmp_ip(TASK_A, CLIENT, HOST_UNREACH, 0, &web_request(true)),
                    ),
                ),
                verdict: XDP_TX,
                expect: Expect::Exactly(eth(
                    CLIENT_MAC,
                    UNDERLAY_MAC,
                    0x0800,
                    &icmp_ip(NODE, CLIENT, HOST_UNREACH, 0, &web_request(false)),
                )),
            },
            Row {
                what: "an error inside VXLAN about no known flow passes untouched",
                input: vxlan(
                    4096,
                    &eth(
                        BRIDGE_MAC,
                        TASK_A_MAC,
                        0x0800,
                        &icmp_ip(
                            TASK_A,
                            CLIENT,
                            PORT_UNREACH,
                            0,
                            &tcp(CLIENT, TASK_A, 40999, 80, 1, 0x10, b""),
                        ),
                    ),
                ),
                verdict: XDP_PASS,
                expect: Expect::Unchanged,
            },
        ];
        run_rows(&mut h, "xdp_mesh", rows);
        truncations(&mut h, "xdp_mesh", &frag_needed, &[XDP_PASS]);
    });
}
