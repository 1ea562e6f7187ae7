//! How a node's state is laid out in its chitchat key-value namespace, and the changes that turn
//! one endpoint set into another.
//!
//! - `info` → [`NodeInfo`] as JSON.
//! - `ep/<task id>/<network id>` → [`TaskEndpoint`] as JSON, one key per endpoint: a new or gone
//!   task sends one key (or one tombstone), not the node's whole table.

use std::collections::{BTreeMap, BTreeSet};

use crate::GossipError;
use crate::model::{NodeInfo, TaskEndpoint};

pub(crate) const INFO_KEY: &str = "info";
pub(crate) const ENDPOINT_PREFIX: &str = "ep/";

/// Longest id accepted in a key (cluster ids are 25 characters).
const MAX_ID_LEN: usize = 64;

/// Checks that `id` can be part of a key: 1 to 64 characters out of `[A-Za-z0-9_.-]`.
pub(crate) fn check_id(what: &str, id: &str) -> Result<(), GossipError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(GossipError::InvalidEndpoint(format!(
            "{what} {id:?}: expected 1 to {MAX_ID_LEN} characters out of [A-Za-z0-9_.-]"
        )))
    }
}

/// The key of an endpoint: `ep/<task id>/<network id>`.
pub(crate) fn endpoint_key(ep: &TaskEndpoint) -> Result<String, GossipError> {
    check_id("task id", &ep.task_id)?;
    check_id("network id", &ep.network_id)?;
    Ok(format!("{ENDPOINT_PREFIX}{}/{}", ep.task_id, ep.network_id))
}

/// The (task id, network id) of an endpoint key, or `None` for any other key.
pub(crate) fn parse_endpoint_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(ENDPOINT_PREFIX)?;
    let (task, network) = rest.split_once('/')?;
    (!task.is_empty() && !network.is_empty() && !network.contains('/')).then_some((task, network))
}

pub(crate) fn encode_info(info: &NodeInfo) -> Result<String, GossipError> {
    if info.hostname.is_empty() {
        return Err(GossipError::InvalidConfig(
            "node info: the hostname is empty".into(),
        ));
    }
    if info.addr.is_unspecified() || info.addr.is_multicast() {
        return Err(GossipError::InvalidConfig(format!(
            "node info: underlay address {} is not a unicast address",
            info.addr
        )));
    }
    Ok(serde_json::to_string(info).expect("NodeInfo serializes"))
}

pub(crate) fn decode_info(value: &str) -> Option<NodeInfo> {
    serde_json::from_str(value).ok()
}

/// Decodes an endpoint value, and only if it matches the key it was published under.
pub(crate) fn decode_endpoint(key: &str, value: &str) -> Option<TaskEndpoint> {
    let (task, network) = parse_endpoint_key(key)?;
    let ep: TaskEndpoint = serde_json::from_str(value).ok()?;
    (ep.task_id == task && ep.network_id == network).then_some(ep)
}

/// One change to this node's own key-value namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KvChange {
    Set { key: String, value: String },
    Delete { key: String },
}

