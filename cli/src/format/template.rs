//! Go templates (`gtmpl`) with the functions the docker CLI adds (`json`, `join`, `split`,
//! `upper`, `lower`, `title`, `pad`, `truncate`) over a JSON value, printed as Go prints.
//!
//! Two things `gtmpl` does differently from Go are put right here:
//! - it prints a list or a map as Rust's debug text; every printing action is piped through
//!   [`show`] so that `{{.Spec.Labels}}` prints `map[a:b]` and a list `[a b]`, as Go does;
//! - its maps forget the order of their keys; `json` puts them back in the order the document
//!   had them (Docker's JSON has a struct's field order), learned when the document is loaded.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use anyhow::{Result, anyhow};
use gtmpl::error::ExecError;
use gtmpl::{Context, Func, FuncError, Value};
use serde_json::Value as Json;

/// The name the printing actions are piped into (not a name a user would write).
const SHOW: &str = "__show";

thread_local! {
    /// Per sorted key set of the document's objects: the keys in the document's order.
    static KEY_ORDER: RefCell<HashMap<Vec<String>, Vec<String>>> = RefCell::new(HashMap::new());
}

/// A parsed `--format` template.
pub struct Template {
    inner: gtmpl::Template,
}

/// How a field missing from the data behaves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Missing {
    /// An error, as a field a Go struct does not have (`ls` rows).
    Error,
    /// `<no value>`, as a key a Go map does not have (inspect documents, headers).
    NoValue,
}

impl Template {
    /// Parses `text` with docker's functions.
    pub fn parse(text: &str) -> Result<Self> {
        Self::with_funcs(text, &docker_funcs())
    }

    /// Parses `text` for a table's header: docker's functions that would change a header
    /// (`json`, `upper`, `split`, ...) leave it as it is.
    pub fn parse_header(text: &str) -> Result<Self> {
        Self::with_funcs(text, &header_funcs())
    }

    fn with_funcs(text: &str, funcs: &[(&str, Func)]) -> Result<Self> {
        let mut inner = gtmpl::Template::default();
        inner.add_funcs(funcs);
        inner.add_func(SHOW, show);
        inner
            .parse(with_show(text))
            .map_err(|e| anyhow!("template parsing error: {e}"))?;
        Ok(Self { inner })
    }

    /// Runs the template on `data`.
    pub fn render(&self, data: &Json, missing: Missing) -> Result<String> {
        KEY_ORDER.with(|k| {
            let mut k = k.borrow_mut();
            k.clear();
            learn_key_order(data, &mut k);
        });
        self.inner
            .render(&Context::from(to_value(data, missing)))
            .map_err(|e| anyhow!("template parsing error: {}", exec_error(&e)))
    }
}

/// An execution error in docker's words where gtmpl's would dump the whole value.
fn exec_error(e: &ExecError) -> String {
    match e {
        ExecError::NoFiledFor(field, Value::Object(m) | Value::Map(m)) => {
            let mut fields: Vec<&String> = m.keys().collect();
            fields.sort();
            let fields: Vec<&str> = fields.iter().map(|f| f.as_str()).collect();
            format!(
                "can't evaluate field {field} (the fields are {})",
                fields.join(", ")
            )
        }
        ExecError::NoFiledFor(field, _) => format!("can't evaluate field {field}"),
        ExecError::OnlyMapsAndObjectsHaveFields => {
            "can't evaluate a field of a value that has none (nil, or not an object)".into()
        }
        other => other.to_string(),
    }
}

/// Docker's functions (`templates.basicFunctions`).
fn docker_funcs() -> Vec<(&'static str, Func)> {
    vec![
        ("json", json as Func),
        ("join", join as Func),
        ("split", split as Func),
        ("upper", upper as Func),
        ("lower", lower as Func),
        ("title", title as Func),
        ("pad", pad as Func),
        ("truncate", truncate as Func),
    ]
}

/// Docker's `templates.HeaderFunctions`: the header stays as it is (`pad` still pads).
fn header_funcs() -> Vec<(&'static str, Func)> {
    vec![
        ("json", first as Func),
        ("join", first as Func),
        ("split", first as Func),
        ("upper", first as Func),
        ("lower", first as Func),
        ("title", first as Func),
        ("pad", pad as Func),
        ("truncate", first as Func),
    ]
}

