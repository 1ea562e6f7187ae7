//! Packet tests of egress (`lib/egress.h`): a task's TCP, UDP and ICMP echo to an address
//! outside the cluster leave from the node's address and an egress port (`tc_task_in`), their
//! answers (and a server's "port unreachable") come back into the task's veth
//! (`tc_underlay_in`); destinations inside the cluster
//! (overlay subnets, cluster nodes) and multicast are left alone, and nothing leaves before the
//! overlay subnets are known.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use mesh_ebpf::abi::MESH_EGRESS_PORT_LOW;

use super::{
    CALLER, CALLER_MAC, CLIENT, CLIENT_MAC, Expect, Harness, NODE, PEER, Row, TASK_B, TC_ACT_OK,
    TC_ACT_REDIRECT, UNDERLAY_MAC, VETH_MAC, check_root, decode, eth, fold, harness, icmp,
    in_fresh_netns, ipv4, run_rows, sum16, tcp, udp,
};
use crate::mesh::OverlayNet;

const ECHO_REPLY: u8 = 0;
const ECHO_REQUEST: u8 = 8;

/// An ICMP echo (request or reply) with `id` and `seq`, as an IPv4 packet.
fn echo(src: Ipv4Addr, dst: Ipv4Addr, ty: u8, id: u16, seq: u16) -> Vec<u8> {
    let mut m = vec![ty, 0, 0, 0];
    m.extend(id.to_be_bytes());
    m.extend(seq.to_be_bytes());
    m.extend(b"ping");
    let c = !fold(sum16(&m));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4(src, dst, 1, 0, &m)
}

/// The overlay subnets (the task's network 10.0.1.0/24, ingress 10.255.0.0/16) and the
/// cluster's nodes written, as the agent does: egress on.
fn egress_on(h: &mut Harness) {
    let nets: BTreeSet<OverlayNet> = [
        OverlayNet::new(Ipv4Addr::new(10, 0, 1, 0), 24, 4097).unwrap(),
        OverlayNet::new(Ipv4Addr::new(10, 255, 0, 0), 16, 4096).unwrap(),
    ]
    .into();
    h.mesh().set_overlay_nets(&nets).unwrap();
    h.mesh().set_cluster_nodes(&[NODE, PEER].into()).unwrap();
}

/// The task's frame (from its veth) to the outside, sent through `tc_task_in`: it must be
/// redirected from the node's address and an egress port, checksums right. Returns that port.
fn leaves(h: &mut Harness, what: &str, frame: &[u8], dst: Ipv4Addr, dport: u16) -> u16 {
    let (verdict, out) = h.tc("tc_task_in", frame).unwrap();
    assert_eq!(
        verdict, TC_ACT_REDIRECT,
        "{what}: verdict (output {out:02x?})"
    );
    let seen = decode(&out);
    assert_eq!(
        (seen.src, seen.dst, seen.dport),
        (NODE, dst, dport),
        "{what}: {seen:?}"
    );
    assert!(
        seen.sport >= MESH_EGRESS_PORT_LOW,
        "{what}: source port {}",
        seen.sport
    );
    // The same flow keeps its port.
    let (again, out_again) = h.tc("tc_task_in", frame).unwrap();
    assert_eq!(
        (again, &out_again),
        (verdict, &out),
        "{what}: the flow's next packet"
    );
    seen.sport
}

