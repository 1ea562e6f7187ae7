//! Output as the docker CLI prints it, for every `ls`, `ps` and `inspect`: one place that turns
//! rows or documents and a `--format` into text.
//!
//! - A list command gives its rows (a JSON object per row, docker's field names: `ID`, `Name`,
//!   ...) and its [`ListFormat`] (docker's default table and each field's header). `--format`
//!   is a Go template ([`template`]); `table` before it adds the header (`{{.Name}}` -> `NAME`)
//!   and aligns the columns as docker's tabwriter ([`tabwriter`]); `json` is `{{json .}}`;
//!   `--quiet` is `{{.ID}}` unless a format is given.
//! - An inspect command gives its documents (docker's JSON): indented JSON by default, or the
//!   template run on each.
//!
//! Everything is rendered before the first byte is written: a template error prints nothing.

pub mod filter;
pub mod tabwriter;
pub mod template;

use std::io::Write;

use anyhow::Result;
use serde_json::Value;

pub use filter::{FilterArg, Filters, parse_filter_arg};
use template::{Missing, Template};

/// How one list command prints by default, as docker's formatter for it.
pub struct ListFormat {
    /// Docker's default `table ...` format.
    pub table: &'static str,
    /// Each field's column header.
    pub headers: &'static [(&'static str, &'static str)],
}

/// Docker's `-q`: the IDs.
const QUIET_FORMAT: &str = "{{.ID}}";

/// The template text of a `--format` (docker's `Format.templateString`): `table` taken off,
/// spaces trimmed, `\t` and `\n` written as such become a tab and a newline.
fn template_text(format: &str) -> String {
    let text = format.strip_prefix("table").unwrap_or(format);
    text.trim_matches(' ')
        .replace("\\t", "\t")
        .replace("\\n", "\n")
}

/// The format a list is printed with: `--format`, else the table (or the IDs with `-q`).
fn list_format<'a>(lf: &'a ListFormat, format: Option<&'a str>, quiet: bool) -> &'a str {
    match format {
        None | Some("" | "table") if quiet => QUIET_FORMAT,
        None | Some("" | "table") => lf.table,
        Some("json") => "{{json .}}",
        Some(f) => f,
    }
}

/// A row with its fields in name order (docker marshals a row as a Go map: sorted keys).
fn sorted(row: &Value) -> Value {
    match row {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), m[k].clone()))
                    .collect(),
            )
        }
        other => other.clone(),
    }
}

/// `rows` as the list's `--format` (or default table) lays them out.
pub fn render_list(
    lf: &ListFormat,
    format: Option<&str>,
    quiet: bool,
    rows: &[Value],
) -> Result<String> {
    let format = list_format(lf, format, quiet);
    let text = template_text(format);
    let tmpl = Template::parse(&text)?;
    let mut body = String::new();
    for row in rows {
        body.push_str(&tmpl.render(&sorted(row), Missing::Error)?);
        body.push('\n');
    }
    if !format.starts_with("table") {
        return Ok(body);
    }
    let headers: serde_json::Map<String, Value> = lf
        .headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
        .collect();
    let header =
        Template::parse_header(&text)?.render(&Value::Object(headers), Missing::NoValue)?;
    Ok(tabwriter::align(&format!("{header}\n{body}")))
}

/// Prints `rows` as the list's `--format` says.
pub fn write_list(
    out: &mut impl Write,
    lf: &ListFormat,
    format: Option<&str>,
    quiet: bool,
    rows: &[Value],
) -> Result<()> {
    out.write_all(render_list(lf, format, quiet, rows)?.as_bytes())?;
    Ok(())
}

/// `docs` as an inspect prints them: indented JSON, or `--format` on each (`json`: one line of
/// JSON each).
pub fn render_inspect(format: Option<&str>, docs: &[Value]) -> Result<String> {
    match format {
        None | Some("") => {
            let mut buf = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            serde::Serialize::serialize(docs, &mut ser)?;
            buf.push(b'\n');
            Ok(String::from_utf8(buf)?)
        }
        Some(f) => {
            let text = if f == "json" { "{{json .}}" } else { f };
            let tmpl = Template::parse(text)?;
            let mut out = String::new();
            for d in docs {
                out.push_str(&tmpl.render(d, Missing::NoValue)?);
                out.push('\n');
            }
            Ok(out)
        }
    }
}

