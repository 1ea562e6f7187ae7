//! Packet tests of native routing (`lib/native.h`): with `mesh_native` filled, a packet from
//! the underlay for a local task of a native network goes to the task's veth with the task's
//! and its gateway's MACs only from a remote address of the same network (another network's
//! address and a stranger are dropped); a task's packet to an on-link remote address of its own
//! network leaves by the underlay (the neighbour redirect), and one to another network's
//! address or to a node that is not on-link goes on as before. On a natively routed ingress a
//! published-port client's packet keeps its address: the entry node only DNATs it and reverses
//! the remote task's reply; the task's node takes it from another node's MAC only, and sends
//! the task's reply back to that MAC.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::{
    BRIDGE_MAC, CLIENT, CLIENT_MAC, Expect, NODE, PEER, PEER_MAC, Row, TASK_A, TASK_A_NET,
    TASK_A_NET_MAC, TASK_B, TASK_B_MAC, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, UNDERLAY_MAC,
    VETH_MAC, XDP_TX, check_root, decode, eth, harness, in_fresh_netns, run_rows, run_rows_on, tcp,
    tcp_frame,
};
use crate::native::{NativeAddr, NativePlace};

/// The network of the test harness's task veth (loopback).
const NET: u32 = 4097;
/// Another native network.
const OTHER_NET: u32 = 4098;
/// A task of `NET` on `PEER` (on-link).
const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 40);
/// A task of `NET` on a node that is not on-link.
const REMOTE_ROUTED: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 41);
/// A task of `OTHER_NET` on `PEER`.
const OTHER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 40);

fn table() -> BTreeMap<Ipv4Addr, NativeAddr> {
    let remote = |vni, direct| NativeAddr {
        vni,
        place: NativePlace::Remote { node: PEER, direct },
    };
    BTreeMap::from([
        (
            TASK_A_NET,
            NativeAddr {
                vni: NET,
                place: NativePlace::Local {
                    ifindex: 1,
                    mac: TASK_A_NET_MAC,
                    gateway_mac: BRIDGE_MAC,
                },
            },
        ),
        (REMOTE, remote(NET, true)),
        (REMOTE_ROUTED, remote(NET, false)),
        (OTHER, remote(OTHER_NET, true)),
    ])
}

fn delivered(src: Ipv4Addr) -> Vec<u8> {
    let mut f = tcp_frame(src, TASK_A_NET, 40000, 80, 0x02);
    f[..6].copy_from_slice(&TASK_A_NET_MAC);
    f[6..12].copy_from_slice(&BRIDGE_MAC);
    f
}

fn underlay_rows() -> Vec<Row> {
    vec![
        Row {
            what: "from a remote address of the task's network: to the task's veth, with its MACs",
            input: tcp_frame(REMOTE, TASK_A_NET, 40000, 80, 0x02),
            verdict: TC_ACT_REDIRECT,
            expect: Expect::Exactly(delivered(REMOTE)),
        },
        Row {
            what: "from an address of another network: dropped (isolation)",
            input: tcp_frame(OTHER, TASK_A_NET, 40000, 80, 0x02),
            verdict: TC_ACT_SHOT,
            expect: Expect::Unchanged,
        },
        Row {
            what: "from a host of the underlay: dropped",
            input: tcp_frame(CLIENT, TASK_A_NET, 40000, 80, 0x02),
            verdict: TC_ACT_SHOT,
            expect: Expect::Unchanged,
        },
        Row {
            what: "for an address that is no local task: not native routing's",
            input: tcp_frame(CLIENT, REMOTE, 40000, 80, 0x02),
            verdict: TC_ACT_OK,
            expect: Expect::Unchanged,
        },
    ]
}