/// Pipes every action that prints (not `if`, `range`, `end`, an assignment, a comment, ...)
/// into [`show`]. Quoted strings inside an action may hold `}}`: they are skipped.
fn with_show(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let body = &rest[start + 2..];
        let Some(end) = action_end(body) else {
            // Unclosed: let the parser report it.
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &body[..end];
        let left = inner.starts_with("- ");
        let right = inner.ends_with(" -");
        let core = &inner[if left { 2 } else { 0 }..inner.len() - if right { 2 } else { 0 }];
        out.push_str("{{");
        if left {
            out.push_str("- ");
        }
        out.push_str(core);
        if prints(core) {
            out.push_str(" | ");
            out.push_str(SHOW);
        }
        if right {
            out.push_str(" -");
        }
        out.push_str("}}");
        rest = &body[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Where the action starting at `body` (after its `{{`) ends: the index of its `}}`.
fn action_end(body: &str) -> Option<usize> {
    if body.trim_start_matches("- ").starts_with("/*") {
        return body
            .find("*/")
            .and_then(|c| body[c..].find("}}").map(|e| c + e));
    }
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'"' | b'\'' | b'`') => {
                i += 1;
                while i < bytes.len() && bytes[i] != q {
                    if bytes[i] == b'\\' && q != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Does this action print its value? Control words, comments and assignments do not.
fn prints(core: &str) -> bool {
    let t = core.trim();
    let word = t
        .split(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("");
    let control = [
        "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
    ];
    !(t.is_empty()
        || t.starts_with("/*")
        || control.contains(&word)
        || (t.starts_with('$') && t.contains(":=") || t.starts_with('$') && has_assign(t)))
}

/// `$x = ...` (an assignment, not a comparison: Go templates have no `==`).
fn has_assign(t: &str) -> bool {
    t.split_whitespace().nth(1) == Some("=")
}

/// Go's `fmt.Print` of a value.
fn go_print(v: &Value) -> String {
    match v {
        Value::NoValue => "<no value>".into(),
        Value::Nil => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Function(_) => "<func>".into(),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(go_print).collect();
            format!("[{}]", items.join(" "))
        }
        Value::Object(m) | Value::Map(m) => {
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            let items: Vec<String> = sorted
                .into_iter()
                .map(|(k, v)| format!("{k}:{}", go_print(v)))
                .collect();
            format!("map[{}]", items.join(" "))
        }
    }
}

#[expect(clippy::unnecessary_wraps, reason = "gtmpl's function type")]
fn show(args: &[Value]) -> Result<Value, FuncError> {
    let v = args.last().unwrap_or(&Value::NoValue);
    Ok(Value::String(go_print(v)))
}

fn learn_key_order(v: &Json, orders: &mut HashMap<Vec<String>, Vec<String>>) {
    match v {
        Json::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let mut sorted = keys.clone();
            sorted.sort();
            orders.entry(sorted).or_insert(keys);
            m.values().for_each(|x| learn_key_order(x, orders));
        }
        Json::Array(a) => a.iter().for_each(|x| learn_key_order(x, orders)),
        _ => {}
    }
}

/// A JSON value for the template.
fn to_value(v: &Json, missing: Missing) -> Value {
    match v {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => n.as_u64().map_or_else(
            || {
                n.as_i64()
                    .map_or_else(|| Value::from(n.as_f64().unwrap_or(0.0)), Value::from)
            },
            Value::from,
        ),
        Json::String(s) => Value::String(s.clone()),
        Json::Array(a) => Value::Array(a.iter().map(|x| to_value(x, missing)).collect()),
        Json::Object(m) => {
            let m: HashMap<String, Value> = m
                .iter()
                .map(|(k, x)| (k.clone(), to_value(x, missing)))
                .collect();
            match missing {
                Missing::Error => Value::Object(m),
                Missing::NoValue => Value::Map(m),
            }
        }
    }
}

/// A template value as JSON, maps in the document's key order (sorted when unknown, as Go
/// marshals a map).
fn to_json(v: &Value) -> Json {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        Value::Number(n) => n
            .as_u64()
            .map(Json::from)
            .or_else(|| n.as_i64().map(Json::from))
            .or_else(|| n.as_f64().map(Json::from))
            .unwrap_or(Json::Null),
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Object(m) | Value::Map(m) => {
            let mut sorted: Vec<String> = m.keys().cloned().collect();
            sorted.sort();
            let order = KEY_ORDER
                .with(|k| k.borrow().get(&sorted).cloned())
                .unwrap_or(sorted);
            let mut out = serde_json::Map::new();
            for k in order {
                if let Some(x) = m.get(&k) {
                    out.insert(k, to_json(x));
                }
            }
            Json::Object(out)
        }
    }
}

fn arg<'a>(args: &'a [Value], i: usize, name: &str, n: usize) -> Result<&'a Value, FuncError> {
    if args.len() != n {
        return Err(FuncError::ExactlyXArgs(name.into(), n));
    }
    Ok(&args[i])
}

fn string_arg(args: &[Value], i: usize, name: &str, n: usize) -> Result<String, FuncError> {
    match arg(args, i, name, n)? {
        Value::String(s) => Ok(s.clone()),
        other => Err(FuncError::Generic(format!(
            "{name}: expected a string, got {}",
            go_print(other)
        ))),
    }
}

fn int_arg(args: &[Value], i: usize, name: &str, n: usize) -> Result<usize, FuncError> {
    match arg(args, i, name, n)? {
        Value::Number(x) => x
            .as_u64()
            .and_then(|x| usize::try_from(x).ok())
            .ok_or_else(|| FuncError::Generic(format!("{name}: expected a count, got {x}"))),
        other => Err(FuncError::Generic(format!(
            "{name}: expected a number, got {}",
            go_print(other)
        ))),
    }
}

/// `json`: the value as compact JSON, `<`, `>` and `&` not escaped (as docker's encoder).
fn json(args: &[Value]) -> Result<Value, FuncError> {
    let v = arg(args, 0, "json", 1)?;
    Ok(Value::String(to_json(v).to_string()))
}

/// `join LIST SEP`: a list's items (a map's values, sorted) joined by SEP.
fn join(args: &[Value]) -> Result<Value, FuncError> {
    let sep = string_arg(args, 1, "join", 2)?;
    let items: Vec<String> = match &args[0] {
        Value::Nil | Value::NoValue => Vec::new(),
        Value::Array(a) => a.iter().map(go_print).collect(),
        Value::Map(m) | Value::Object(m) => {
            let mut v: Vec<String> = m.values().map(go_print).collect();
            v.sort();
            v
        }
        other => {
            return Err(FuncError::Generic(format!(
                "join: expected a list, got {}",
                go_print(other)
            )));
        }
    };
    Ok(Value::String(items.join(&sep)))
}

/// `split STRING SEP`: Go's `strings.Split`.
fn split(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "split", 2)?;
    let sep = string_arg(args, 1, "split", 2)?;
    let parts: Vec<Value> = if sep.is_empty() {
        s.chars().map(|c| Value::String(c.to_string())).collect()
    } else {
        s.split(sep.as_str())
            .map(|p| Value::String(p.to_owned()))
            .collect()
    };
    Ok(Value::Array(parts))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(
        string_arg(args, 0, "upper", 1)?.to_uppercase(),
    ))
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(
        string_arg(args, 0, "lower", 1)?.to_lowercase(),
    ))
}

