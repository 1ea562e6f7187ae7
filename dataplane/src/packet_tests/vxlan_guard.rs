//! Packet tests of the VXLAN guard (`lib/vxlan_guard.h`) in both underlay programs: once the
//! cluster's nodes are in `mesh_nodes`, VXLAN to this node passes only from them (to the
//! kernel's VXLAN devices); from any other source it is dropped and counted. Before the list is
//! filled, and after it is emptied, VXLAN from anyone passes.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::{
    CLIENT, CLIENT_MAC, Expect, Harness, NODE, PEER, PEER_MAC, Row, TASK_A, TASK_A_MAC, TC_ACT_OK,
    TC_ACT_SHOT, UNDERLAY_MAC, XDP_DROP, XDP_PASS, check_root, eth, fold, harness, in_fresh_netns,
    ipv4, run_rows, sum16, tcp,
};
use crate::mesh::DROP_VXLAN_NOT_FROM_NODE;

/// A network other than ingress: VXLAN to it is always the kernel's to deliver.
const OVERLAY_VNI: u32 = 4097;
/// A host on the underlay that is not a cluster node.
const STRANGER: Ipv4Addr = CLIENT;

/// The inner frame: a SYN to a task of the overlay.
fn inner() -> Vec<u8> {
    eth(
        TASK_A_MAC,
        CLIENT_MAC,
        0x0800,
        &tcp(CLIENT, TASK_A, 40000, 80, 1, 0x02, b""),
    )
}

/// UDP from `src`:50000 to this node's `dport`, carrying a VXLAN header (VNI `vni`) and `inner`.
fn vxlan_udp(dport: u16, vni: u32) -> Vec<u8> {
    let mut v = vec![0x08, 0, 0, 0];
    v.extend((vni << 8).to_be_bytes());
    v.extend(inner());
    let mut u = Vec::new();
    u.extend(50000_u16.to_be_bytes());
    u.extend(dport.to_be_bytes());
    u.extend(((8 + v.len()) as u16).to_be_bytes());
    u.extend([0, 0]);
    u.extend(v);
    u
}

fn vxlan_from(src: Ipv4Addr, smac: [u8; 6]) -> Vec<u8> {
    eth(
        UNDERLAY_MAC,
        smac,
        0x0800,
        &ipv4(src, NODE, 17, 0, &vxlan_udp(4789, OVERLAY_VNI)),
    )
}

/// The same datagram with a 4-byte IP option (NOPs): the header is 24 bytes long.
fn vxlan_with_ip_options_from(src: Ipv4Addr) -> Vec<u8> {
    let payload = vxlan_udp(4789, OVERLAY_VNI);
    let mut h = vec![0x46, 0];
    h.extend(((24 + payload.len()) as u16).to_be_bytes());
    h.extend([0x12, 0x34, 0, 0, 64, 17, 0, 0]);
    h.extend(src.octets());
    h.extend(NODE.octets());
    h.extend([1, 1, 1, 1]);
    let c = !fold(sum16(&h));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend(payload);
    eth(UNDERLAY_MAC, CLIENT_MAC, 0x0800, &h)
}

fn rows(pass: u32, drop: u32) -> Vec<Row> {
    vec![
        Row {
            what: "VXLAN from a cluster node passes to the kernel's VXLAN device",
            input: vxlan_from(PEER, PEER_MAC),
            verdict: pass,
            expect: Expect::Unchanged,
        },
        Row {
            what: "VXLAN from an address that is not a cluster node is dropped",
            input: vxlan_from(STRANGER, CLIENT_MAC),
            verdict: drop,
            expect: Expect::Unchanged,
        },
        Row {
            what: "VXLAN from a stranger with IP options is dropped too",
            input: vxlan_with_ip_options_from(STRANGER),
            verdict: drop,
            expect: Expect::Unchanged,
        },
        Row {
            what: "other UDP from a stranger (port 4790) is not the guard's business",
            input: eth(
                UNDERLAY_MAC,
                CLIENT_MAC,
                0x0800,
                &ipv4(STRANGER, NODE, 17, 0, &vxlan_udp(4790, OVERLAY_VNI)),
            ),
            verdict: pass,
            expect: Expect::Unchanged,
        },
    ]
}

/// Rows where nothing is filtered: VXLAN from anyone passes.
fn open_rows(pass: u32) -> Vec<Row> {
    vec![Row {
        what: "with no node list, VXLAN from a stranger passes",
        input: vxlan_from(STRANGER, CLIENT_MAC),
        verdict: pass,
        expect: Expect::Unchanged,
    }]
}

fn dropped(h: &mut Harness) -> u64 {
    let drops = h.mesh().drops().expect("read mesh_drops");
    drops
        .iter()
        .find(|(reason, _)| *reason == DROP_VXLAN_NOT_FROM_NODE)
        .map(|(_, n)| *n)
        .expect("the VXLAN reason is listed")
}

fn guard(prog: &'static str, pass: u32, drop: u32) {
    let mut h = harness(&format!("vxg-{prog}"), prog == "xdp_mesh");
    run_rows(&mut h, prog, open_rows(pass));
    assert_eq!(
        dropped(&mut h),
        0,
        "{prog}: nothing dropped without a node list"
    );

    let nodes: BTreeSet<Ipv4Addr> = [NODE, PEER].into();
    assert_eq!(h.mesh().set_cluster_nodes(&nodes).unwrap(), 2);
    assert_eq!(
        h.mesh().set_cluster_nodes(&nodes).unwrap(),
        0,
        "nothing to change"
    );
    run_rows(&mut h, prog, rows(pass, drop));
    assert_eq!(
        dropped(&mut h),
        2,
        "{prog}: both strangers' datagrams counted"
    );

    h.mesh().set_cluster_nodes(&BTreeSet::new()).unwrap();
    run_rows(&mut h, prog, open_rows(pass));
    assert_eq!(
        dropped(&mut h),
        2,
        "{prog}: an emptied list drops nothing more"
    );
}

#[test]
fn tc_underlay_in_takes_vxlan_only_from_cluster_nodes() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| guard("tc_underlay_in", TC_ACT_OK, TC_ACT_SHOT));
}

#[test]
fn xdp_mesh_takes_vxlan_only_from_cluster_nodes() {
    if !check_root() {
        return;
    }
    in_fresh_netns(|| guard("xdp_mesh", XDP_PASS, XDP_DROP));
}