#[test]
#[expect(clippy::too_many_lines, reason = "a fixture table reads as one table")]
fn a_tasks_packets_to_the_outside_leave_from_the_node_and_their_answers_come_back() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| {
        let mut h = harness("egress", false);
        egress_on(&mut h);
        let syn = tcp(CALLER, CLIENT, 33400, 8080, 1, 0x02, b"");
        let tcp_port = leaves(
            &mut h,
            "a task's SYN to the outside",
            &eth(VETH_MAC, CALLER_MAC, 0x0800, &syn),
            CLIENT,
            8080,
        );
        let query = udp(CALLER, CLIENT, 41000, 53, b"query", true);
        let udp_port = leaves(
            &mut h,
            "a task's datagram to the outside",
            &eth(VETH_MAC, CALLER_MAC, 0x0800, &query),
            CLIENT,
            53,
        );
        // An echo request keeps no ports: its id is translated (both "ports" of the flow).
        let (verdict, out) = h
            .tc(
                "tc_task_in",
                &eth(
                    VETH_MAC,
                    CALLER_MAC,
                    0x0800,
                    &echo(CALLER, CLIENT, ECHO_REQUEST, 0x1234, 1),
                ),
            )
            .unwrap();
        assert_eq!(verdict, TC_ACT_REDIRECT, "echo request: {out:02x?}");
        let message = &out[34..];
        assert_eq!(fold(sum16(&out[14..34])), 0xffff, "IP checksum");
        assert_eq!(
            fold(sum16(message)),
            0xffff,
            "ICMP checksum: {message:02x?}"
        );
        assert_eq!(
            &out[26..34],
            [NODE.octets(), CLIENT.octets()].concat().as_slice()
        );
        let echo_id = u16::from_be_bytes([message[4], message[5]]);
        assert!(echo_id >= MESH_EGRESS_PORT_LOW, "echo id {echo_id}");

        let unused = if tcp_port == u16::MAX {
            MESH_EGRESS_PORT_LOW
        } else {
            tcp_port + 1
        };
        run_rows(
            &mut h,
            "tc_underlay_in",
            vec![
                Row {
                    what: "the server's SYN-ACK to the node's egress port is reversed into the task's veth",
                    input: eth(
                        UNDERLAY_MAC,
                        CLIENT_MAC,
                        0x0800,
                        &tcp(CLIENT, NODE, 8080, tcp_port, 9, 0x12, b""),
                    ),
                    verdict: TC_ACT_REDIRECT,
                    expect: Expect::Exactly(eth(
                        CALLER_MAC,
                        VETH_MAC,
                        0x0800,
                        &tcp(CLIENT, CALLER, 8080, 33400, 9, 0x12, b""),
                    )),
                },
                Row {
                    what: "the answer to the datagram is reversed into the task's veth",
                    input: eth(
                        UNDERLAY_MAC,
                        CLIENT_MAC,
                        0x0800,
                        &udp(CLIENT, NODE, 53, udp_port, b"answer", true),
                    ),
                    verdict: TC_ACT_REDIRECT,
                    expect: Expect::Exactly(eth(
                        CALLER_MAC,
                        VETH_MAC,
                        0x0800,
                        &udp(CLIENT, CALLER, 53, 41000, b"answer", true),
                    )),
                },
                Row {
                    what: "the server's port unreachable about the datagram reaches the task, quoting what the task sent",
                    input: eth(
                        UNDERLAY_MAC,
                        CLIENT_MAC,
                        0x0800,
                        &ipv4(
                            CLIENT,
                            NODE,
                            1,
                            0,
                            &icmp(3, 3, 0, &udp(NODE, CLIENT, udp_port, 53, b"query", true)),
                        ),
                    ),
                    verdict: TC_ACT_REDIRECT,
                    expect: Expect::Exactly(eth(
                        CALLER_MAC,
                        VETH_MAC,
                        0x0800,
                        &ipv4(
                            CLIENT,
                            CALLER,
                            1,
                            0,
                            &icmp(3, 3, 0, &udp(CALLER, CLIENT, 41000, 53, b"query", true)),
                        ),
                    )),
                },
                Row {
                    what: "the echo reply gets the task's id back and goes into its veth",
                    input: eth(
                        UNDERLAY_MAC,
                        CLIENT_MAC,
                        0x0800,
                        &echo(CLIENT, NODE, ECHO_REPLY, echo_id, 1),
                    ),
                    verdict: TC_ACT_REDIRECT,
                    expect: Expect::Exactly(eth(
                        CALLER_MAC,
                        VETH_MAC,
                        0x0800,
                        &echo(CLIENT, CALLER, ECHO_REPLY, 0x1234, 1),
                    )),
                },
                Row {
                    what: "a segment to an egress port no flow holds is the kernel's",
                    input: eth(
                        UNDERLAY_MAC,
                        CLIENT_MAC,
                        0x0800,
                        &tcp(CLIENT, NODE, 8080, unused, 9, 0x12, b""),
                    ),
                    verdict: TC_ACT_OK,
                    expect: Expect::Unchanged,
                },
                Row {
                    what: "a segment from another server to the flow's port is the kernel's",
                    input: eth(
                        UNDERLAY_MAC,
                        CLIENT_MAC,
                        0x0800,
                        &tcp(PEER, NODE, 8080, tcp_port, 9, 0x12, b""),
                    ),
                    verdict: TC_ACT_OK,
                    expect: Expect::Unchanged,
                },
            ],
        );
    });
}