/// Prints `docs` as the inspect's `--format` says.
pub fn write_inspect(out: &mut impl Write, format: Option<&str>, docs: &[Value]) -> Result<()> {
    out.write_all(render_inspect(format, docs)?.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SERVICES: ListFormat = ListFormat {
        table: "table {{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}",
        headers: &[
            ("ID", "ID"),
            ("Name", "NAME"),
            ("Mode", "MODE"),
            ("Replicas", "REPLICAS"),
            ("Image", "IMAGE"),
            ("Ports", "PORTS"),
        ],
    };

    fn rows() -> Vec<Value> {
        vec![
            json!({"ID": "abcdefghijkl", "Name": "web", "Mode": "replicated",
                "Replicas": "3/3", "Image": "nginx:1", "Ports": "*:8080->80/tcp"}),
            json!({"ID": "mnopqrstuvwx", "Name": "api", "Mode": "global",
                "Replicas": "2/2", "Image": "api:2", "Ports": ""}),
        ]
    }

    #[test]
    fn the_default_table_is_dockers() {
        assert_eq!(
            render_list(&SERVICES, None, false, &rows()).unwrap(),
            "ID             NAME      MODE         REPLICAS   IMAGE     PORTS\n\
             abcdefghijkl   web       replicated   3/3        nginx:1   *:8080->80/tcp\n\
             mnopqrstuvwx   api       global       2/2        api:2     \n"
        );
        assert_eq!(
            render_list(&SERVICES, None, false, &[]).unwrap(),
            "ID        NAME      MODE      REPLICAS   IMAGE     PORTS\n"
        );
    }

    #[test]
    fn formats_quiet_json_and_tables_of_chosen_fields() {
        let r = rows();
        assert_eq!(
            render_list(&SERVICES, Some("{{.Name}} {{.Replicas}}"), false, &r).unwrap(),
            "web 3/3\napi 2/2\n"
        );
        assert_eq!(
            render_list(&SERVICES, None, true, &r).unwrap(),
            "abcdefghijkl\nmnopqrstuvwx\n"
        );
        // A format wins over -q, as docker's.
        assert_eq!(
            render_list(&SERVICES, Some("{{.Name}}"), true, &r).unwrap(),
            "web\napi\n"
        );
        assert_eq!(
            render_list(&SERVICES, Some("table {{.Name}}\\t{{.Image}}"), false, &r).unwrap(),
            "NAME      IMAGE\nweb       nginx:1\napi       api:2\n"
        );
        let json = render_list(&SERVICES, Some("json"), false, &r[..1]).unwrap();
        assert_eq!(
            json,
            "{\"ID\":\"abcdefghijkl\",\"Image\":\"nginx:1\",\"Mode\":\"replicated\",\"Name\":\"web\",\"Ports\":\"*:8080->80/tcp\",\"Replicas\":\"3/3\"}\n"
        );
    }

    /// A field the rows do not have is an error and nothing is printed.
    #[test]
    fn a_bad_field_prints_nothing() {
        let mut out = Vec::new();
        let e = write_list(
            &mut out,
            &SERVICES,
            Some("{{.Name}} {{.Nope}}"),
            false,
            &rows(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("Nope"), "{e}");
        assert!(out.is_empty());
    }

    #[test]
    fn inspect_prints_json_or_the_template_on_each() {
        let docs = vec![json!({"ID": "x", "Spec": {"Name": "web"}})];
        assert_eq!(
            render_inspect(None, &docs).unwrap(),
            "[\n    {\n        \"ID\": \"x\",\n        \"Spec\": {\n            \"Name\": \"web\"\n        }\n    }\n]\n"
        );
        assert_eq!(
            render_inspect(Some("{{.Spec.Name}}"), &docs).unwrap(),
            "web\n"
        );
        assert_eq!(
            render_inspect(Some("json"), &docs).unwrap(),
            "{\"ID\":\"x\",\"Spec\":{\"Name\":\"web\"}}\n"
        );
    }
}
