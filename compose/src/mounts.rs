//! A service's `volumes`: the short form `SOURCE:TARGET[:MODE]` (a volume key, a host path, or
//! a lone target for an anonymous volume) and the long form (`type`, `source`, `target`,
//! `read_only`, `volume.nocopy`, `bind.propagation`, `tmpfs.size`).

use serde_norway::Value;

use crate::error::ComposeError;
use crate::model::VolumeMount;
use crate::yaml::{At, known_keys};

const PROPAGATIONS: &[&str] = &[
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];
const SHORT_ACCEPTED: &str = "expected VOLUME:/PATH, /HOST/PATH:/PATH or /PATH, optionally \
                              followed by :ro, :rw, :nocopy or a bind propagation";

pub(crate) fn read_volumes(at: At) -> Result<Vec<VolumeMount>, ComposeError> {
    let mut out = Vec::new();
    for (v, path) in at.items()? {
        let item = At {
            value: v,
            path: &path,
        };
        out.push(if matches!(v, Value::Mapping(_)) {
            long_volume(item)?
        } else {
            short_volume(item)?
        });
    }
    Ok(out)
}

/// A host path, as compose tells one from a volume name.
pub(crate) fn is_host_path(source: &str) -> bool {
    source.starts_with('/') || source.starts_with('.') || source.starts_with('~')
}

fn short_volume(at: At) -> Result<VolumeMount, ComposeError> {
    let text = at.string()?;
    let bad = |why: &str| at.err(format!("invalid volume {text:?}: {why}; {SHORT_ACCEPTED}"));
    let parts: Vec<&str> = text.split(':').collect();
    let mut m = VolumeMount {
        kind: "volume".into(),
        ..VolumeMount::default()
    };
    let mode = match parts.as_slice() {
        [target] => {
            (*target).clone_into(&mut m.target);
            None
        }
        [source, target] => {
            (m.source, m.target) = ((*source).to_owned(), (*target).to_owned());
            None
        }
        [source, target, mode] => {
            (m.source, m.target) = ((*source).to_owned(), (*target).to_owned());
            Some(*mode)
        }
        _ => return Err(bad("too many ':'")),
    };
    if !m.target.starts_with('/') {
        return Err(bad("the target is not an absolute path"));
    }
    if is_host_path(&m.source) {
        m.kind = "bind".into();
    }
    for option in mode.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        match option {
            "ro" => m.read_only = true,
            "rw" => m.read_only = false,
            "nocopy" if m.kind == "volume" => m.nocopy = true,
            p if PROPAGATIONS.contains(&p) && m.kind == "bind" => p.clone_into(&mut m.propagation),
            other => {
                return Err(bad(&format!(
                    "unknown mode {other:?} for a {} mount",
                    m.kind
                )));
            }
        }
    }
    Ok(m)
}

fn long_volume(at: At) -> Result<VolumeMount, ComposeError> {
    let mut m = VolumeMount::default();
    let keys = [
        "type",
        "source",
        "target",
        "read_only",
        "volume",
        "bind",
        "tmpfs",
    ];
    for (key, v, path) in known_keys(at, &keys, &["consistency"], &mut Vec::new())? {
        let f = At {
            value: v,
            path: &path,
        };
        match key.as_str() {
            "type" => m.kind = f.string()?,
            "source" => m.source = f.string()?,
            "target" => m.target = f.string()?,
            "read_only" => m.read_only = f.bool()?,
            "volume" => {
                for (_, v, path) in known_keys(f, &["nocopy"], &[], &mut Vec::new())? {
                    m.nocopy = At {
                        value: v,
                        path: &path,
                    }
                    .bool()?;
                }
            }
            "bind" => {
                for (_, v, path) in
                    known_keys(f, &["propagation"], &["create_host_path"], &mut Vec::new())?
                {
                    m.propagation = At {
                        value: v,
                        path: &path,
                    }
                    .string()?;
                }
            }
            _ => {
                for (_, v, path) in known_keys(f, &["size"], &[], &mut Vec::new())? {
                    m.tmpfs_size = Some(
                        At {
                            value: v,
                            path: &path,
                        }
                        .string()?,
                    );
                }
            }
        }
    }
    if !["volume", "bind", "tmpfs"].contains(&m.kind.as_str()) {
        return Err(at.err(format!(
            "invalid mount type {:?}: expected type: volume, bind or tmpfs",
            m.kind
        )));
    }
    if !m.target.starts_with('/') {
        return Err(at.err("a long-form volume needs target: /ABSOLUTE/PATH"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short(text: &str) -> Result<VolumeMount, ComposeError> {
        let v = Value::String(text.into());
        short_volume(At {
            value: &v,
            path: "services.db.volumes[0]",
        })
    }

    #[test]
    fn short_volumes_read_as_compose_reads_them() {
        // (intent, input, kind, source, target, read_only)
        let rows = [
            (
                "a named volume",
                "data:/var/lib/mysql",
                "volume",
                "data",
                "/var/lib/mysql",
                false,
            ),
            (
                "a read-only bind",
                "/etc/app:/etc/app:ro",
                "bind",
                "/etc/app",
                "/etc/app",
                true,
            ),
            (
                "a relative bind",
                "./site:/www",
                "bind",
                "./site",
                "/www",
                false,
            ),
            (
                "an anonymous volume",
                "/cache",
                "volume",
                "",
                "/cache",
                false,
            ),
        ];
        for (intent, input, kind, source, target, ro) in rows {
            let m = short(input).unwrap_or_else(|e| panic!("{intent}: {e}"));
            assert_eq!(
                (
                    m.kind.as_str(),
                    m.source.as_str(),
                    m.target.as_str(),
                    m.read_only
                ),
                (kind, source, target, ro),
                "{intent}"
            );
        }
    }

    #[test]
    fn bad_short_volumes_say_what_is_accepted() {
        for (intent, input) in [
            ("a relative target", "data:var"),
            ("an unknown mode", "data:/x:rx"),
            ("propagation on a volume", "data:/x:rshared"),
            ("too many parts", "a:/b:ro:x"),
        ] {
            let e = short(input).unwrap_err();
            assert!(e.message.contains("expected VOLUME:/PATH"), "{intent}: {e}");
        }
    }
}
