//! Variable substitution in compose values, as compose does it: `$VAR`, `${VAR}`,
//! `${VAR:-default}` (unset or empty), `${VAR-default}` (unset), `${VAR:?message}` and
//! `${VAR?message}` (an error), `${VAR:+other}` and `${VAR+other}`, and `$$` for a `$`.
//! A variable that is not set and has no default becomes the empty string, with a warning.

use std::collections::BTreeMap;

/// The variables a compose file sees: the process environment over the `.env` file.
pub type Environment = BTreeMap<String, String>;

/// What went wrong in one value: the message, without the place (the caller adds it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterpolationError(pub String);

/// `input` with its variables replaced; `unset` collects variables used without a value.
pub fn interpolate(
    input: &str,
    env: &Environment,
    unset: &mut Vec<String>,
) -> Result<String, InterpolationError> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(braced) = after.strip_prefix('{') {
            let close = braced.find('}').ok_or_else(|| invalid(input))?;
            out.push_str(&braced_value(input, &braced[..close], env, unset)?);
            rest = &braced[close + 1..];
        } else {
            let len = name_len(after);
            if len == 0 {
                return Err(invalid(input));
            }
            out.push_str(&lookup(&after[..len], env, unset));
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn invalid(input: &str) -> InterpolationError {
    InterpolationError(format!(
        "invalid interpolation format {input:?}: expected $VAR, ${{VAR}}, ${{VAR:-default}}, \
         ${{VAR-default}}, ${{VAR:?message}}, ${{VAR?message}} or $$ for a literal $"
    ))
}

/// The length of the variable name at the start of `s`: a letter or `_`, then letters, digits
/// or `_`.
fn name_len(s: &str) -> usize {
    let mut len = 0;
    for (i, c) in s.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        len = i + c.len_utf8();
    }
    len
}

fn lookup(name: &str, env: &Environment, unset: &mut Vec<String>) -> String {
    if let Some(v) = env.get(name) {
        v.clone()
    } else {
        if !unset.iter().any(|u| u == name) {
            unset.push(name.to_owned());
        }
        String::new()
    }
}

fn braced_value(
    input: &str,
    inner: &str,
    env: &Environment,
    unset: &mut Vec<String>,
) -> Result<String, InterpolationError> {
    let len = name_len(inner);
    if len == 0 {
        return Err(invalid(input));
    }
    let (name, op) = inner.split_at(len);
    let value = env.get(name);
    let set_nonempty = value.is_some_and(|v| !v.is_empty());
    let resolved = match op {
        "" => return Ok(lookup(name, env, unset)),
        _ if op.starts_with(":-") => (!set_nonempty).then(|| op[2..].to_owned()),
        _ if op.starts_with('-') => value.is_none().then(|| op[1..].to_owned()),
        _ if op.starts_with(":+") => Some(if set_nonempty {
            op[2..].to_owned()
        } else {
            String::new()
        }),
        _ if op.starts_with('+') => Some(if value.is_some() {
            op[1..].to_owned()
        } else {
            String::new()
        }),
        _ if op.starts_with(":?") || op.starts_with('?') => {
            let (missing, message) = if let Some(m) = op.strip_prefix(":?") {
                (!set_nonempty, m)
            } else {
                (value.is_none(), &op[1..])
            };
            if missing {
                let message = if message.is_empty() {
                    "is required"
                } else {
                    message
                };
                return Err(InterpolationError(format!(
                    "required variable {name} is missing a value: {message}"
                )));
            }
            None
        }
        _ => return Err(invalid(input)),
    };
    Ok(resolved.unwrap_or_else(|| value.cloned().unwrap_or_default()))
}

