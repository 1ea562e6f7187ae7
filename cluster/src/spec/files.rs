//! `--secret` and `--config` (and their `-add`/`-rm` on update), as the docker CLI parses them:
//! `NAME`, or `source=NAME[,target=PATH][,uid=N][,gid=N][,mode=0440]`.

use super::SpecError;
use crate::state::FileReference;

/// Where a secret is, unless its target is absolute.
pub const SECRETS_DIR: &str = "/run/secrets";
/// Docker's default file mode for both.
pub const DEFAULT_FILE_MODE: u32 = 0o444;

/// `--secret SPEC` (`what` = "secret") or `--config SPEC` (`what` = "config").
pub fn parse_file_reference(what: &str, input: &str) -> Result<FileReference, SpecError> {
    let accepted = "expected NAME or source=NAME[,target=PATH][,uid=N][,gid=N][,mode=0444]";
    let bad =
        |why: String| SpecError::new(format!("invalid --{what} {input:?}: {why}; {accepted}"));
    let mut r = FileReference {
        id: crate::Id::from(""),
        name: String::new(),
        target: String::new(),
        uid: "0".into(),
        gid: "0".into(),
        mode: DEFAULT_FILE_MODE,
    };
    if input.contains('=') {
        for field in input.split(',') {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| bad(format!("{field:?} is not key=value")))?;
            match k.trim().to_ascii_lowercase().as_str() {
                "source" | "src" => v.clone_into(&mut r.name),
                "target" => v.clone_into(&mut r.target),
                "uid" => r.uid = numeric("uid", v).map_err(&bad)?,
                "gid" => r.gid = numeric("gid", v).map_err(&bad)?,
                "mode" => {
                    r.mode = u32::from_str_radix(v.trim_start_matches("0o"), 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| bad(format!("mode {v:?} is not an octal file mode")))?;
                }
                other => return Err(bad(format!("unknown key {other:?}"))),
            }
        }
    } else {
        input.trim().clone_into(&mut r.name);
    }
    if r.name.is_empty() {
        return Err(bad("no source name".into()));
    }
    if r.target.is_empty() {
        r.target.clone_from(&r.name);
    }
    if r.target.split('/').any(|c| c == "..") || r.target.contains('\0') {
        return Err(bad(format!("target {:?} may not contain '..'", r.target)));
    }
    Ok(r)
}

fn numeric(what: &str, v: &str) -> Result<String, String> {
    if !v.is_empty() && v.len() <= 10 && v.bytes().all(|b| b.is_ascii_digit()) {
        Ok(v.to_owned())
    } else {
        Err(format!("{what} {v:?} is not a number"))
    }
}

/// The path inside the container: a secret under [`SECRETS_DIR`], a config under `/`, unless
/// the target is absolute.
pub fn container_path(secret: bool, target: &str) -> String {
    if target.starts_with('/') {
        target.to_owned()
    } else if secret {
        format!("{SECRETS_DIR}/{target}")
    } else {
        format!("/{target}")
    }
}

/// `--secret-add`/`--secret-rm` (or the config pair) on `list`: removals by name, then
/// additions replacing one at the same target.
pub fn update_file_references(list: &mut Vec<FileReference>, add: &[FileReference], rm: &[String]) {
    list.retain(|r| !rm.contains(&r.name));
    for a in add {
        list.retain(|r| r.target != a.target);
        list.push(a.clone());
    }
}

/// Two references to one path in the container are refused.
pub fn check_file_targets(
    secrets: &[FileReference],
    configs: &[FileReference],
) -> Result<(), SpecError> {
    let mut seen = std::collections::BTreeSet::new();
    let all = secrets
        .iter()
        .map(|r| container_path(true, &r.target))
        .chain(configs.iter().map(|r| container_path(false, &r.target)));
    for path in all {
        if !seen.insert(path.clone()) {
            return Err(SpecError::new(format!(
                "duplicate secret or config target {path}: each needs its own path"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_forms_parse_as_docker() {
        let r = parse_file_reference("secret", "db_password").unwrap();
        assert_eq!(
            (r.name.as_str(), r.target.as_str(), r.uid.as_str(), r.mode),
            ("db_password", "db_password", "0", 0o444)
        );
        let r = parse_file_reference(
            "secret",
            "source=db,target=/etc/db.pw,uid=999,gid=998,mode=0400",
        )
        .unwrap();
        assert_eq!(
            (
                r.name.as_str(),
                r.target.as_str(),
                r.uid.as_str(),
                r.gid.as_str(),
                r.mode
            ),
            ("db", "/etc/db.pw", "999", "998", 0o400)
        );
        assert_eq!(
            parse_file_reference("config", "src=site").unwrap().target,
            "site"
        );
        assert_eq!(container_path(true, "db"), "/run/secrets/db");
        assert_eq!(container_path(false, "site.conf"), "/site.conf");
        assert_eq!(container_path(false, "/etc/x"), "/etc/x");
    }

    #[test]
    fn bad_specs_are_refused_by_name() {
        for (input, want) in [
            ("source=", "no source name"),
            ("target=/x", "no source name"),
            ("source=a,colour=red", "unknown key \"colour\""),
            ("source=a,mode=999", "not an octal file mode"),
            ("source=a,uid=root", "uid \"root\" is not a number"),
            ("source=a,target=../../etc/passwd", "may not contain '..'"),
            ("source=a,oops", "is not key=value"),
        ] {
            let e = parse_file_reference("secret", input)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want) && e.contains("--secret"), "{input}: {e}");
        }
    }

    #[test]
    fn updates_and_targets() {
        let a = parse_file_reference("secret", "a").unwrap();
        let b = parse_file_reference("secret", "b").unwrap();
        let b2 = parse_file_reference("secret", "source=c,target=b").unwrap();
        let mut list = vec![a.clone(), b.clone()];
        update_file_references(&mut list, std::slice::from_ref(&b2), &["a".into()]);
        assert_eq!(list, vec![b2.clone()]);
        assert!(check_file_targets(&[a.clone(), b.clone()], std::slice::from_ref(&a)).is_ok());
        let e = check_file_targets(&[b, b2], &[]).unwrap_err().to_string();
        assert!(e.contains("/run/secrets/b"), "{e}");
    }
}
