//! Packet tests of native routing (`lib/native.h`): with `mesh_native` filled, a packet from
//! the underlay for a local task of a native network goes to the task's veth with the task's
//! and its gateway's MACs only from a remote address of the same network (another network's
//! address and a stranger are dropped); a task's packet to an on-link remote address of its own
//! network leaves by the underlay (the neighbour redirect), and one to another network's
//! address or to a node that is not on-link goes on as before.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::{
    BRIDGE_MAC, CLIENT, Expect, PEER, Row, TASK_A_NET, TASK_A_NET_MAC, TC_ACT_OK, TC_ACT_REDIRECT,
    TC_ACT_SHOT, check_root, harness, in_fresh_netns, run_rows, tcp_frame,
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
