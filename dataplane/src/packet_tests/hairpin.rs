//! Packet tests of a task calling its own service (`tc_task_in`): balanced to itself through a
//! VIP (hairpin, the source becomes the VIP), and a published port of its own node (served as a
//! client's from the underlay, replies back out of its veth). Expected outputs are whole frames.

use super::{
    BRIDGE_MAC, CALLER, CALLER_MAC, Expect, NODE, NODE_INGRESS, Row, TASK_A, TASK_A_MAC,
    TASK_A_NET, TASK_A_NET_MAC, TASK_B, TASK_B_MAC, TC_ACT_REDIRECT, UNDERLAY_MAC, VETH_MAC, VIP,
    check_root, eth, harness, in_fresh_netns, ipv4, run_rows, tcp, udp,
};

#[test]
#[expect(clippy::too_many_lines, reason = "a fixture table reads as one table")]
fn a_task_calling_its_own_service_gets_its_answer() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| {
        let mut h = harness("hairpin", false);
        let request = b"GET / HTTP/1.0\r\n\r\n";
        run_rows(
            &mut h,
            "tc_task_in",
            vec![
                Row {
                    what: "a task balanced to itself by its VIP gets the packet back out of its veth, from the VIP (its own address would be martian)",
                    input: eth(
                        VETH_MAC,
                        TASK_A_NET_MAC,
                        0x0800,
                        &tcp(TASK_A_NET, VIP, 33200, 5000, 1, 0x02, request),
                    ),
                    verdict: TC_ACT_REDIRECT,
                    expect: Expect::Exactly(eth(
                        TASK_A_NET_MAC,
                        VETH_MAC,
                        0x0800,
                        &tcp(VIP, TASK_A_NET, 33200, 5000, 1, 0x02, request),
                    )),
                },
                Row {
                    what: "its answer, to VIP:its port, is reversed to come from VIP:port and goes back out of its veth",
                    input: eth(
                        VETH_MAC,
                        TASK_A_NET_MAC,
                        0x0800,
                        &tcp(TASK_A_NET, VIP, 5000, 33200, 9, 0x12, b"hi"),
                    ),
                    verdict: TC_ACT_REDIRECT,
                    expect: Expect::Exactly(eth(
                        TASK_A_NET_MAC,
                        VETH_MAC,
                        0x0800,
                        &tcp(VIP, TASK_A_NET, 5000, 33200, 9, 0x12, b"hi"),
                    )),
                },
                Row {
                    what: "a task's call to a published port of its own node is balanced and translated as a client's",
                    input: eth(
                        VETH_MAC,
                        CALLER_MAC,
                        0x0800,
                        &tcp(CALLER, NODE, 33300, 8080, 1, 0x02, request),
                    ),
                    verdict: TC_ACT_REDIRECT,
                    expect: Expect::Exactly(eth(
                        TASK_A_MAC,
                        BRIDGE_MAC,
                        0x0800,
                        &tcp(NODE_INGRESS, TASK_A, 33300, 80, 1, 0x02, request),
                    )),
                },
            ],
        );
        // A fragmented datagram from the task to the node's published UDP port (local task b).
        let seg = |src, dst, dport| udp(src, dst, 41500, dport, &[5; 592], true)[20..].to_vec();
        let frag = |src, dst, seg: &[u8], first: bool| {
            if first {
                ipv4(src, dst, 17, 0x2000, &seg[..200])
            } else {
                ipv4(src, dst, 17, 200 / 8, &seg[200..])
            }
        };
        let sent = seg(CALLER, NODE, 5353);
        let at_task = seg(NODE_INGRESS, TASK_B, 53);
        run_rows(
            &mut h,
            "tc_task_in",
            vec![
                Row {
                    what: "the first fragment of a task's datagram to a published port of its node is balanced and translated",
                    input: eth(
                        VETH_MAC,
                        CALLER_MAC,
                        0x0800,
                        &frag(CALLER, NODE, &sent, true),
                    ),
                    verdict: TC_ACT_REDIRECT,
                    expect: Expect::Exactly(eth(
                        TASK_B_MAC,
                        BRIDGE_MAC,
                        0x0800,
                        &frag(NODE_INGRESS, TASK_B, &at_task, true),
                    )),
                },
                Row {
                    what: "its last fragment follows it",
                    input: eth(
                        VETH_MAC,
                        CALLER_MAC,
                        0x0800,
                        &frag(CALLER, NODE, &sent, false),
                    ),
                    verdict: TC_ACT_REDIRECT,
                    expect: Expect::Exactly(eth(
                        TASK_B_MAC,
                        BRIDGE_MAC,
                        0x0800,
                        &frag(NODE_INGRESS, TASK_B, &at_task, false),
                    )),
                },
            ],
        );
        run_rows(
            &mut h,
            "tc_bridge_in",
            vec![Row {
                what: "the backend's reply is reversed and sent to the calling task",
                input: eth(
                    BRIDGE_MAC,
                    TASK_A_MAC,
                    0x0800,
                    &tcp(TASK_A, NODE_INGRESS, 80, 33300, 9, 0x12, b"hi"),
                ),
                verdict: TC_ACT_REDIRECT,
                expect: Expect::Exactly(eth(
                    CALLER_MAC,
                    UNDERLAY_MAC,
                    0x0800,
                    &tcp(NODE, CALLER, 8080, 33300, 9, 0x12, b"hi"),
                )),
            }],
        );
    });
}
