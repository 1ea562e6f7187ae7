//! Fields of an Engine API body that meshd does not carry: refused by name when they say
//! anything, since dropping them silently would run something other than what was asked.

use serde_json::{Map, Value};

use crate::error::HttpError;

/// Values that say nothing: what a client sends for a field it leaves at its default.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        // moby prints these defaults in inspect output; a client sends them back.
        Value::String(s) => s.is_empty() || s == "default" || s == "container",
        Value::Array(a) => a.iter().all(is_empty),
        Value::Object(o) => o.values().all(is_empty),
    }
}

/// An error naming the first field of `rest` (the keys of the body at `path` that meshd does
/// not read) that is set to something.
pub fn refuse_unsupported(path: &str, rest: &Map<String, Value>) -> Result<(), HttpError> {
    match rest.iter().find(|(_, v)| !is_empty(v)) {
        None => Ok(()),
        Some((key, value)) => Err(HttpError::bad_request(format!(
            "{path}.{key} ({value}) is not supported by meshd; see docs/dockerapi.md for the fields it carries"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_pass_and_a_set_field_is_named() {
        let rest = json!({"TTY": false, "DNSConfig": {}, "Isolation": "default", "Init": null});
        assert!(
            refuse_unsupported("TaskTemplate.ContainerSpec", rest.as_object().unwrap()).is_ok()
        );
        let rest = json!({"TTY": true});
        let e = refuse_unsupported("TaskTemplate.ContainerSpec", rest.as_object().unwrap())
            .unwrap_err();
        assert_eq!(e.status, 400);
        assert!(
            e.message
                .contains("TaskTemplate.ContainerSpec.TTY (true) is not supported"),
            "{}",
            e.message
        );
    }
}
