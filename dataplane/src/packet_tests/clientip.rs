//! Packet tests of the way back of published-port flows that keep the client's address
//! (`ebpf/lib/clientip.h`), on the backend's node: a client's packet that another node sent
//! through the ingress VXLAN device leaves a return entry in `tc_bridge_in`, and the task's
//! replies (and their ICMP errors and fragments), leaving it by its default route into
//! `tc_task_in`, go back into the VXLAN device to that node's bridge MAC, untranslated. Also a
//! local backend's UDP reply from its address on another network (its first network's: an
//! unbound socket's source), translated back to the published address.

use std::net::Ipv4Addr;

use super::{
    BRIDGE_MAC, CLIENT, CLIENT_MAC, Expect, Harness, NODE, Row, TASK_B, TASK_B_MAC, TC_ACT_OK,
    TC_ACT_REDIRECT, UNDERLAY_MAC, VETH_MAC, check_root, eth, harness, icmp, in_fresh_netns, ipv4,
    run_rows, tcp, truncations, udp,
};
use mesh_ebpf::abi::{MESH_CT_INGRESS_RETURN, MESH_CTF_SYN_ONLY};

/// The ingress bridge MAC of the node that took the client's request (02:42: + its address).
const INGRESS_NODE_MAC: [u8; 6] = [2, 0x42, 10, 255, 0, 12];
/// Task b's address on its first network (not ingress).
const TASK_B_FIRST: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 22);

/// The harness, with the test runs' device (ifindex 1) as the ingress VXLAN device too.
fn backend_node(name: &str) -> Harness {
    let mut h = harness(name, false);
    let programs = h.mesh().programs_mut();
    let mut cfg = programs.read_config().unwrap();
    cfg.ingress_vxlan_ifindex = 1;
    programs.set_config(&cfg).unwrap();
    h
}

/// A frame out of the ingress VXLAN device: from the ingress node's bridge to task b.
fn from_ingress_node(ip: &[u8]) -> Vec<u8> {
    eth(TASK_B_MAC, INGRESS_NODE_MAC, 0x0800, ip)
}

/// A frame from task b to its gateway (its default route).
fn from_task(ip: &[u8]) -> Vec<u8> {
    eth(VETH_MAC, TASK_B_MAC, 0x0800, ip)
}

/// The same packet, sent back into the VXLAN device to the ingress node's bridge.
fn to_ingress_node(ip: &[u8]) -> Vec<u8> {
    eth(INGRESS_NODE_MAC, BRIDGE_MAC, 0x0800, ip)
}

#[test]
fn a_remote_clients_replies_go_back_to_the_node_that_took_the_request() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| {
        let mut h = backend_node("clientip");
        let query = udp(CLIENT, TASK_B, 42000, 53, b"query", true);
        let syn = tcp(CLIENT, TASK_B, 43000, 80, 1, 0x02, b"");
        run_rows(
            &mut h,
            "tc_bridge_in",
            vec![
                Row {
                    what: "a client's datagram from another node passes on to the task untouched (and is remembered)",
                    input: from_ingress_node(&query),
                    verdict: TC_ACT_OK,
                    expect: Expect::Unchanged,
                },
                Row {
                    what: "a client's SYN from another node passes untouched",
                    input: from_ingress_node(&syn),
                    verdict: TC_ACT_OK,
                    expect: Expect::Unchanged,
                },
            ],
        );
        let entries = h.mesh().programs_mut().ct_entries();
        let (_, ret) = entries
            .iter()
            .find(|(k, _)| {
                k.kind == MESH_CT_INGRESS_RETURN && k.saddr == TASK_B.octets() && k.proto == 6
            })
            .expect("the SYN's return entry");
        assert_eq!(ret.dmac, INGRESS_NODE_MAC);
        assert_eq!(
            ret.flags & MESH_CTF_SYN_ONLY,
            MESH_CTF_SYN_ONLY,
            "a bare SYN's entry is short-lived"
        );

        let answer = udp(TASK_B, CLIENT, 53, 42000, b"answer", true);
        let syn_ack = tcp(TASK_B, CLIENT, 80, 43000, 9, 0x12, b"");
        let port_unreach = ipv4(TASK_B, CLIENT, 1, 0, &icmp(3, 3, 0, &query));
        let rows = vec![
            Row {
                what: "the task's answer goes back into the VXLAN device to the ingress node, its addresses kept",
                input: from_task(&answer),
                verdict: TC_ACT_REDIRECT,
                expect: Expect::Exactly(to_ingress_node(&answer)),
            },
            Row {
                what: "an answer from the task's address on its first network (an unbound UDP socket) leaves from its ingress address",
                input: from_task(&udp(TASK_B_FIRST, CLIENT, 53, 42000, b"answer", true)),
                verdict: TC_ACT_REDIRECT,
                expect: Expect::Exactly(to_ingress_node(&answer)),
            },
            Row {
                what: "the task's SYN-ACK goes back the same way",
                input: from_task(&syn_ack),
                verdict: TC_ACT_REDIRECT,
                expect: Expect::Exactly(to_ingress_node(&syn_ack)),
            },
            Row {
                what: "the task's port unreachable about the client's datagram goes back the same way",
                input: from_task(&port_unreach),
                verdict: TC_ACT_REDIRECT,
                expect: Expect::Exactly(to_ingress_node(&port_unreach)),
            },
            Row {
                what: "a packet to a client of no flow passes untouched",
                input: from_task(&udp(TASK_B, CLIENT, 53, 42999, b"answer", true)),
                verdict: TC_ACT_OK,
                expect: Expect::Unchanged,
            },
            Row {
                what: "a TCP packet from the task's other address finds no flow (a connected socket answers from the address it was reached at)",
                input: from_task(&tcp(TASK_B_FIRST, CLIENT, 80, 43000, 9, 0x12, b"")),
                verdict: TC_ACT_OK,
                expect: Expect::Unchanged,
            },
        ];
        run_rows(&mut h, "tc_task_in", rows);
        truncations(&mut h, "tc_task_in", &from_task(&answer), &[TC_ACT_OK]);
    });
}

