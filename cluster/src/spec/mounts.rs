//! `--mount` as the docker CLI reads it: CSV fields (`type=volume,source=data,target=/data,ro`),
//! then the checks Swarm makes of a mount (absolute targets, a bind's absolute source, a tmpfs
//! without source, each kind's own options, no target twice).

use std::collections::{BTreeMap, BTreeSet};

use super::SpecError;
use super::limits::MAX_MOUNTS;
use super::units::{format_memory, parse_memory};
use crate::state::{Mount, MountKind};

/// What `--mount` accepts, quoted in every refusal.
const ACCEPTED: &str = "expected comma-separated fields type=volume|bind|tmpfs (default volume), \
     source=|src=NAME-OR-PATH, target=|destination=|dst=/PATH, readonly|ro[=true|false], \
     volume-driver=DRIVER, volume-label=KEY=VALUE, volume-opt=KEY=VALUE, volume-nocopy[=true|false] \
     (type volume), bind-propagation=private|rprivate|shared|rshared|slave|rslave (type bind), \
     tmpfs-size=SIZE, tmpfs-mode=OCTAL (type tmpfs)";

const KINDS: &[(&str, MountKind)] = &[
    ("volume", MountKind::Volume),
    ("bind", MountKind::Bind),
    ("tmpfs", MountKind::Tmpfs),
];

/// The propagation modes of a bind, as Docker names them.
pub const BIND_PROPAGATIONS: &[&str] = &[
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

impl MountKind {
    /// `volume`, `bind` or `tmpfs`, as `inspect` prints the type.
    pub fn as_str(self) -> &'static str {
        KINDS
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("", |(n, _)| n)
    }
}

/// Splits one CSV record as Go's `encoding/csv` does (the docker CLI reads `--mount` with it):
/// commas separate fields, a field may be quoted with `"` and a quote inside doubled.
fn csv_fields(input: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("a quoted field is not closed with '\"'".into()),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            if !matches!(chars.peek(), None | Some(',')) {
                return Err(format!(
                    "extraneous text after the quoted field \"{field}\""
                ));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '"' {
                    return Err("a '\"' inside a field that does not start with one".into());
                }
                field.push(c);
                chars.next();
            }
        }
        fields.push(field);
        if chars.next().is_none() {
            return Ok(fields);
        }
    }
}

/// Go's `strconv.ParseBool`, which the docker CLI uses for `readonly=` and `volume-nocopy=`.
fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!(
            "invalid value for {key}: {value:?} (expected true, false, 1 or 0)"
        )),
    }
}

/// `KEY=VALUE` (or `KEY`, an empty value) into `map`, as the docker CLI fills labels and options.
fn set_on_map(map: &mut BTreeMap<String, String>, key: &str, value: &str) -> Result<(), String> {
    let (k, v) = value.split_once('=').unwrap_or((value, ""));
    if k.is_empty() {
        return Err(format!(
            "{key}={value}: the key is empty (expected {key}=KEY=VALUE)"
        ));
    }
    map.insert(k.to_owned(), v.to_owned());
    Ok(())
}

/// Sets one `key=value` field on `m`.
fn set_field(m: &mut Mount, key: &str, value: &str) -> Result<(), String> {
    match key {
        "type" => {
            let v = value.to_ascii_lowercase();
            m.kind = KINDS
                .iter()
                .find(|(n, _)| *n == v)
                .map(|(_, k)| *k)
                .ok_or_else(|| {
                    format!("unknown type {value:?} (expected volume, bind or tmpfs)")
                })?;
        }
        "source" | "src" => value.clone_into(&mut m.source),
        "target" | "destination" | "dst" => value.clone_into(&mut m.target),
        "readonly" | "ro" => m.readonly = parse_bool(key, value)?,
        "volume-driver" => value.clone_into(&mut m.volume_driver),
        "volume-label" => set_on_map(&mut m.volume_labels, key, value)?,
        "volume-opt" => set_on_map(&mut m.volume_opts, key, value)?,
        "volume-nocopy" => m.volume_nocopy = parse_bool(key, value)?,
        "bind-propagation" => m.bind_propagation = value.to_ascii_lowercase(),
        "tmpfs-size" => {
            m.tmpfs_size_bytes = parse_memory(value).map_err(|_| {
                format!("invalid value for tmpfs-size: {value:?} (expected a size such as 64m)")
            })?;
        }
        "tmpfs-mode" => {
            m.tmpfs_mode = u32::from_str_radix(value, 8).map_err(|_| {
                format!(
                    "invalid value for tmpfs-mode: {value:?} (expected an octal mode such as 1770)"
                )
            })?;
        }
        _ => return Err(format!("unexpected key {key:?}")),
    }
    Ok(())
}