fn task_rows() -> Vec<Row> {
    vec![
        Row {
            what: "to an on-link remote address of the task's network: out of the underlay",
            input: tcp_frame(TASK_A_NET, REMOTE, 40000, 80, 0x02),
            verdict: TC_ACT_REDIRECT,
            expect: Expect::Unchanged,
        },
        Row {
            what: "to a remote address behind a gateway: on to the bridge (VXLAN)",
            input: tcp_frame(TASK_A_NET, REMOTE_ROUTED, 40000, 80, 0x02),
            verdict: TC_ACT_OK,
            expect: Expect::Unchanged,
        },
        Row {
            what: "to another network's address: not native routing's (the node does not forward)",
            input: tcp_frame(TASK_A_NET, OTHER, 40000, 80, 0x02),
            verdict: TC_ACT_OK,
            expect: Expect::Unchanged,
        },
    ]
}

#[test]
fn native_routing_delivers_within_a_network_only() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| {
        let mut h = harness("native", false);
        assert_eq!(h.mesh().set_native(&table()).unwrap(), 4);
        assert_eq!(
            h.mesh().set_native(&table()).unwrap(),
            0,
            "nothing to change"
        );
        run_rows(&mut h, "tc_underlay_in", underlay_rows());
        run_rows(&mut h, "tc_task_in", task_rows());
        assert_eq!(h.mesh().set_native(&BTreeMap::new()).unwrap(), 4);
    });
}

/// A frame from `smac` on the underlay: `src:sport -> dst:dport`, TCP with `flags`.
fn from_mac(
    smac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
) -> Vec<u8> {
    eth(
        UNDERLAY_MAC,
        smac,
        0x0800,
        &tcp(src, dst, sport, dport, 1, flags, b""),
    )
}

/// Native ingress, the task's node: a client's packet that another node took (from the
/// client's address) reaches a local ingress task only from a node's MAC, and the task's reply
/// goes back out of the underlay to that MAC, as it is.
#[test]
fn a_clients_packet_from_another_node_reaches_a_local_ingress_task() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| {
        let mut h = harness("natcli", false);
        let local = |vni, mac| NativeAddr {
            vni,
            place: NativePlace::Local {
                ifindex: 1,
                mac,
                gateway_mac: BRIDGE_MAC,
            },
        };
        let table = BTreeMap::from([
            (TASK_B, local(4096, TASK_B_MAC)),
            (TASK_A_NET, local(NET, TASK_A_NET_MAC)),
        ]);
        h.mesh().set_native(&table).unwrap();
        let underlay = h.underlay_ifindex;
        let syn = from_mac(PEER_MAC, CLIENT, TASK_B, 40300, 80, 0x02);
        let stranger = vec![Row {
            what: "a client's packet before the node's MAC is known: dropped",
            input: syn.clone(),
            verdict: TC_ACT_SHOT,
            expect: Expect::Unchanged,
        }];
        run_rows_on(&mut h, "tc_underlay_in", stranger, underlay);
        let macs = BTreeMap::from([(PEER_MAC, PEER)]);
        assert_eq!(h.mesh().set_node_macs(&macs).unwrap(), 1);
        assert_eq!(
            h.mesh().set_node_macs(&macs).unwrap(),
            0,
            "nothing to change"
        );
        let mut delivered = syn.clone();
        delivered[..6].copy_from_slice(&TASK_B_MAC);
        delivered[6..12].copy_from_slice(&BRIDGE_MAC);
        let rows = vec![
            Row {
                what: "a client's packet from a node's MAC: to the ingress task, its address kept",
                input: syn.clone(),
                verdict: TC_ACT_REDIRECT,
                expect: Expect::Exactly(delivered),
            },
            Row {
                what: "the same from a MAC that is no node's: dropped",
                input: from_mac(CLIENT_MAC, CLIENT, TASK_B, 40301, 80, 0x02),
                verdict: TC_ACT_SHOT,
                expect: Expect::Unchanged,
            },
            Row {
                what: "from a node's MAC to a task of another network than ingress: dropped",
                input: from_mac(PEER_MAC, CLIENT, TASK_A_NET, 40302, 80, 0x02),
                verdict: TC_ACT_SHOT,
                expect: Expect::Unchanged,
            },
        ];
        run_rows_on(&mut h, "tc_underlay_in", rows, underlay);
        let reply = vec![Row {
            what: "the task's reply: back out of the underlay to the node that took the request",
            input: eth(
                VETH_MAC,
                TASK_B_MAC,
                0x0800,
                &tcp(TASK_B, CLIENT, 80, 40300, 1, 0x12, b""),
            ),
            verdict: TC_ACT_REDIRECT,
            expect: Expect::Check(|out| {
                let s = decode(out);
                assert_eq!((s.dmac, s.smac), (PEER_MAC, UNDERLAY_MAC));
                assert_eq!(
                    (s.src, s.sport, s.dst, s.dport),
                    (TASK_B, 80, CLIENT, 40300)
                );
            }),
        }];
        run_rows(&mut h, "tc_task_in", reply);
        assert_eq!(h.mesh().set_node_macs(&BTreeMap::new()).unwrap(), 1);
    });
}