#[test]
fn a_remote_clients_fragmented_answer_follows_its_first_fragment() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| {
        let mut h = backend_node("clientip-frag");
        run_rows(
            &mut h,
            "tc_bridge_in",
            vec![Row {
                what: "a client's datagram from another node",
                input: from_ingress_node(&udp(CLIENT, TASK_B, 42100, 53, b"q", true)),
                verdict: TC_ACT_OK,
                expect: Expect::Unchanged,
            }],
        );
        // A 600-byte answer cut in two: the first fragment has the UDP header.
        let whole = udp(TASK_B, CLIENT, 53, 42100, &[5; 592], true);
        let seg = &whole[20..];
        let first = ipv4(TASK_B, CLIENT, 17, 0x2000, &seg[..200]);
        let later = ipv4(TASK_B, CLIENT, 17, 200 / 8, &seg[200..]);
        run_rows(
            &mut h,
            "tc_task_in",
            vec![
                Row {
                    what: "the answer's first fragment goes back into the VXLAN device",
                    input: from_task(&first),
                    verdict: TC_ACT_REDIRECT,
                    expect: Expect::Exactly(to_ingress_node(&first)),
                },
                Row {
                    what: "its later fragment follows it",
                    input: from_task(&later),
                    verdict: TC_ACT_REDIRECT,
                    expect: Expect::Exactly(to_ingress_node(&later)),
                },
            ],
        );
    });
}

#[test]
fn a_local_backends_udp_answer_from_its_first_network_goes_back_from_the_published_port() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| {
        let mut h = backend_node("clientip-local");
        run_rows(
            &mut h,
            "tc_underlay_in",
            vec![Row {
                what: "a query to the published UDP port (local task b)",
                input: eth(
                    UNDERLAY_MAC,
                    CLIENT_MAC,
                    0x0800,
                    &udp(CLIENT, NODE, 41000, 5353, b"query", true),
                ),
                verdict: TC_ACT_REDIRECT,
                expect: Expect::Check(|_| {}),
            }],
        );
        let at_client = eth(
            CLIENT_MAC,
            UNDERLAY_MAC,
            0x0800,
            &udp(NODE, CLIENT, 5353, 41000, b"answer", true),
        );
        run_rows(
            &mut h,
            "tc_task_in",
            vec![
                Row {
                    what: "the answer from the task's ingress address is reversed and sent out of the underlay",
                    input: from_task(&udp(TASK_B, CLIENT, 53, 41000, b"answer", true)),
                    verdict: TC_ACT_REDIRECT,
                    expect: Expect::Exactly(at_client.clone()),
                },
                Row {
                    what: "so is the answer from its address on its first network",
                    input: from_task(&udp(TASK_B_FIRST, CLIENT, 53, 41000, b"answer", true)),
                    verdict: TC_ACT_REDIRECT,
                    expect: Expect::Exactly(at_client),
                },
            ],
        );
        // A fragmented answer from there: the later fragment follows the first.
        let whole = udp(TASK_B_FIRST, CLIENT, 53, 41000, &[5; 592], true);
        let seg = &whole[20..];
        let want = udp(NODE, CLIENT, 5353, 41000, &[5; 592], true);
        let want_seg = &want[20..];
        let out = |ip: Vec<u8>| eth(CLIENT_MAC, UNDERLAY_MAC, 0x0800, &ip);
        run_rows(
            &mut h,
            "tc_task_in",
            vec![
                Row {
                    what: "the first fragment of an answer from the task's other address is reversed",
                    input: from_task(&ipv4(TASK_B_FIRST, CLIENT, 17, 0x2000, &seg[..200])),
                    verdict: TC_ACT_REDIRECT,
                    expect: Expect::Exactly(out(ipv4(NODE, CLIENT, 17, 0x2000, &want_seg[..200]))),
                },
                Row {
                    what: "its later fragment follows it",
                    input: from_task(&ipv4(TASK_B_FIRST, CLIENT, 17, 200 / 8, &seg[200..])),
                    verdict: TC_ACT_REDIRECT,
                    expect: Expect::Exactly(out(ipv4(NODE, CLIENT, 17, 200 / 8, &want_seg[200..]))),
                },
            ],
        );
    });
}

