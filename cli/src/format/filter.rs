//! `--filter KEY=VALUE`, as docker's: the flag's value is checked when the command line is read
//! (`bad format of filter (expected name=value)`, a usage error), the keys against what the
//! command accepts (`Invalid filter 'KEY'`, the daemon's words) before anything is asked or
//! printed. Values of one key are alternatives; different keys must all match.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::commands::Reported;

/// One `--filter KEY=VALUE` (clap's value parser: a malformed one is a usage error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterArg {
    pub key: String,
    pub value: String,
}

/// Parses `--filter`'s value as docker's `opts.FilterOpt` does (key lower-cased, both trimmed).
pub fn parse_filter_arg(s: &str) -> Result<FilterArg, String> {
    let Some((k, v)) = s.split_once('=') else {
        return Err("bad format of filter (expected name=value)".into());
    };
    Ok(FilterArg {
        key: k.trim().to_lowercase(),
        value: v.trim().to_owned(),
    })
}

/// The filters of one command, their keys checked.
#[derive(Clone, Debug, Default)]
pub struct Filters {
    by_key: BTreeMap<String, Vec<String>>,
}

/// An error worded as the daemon's, printed after `Error response from daemon: `.
pub fn daemon_error(text: &str) -> anyhow::Error {
    Reported(format!("Error response from daemon: {text}")).into()
}

impl Filters {
    /// Keeps `args`, refusing a key not in `accepted`.
    pub fn new(args: &[FilterArg], accepted: &[&str]) -> Result<Self> {
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for a in args {
            if !accepted.contains(&a.key.as_str()) {
                return Err(daemon_error(&format!("Invalid filter '{}'", a.key)));
            }
            by_key
                .entry(a.key.clone())
                .or_default()
                .push(a.value.clone());
        }
        Ok(Self { by_key })
    }

    /// The values given for `key`.
    pub fn values(&self, key: &str) -> &[String] {
        self.by_key.get(key).map_or(&[], Vec::as_slice)
    }

    /// Refuses a value of `key` not in `allowed`, with the daemon's words `message(value)`.
    pub fn check_values(
        &self,
        key: &str,
        allowed: &[&str],
        message: impl Fn(&str) -> String,
    ) -> Result<()> {
        for v in self.values(key) {
            if !allowed.contains(&v.to_lowercase().as_str()) {
                return Err(daemon_error(&message(v)));
            }
        }
        Ok(())
    }

    /// True when `key` was not given, or one of its values passes `pred`.
    pub fn any(&self, key: &str, pred: impl Fn(&str) -> bool) -> bool {
        let v = self.values(key);
        v.is_empty() || v.iter().any(|x| pred(x))
    }

    /// `label=KEY` or `label=KEY=VALUE`: every label filter must match `labels`.
    pub fn labels_match(&self, labels: &BTreeMap<String, String>) -> bool {
        self.values("label")
            .iter()
            .all(|f| match f.split_once('=') {
                Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
                None => labels.contains_key(f.as_str()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<FilterArg> {
        list.iter().map(|s| parse_filter_arg(s).unwrap()).collect()
    }

    #[test]
    fn filters_match_as_dockers_do() {
        let f = Filters::new(
            &args(&["name=web", "name=api", "label=tier", "label=env=prod"]),
            &["name", "label"],
        )
        .unwrap();
        assert!(f.any("name", |v| "web-1".starts_with(v)));
        assert!(f.any("name", |v| "api".starts_with(v)));
        assert!(!f.any("name", |v| "db".starts_with(v)));
        assert!(f.any("id", |_| false), "a key not given matches everything");
        let mut labels = BTreeMap::from([("tier".to_owned(), "front".to_owned())]);
        assert!(!f.labels_match(&labels));
        labels.insert("env".into(), "prod".into());
        assert!(f.labels_match(&labels));
        labels.insert("env".into(), "dev".into());
        assert!(!f.labels_match(&labels));
    }

    #[test]
    fn bad_filters_are_refused_with_dockers_words() {
        assert_eq!(
            parse_filter_arg("name").unwrap_err(),
            "bad format of filter (expected name=value)"
        );
        assert_eq!(
            parse_filter_arg(" Name = web ").unwrap(),
            FilterArg {
                key: "name".into(),
                value: "web".into()
            }
        );
        let e = Filters::new(&args(&["colour=red"]), &["name"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Error response from daemon: Invalid filter 'colour'"
        );
        let f = Filters::new(&args(&["mode=sideways"]), &["mode"]).unwrap();
        let e = f
            .check_values("mode", &["replicated", "global"], |v| {
                format!("Invalid filter: 'mode'='{v}'")
            })
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Error response from daemon: Invalid filter: 'mode'='sideways'"
        );
    }
}