/// `TASK_A` (ingress) on `PEER`, on-link.
fn remote_task_a() -> BTreeMap<Ipv4Addr, NativeAddr> {
    BTreeMap::from([(
        TASK_A,
        NativeAddr {
            vni: 4096,
            place: NativePlace::Remote {
                node: PEER,
                direct: true,
            },
        },
    )])
}

/// A backend's reply, reversed: from the published port to the client, out of the underlay.
fn reversed_to_client(out: &[u8]) {
    let s = decode(out);
    assert_eq!((s.src, s.sport, s.dst), (NODE, 8080, CLIENT));
    assert_eq!((s.dmac, s.smac), (CLIENT_MAC, UNDERLAY_MAC));
}

/// Native ingress, the node that takes the request (tc and xdp): a flow to a remote backend is
/// translated by DNAT only (the client's address kept) and the backend's reply, which its node sends
/// here, is reversed to the client.
#[test]
fn a_native_ingress_keeps_the_clients_address() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| {
        let mut h = harness("natent", false);
        h.mesh().set_native(&remote_task_a()).unwrap();
        let rows = vec![
            Row {
                what: "a client's SYN for a remote backend: DNATed only",
                input: tcp_frame(CLIENT, NODE, 40400, 8080, 0x02),
                verdict: TC_ACT_REDIRECT,
                expect: Expect::Check(|out| {
                    let s = decode(out);
                    assert_eq!((s.src, s.sport), (CLIENT, 40400), "no SNAT");
                    assert_eq!((s.dst, s.dport), (TASK_A, 80));
                }),
            },
            Row {
                what: "the backend's reply from its node: reversed to the client",
                input: from_mac(PEER_MAC, TASK_A, CLIENT, 80, 40400, 0x12),
                verdict: TC_ACT_REDIRECT,
                expect: Expect::Check(reversed_to_client),
            },
        ];
        run_rows(&mut h, "tc_underlay_in", rows);
    });
    in_fresh_netns(|| {
        let mut h = harness("natentx", true);
        h.mesh().set_native(&remote_task_a()).unwrap();
        let rows = vec![
            Row {
                what: "xdp: a client's SYN for a remote backend: DNATed only, to its node's MAC",
                input: tcp_frame(CLIENT, NODE, 40500, 8080, 0x02),
                verdict: XDP_TX,
                expect: Expect::Check(|out| {
                    let s = decode(out);
                    assert_eq!((s.src, s.sport), (CLIENT, 40500), "no SNAT");
                    assert_eq!((s.dst, s.dport, s.dmac), (TASK_A, 80, PEER_MAC));
                }),
            },
            Row {
                what: "xdp: the backend's reply from its node: reversed to the client",
                input: from_mac(PEER_MAC, TASK_A, CLIENT, 80, 40500, 0x12),
                verdict: XDP_TX,
                expect: Expect::Check(reversed_to_client),
            },
        ];
        run_rows(&mut h, "xdp_mesh", rows);
    });
}
