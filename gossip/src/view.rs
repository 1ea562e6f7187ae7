//! The view builder: chitchat's members (one per node incarnation) → [`GossipView`] (one entry
//! per node id). Pure, so that the merging rules are tested without sockets.

use std::collections::BTreeMap;

use crate::keys::{INFO_KEY, decode_endpoint, decode_info, parse_endpoint_key};
use crate::model::{GossipView, TaskEndpoint};

/// What chitchat's failure detector says of a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Liveness {
    Live,
    Dead,
}

/// One incarnation of a node, as chitchat knows it: a node restarted with the same node id is a
/// new member with a higher generation, while the old one lingers until it is declared dead and
/// garbage collected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    pub node_id: String,
    pub generation: u64,
    pub liveness: Liveness,
    /// The member's non-deleted keys (only read for live members).
    pub key_values: Vec<(String, String)>,
}

/// Builds the view:
/// - a node id is live when one of its incarnations is live and has published a readable `info`;
///   the live incarnation with the highest generation supplies the info and the endpoints;
/// - a node id is dead when none of its incarnations is live and one is declared dead;
/// - a live incarnation without readable `info` (not yet fully received) is in neither set;
/// - unreadable endpoint values are skipped (they come from a node of another version).
pub(crate) fn build_view(members: &[Member]) -> GossipView {
    let mut newest_live: BTreeMap<&str, &Member> = BTreeMap::new();
    for m in members.iter().filter(|m| m.liveness == Liveness::Live) {
        let slot = newest_live.entry(&m.node_id).or_insert(m);
        if m.generation > slot.generation {
            *slot = m;
        }
    }
    let mut view = GossipView::default();
    for (node_id, member) in &newest_live {
        let Some(info) = member
            .key_values
            .iter()
            .find(|(k, _)| k == INFO_KEY)
            .and_then(|(_, v)| decode_info(v))
        else {
            continue;
        };
        let mut endpoints: Vec<TaskEndpoint> = member
            .key_values
            .iter()
            .filter(|(k, _)| parse_endpoint_key(k).is_some())
            .filter_map(|(k, v)| decode_endpoint(k, v))
            .collect();
        endpoints.sort_by(|a, b| (&a.task_id, &a.network_id).cmp(&(&b.task_id, &b.network_id)));
        view.live.insert((*node_id).to_owned(), info);
        view.endpoints.insert((*node_id).to_owned(), endpoints);
    }
    view.dead = members
        .iter()
        .filter(|m| m.liveness == Liveness::Dead && !newest_live.contains_key(m.node_id.as_str()))
        .map(|m| m.node_id.clone())
        .collect();
    view
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::keys::{encode_info, endpoint_key};
    use crate::model::NodeInfo;

    fn info(node: &str, last: u8) -> NodeInfo {
        NodeInfo {
            addr: Ipv4Addr::new(198, 18, 0, last).into(),
            hostname: node.into(),
        }
    }

    fn ep(task: &str, net: &str) -> TaskEndpoint {
        TaskEndpoint {
            task_id: task.into(),
            service_id: "s".into(),
            network_id: net.into(),
            vni: 4097,
            ip: Ipv4Addr::new(10, 0, 1, 2),
            mac: [2, 0, 0, 0, 0, 1],
            draining: false,
        }
    }

    fn member(
        node: &str,
        generation: u64,
        liveness: Liveness,
        last: u8,
        eps: &[TaskEndpoint],
    ) -> Member {
        let mut key_values = vec![(INFO_KEY.to_owned(), encode_info(&info(node, last)).unwrap())];
        for e in eps {
            key_values.push((endpoint_key(e).unwrap(), serde_json::to_string(e).unwrap()));
        }
        Member {
            node_id: node.into(),
            generation,
            liveness,
            key_values,
        }
    }

    #[test]
    fn live_nodes_bring_their_info_and_sorted_endpoints() {
        let view = build_view(&[
            member("n1", 1, Liveness::Live, 11, &[ep("tb", "x"), ep("ta", "y")]),
            member("n2", 1, Liveness::Live, 12, &[]),
        ]);
        assert_eq!(view.live.len(), 2);
        assert_eq!(view.live["n1"], info("n1", 11));
        assert_eq!(view.endpoints["n1"], vec![ep("ta", "y"), ep("tb", "x")]);
        assert_eq!(view.endpoints["n2"], vec![]);
        assert!(view.dead.is_empty());
    }

    #[test]
    fn dead_nodes_lose_their_endpoints() {
        let view = build_view(&[
            member("n1", 1, Liveness::Live, 11, &[]),
            member("n3", 1, Liveness::Dead, 13, &[ep("t", "x")]),
        ]);
        assert!(!view.live.contains_key("n3"));
        assert!(!view.endpoints.contains_key("n3"));
        assert_eq!(view.dead.iter().collect::<Vec<_>>(), ["n3"]);
        assert_eq!(view.remote_endpoints("n1").count(), 0);
    }

    #[test]
    fn a_restarted_node_is_live_with_its_new_incarnation_only() {
        // The old incarnation is still live (not yet detected) or already dead: either way the
        // newest live generation wins and the node is not dead.
        for old in [Liveness::Live, Liveness::Dead] {
            let view = build_view(&[
                member("n3", 100, old, 13, &[ep("old", "x")]),
                member("n3", 200, Liveness::Live, 23, &[ep("new", "x")]),
            ]);
            assert_eq!(view.live["n3"], info("n3", 23));
            assert_eq!(view.endpoints["n3"], vec![ep("new", "x")]);
            assert!(view.dead.is_empty(), "{old:?}");
        }
        // The new incarnation not yet sampled (dead) and the old one dead: dead.
        let view = build_view(&[
            member("n3", 100, Liveness::Dead, 13, &[]),
            member("n3", 200, Liveness::Dead, 23, &[]),
        ]);
        assert!(view.live.is_empty());
        assert_eq!(view.dead.len(), 1);
    }

    #[test]
    fn a_live_member_without_readable_info_is_neither_live_nor_dead() {
        let mut m = member("n4", 1, Liveness::Live, 14, &[ep("t", "x")]);
        m.key_values.retain(|(k, _)| k != INFO_KEY);
        let mut garbled = member("n5", 1, Liveness::Live, 15, &[]);
        garbled.key_values[0].1 = "{".into();
        let view = build_view(&[m, garbled]);
        assert_eq!(view, GossipView::default());
    }

    #[test]
    fn unreadable_endpoints_and_unknown_keys_are_skipped() {
        let mut m = member("n1", 1, Liveness::Live, 11, &[ep("t1", "x")]);
        m.key_values.push(("ep/t2/x".into(), "garbage".into()));
        m.key_values.push(("future-key".into(), "whatever".into()));
        let view = build_view(&[m]);
        assert_eq!(view.endpoints["n1"], vec![ep("t1", "x")]);
    }

    #[test]
    fn remote_endpoints_leave_out_the_local_node() {
        let view = build_view(&[
            member("n1", 1, Liveness::Live, 11, &[ep("t1", "x")]),
            member("n2", 1, Liveness::Live, 12, &[ep("t2", "x"), ep("t3", "x")]),
        ]);
        let remote: Vec<(String, String)> = view
            .remote_endpoints("n1")
            .map(|(info, ep)| (info.hostname.clone(), ep.task_id.clone()))
            .collect();
        assert_eq!(
            remote,
            [("n2".into(), "t2".into()), ("n2".into(), "t3".into())]
        );
    }
}