/// A client's port that reached the local task b through this node, then (reused by the
/// client) through another node, then through this node again: the task's answers go back the
/// way of the newest SYN each time, never by an older flow's entry.
#[test]
fn a_reused_client_port_goes_back_the_way_of_its_newest_syn() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| {
        let mut h = backend_node("clientip-reuse");
        // web (TCP 8080 -> 80) served by the local task b.
        let mut local_web = super::desired(false);
        local_web.services[0].tasks = local_web.services[1].tasks.clone();
        h.mesh().apply(&local_web).unwrap();

        let here = eth(
            UNDERLAY_MAC,
            CLIENT_MAC,
            0x0800,
            &tcp(CLIENT, NODE, 44000, 8080, 1, 0x02, b""),
        );
        let through_other_node = from_ingress_node(&tcp(CLIENT, TASK_B, 44000, 80, 7, 0x02, b""));
        let syn_ack = tcp(TASK_B, CLIENT, 80, 44000, 9, 0x12, b"");
        let from_here = eth(
            CLIENT_MAC,
            UNDERLAY_MAC,
            0x0800,
            &tcp(NODE, CLIENT, 8080, 44000, 9, 0x12, b""),
        );
        let syn_here = |what| Row {
            what,
            input: here.clone(),
            verdict: TC_ACT_REDIRECT,
            expect: Expect::Check(|_| {}),
        };
        let answer = |what, expect| Row {
            what,
            input: from_task(&syn_ack),
            verdict: TC_ACT_REDIRECT,
            expect: Expect::Exactly(expect),
        };
        run_rows(
            &mut h,
            "tc_underlay_in",
            vec![syn_here("a SYN through this node")],
        );
        run_rows(
            &mut h,
            "tc_task_in",
            vec![answer(
                "its answer leaves from the published port",
                from_here.clone(),
            )],
        );
        run_rows(
            &mut h,
            "tc_bridge_in",
            vec![Row {
                what: "the same client port's SYN through another node",
                input: through_other_node,
                verdict: TC_ACT_OK,
                expect: Expect::Unchanged,
            }],
        );
        run_rows(
            &mut h,
            "tc_task_in",
            vec![answer(
                "its answer goes back to that node",
                to_ingress_node(&syn_ack),
            )],
        );
        run_rows(
            &mut h,
            "tc_underlay_in",
            vec![syn_here("a SYN through this node again")],
        );
        run_rows(
            &mut h,
            "tc_task_in",
            vec![answer("its answer leaves from here again", from_here)],
        );
    });
}

/// A frame for a local task out of the ingress VXLAN device goes straight into the task's veth
/// (not through the ingress bridge); one for another MAC, or once the veth is no longer served,
/// goes on through the bridge.
#[test]
fn a_remote_clients_frame_goes_straight_into_the_tasks_veth() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| {
        let mut h = backend_node("clientip-deliver");
        // The harness's spare veth end as task b's veth on the ingress network.
        h.mesh().attach_task_veth("mtu1", 4096, TASK_B_MAC).unwrap();
        let syn = from_ingress_node(&tcp(CLIENT, TASK_B, 43000, 80, 1, 0x02, b""));
        let mut other = syn.clone();
        other[..6].copy_from_slice(&[2, 0x42, 10, 255, 0, 99]);
        run_rows(
            &mut h,
            "tc_bridge_in",
            vec![
                Row {
                    what: "a client's SYN for task b goes straight to its veth, untouched",
                    input: syn.clone(),
                    verdict: TC_ACT_REDIRECT,
                    expect: Expect::Exactly(syn.clone()),
                },
                Row {
                    what: "a frame for a MAC no veth serves goes on through the bridge",
                    input: other,
                    verdict: TC_ACT_OK,
                    expect: Expect::Unchanged,
                },
            ],
        );
        h.mesh().detach_task_veth("mtu1").unwrap();
        run_rows(
            &mut h,
            "tc_bridge_in",
            vec![Row {
                what: "once the veth is no longer served, through the bridge",
                input: syn,
                verdict: TC_ACT_OK,
                expect: Expect::Unchanged,
            }],
        );
    });
}
