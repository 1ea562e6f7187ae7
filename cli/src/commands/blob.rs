//! `meshctl secret` and `meshctl config` (create, ls, inspect, rm), with Docker's flags and
//! output. One implementation for both: they differ in their name, and in that `inspect` shows a
//! config's data and never a secret's.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use clap::Subcommand;
use mesh_api::{BlobCreate, BlobData, BlobInfo, BlobKind, Reply, Request, now_millis};
use mesh_cluster::naming::human_duration;
use serde_json::{Value, json};

use super::service::inspect::rfc3339;
use super::{Reported, Target, call, unexpected};
use crate::format::{FilterArg, Filters, ListFormat, parse_filter_arg, write_inspect, write_list};

#[derive(Subcommand, Debug)]
pub enum BlobCommand {
    /// Create from a file, or from standard input with `-`; prints the id.
    Create {
        /// Label (key=value).
        #[arg(long, short)]
        label: Vec<String>,
        name: String,
        /// A file, or `-` for standard input.
        file: String,
    },
    /// List them.
    #[command(alias = "list")]
    Ls {
        /// Only IDs.
        #[arg(long, short)]
        quiet: bool,
        /// `id=`, `label=KEY[=VALUE]`, `name=` (repeatable).
        #[arg(long, short, value_parser = parse_filter_arg)]
        filter: Vec<FilterArg>,
        /// A Go template such as '{{.Name}}' (`{{.ID}}`, `{{.Name}}`, `{{.CreatedAt}}`,
        /// `{{.UpdatedAt}}`, `{{.Labels}}`), 'table {{.ID}}\t{{.Name}}', or `json`.
        #[arg(long)]
        format: Option<String>,
    },
    /// Show them in detail (JSON, `--pretty`, or `--format`).
    Inspect {
        #[arg(long)]
        pretty: bool,
        #[arg(long, short)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove them (refused while a service uses one).
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// `key=value` labels.
fn labels(list: &[String]) -> Result<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    for l in list {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        if k.trim().is_empty() {
            bail!("invalid label {l:?}: expected key=value");
        }
        m.insert(k.to_owned(), v.to_owned());
    }
    Ok(m)
}

/// The data of `create`: the file, or standard input for `-`.
fn read_data(file: &str, stdin: &mut impl Read) -> Result<Vec<u8>> {
    if file == "-" {
        let mut data = Vec::new();
        stdin
            .read_to_end(&mut data)
            .context("reading standard input")?;
        return Ok(data);
    }
    std::fs::read(file).with_context(|| format!("reading {file}"))
}

/// A secret or config as `docker secret inspect` / `docker config inspect` prints it.
pub fn blob_json(b: &BlobInfo) -> Value {
    let mut spec = json!({"Name": b.name, "Labels": b.labels});
    if let Some(data) = &b.data {
        spec["Data"] = json!(base64::engine::general_purpose::STANDARD.encode(&data.0));
    }
    json!({
        "ID": b.id.as_str(),
        "Version": {"Index": b.meta.version},
        "CreatedAt": rfc3339(b.meta.created_at),
        "UpdatedAt": rfc3339(b.meta.updated_at),
        "Spec": spec,
    })
}

/// `inspect --pretty`, as Docker prints it.
pub fn pretty(b: &BlobInfo) -> String {
    use std::fmt::Write as _;
    let mut o = format!("ID:              {}\nName:              {}\n", b.id, b.name);
    if !b.labels.is_empty() {
        o.push_str("Labels:\n");
        for (k, v) in &b.labels {
            let _ = writeln!(o, " - {k}={v}");
        }
    }
    let _ = write!(
        o,
        "Driver:\nCreated at:        {}\nUpdated at:        {}\n",
        rfc3339(b.meta.created_at),
        rfc3339(b.meta.updated_at)
    );
    if let Some(data) = &b.data {
        let _ = writeln!(o, "Data:\n{}", String::from_utf8_lossy(&data.0));
    }
    o
}

fn ago(now: u64, at: u64) -> String {
    format!("{} ago", human_duration(now.saturating_sub(at)))
}

/// Docker's `secret ls` table.
const SECRET_LIST: ListFormat = ListFormat {
    table: "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.CreatedAt}}\t{{.UpdatedAt}}",
    headers: &[
        ("ID", "ID"),
        ("Name", "NAME"),
        ("Driver", "DRIVER"),
        ("CreatedAt", "CREATED"),
        ("UpdatedAt", "UPDATED"),
        ("Labels", "LABELS"),
    ],
};

/// Docker's `config ls` table (configs have no driver column).
const CONFIG_LIST: ListFormat = ListFormat {
    table: "table {{.ID}}\t{{.Name}}\t{{.CreatedAt}}\t{{.UpdatedAt}}",
    headers: SECRET_LIST.headers,
};

/// One row of `ls`, docker's fields.
fn ls_row(b: &BlobInfo, now: u64) -> Value {
    let labels: Vec<String> = b.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    json!({
        "ID": b.id.as_str(),
        "Name": b.name,
        "Driver": "",
        "CreatedAt": ago(now, b.meta.created_at),
        "UpdatedAt": ago(now, b.meta.updated_at),
        "Labels": labels.join(","),
    })
}

/// `ls`'s filters: `id` and `name` by prefix, `names` exactly, `label`.
fn blob_filters(args: &[FilterArg]) -> Result<Filters> {
    Filters::new(args, &["id", "label", "name", "names"])
}

fn blob_matches(f: &Filters, b: &BlobInfo) -> bool {
    f.any("id", |v| b.id.as_str().starts_with(v))
        && f.any("name", |v| b.name.starts_with(v))
        && f.any("names", |v| b.name == v)
        && f.labels_match(&b.labels)
}

pub fn run(target: &Target, kind: BlobKind, cmd: BlobCommand, out: &mut impl Write) -> Result<i32> {
    match cmd {
        BlobCommand::Create { label, name, file } => {
            let labels = labels(&label)?;
            let data = BlobData(read_data(&file, &mut std::io::stdin().lock())?);
            let req = Request::BlobCreate(BlobCreate {
                kind,
                name,
                labels,
                data,
            });
            match call(target, &req)? {
                Reply::BlobCreated { id } => writeln!(out, "{id}")?,
                other => return Err(unexpected(&other)),
            }
        }
        BlobCommand::Ls {
            quiet,
            filter,
            format,
        } => {
            let f = blob_filters(&filter)?;
            let reply = call(target, &Request::BlobList { kind })?;
            let Reply::Blobs(list) = reply else {
                return Err(unexpected(&reply));
            };
            let now = now_millis();
            let rows: Vec<Value> = list
                .iter()
                .filter(|b| blob_matches(&f, b))
                .map(|b| ls_row(b, now))
                .collect();
            let table = match kind {
                BlobKind::Secret => &SECRET_LIST,
                BlobKind::Config => &CONFIG_LIST,
            };
            write_list(out, table, format.as_deref(), quiet, &rows)?;
        }
        BlobCommand::Inspect {
            pretty: as_text,
            format,
            names,
        } => inspect(target, kind, as_text, format.as_deref(), &names, out)?,
        BlobCommand::Rm { names } => {
            let mut failed = Vec::new();
            for name in &names {
                match call(
                    target,
                    &Request::BlobRemove {
                        kind,
                        name: name.clone(),
                    },
                ) {
                    Ok(_) => writeln!(out, "{name}")?,
                    Err(e) => failed.push(e.to_string()),
                }
            }
            if !failed.is_empty() {
                return Err(Reported(failed.join("\n")).into());
            }
        }
    }
    Ok(0)
}

fn inspect(
    target: &Target,
    kind: BlobKind,
    as_text: bool,
    format: Option<&str>,
    names: &[String],
    out: &mut impl Write,
) -> Result<()> {
    let mut found = Vec::new();
    let mut first_error = None;
    for name in names {
        let req = Request::BlobInspect {
            kind,
            name: name.clone(),
        };
        match call(target, &req) {
            Ok(Reply::Blob(b)) => found.push(*b),
            Ok(other) => return Err(unexpected(&other)),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if as_text {
        let text: Vec<String> = found.iter().map(pretty).collect();
        write!(out, "{}", text.join("\n\n"))?;
    } else {
        let values: Vec<Value> = found.iter().map(blob_json).collect();
        write_inspect(out, format, &values)?;
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use mesh_cluster::Id;
    use mesh_cluster::state::Meta;

    use super::*;

    fn render(t: &str, v: &Value) -> Result<String> {
        crate::format::render_inspect(Some(t), std::slice::from_ref(v))
            .map(|s| s.trim_end_matches('\n').to_owned())
    }

    fn blob(data: Option<&[u8]>) -> BlobInfo {
        BlobInfo {
            id: Id::from("ktnbjxoalbkvbvedmg1urrz8h"),
            meta: Meta {
                version: 11,
                created_at: 1_519_799_123_718,
                updated_at: 1_519_799_123_718,
            },
            name: "db_password".into(),
            labels: BTreeMap::from([("env".to_owned(), "dev".to_owned())]),
            data: data.map(|d| BlobData(d.to_vec())),
        }
    }

    #[test]
    fn inspect_looks_like_dockers_and_shows_only_a_configs_data() {
        let secret = blob_json(&blob(None));
        assert_eq!(secret["Version"]["Index"], json!(11));
        assert_eq!(secret["Spec"]["Labels"]["env"], json!("dev"));
        assert!(secret["Spec"].get("Data").is_none());
        let config = blob_json(&blob(Some(b"listen 80;\n")));
        assert_eq!(config["Spec"]["Data"], json!("bGlzdGVuIDgwOwo="));
        assert_eq!(
            render("{{.Spec.Name}} {{.CreatedAt}}", &config).unwrap(),
            "db_password 2018-02-28T06:25:23.718000000Z"
        );
        let text = pretty(&blob(Some(b"listen 80;")));
        assert!(
            text.starts_with("ID:              ktnbjxoalbkvbvedmg1urrz8h\nName:"),
            "{text}"
        );
        assert!(
            text.contains(" - env=dev\n") && text.ends_with("Data:\nlisten 80;\n"),
            "{text}"
        );
        assert!(!pretty(&blob(None)).contains("Data:"));
    }

    #[test]
    fn ls_prints_full_ids_and_ages_and_create_reads_stdin() {
        let now = 1_519_799_123_718 + 90_000;
        let rows = [ls_row(&blob(None), now)];
        let text = crate::format::render_list(&SECRET_LIST, None, false, &rows).unwrap();
        assert!(
            text.starts_with("ID                          NAME          DRIVER    CREATED"),
            "{text}"
        );
        let text = crate::format::render_list(&CONFIG_LIST, None, false, &rows).unwrap();
        assert!(
            text.starts_with("ID                          NAME          CREATED"),
            "{text}"
        );
        assert!(
            text.contains("ktnbjxoalbkvbvedmg1urrz8h   db_password"),
            "{text}"
        );
        assert!(text.contains(" ago"), "{text}");
        assert_eq!(
            crate::format::render_list(&SECRET_LIST, Some("{{.Name}} {{.Labels}}"), false, &rows)
                .unwrap(),
            "db_password env=dev\n"
        );
        let args = |l: &[&str]| {
            l.iter()
                .map(|s| parse_filter_arg(s).unwrap())
                .collect::<Vec<_>>()
        };
        let f = blob_filters(&args(&["name=db", "label=env=dev", "id=ktnb"])).unwrap();
        assert!(blob_matches(&f, &blob(None)));
        let f = blob_filters(&args(&["names=db"])).unwrap();
        assert!(!blob_matches(&f, &blob(None)));
        assert!(blob_filters(&args(&["driver=x"])).is_err());
        assert_eq!(read_data("-", &mut &b"pw\n"[..]).unwrap(), b"pw\n");
        assert!(read_data("/nonexistent/file", &mut &b""[..]).is_err());
        assert!(labels(&["=x".into()]).is_err());
    }
}