/// One `--mount` value, as the docker CLI parses it, then checked as Swarm checks a mount.
pub fn parse_mount(input: &str) -> Result<Mount, SpecError> {
    let bad = |why: String| SpecError::new(format!("invalid --mount {input:?}: {why}; {ACCEPTED}"));
    if input.trim().is_empty() {
        return Err(bad("it is empty".into()));
    }
    let mut m = Mount::default();
    for field in csv_fields(input).map_err(bad)? {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        match (key.as_str(), value) {
            ("readonly" | "ro", None) => m.readonly = true,
            ("volume-nocopy", None) => m.volume_nocopy = true,
            (_, None) => {
                return Err(bad(format!(
                    "invalid field {field:?}: it must be a key=value pair"
                )));
            }
            (key, Some(value)) => set_field(&mut m, key, value).map_err(bad)?,
        }
    }
    check_mount(&m).map_err(bad)?;
    Ok(m)
}

/// Quotes a CSV field when it needs it.
fn csv_quote(field: &str) -> String {
    if field.contains([',', '"']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// The `--mount` value that parses back to `m`.
pub fn format_mount(m: &Mount) -> String {
    let mut fields = vec![format!("type={}", m.kind.as_str())];
    if !m.source.is_empty() {
        fields.push(format!("source={}", m.source));
    }
    fields.push(format!("target={}", m.target));
    if m.readonly {
        fields.push("readonly".into());
    }
    if !m.volume_driver.is_empty() {
        fields.push(format!("volume-driver={}", m.volume_driver));
    }
    for (k, v) in &m.volume_labels {
        fields.push(format!("volume-label={k}={v}"));
    }
    for (k, v) in &m.volume_opts {
        fields.push(format!("volume-opt={k}={v}"));
    }
    if m.volume_nocopy {
        fields.push("volume-nocopy".into());
    }
    if !m.bind_propagation.is_empty() {
        fields.push(format!("bind-propagation={}", m.bind_propagation));
    }
    if m.tmpfs_size_bytes != 0 {
        fields.push(format!("tmpfs-size={}", format_memory(m.tmpfs_size_bytes)));
    }
    if m.tmpfs_mode != 0 {
        fields.push(format!("tmpfs-mode={:o}", m.tmpfs_mode));
    }
    fields
        .iter()
        .map(|f| csv_quote(f))
        .collect::<Vec<_>>()
        .join(",")
}

/// Docker's rule for a `local` volume's name.
fn is_local_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// What is wrong with one mount, if anything (Swarm's and the docker CLI's checks).
fn check_mount(m: &Mount) -> Result<(), String> {
    if m.target.is_empty() {
        return Err("target is required".into());
    }
    if !m.target.starts_with('/') {
        return Err(format!("target {:?} must be an absolute path", m.target));
    }
    let has_volume_options = !m.volume_driver.is_empty()
        || !m.volume_labels.is_empty()
        || !m.volume_opts.is_empty()
        || m.volume_nocopy;
    let kind = m.kind.as_str();
    if has_volume_options && m.kind != MountKind::Volume {
        return Err(format!(
            "cannot mix 'volume-*' options with mount type '{kind}'"
        ));
    }
    if !m.bind_propagation.is_empty() && m.kind != MountKind::Bind {
        return Err(format!(
            "cannot mix 'bind-*' options with mount type '{kind}'"
        ));
    }
    if (m.tmpfs_size_bytes != 0 || m.tmpfs_mode != 0) && m.kind != MountKind::Tmpfs {
        return Err(format!(
            "cannot mix 'tmpfs-*' options with mount type '{kind}'"
        ));
    }
    match m.kind {
        MountKind::Bind => {
            if !m.source.starts_with('/') {
                return Err(format!(
                    "a bind mount needs an absolute source path on the node, not {:?}",
                    m.source
                ));
            }
            if !m.bind_propagation.is_empty()
                && !BIND_PROPAGATIONS.contains(&m.bind_propagation.as_str())
            {
                return Err(format!(
                    "invalid bind-propagation {:?} (expected {})",
                    m.bind_propagation,
                    BIND_PROPAGATIONS.join(", ")
                ));
            }
        }
        MountKind::Volume => {
            let local = matches!(m.volume_driver.as_str(), "" | "local");
            if m.source.starts_with('/') {
                return Err(format!(
                    "a volume's source is its name, not a path ({:?}); use type=bind for a host path",
                    m.source
                ));
            }
            if local && !m.source.is_empty() && !is_local_volume_name(&m.source) {
                return Err(format!(
                    "invalid volume name {:?}: at least two characters, letters, digits, '_', '.' \
                     or '-', starting with a letter or digit",
                    m.source
                ));
            }
        }
        MountKind::Tmpfs => {
            if !m.source.is_empty() {
                return Err(format!(
                    "a tmpfs mount takes no source (got {:?})",
                    m.source
                ));
            }
            if m.tmpfs_size_bytes < 0 {
                return Err("tmpfs-size cannot be negative".into());
            }
            if m.tmpfs_mode > 0o7777 {
                return Err(format!(
                    "tmpfs-mode {:o} is not a file mode (at most 7777)",
                    m.tmpfs_mode
                ));
            }
        }
    }
    Ok(())
}

/// Checks a task's mounts: each as [`parse_mount`] does, no target twice, at most
/// [`MAX_MOUNTS`].
pub fn check_mounts(mounts: &[Mount]) -> Result<(), SpecError> {
    if mounts.len() > MAX_MOUNTS {
        return Err(SpecError::new(format!(
            "too many mounts: {} given, at most {MAX_MOUNTS} are accepted",
            mounts.len()
        )));
    }
    let mut targets = BTreeSet::new();
    for m in mounts {
        check_mount(m).map_err(|why| {
            SpecError::new(format!(
                "invalid mount {:?}: {why}; {ACCEPTED}",
                format_mount(m)
            ))
        })?;
        if !targets.insert(m.target.trim_end_matches('/')) {
            return Err(SpecError::new(format!(
                "invalid mount: duplicate mount target {:?} (each target may be mounted once)",
                m.target
            )));
        }
    }
    Ok(())
}

/// `service update --mount-add ... --mount-rm TARGET`, as docker applies them: an added mount
/// replaces the one at its target, a removed target goes (also one just added), and the result
/// is sorted by source, then target.
pub fn update_mounts(
    current: &[Mount],
    add: &[Mount],
    rm: &[String],
) -> Result<Vec<Mount>, SpecError> {
    let mut by_target: BTreeMap<&str, &Mount> = BTreeMap::new();
    for m in add {
        if by_target.insert(m.target.as_str(), m).is_some() {
            return Err(SpecError::new(format!(
                "invalid --mount-add: duplicate mount target {:?} (each target may be added once)",
                m.target
            )));
        }
    }
    for m in current {
        by_target.entry(m.target.as_str()).or_insert(m);
    }
    let mut out: Vec<Mount> = by_target
        .into_values()
        .filter(|m| !rm.contains(&m.target))
        .cloned()
        .collect();
    out.sort_by(|a, b| (&a.source, &a.target).cmp(&(&b.source, &b.target)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::TestRng;

    fn volume(source: &str, target: &str) -> Mount {
        Mount {
            source: source.into(),
            target: target.into(),
            ..Mount::default()
        }
    }

    /// Each row: a value users type and the mount docker makes of it.
    #[test]
    fn mounts_parse_as_docker_reads_them() {
        let labelled = Mount {
            volume_driver: "local".into(),
            volume_labels: [
                ("tier".to_owned(), "db".to_owned()),
                ("x".to_owned(), String::new()),
            ]
            .into(),
            volume_opts: [("o".to_owned(), "size=1g,uid=0".to_owned())].into(),
            volume_nocopy: true,
            ..volume("data", "/var/lib/data")
        };
        let rows: Vec<(&str, &str, Mount)> = vec![
            (
                "the default type is volume",
                "source=registry,target=/var/lib/registry",
                volume("registry", "/var/lib/registry"),
            ),
            (
                "src and dst are aliases",
                "src=v1,dst=/d",
                volume("v1", "/d"),
            ),
            (
                "destination is an alias",
                "type=volume,destination=/d",
                volume("", "/d"),
            ),
            (
                "a bare readonly is true",
                "source=v1,target=/d,readonly",
                Mount {
                    readonly: true,
                    ..volume("v1", "/d")
                },
            ),
            (
                "ro takes Go's booleans",
                "source=v1,target=/d,ro=1",
                Mount {
                    readonly: true,
                    ..volume("v1", "/d")
                },
            ),
            (
                "readonly=false is writable",
                "source=v1,target=/d,readonly=false",
                volume("v1", "/d"),
            ),
            (
                "keys and the type are case-insensitive",
                "TYPE=Volume,Source=v1,Target=/d",
                volume("v1", "/d"),
            ),
            (
                "volume options, a quoted field with a comma",
                "type=volume,source=data,target=/var/lib/data,volume-driver=local,volume-label=tier=db,volume-label=x,\"volume-opt=o=size=1g,uid=0\",volume-nocopy",
                labelled,
            ),
            (
                "a bind with propagation",
                "type=bind,source=/srv/www,target=/www,bind-propagation=RSlave,ro",
                Mount {
                    kind: MountKind::Bind,
                    readonly: true,
                    bind_propagation: "rslave".into(),
                    ..volume("/srv/www", "/www")
                },
            ),
            (
                "a tmpfs with size and octal mode",
                "type=tmpfs,target=/cache,tmpfs-size=64m,tmpfs-mode=1770",
                Mount {
                    kind: MountKind::Tmpfs,
                    tmpfs_size_bytes: 64 << 20,
                    tmpfs_mode: 0o1770,
                    ..volume("", "/cache")
                },
            ),
        ];
        for (intent, input, want) in rows {
            let got = parse_mount(input).unwrap_or_else(|e| panic!("{intent}: {input:?}: {e}"));
            assert_eq!(got, want, "{intent}: {input:?}");
            let again =
                parse_mount(&format_mount(&got)).unwrap_or_else(|e| panic!("{intent}: {e}"));
            assert_eq!(
                again,
                got,
                "{intent}: {:?} does not parse back",
                format_mount(&got)
            );
        }
    }

    /// Each row: a bad value and the words the refusal must contain (it always lists the forms).
    #[test]
    fn bad_mounts_are_refused_naming_the_field() {
        let rows = [
            ("empty", "", "it is empty"),
            ("no target", "source=v1", "target is required"),
            (
                "relative target",
                "source=v1,target=data",
                "must be an absolute path",
            ),
            (
                "unknown key",
                "source=v1,target=/d,size=1",
                "unexpected key \"size\"",
            ),
            (
                "a bare unknown word",
                "source=v1,target=/d,nocopy",
                "must be a key=value pair",
            ),
            (
                "unknown type",
                "type=npipe,target=/d",
                "unknown type \"npipe\"",
            ),
            (
                "bad boolean",
                "target=/d,readonly=yes",
                "invalid value for readonly",
            ),
            (
                "relative bind source",
                "type=bind,source=./www,target=/www",
                "absolute source path",
            ),
            (
                "bind without source",
                "type=bind,target=/www",
                "absolute source path",
            ),
            (
                "tmpfs with source",
                "type=tmpfs,source=x,target=/t",
                "takes no source",
            ),
            (
                "volume option on bind",
                "type=bind,source=/a,target=/b,volume-nocopy",
                "'volume-*'",
            ),
            (
                "bind option on volume",
                "source=v,target=/b,bind-propagation=shared",
                "'bind-*'",
            ),
            (
                "tmpfs option on volume",
                "source=v,target=/b,tmpfs-size=1m",
                "'tmpfs-*'",
            ),
            (
                "bad propagation",
                "type=bind,source=/a,target=/b,bind-propagation=up",
                "invalid bind-propagation",
            ),
            (
                "bad tmpfs size",
                "type=tmpfs,target=/t,tmpfs-size=lots",
                "tmpfs-size",
            ),
            (
                "decimal digits in the mode",
                "type=tmpfs,target=/t,tmpfs-mode=999",
                "tmpfs-mode",
            ),
            (
                "mode past 7777",
                "type=tmpfs,target=/t,tmpfs-mode=17777",
                "not a file mode",
            ),
            (
                "a path as volume name",
                "source=/srv,target=/d",
                "use type=bind",
            ),
            (
                "bad local volume name",
                "source=a,target=/d",
                "invalid volume name",
            ),
            ("unclosed quote", "\"source=v,target=/d", "not closed"),
            ("stray quote", "source=v\"x,target=/d", "'\"'"),
            (
                "empty label key",
                "target=/d,volume-label==x",
                "the key is empty",
            ),
        ];
        for (intent, input, want) in rows {
            let e = parse_mount(input).expect_err(intent).to_string();
            assert!(e.contains(want), "{intent}: {e}");
            assert!(
                e.contains("type=volume|bind|tmpfs"),
                "{intent}: no accepted forms in {e}"
            );
        }
    }

    /// Parse, display, parse again: the same mount, for made-up mounts and for whatever noise
    /// happens to parse.
    #[test]
    fn mounts_round_trip() {
        let mut rng = TestRng::new(13);
        let words = ["v1", "data", "a,b", "q\"uote", "/srv", "/x/y", "k=v", ""];
        for _ in 0..2_000 {
            let mut m = Mount {
                kind: *rng.pick(&[MountKind::Volume, MountKind::Bind, MountKind::Tmpfs]),
                target: format!("/{}", rng.noise(b"abc/", 6)),
                readonly: rng.below(2) == 1,
                ..Mount::default()
            };
            match m.kind {
                MountKind::Volume => {
                    m.source = (*rng.pick(&["", "v1", "data.x"])).into();
                    m.volume_driver = (*rng.pick(&["", "local"])).into();
                    let (k, v) = (*rng.pick(&words), *rng.pick(&words));
                    if !k.is_empty() && !k.contains('=') {
                        m.volume_opts.insert(k.into(), v.into());
                        m.volume_labels.insert(k.into(), v.into());
                    }
                    m.volume_nocopy = rng.below(2) == 1;
                }
                MountKind::Bind => {
                    m.source = format!("/{}", rng.noise(b"ab,/", 6));
                    m.bind_propagation = (*rng.pick(&["", "rslave", "shared"])).into();
                }
                MountKind::Tmpfs => {
                    m.tmpfs_size_bytes = rng.below(4).cast_signed() << (10 * rng.below(4));
                    m.tmpfs_mode = rng.below(0o10000) as u32;
                }
            }
            assert_eq!(
                parse_mount(&format_mount(&m)),
                Ok(m.clone()),
                "{:?}",
                format_mount(&m)
            );
        }
        for _ in 0..crate::spec::fuzz_cases(5_000) {
            let s = rng.noise(b"typevolumbindtmpfs=,/srcdtargeo\"rly-17m ", 40);
            if let Ok(m) = parse_mount(&s) {
                assert_eq!(parse_mount(&format_mount(&m)), Ok(m), "{s:?}");
            }
        }
    }

    #[test]
    fn a_task_mounts_each_target_once() {
        let ok = [volume("a1", "/a"), volume("b1", "/b")];
        check_mounts(&ok).unwrap();
        let twice = [volume("a1", "/a"), volume("b1", "/a/")];
        let e = check_mounts(&twice).unwrap_err().to_string();
        assert!(e.contains("duplicate mount target"), "{e}");
        let many: Vec<Mount> = (0..=MAX_MOUNTS)
            .map(|i| volume("vv", &format!("/m{i}")))
            .collect();
        let e = check_mounts(&many).unwrap_err().to_string();
        assert!(e.contains("too many mounts"), "{e}");
        let mixed = [Mount {
            kind: MountKind::Tmpfs,
            volume_nocopy: true,
            ..volume("", "/t")
        }];
        let e = check_mounts(&mixed).unwrap_err().to_string();
        assert!(e.contains("'volume-*'"), "{e}");
    }

    #[test]
    fn updates_replace_by_target_and_remove_by_target() {
        let current = [volume("zz", "/z"), volume("aa", "/a")];
        let add = [volume("bb", "/a"), volume("cc", "/c")];
        let got = update_mounts(&current, &add, &["/z".into()]).unwrap();
        assert_eq!(got, [volume("bb", "/a"), volume("cc", "/c")]);
        let got = update_mounts(&current, &[], &["/c".into()]).unwrap();
        assert_eq!(got, [volume("aa", "/a"), volume("zz", "/z")]);
        let e =
            update_mounts(&current, &[volume("x1", "/x"), volume("x2", "/x")], &[]).unwrap_err();
        assert!(e.to_string().contains("duplicate mount target"), "{e}");
    }
}
