//! The bounds on what enters the cluster state (issue 16, "bounded inputs"): a replica count, a
//! label, a hostname or a status string above them is refused where a user gives it (with the
//! limit in the message) or cut where a node reports it, so that no caller can make the leader
//! allocate without bound.

use std::collections::BTreeMap;

use crate::spec::SpecError;
use crate::state::NodeDescription;

/// The most replicas a replicated service may ask for (`--replicas`, `service scale`).
pub const MAX_REPLICAS: u64 = 10_000;
/// The most labels one object (service, container, node, network) may carry.
pub const MAX_LABELS: usize = 1000;
/// The longest label key, in bytes.
pub const MAX_LABEL_KEY: usize = 128;
/// The longest label value, in bytes.
pub const MAX_LABEL_VALUE: usize = 1024;
/// The longest hostname (a DNS name), in bytes: longer reported ones are cut.
pub const MAX_HOSTNAME: usize = 253;
/// The longest other string a node reports about itself (OS, architecture, engine version, an
/// engine label), in bytes: longer ones are cut.
pub const MAX_DESCRIPTION_FIELD: usize = 256;
/// The longest task status message or error a node reports, in bytes: longer ones are cut.
pub const MAX_STATUS_TEXT: usize = 1024;
/// The most mounts one task may have (`--mount`).
pub const MAX_MOUNTS: usize = 100;
/// The longest health check test (`--health-cmd`), in bytes, all its words together.
pub const MAX_HEALTH_TEST: usize = 64 * 1024;

/// Refuses a replica count above [`MAX_REPLICAS`].
pub fn check_replicas(replicas: u64) -> Result<(), SpecError> {
    if replicas > MAX_REPLICAS {
        return Err(SpecError::new(format!(
            "invalid replicas value {replicas}: at most {MAX_REPLICAS} replicas per service"
        )));
    }
    Ok(())
}

/// Refuses one label whose key is empty or too long, or whose value is too long.
pub fn check_label(what: &str, key: &str, value: &str) -> Result<(), SpecError> {
    if key.is_empty() {
        return Err(SpecError::new(format!(
            "invalid {what} label: the key is empty (expected key=value)"
        )));
    }
    if key.len() > MAX_LABEL_KEY {
        return Err(SpecError::new(format!(
            "invalid {what} label: the key is {} bytes long, at most {MAX_LABEL_KEY} are accepted",
            key.len()
        )));
    }
    if value.len() > MAX_LABEL_VALUE {
        return Err(SpecError::new(format!(
            "invalid {what} label {key:?}: the value is {} bytes long, at most {MAX_LABEL_VALUE} are accepted",
            value.len()
        )));
    }
    Ok(())
}

/// Refuses a set of labels with more than [`MAX_LABELS`] entries or one bad label.
pub fn check_labels(what: &str, labels: &BTreeMap<String, String>) -> Result<(), SpecError> {
    if labels.len() > MAX_LABELS {
        return Err(SpecError::new(format!(
            "too many {what} labels: {} given, at most {MAX_LABELS} are accepted",
            labels.len()
        )));
    }
    for (k, v) in labels {
        check_label(what, k, v)?;
    }
    Ok(())
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Cuts `s` in place to at most `max` bytes.
pub fn truncate_in_place(s: &mut String, max: usize) {
    let keep = truncate(s, max).len();
    s.truncate(keep);
}

/// A node's description as the managers keep it: hostname and the other strings cut to their
/// bounds, and at most [`MAX_LABELS`] engine labels, each cut to the label bounds.
pub fn bound_description(d: &NodeDescription) -> NodeDescription {
    let mut d = d.clone();
    truncate_in_place(&mut d.hostname, MAX_HOSTNAME);
    for s in [&mut d.os, &mut d.arch, &mut d.engine_version] {
        truncate_in_place(s, MAX_DESCRIPTION_FIELD);
    }
    d.engine_labels = d
        .engine_labels
        .iter()
        .filter(|(k, _)| !k.is_empty())
        .take(MAX_LABELS)
        .map(|(k, v)| {
            (
                truncate(k, MAX_LABEL_KEY).to_owned(),
                truncate(v, MAX_LABEL_VALUE).to_owned(),
            )
        })
        .collect();
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_above_the_cap_are_refused_naming_it() {
        assert!(check_replicas(0).is_ok());
        assert!(check_replicas(MAX_REPLICAS).is_ok());
        let err = check_replicas(1_000_000_000_000).unwrap_err().to_string();
        assert!(err.contains("1000000000000"), "{err}");
        assert!(err.contains("at most 10000 replicas"), "{err}");
    }

    #[test]
    fn labels_are_bounded() {
        assert!(check_label("node", "zone", "east").is_ok());
        let err = check_label("node", "", "x").unwrap_err().to_string();
        assert!(err.contains("key is empty"), "{err}");
        let long_key = "k".repeat(MAX_LABEL_KEY + 1);
        let err = check_label("node", &long_key, "x").unwrap_err().to_string();
        assert!(err.contains("at most 128"), "{err}");
        let long_value = "v".repeat(MAX_LABEL_VALUE + 1);
        let err = check_label("service", "k", &long_value)
            .unwrap_err()
            .to_string();
        assert!(err.contains("at most 1024"), "{err}");
        let many: BTreeMap<String, String> = (0..=MAX_LABELS)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        let err = check_labels("network", &many).unwrap_err().to_string();
        assert!(err.contains("at most 1000"), "{err}");
        assert!(check_labels("network", &BTreeMap::new()).is_ok());
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abcdef", 3), "abc");
        // "é" is two bytes: cutting in its middle drops it.
        assert_eq!(truncate("aé", 2), "a");
        let mut s = "x".repeat(2000);
        truncate_in_place(&mut s, MAX_STATUS_TEXT);
        assert_eq!(s.len(), MAX_STATUS_TEXT);
    }

    #[test]
    fn descriptions_are_cut_to_their_bounds() {
        let d = NodeDescription {
            hostname: "h".repeat(10_000),
            os: "o".repeat(10_000),
            engine_labels: (0..2000)
                .map(|i| (format!("k{i}"), "v".repeat(5000)))
                .collect(),
            ..NodeDescription::default()
        };
        let b = bound_description(&d);
        assert_eq!(b.hostname.len(), MAX_HOSTNAME);
        assert_eq!(b.os.len(), MAX_DESCRIPTION_FIELD);
        assert_eq!(b.engine_labels.len(), MAX_LABELS);
        assert!(b.engine_labels.values().all(|v| v.len() == MAX_LABEL_VALUE));
        let small = NodeDescription {
            hostname: "n1".into(),
            ..NodeDescription::default()
        };
        assert_eq!(bound_description(&small), small);
    }
}
