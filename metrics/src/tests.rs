use std::collections::BTreeMap;

use mesh_api::status::Id;
use mesh_api::status::{
    DnsStatus, GossipPeer, MapFill, MeshStatus, NodeRole, RaftStatus, ServiceSample,
};

use super::*;

/// Parses Prometheus/OpenMetrics text: every line that is not a comment is
/// `name{label="value",...} number`. Returns `name{labels}` → the number as written (checked).
fn parse(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name in {line:?}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels in {line:?}");
        }
        assert!(
            value == "+Inf" || value.parse::<f64>().is_ok(),
            "bad value in {line:?}"
        );
        out.insert(series.to_owned(), value.to_owned());
    }
    out
}

fn sample() -> NodeStatus {
    let mut programming = Histogram::default();
    programming.observe(0.002);
    NodeStatus {
        hostname: "n1".into(),
        node_id: Some(Id::from("abc")),
        role: Some(NodeRole::Manager),
        mesh: Some(MeshStatus {
            datapath: "tc".into(),
            loaded: true,
            interfaces: [("eth0".to_owned(), vec!["tc_underlay_in".to_owned()])].into(),
            maps: vec![MapFill {
                name: "mesh_ct".into(),
                entries: 4,
                capacity: 262_144,
            }],
            services: vec![ServiceSample {
                service_id: Id::from("s1"),
                service_name: "web".into(),
                packets: 10,
                bytes: 1000,
                connections: 2,
                socket_connects: 3,
                socket_datagrams: 0,
            }],
            programming,
            ..MeshStatus::default()
        }),
        dns: DnsStatus {
            answered: 5,
            nxdomain: 1,
            ..DnsStatus::default()
        },
        gossip: vec![GossipPeer {
            node_id: Id::from("n2"),
            hostname: "n2".into(),
            state: PeerState::Dead,
        }],
        raft: Some(RaftStatus {
            role: "leader".into(),
            term: 3,
            leader: Some(1),
            last_log_index: 40,
            applied_index: 39,
            members: 1,
        }),
        tasks: [("running".to_owned(), 3)].into(),
        ..NodeStatus::default()
    }
}

#[test]
fn the_text_parses_and_says_what_the_snapshot_says() {
    let text = encode(&sample());
    assert!(text.ends_with("# EOF\n"), "{text}");
    let m = parse(&text);
    let get = |k: &str| {
        m.get(k)
            .unwrap_or_else(|| panic!("{k} missing in\n{text}"))
            .as_str()
    };
    assert_eq!(
        get(r#"meshd_mesh_packets_total{service="web",node="n1"}"#),
        "10"
    );
    assert_eq!(
        get(r#"meshd_mesh_bytes_total{service="web",node="n1"}"#),
        "1000"
    );
    assert_eq!(
        get(r#"meshd_mesh_connections_total{service="web",node="n1"}"#),
        "2"
    );
    assert_eq!(get("meshd_conntrack_entries"), "4");
    assert_eq!(get(r#"meshd_map_capacity{map="mesh_ct"}"#), "262144");
    assert_eq!(get("meshd_map_programming_duration_seconds_count"), "1");
    assert_eq!(
        get(r#"meshd_map_programming_duration_seconds_bucket{le="+Inf"}"#),
        "1"
    );
    assert_eq!(get("meshd_raft_term"), "3");
    assert_eq!(get("meshd_raft_leader"), "1");
    assert_eq!(get("meshd_raft_applied_index"), "39");
    assert_eq!(get(r#"meshd_gossip_members{state="dead"}"#), "1");
    assert_eq!(get(r#"meshd_gossip_members{state="alive"}"#), "0");
    assert_eq!(get(r#"meshd_dns_queries_total{result="answered"}"#), "5");
    assert_eq!(get("meshd_dns_nxdomain_total"), "1");
    assert_eq!(get(r#"meshd_tasks{state="running"}"#), "3");
    assert_eq!(get("meshd_engine_reachable"), "1");
    assert_eq!(get("meshd_degraded"), "1");
}

#[test]
fn a_node_outside_a_swarm_still_encodes() {
    let m = parse(&encode(&NodeStatus::default()));
    assert_eq!(m.get("meshd_mesh_loaded").map(String::as_str), Some("0"));
    assert!(!m.keys().any(|k| k.starts_with("meshd_raft_")));
}
