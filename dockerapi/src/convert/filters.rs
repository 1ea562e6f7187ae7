//! The `filters` query parameter of list calls: `{"name":{"web":true}}` (or the older
//! `{"name":["web"]}`), and how each kind of object matches it, as moby's list filters do.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::HttpError;

/// Filter name to the values given for it (a match of any value passes that filter; every
/// filter must pass).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters(pub BTreeMap<String, Vec<String>>);

impl Filters {
    /// `filters` as the query gives it (absent or empty: none); `accepted` are the filter names
    /// the endpoint knows.
    pub fn parse(text: Option<&str>, accepted: &[&str]) -> Result<Self, HttpError> {
        let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
            return Ok(Self::default());
        };
        let raw: BTreeMap<String, Value> = serde_json::from_str(text)
            .map_err(|e| HttpError::bad_request(format!("invalid filters {text:?}: {e}")))?;
        let mut out = BTreeMap::new();
        for (name, values) in raw {
            if !accepted.contains(&name.as_str()) {
                return Err(HttpError::bad_request(format!(
                    "invalid filter '{name}': accepted filters are {}",
                    accepted.join(", ")
                )));
            }
            let list: Vec<String> = match values {
                Value::Object(m) => m
                    .into_iter()
                    .filter(|(_, on)| on.as_bool() == Some(true))
                    .map(|(k, _)| k)
                    .collect(),
                Value::Array(a) => a
                    .into_iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                other => {
                    return Err(HttpError::bad_request(format!(
                        "invalid filter '{name}': {other} is not a set of values"
                    )));
                }
            };
            out.insert(name, list);
        }
        Ok(Self(out))
    }

    /// Does `name`'s filter pass for an object whose value for it is found by `test` (true when
    /// the filter is not given)?
    pub fn pass(&self, name: &str, test: impl Fn(&str) -> bool) -> bool {
        self.0
            .get(name)
            .is_none_or(|values| values.iter().any(|v| test(v)))
    }

    pub fn values(&self, name: &str) -> &[String] {
        self.0.get(name).map_or(&[], Vec::as_slice)
    }
}

/// `label=KEY` or `label=KEY=VALUE` against an object's labels.
pub fn label_matches(labels: &BTreeMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
        None => labels.contains_key(filter),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_filter_encodings_parse() {
        let a = Filters::parse(
            Some(r#"{"name":{"web":true},"label":{"a=b":true}}"#),
            &["name", "label"],
        )
        .unwrap();
        let b = Filters::parse(
            Some(r#"{"name":["web"],"label":["a=b"]}"#),
            &["name", "label"],
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.values("name"), ["web"]);
        assert!(Filters::parse(None, &[]).unwrap().0.is_empty());
    }

    #[test]
    fn an_unknown_filter_is_refused_with_the_accepted_ones() {
        let e = Filters::parse(Some(r#"{"colour":{"red":true}}"#), &["name", "id"]).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(
            e.message.contains("'colour'") && e.message.contains("name, id"),
            "{}",
            e.message
        );
    }

    #[test]
    fn labels_match_by_key_or_key_and_value() {
        let labels = BTreeMap::from([("tier".to_owned(), "web".to_owned())]);
        assert!(label_matches(&labels, "tier"));
        assert!(label_matches(&labels, "tier=web"));
        assert!(!label_matches(&labels, "tier=db"));
        assert!(!label_matches(&labels, "zone"));
    }
}