/// The changes that make this node's endpoint keys (`current`: key → value, endpoint keys only)
/// publish exactly `desired`. Validates everything first: an invalid or duplicated endpoint
/// returns an error and no change.
pub(crate) fn endpoint_changes(
    current: &BTreeMap<String, String>,
    desired: &[TaskEndpoint],
) -> Result<Vec<KvChange>, GossipError> {
    let mut wanted = BTreeMap::new();
    for ep in desired {
        if ep.vni > 0x00FF_FFFF {
            return Err(GossipError::InvalidEndpoint(format!(
                "task {} on network {}: VNI {} does not fit in 24 bits (1..=16777215)",
                ep.task_id, ep.network_id, ep.vni
            )));
        }
        let key = endpoint_key(ep)?;
        let value = serde_json::to_string(ep).expect("TaskEndpoint serializes");
        if wanted.insert(key, value).is_some() {
            return Err(GossipError::InvalidEndpoint(format!(
                "task {} appears twice on network {}: one endpoint per (task, network)",
                ep.task_id, ep.network_id
            )));
        }
    }
    let stale: BTreeSet<&String> = current
        .keys()
        .filter(|k| !wanted.contains_key(*k))
        .collect();
    let mut changes: Vec<KvChange> = stale
        .into_iter()
        .map(|key| KvChange::Delete { key: key.clone() })
        .collect();
    changes.extend(
        wanted
            .into_iter()
            .filter(|(key, value)| current.get(key) != Some(value))
            .map(|(key, value)| KvChange::Set { key, value }),
    );
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ep(task: &str, net: &str, last: u8) -> TaskEndpoint {
        TaskEndpoint {
            task_id: task.into(),
            service_id: "svc1".into(),
            network_id: net.into(),
            vni: 4097,
            ip: Ipv4Addr::new(10, 0, 0, last),
            mac: [0x02, 0x42, 10, 0, 0, last],
            draining: false,
        }
    }

    #[test]
    fn endpoint_keys_round_trip() {
        let e = ep("t0abc", "net9", 2);
        let key = endpoint_key(&e).unwrap();
        assert_eq!(key, "ep/t0abc/net9");
        assert_eq!(parse_endpoint_key(&key), Some(("t0abc", "net9")));
        let value = serde_json::to_string(&e).unwrap();
        assert_eq!(decode_endpoint(&key, &value), Some(e));
    }

    #[test]
    fn other_keys_are_not_endpoints() {
        for key in ["info", "ep/", "ep/t", "ep//n", "ep/t/", "ep/t/n/x", "x/t/n"] {
            assert_eq!(parse_endpoint_key(key), None, "{key}");
        }
    }

    #[test]
    fn an_endpoint_under_another_key_is_ignored() {
        let value = serde_json::to_string(&ep("t1", "n1", 2)).unwrap();
        assert_eq!(decode_endpoint("ep/t2/n1", &value), None);
        assert_eq!(decode_endpoint("ep/t1/n1", "{not json"), None);
    }

    #[test]
    fn ids_that_cannot_be_in_a_key_are_refused_by_name() {
        for bad in ["", "a/b", "é", &"x".repeat(65)] {
            let err = endpoint_key(&ep(bad, "n1", 2)).unwrap_err().to_string();
            assert!(err.contains("task id"), "{err}");
            assert!(err.contains("[A-Za-z0-9_.-]"), "{err}");
        }
    }

    #[test]
    fn changes_set_new_delete_gone_and_keep_unchanged() {
        let a = ep("ta", "n1", 2);
        let b = ep("tb", "n1", 3);
        let c = ep("tc", "n1", 4);
        let current: BTreeMap<String, String> = [&a, &b]
            .iter()
            .map(|e| (endpoint_key(e).unwrap(), serde_json::to_string(e).unwrap()))
            .collect();
        let mut b2 = b.clone();
        b2.ip = Ipv4Addr::new(10, 0, 0, 9);
        let changes = endpoint_changes(&current, &[b2.clone(), c.clone()]).unwrap();
        assert_eq!(
            changes,
            vec![
                KvChange::Delete {
                    key: "ep/ta/n1".into()
                },
                KvChange::Set {
                    key: "ep/tb/n1".into(),
                    value: serde_json::to_string(&b2).unwrap()
                },
                KvChange::Set {
                    key: "ep/tc/n1".into(),
                    value: serde_json::to_string(&c).unwrap()
                },
            ]
        );
        // The same set again changes nothing.
        let current: BTreeMap<String, String> = [&b2, &c]
            .iter()
            .map(|e| (endpoint_key(e).unwrap(), serde_json::to_string(e).unwrap()))
            .collect();
        assert!(endpoint_changes(&current, &[c, b2]).unwrap().is_empty());
        // The empty set deletes everything.
        assert_eq!(endpoint_changes(&current, &[]).unwrap().len(), 2);
    }

    #[test]
    fn one_task_on_two_networks_is_two_keys() {
        let changes =
            endpoint_changes(&BTreeMap::new(), &[ep("t1", "n1", 2), ep("t1", "n2", 2)]).unwrap();
        assert_eq!(changes.len(), 2);
    }

    #[test]
    fn bad_sets_are_refused_whole() {
        let dup = endpoint_changes(&BTreeMap::new(), &[ep("t1", "n1", 2), ep("t1", "n1", 3)])
            .unwrap_err()
            .to_string();
        assert!(dup.contains("twice"), "{dup}");
        let mut big = ep("t2", "n1", 2);
        big.vni = 1 << 24;
        let err = endpoint_changes(&BTreeMap::new(), &[ep("t1", "n1", 2), big])
            .unwrap_err()
            .to_string();
        assert!(err.contains("24 bits"), "{err}");
    }

    #[test]
    fn info_is_checked_and_round_trips() {
        let info = NodeInfo {
            addr: "198.18.0.11".parse().unwrap(),
            hostname: "n1".into(),
        };
        assert_eq!(
            decode_info(&encode_info(&info).unwrap()),
            Some(info.clone())
        );
        let mut bad = info.clone();
        bad.addr = "0.0.0.0".parse().unwrap();
        assert!(encode_info(&bad).is_err());
        bad = info;
        bad.hostname.clear();
        assert!(encode_info(&bad).is_err());
    }
}
