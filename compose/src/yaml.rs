//! From YAML text to one interpolated value tree: each file parsed (syntax errors with their
//! line), every string interpolated, the files merged as compose merges them, and a reader
//! ([`At`]) that knows the key path of every value for its errors.

use serde_norway::{Mapping, Value};

use crate::error::ComposeError;
use crate::interpolate::{Environment, interpolate};

/// Keys whose list form `K=V` is a mapping in disguise: merged key by key.
const MAP_LISTS: &[&str] = &["environment", "labels"];
/// Lists that merge by union (later entries added when not already there), as compose does.
const UNION_LISTS: &[&str] = &["ports", "volumes", "secrets", "configs", "env_file"];

/// Parses, interpolates and merges `files` (name, text), later files winning.
pub fn load_tree(
    files: &[(String, String)],
    env: &Environment,
    unset: &mut Vec<String>,
) -> Result<Value, ComposeError> {
    let mut merged = Value::Null;
    for (name, text) in files {
        let mut value: Value = serde_norway::from_str(text).map_err(|e| ComposeError {
            file: Some(name.clone()),
            line: e.location().map(|l| l.line()),
            path: String::new(),
            message: format!("not a valid YAML document: {e}"),
        })?;
        if value.is_null() {
            return Err(ComposeError {
                file: Some(name.clone()),
                line: None,
                path: String::new(),
                message: "the file is empty: expected a mapping with a services key".into(),
            });
        }
        interpolate_all(&mut value, "", env, unset)
            .map_err(|e| e.locate(&[(name.clone(), text.clone())]))?;
        merged = merge(merged, value, "");
    }
    Ok(merged)
}

fn interpolate_all(
    value: &mut Value,
    path: &str,
    env: &Environment,
    unset: &mut Vec<String>,
) -> Result<(), ComposeError> {
    match value {
        Value::String(s) => {
            *s = interpolate(s, env, unset).map_err(|e| ComposeError::at(path, e.0))?;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_all(item, &format!("{path}[{i}]"), env, unset)?;
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = scalar(k).unwrap_or_default();
                interpolate_all(v, &join(path, &key), env, unset)?;
            }
        }
        Value::Tagged(t) => interpolate_all(&mut t.value, path, env, unset)?,
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// `later` over `earlier`: mappings key by key, [`MAP_LISTS`] as mappings, [`UNION_LISTS`] by
/// union, anything else replaced.
fn merge(earlier: Value, later: Value, key: &str) -> Value {
    match (earlier, later) {
        (Value::Mapping(mut a), Value::Mapping(b)) => {
            for (k, v) in b {
                let name = scalar(&k).unwrap_or_default();
                let merged = match a.remove(&k) {
                    Some(old) => merge(old, v, &name),
                    None => v,
                };
                a.insert(k, merged);
            }
            Value::Mapping(a)
        }
        (a, b) if MAP_LISTS.contains(&key) && (a.is_sequence() || b.is_sequence()) => {
            merge(list_to_map(a), list_to_map(b), "")
        }
        (Value::Sequence(mut a), Value::Sequence(b)) if UNION_LISTS.contains(&key) => {
            for item in b {
                if !a.contains(&item) {
                    a.push(item);
                }
            }
            Value::Sequence(a)
        }
        (_, b) => b,
    }
}

/// `[K=V, K]` as `{K: V, K: null}`; anything else unchanged.
fn list_to_map(v: Value) -> Value {
    let Value::Sequence(items) = v else { return v };
    let mut map = Mapping::new();
    for item in items {
        let text = scalar(&item).unwrap_or_default();
        match text.split_once('=') {
            Some((k, v)) => map.insert(Value::String(k.into()), Value::String(v.into())),
            None => map.insert(Value::String(text), Value::Null),
        };
    }
    Value::Mapping(map)
}

/// A scalar as text (numbers and booleans as YAML writes them); `None` for null and
/// collections.
pub(crate) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(t) => scalar(&t.value),
        Value::Null | Value::Sequence(_) | Value::Mapping(_) => None,
    }
}

/// A value and its key path, for reading with errors that say where.
#[derive(Clone, Copy)]
pub struct At<'a> {
    pub value: &'a Value,
    pub path: &'a str,
}

/// A mapping's entries, each with its path.
pub struct Entries<'a> {
    pub items: Vec<(String, &'a Value, String)>,
}

impl<'a> At<'a> {
    pub fn err(&self, message: impl Into<String>) -> ComposeError {
        ComposeError::at(self.path, message)
    }

    fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Sequence(_) => "a list",
            Value::Mapping(_) => "a mapping",
            Value::Tagged(_) => "a tagged value",
        }
    }

    pub fn is_null(&self) -> bool {
        self.value.is_null()
    }

    /// The entries of a mapping (string keys); `null` is an empty mapping.
    pub fn entries(&self) -> Result<Entries<'a>, ComposeError> {
        let map = match self.value {
            Value::Mapping(m) => m,
            Value::Null => return Ok(Entries { items: Vec::new() }),
            _ => return Err(self.err(format!("expected a mapping, found {}", self.kind()))),
        };
        let mut items = Vec::new();
        for (k, v) in map {
            let key = scalar(k).ok_or_else(|| self.err("a key is not a string"))?;
            let path = join(self.path, &key);
            items.push((key, v, path));
        }
        Ok(Entries { items })
    }

    /// The items of a list, each with its path.
    pub fn items(&self) -> Result<Vec<(&'a Value, String)>, ComposeError> {
        match self.value {
            Value::Sequence(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, v)| (v, format!("{}[{i}]", self.path)))
                .collect()),
            Value::Null => Ok(Vec::new()),
            _ => Err(self.err(format!("expected a list, found {}", self.kind()))),
        }
    }

    /// A string (numbers and booleans as written).
    pub fn string(&self) -> Result<String, ComposeError> {
        scalar(self.value)
            .ok_or_else(|| self.err(format!("expected a string, found {}", self.kind())))
    }

    pub fn u64(&self) -> Result<u64, ComposeError> {
        let bad = || {
            self.err(format!(
                "expected a non-negative integer, found {}",
                self.describe()
            ))
        };
        match self.value {
            Value::Number(n) => n.as_u64().ok_or_else(bad),
            Value::String(s) => s.trim().parse().map_err(|_| bad()),
            _ => Err(bad()),
        }
    }

    pub fn bool(&self) -> Result<bool, ComposeError> {
        match self.value {
            Value::Bool(b) => Ok(*b),
            Value::String(s) if s == "true" || s == "false" => Ok(s == "true"),
            _ => Err(self.err(format!("expected true or false, found {}", self.describe()))),
        }
    }

    /// A list of strings, or one string as a list of one.
    pub fn strings(&self) -> Result<Vec<String>, ComposeError> {
        if let Some(s) = scalar(self.value) {
            return Ok(vec![s]);
        }
        self.items()?
            .into_iter()
            .map(|(v, p)| At { value: v, path: &p }.string())
            .collect()
    }

    fn describe(&self) -> String {
        scalar(self.value).map_or_else(|| self.kind().to_owned(), |s| format!("{s:?}"))
    }
}

/// Splits a mapping's keys into the known ones (returned), the ones Swarm ignores (added to
/// `ignored`), `x-` extensions (dropped) and unknown ones (an error naming the accepted keys).
pub fn known_keys<'a>(
    at: At<'a>,
    accepted: &[&str],
    unsupported: &[&str],
    ignored: &mut Vec<String>,
) -> Result<Vec<(String, &'a Value, String)>, ComposeError> {
    let mut known = Vec::new();
    for (key, value, path) in at.entries()?.items {
        if accepted.contains(&key.as_str()) {
            known.push((key, value, path));
        } else if unsupported.contains(&key.as_str()) {
            if !ignored.contains(&key) {
                ignored.push(key);
            }
        } else if !key.starts_with("x-") {
            let mut names = accepted.to_vec();
            names.sort_unstable();
            return Err(ComposeError::at(
                &path,
                format!(
                    "additional property {key:?} is not allowed; accepted keys: {}",
                    names.join(", ")
                ),
            ));
        }
    }
    Ok(known)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[&str]) -> Result<Value, ComposeError> {
        let files: Vec<(String, String)> = files
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("f{i}.yml"), (*t).to_owned()))
            .collect();
        let env = [("TAG".to_owned(), "2".to_owned())].into_iter().collect();
        load_tree(&files, &env, &mut Vec::new())
    }

    fn yaml(text: &str) -> Value {
        serde_norway::from_str(text).unwrap()
    }

    #[test]
    fn later_files_win_and_lists_merge_as_compose_merges_them() {
        let merged = tree(&[
            "services:\n  web:\n    image: a:1\n    environment: [A=1, B=1]\n    ports: ['80:80']\n    command: [x]\n",
            "services:\n  web:\n    image: a:$TAG\n    environment: {B: 2}\n    ports: ['81:81', '80:80']\n    command: [y]\n",
        ])
        .unwrap();
        assert_eq!(
            merged,
            yaml(
                "services:\n  web:\n    image: a:2\n    environment: {A: '1', B: 2}\n    ports: ['80:80', '81:81']\n    command: [y]\n"
            )
        );
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let e = tree(&["services:\n  web:\n    image: [a\n"]).unwrap_err();
        assert_eq!(e.file.as_deref(), Some("f0.yml"));
        assert!(e.line.is_some(), "{e:?}");
        let e = tree(&["services:\n  web:\n    image: ${X\n"]).unwrap_err();
        assert_eq!((e.path.as_str(), e.line), ("services.web.image", Some(3)));
    }

    #[test]
    fn unknown_keys_are_errors_and_unsupported_ones_are_collected() {
        let v = yaml("image: a\nbuild: .\nx-note: 1\n");
        let mut ignored = Vec::new();
        let known = known_keys(
            At {
                value: &v,
                path: "services.web",
            },
            &["image"],
            &["build"],
            &mut ignored,
        )
        .unwrap();
        assert_eq!(known.len(), 1);
        assert_eq!(ignored, ["build"]);
        let v = yaml("image: a\nimgae: b\n");
        let e = known_keys(
            At {
                value: &v,
                path: "services.web",
            },
            &["image"],
            &[],
            &mut ignored,
        )
        .unwrap_err();
        assert_eq!(e.path, "services.web.imgae");
        assert!(e.message.contains("accepted keys: image"), "{}", e.message);
    }
}