#[test]
fn destinations_inside_the_cluster_stay_and_nothing_leaves_before_the_subnets_are_known() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| {
        let mut h = harness("egress-inside", false);
        let to = |dst, dport| {
            eth(
                VETH_MAC,
                CALLER_MAC,
                0x0800,
                &tcp(CALLER, dst, 33500, dport, 1, 0x02, b""),
            )
        };
        let before = Row {
            what: "before the overlay subnets are written, nothing goes outside",
            input: to(CLIENT, 8080),
            verdict: TC_ACT_OK,
            expect: Expect::Unchanged,
        };
        run_rows(&mut h, "tc_task_in", vec![before]);
        egress_on(&mut h);
        run_rows(
            &mut h,
            "tc_task_in",
            vec![
                Row {
                    what: "a task on another overlay network (no VIP) is not reached by egress",
                    input: to(TASK_B, 80),
                    verdict: TC_ACT_OK,
                    expect: Expect::Unchanged,
                },
                Row {
                    what: "another cluster node is not reached by egress (its VXLAN port least of all)",
                    input: to(PEER, 7946),
                    verdict: TC_ACT_OK,
                    expect: Expect::Unchanged,
                },
                Row {
                    what: "an echo request to another overlay's address is not egress",
                    input: eth(
                        VETH_MAC,
                        CALLER_MAC,
                        0x0800,
                        &echo(CALLER, TASK_B, ECHO_REQUEST, 7, 1),
                    ),
                    verdict: TC_ACT_OK,
                    expect: Expect::Unchanged,
                },
                Row {
                    what: "multicast is not egress",
                    input: eth(
                        VETH_MAC,
                        CALLER_MAC,
                        0x0800,
                        &udp(
                            CALLER,
                            Ipv4Addr::new(224, 0, 0, 251),
                            5353,
                            5353,
                            b"mdns",
                            true,
                        ),
                    ),
                    verdict: TC_ACT_OK,
                    expect: Expect::Unchanged,
                },
            ],
        );
        // Egress off again (the node left its swarm): the outside is out of reach.
        h.mesh().set_overlay_nets(&BTreeSet::new()).unwrap();
        run_rows(
            &mut h,
            "tc_task_in",
            vec![Row {
                what: "with the subnets gone, a task's SYN to the outside is the kernel's (which drops it)",
                input: to(CLIENT, 8081),
                verdict: TC_ACT_OK,
                expect: Expect::Unchanged,
            }],
        );
    });
}

#[test]
fn answers_to_a_flow_begun_outside_are_not_egress() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| {
        let mut h = harness("egress-inbound", false);
        egress_on(&mut h);
        // The node's kernel forwarded a client's SYN and datagram to the task (an operator's
        // route, the bench's `direct`): tc_task_out lets them in and notes the flows.
        let into_task = |l3: &[u8]| eth(CALLER_MAC, VETH_MAC, 0x0800, l3);
        let from_task = |l3: &[u8]| eth(VETH_MAC, CALLER_MAC, 0x0800, l3);
        run_rows(
            &mut h,
            "tc_task_out",
            vec![
                Row {
                    what: "a client's SYN forwarded to the task",
                    input: into_task(&tcp(CLIENT, CALLER, 40000, 8080, 1, 0x02, b"")),
                    verdict: TC_ACT_OK,
                    expect: Expect::Unchanged,
                },
                Row {
                    what: "a client's datagram forwarded to the task",
                    input: into_task(&udp(CLIENT, CALLER, 40001, 5201, b"hello", true)),
                    verdict: TC_ACT_OK,
                    expect: Expect::Unchanged,
                },
            ],
        );
        // The task's answers go back as they are (the kernel routes them), not from the node.
        run_rows(
            &mut h,
            "tc_task_in",
            vec![
                Row {
                    what: "the task's SYN-ACK to that client",
                    input: from_task(&tcp(CALLER, CLIENT, 8080, 40000, 1, 0x12, b"")),
                    verdict: TC_ACT_OK,
                    expect: Expect::Unchanged,
                },
                Row {
                    what: "the task's answer datagram to that client",
                    input: from_task(&udp(CALLER, CLIENT, 5201, 40001, b"hi", true)),
                    verdict: TC_ACT_OK,
                    expect: Expect::Unchanged,
                },
            ],
        );
        // A flow the task begins to the same client still leaves from the node.
        leaves(
            &mut h,
            "the task's own SYN to that client, another port",
            &from_task(&tcp(CALLER, CLIENT, 33600, 8080, 1, 0x02, b"")),
            CLIENT,
            8080,
        );
    });
}