/// Parses an env file (`.env`, `env_file:`): `KEY=VALUE` lines, `#` comments, blank lines, an
/// optional `export ` and quotes around the value; a line `KEY` alone takes `KEY` from `env`
/// if set there. Errors name the line.
pub fn parse_env_file(text: &str, env: &Environment) -> Result<Vec<(String, String)>, String> {
    let mut vars = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), Some(unquote(v.trim()))),
            None => (line, None),
        };
        if key.is_empty() || name_len(key) != key.len() {
            return Err(format!(
                "line {}: {raw:?} is not KEY=VALUE (KEY: letters, digits and _, not starting \
                 with a digit)",
                n + 1
            ));
        }
        match value {
            Some(v) => vars.push((key.to_owned(), v)),
            None => {
                if let Some(v) = env.get(key) {
                    vars.push((key.to_owned(), v.clone()));
                }
            }
        }
    }
    Ok(vars)
}

fn unquote(v: &str) -> String {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_owned();
        }
    }
    v.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        [("TAG", "1.25"), ("EMPTY", ""), ("PORT", "8080")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn substitutions_follow_the_compose_spec() {
        // (intent, input, expected)
        let rows = [
            ("plain text is unchanged", "nginx", "nginx"),
            ("a bare variable", "nginx:$TAG", "nginx:1.25"),
            (
                "a braced variable",
                "nginx:${TAG}-alpine",
                "nginx:1.25-alpine",
            ),
            ("$$ is a literal dollar", "echo $$HOME", "echo $HOME"),
            (":- replaces unset", "${NOPE:-80}", "80"),
            (":- replaces empty", "${EMPTY:-80}", "80"),
            ("- keeps empty", "${EMPTY-80}", ""),
            ("- replaces unset", "${NOPE-80}", "80"),
            (":- keeps a set value", "${PORT:-80}", "8080"),
            (":+ gives the other when set", "${PORT:+yes}", "yes"),
            (":+ gives empty when unset", "${NOPE:+yes}", ""),
            ("an unset variable is empty", "a${NOPE}b", "ab"),
            (
                "a dollar at the end of a name stops it",
                "$PORT/tcp",
                "8080/tcp",
            ),
        ];
        for (intent, input, expected) in rows {
            let mut unset = Vec::new();
            assert_eq!(
                interpolate(input, &env(), &mut unset).as_deref(),
                Ok(expected),
                "{intent}"
            );
        }
    }

    #[test]
    fn unset_variables_are_reported_once() {
        let mut unset = Vec::new();
        interpolate("$A ${A} $B", &env(), &mut unset).unwrap();
        assert_eq!(unset, ["A", "B"]);
    }

    #[test]
    fn bad_forms_and_required_variables_are_errors() {
        let rows = [
            ("an unclosed brace", "${TAG", "invalid interpolation format"),
            (
                "a dollar without a name",
                "cost: $5",
                "invalid interpolation format",
            ),
            (
                "an unknown operator",
                "${TAG#x}",
                "invalid interpolation format",
            ),
            (
                "a required unset variable",
                "${DB:?set the database}",
                "set the database",
            ),
            ("a required empty variable", "${EMPTY:?needed}", "needed"),
        ];
        for (intent, input, expected) in rows {
            let err = interpolate(input, &env(), &mut Vec::new()).unwrap_err();
            assert!(err.0.contains(expected), "{intent}: {}", err.0);
        }
        assert_eq!(
            interpolate("${EMPTY?needed}", &env(), &mut Vec::new()).as_deref(),
            Ok("")
        );
    }

    #[test]
    fn env_files_parse_as_docker_reads_them() {
        let text = "# comment\n\nA=1\nexport B = \"two words\"\nC='x=y'\nTAG\nMISSING\n";
        assert_eq!(
            parse_env_file(text, &env()).unwrap(),
            [
                ("A".to_owned(), "1".to_owned()),
                ("B".to_owned(), "two words".to_owned()),
                ("C".to_owned(), "x=y".to_owned()),
                ("TAG".to_owned(), "1.25".to_owned()),
            ]
        );
        let err = parse_env_file("OK=1\n9X=2\n", &env()).unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
    }
}