/// `title`: Go's `strings.Title`, each word's first letter upper case.
fn title(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "title", 1)?;
    let mut out = String::with_capacity(s.len());
    let mut at_word_start = true;
    for c in s.chars() {
        if at_word_start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        at_word_start = !c.is_alphanumeric() && c != '_' && c != '\'';
    }
    Ok(Value::String(out))
}

/// `pad STRING BEFORE AFTER`: spaces around a string that is not empty.
fn pad(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "pad", 3)?;
    if s.is_empty() {
        return Ok(Value::String(s));
    }
    let before = int_arg(args, 1, "pad", 3)?;
    let after = int_arg(args, 2, "pad", 3)?;
    Ok(Value::String(format!(
        "{}{s}{}",
        " ".repeat(before),
        " ".repeat(after)
    )))
}

/// `truncate STRING N`: the first N characters.
fn truncate(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "truncate", 2)?;
    let n = int_arg(args, 1, "truncate", 2)?;
    Ok(Value::String(s.chars().take(n).collect()))
}

/// A header function: its first argument, unchanged.
#[expect(clippy::unnecessary_wraps, reason = "gtmpl's function type")]
fn first(args: &[Value]) -> Result<Value, FuncError> {
    Ok(args.first().cloned().unwrap_or(Value::NoValue))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn run(t: &str, data: &Json) -> String {
        Template::parse(t)
            .unwrap()
            .render(data, Missing::NoValue)
            .unwrap()
    }

    /// Fields, `json` in the document's key order, Go's printing of lists and maps.
    #[test]
    fn fields_and_json_print_as_docker_does() {
        let d = json!({"Spec": {"Name": "web", "Labels": {"b": "2", "a": "1"},
            "Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080}]},
            "Args": ["sh", "-c", "x"], "Empty": null});
        assert_eq!(run("{{.Spec.Name}} x", &d), "web x");
        assert_eq!(
            run("{{json .Spec.Ports}}", &d),
            r#"[{"Protocol":"tcp","TargetPort":80,"PublishedPort":8080}]"#
        );
        assert_eq!(run("{{json .Spec.Labels}}", &d), r#"{"b":"2","a":"1"}"#);
        assert_eq!(run("{{.Spec.Labels}}", &d), "map[a:1 b:2]");
        assert_eq!(run("{{.Args}}", &d), "[sh -c x]");
        assert_eq!(run("{{.Empty}}|{{.Nope}}", &d), "<nil>|<no value>");
        assert_eq!(run("{{json .Nope}}", &d), "null");
        assert_eq!(run(r#"{{index .Spec.Labels "a"}}"#, &d), "1");
        assert_eq!(run("{{index .Args 1}}", &d), "-c");
        assert_eq!(run(r#"{{json "a<b"}}"#, &d), r#""a<b""#);
    }

    /// Control actions, variables, trim markers and a `}}` inside a string.
    #[test]
    fn control_actions_are_go_templates() {
        let d = json!({"Args": ["a", "b"], "On": true, "N": 2});
        assert_eq!(
            run("{{range $i, $a := .Args}}{{$i}}={{$a}} {{end}}", &d),
            "0=a 1=b "
        );
        assert_eq!(
            run("{{if .On}}on{{else}}off{{end}} {{- \" }}\" -}} x", &d),
            "on }}x"
        );
        assert_eq!(run("{{with .N}}{{.}}{{end}}{{/* note */}}", &d), "2");
        assert_eq!(run("{{$x := .N}}{{if eq $x 2}}two{{end}}", &d), "two");
        assert_eq!(run("{{println .N}}", &d), "2\n");
        assert_eq!(
            run(
                "{{- if not .On -}} a {{- else if eq .N 2 -}} b {{- end -}}",
                &d
            ),
            "b"
        );
        assert_eq!(run("{{len .Args}}", &d), "2");
    }

    /// Docker's functions.
    #[test]
    fn docker_functions() {
        let d = json!({"L": ["x", "y"], "M": {"k": "v2", "j": "v1"}, "S": "a,b", "E": ""});
        assert_eq!(run(r#"{{join .L ", "}}"#, &d), "x, y");
        assert_eq!(run(r#"{{join .M ","}}"#, &d), "v1,v2");
        assert_eq!(run(r#"{{split .S ","}}"#, &d), "[a b]");
        assert_eq!(run(r#"{{index (split .S ",") 1}}"#, &d), "b");
        assert_eq!(
            run(r#"{{upper "ab"}} {{lower "AB"}} {{title "ab cd"}}"#, &d),
            "AB ab Ab Cd"
        );
        assert_eq!(run(r#"[{{pad "a" 1 2}}][{{pad .E 1 2}}]"#, &d), "[ a  ][]");
        assert_eq!(
            run(r#"{{truncate "abcdef" 3}} {{truncate "ab" 3}}"#, &d),
            "abc ab"
        );
    }

    /// A bad template and a field a row does not have are errors, as docker's are.
    #[test]
    fn errors_name_the_template_problem() {
        let e = Template::parse("{{.Name").err().unwrap().to_string();
        assert!(e.starts_with("template parsing error"), "{e}");
        assert!(Template::parse("{{nosuchfunc .X}}").is_err());
        let row = json!({"Name": "web"});
        let t = Template::parse("{{.Nope}}").unwrap();
        let e = t.render(&row, Missing::Error).unwrap_err().to_string();
        assert_eq!(
            e,
            "template parsing error: can't evaluate field Nope (the fields are Name)"
        );
        assert_eq!(t.render(&row, Missing::NoValue).unwrap(), "<no value>");
    }

    #[test]
    fn header_functions_leave_the_header_alone() {
        let t =
            Template::parse_header(r"{{upper .Name}}|{{json .Name}}|{{pad .Name 1 1}}").unwrap();
        assert_eq!(
            t.render(&json!({"Name": "NAME"}), Missing::NoValue)
                .unwrap(),
            "NAME|NAME| NAME "
        );
    }
}
