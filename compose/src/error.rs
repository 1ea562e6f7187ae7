//! A compose error and where it is: the file, the line when it can be found, the key path
//! (`services.web.deploy.replicas`), and what is accepted.

use std::fmt;

/// One error in a compose file. Nothing is deployed when there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComposeError {
    /// The file it is in, when known.
    pub file: Option<String>,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted key path: `services.web.ports[0]`; empty for the whole file.
    pub path: String,
    /// What was wrong and what is accepted.
    pub message: String,
}

impl ComposeError {
    pub(crate) fn at(path: &str, message: impl Into<String>) -> Self {
        Self {
            file: None,
            line: None,
            path: path.to_owned(),
            message: message.into(),
        }
    }

    /// The service this error is in, if it is in one.
    pub fn service(&self) -> Option<&str> {
        let rest = self.path.strip_prefix("services.")?;
        Some(rest.split(['.', '[']).next().unwrap_or(rest))
    }

    /// Fills in file and line by looking for the key path in `files` (name, text), the last
    /// file first since later files win.
    pub(crate) fn locate(mut self, files: &[(String, String)]) -> Self {
        if self.line.is_some() || self.path.is_empty() {
            return self;
        }
        let segments = path_segments(&self.path);
        let mut best: Option<(usize, &str, usize)> = None;
        for (name, text) in files.iter().rev() {
            if let Some((depth, line)) = find_line(text, &segments)
                && best.is_none_or(|(d, _, _)| depth > d)
            {
                best = Some((depth, name, line));
            }
        }
        if let Some((_, name, line)) = best {
            self.file = Some(name.to_owned());
            self.line = Some(line);
        } else if files.len() == 1 {
            self.file = Some(files[0].0.clone());
        }
        self
    }
}

impl fmt::Display for ComposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}, line {line}: ")?,
            (Some(file), None) => write!(f, "{file}: ")?,
            _ => {}
        }
        if let Some(service) = self.service() {
            let key = self
                .path
                .strip_prefix("services.")
                .and_then(|r| r.strip_prefix(service))
                .map_or("", |k| k.trim_start_matches('.'));
            if key.is_empty() {
                write!(f, "service {service:?}: ")?;
            } else {
                write!(f, "service {service:?}, key {key:?}: ")?;
            }
        } else if !self.path.is_empty() {
            write!(f, "key {:?}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ComposeError {}

/// `services.web.ports[1].target` → `services`, `web`, `ports`, `target` (indexes dropped: the
/// line search finds the key of the list).
fn path_segments(path: &str) -> Vec<&str> {
    path.split('.')
        .map(|s| s.split('[').next().unwrap_or(s))
        .filter(|s| !s.is_empty())
        .collect()
}

/// The 1-based line of the deepest key of `segments` found in block-style YAML, and how many
/// segments matched.
fn find_line(text: &str, segments: &[&str]) -> Option<(usize, usize)> {
    let mut depth = 0;
    let mut parent_indent: Option<usize> = None;
    // The indent of the parent's children: only keys at exactly this indent are its own.
    let mut child_indent: Option<usize> = None;
    let mut found = None;
    for (n, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || depth == segments.len() {
            continue;
        }
        let indent = raw.len() - trimmed.len();
        if parent_indent.is_some_and(|p| indent <= p) {
            break; // left the parent's block without finding the next key
        }
        let own = *child_indent.get_or_insert(indent);
        let key = trimmed.trim_start_matches("- ");
        let key = key
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches(['"', '\'']);
        if indent == own && key == segments[depth] && trimmed.contains(':') {
            depth += 1;
            parent_indent = Some(indent);
            child_indent = None;
            found = Some((depth, n + 1));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "services:\n  api:\n    image: a\n  web:\n    image: b\n    deploy:\n      \
                        replicas: x\n";

    #[test]
    fn the_line_of_the_deepest_key_is_found() {
        let e = ComposeError::at("services.web.deploy.replicas", "bad")
            .locate(&[("compose.yml".into(), FILE.into())]);
        assert_eq!(e.line, Some(7));
        assert_eq!(
            e.to_string(),
            "compose.yml, line 7: service \"web\", key \"deploy.replicas\": bad"
        );
    }

    #[test]
    fn a_key_of_another_service_is_not_taken() {
        // api has no deploy: the search stops at the end of api's block.
        let e =
            ComposeError::at("services.api.deploy", "bad").locate(&[("c.yml".into(), FILE.into())]);
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn the_later_file_wins_at_equal_depth() {
        let e = ComposeError::at("services.web.image", "bad").locate(&[
            ("a.yml".into(), FILE.into()),
            ("b.yml".into(), "services:\n  web:\n    image: c\n".into()),
        ]);
        assert_eq!((e.file.as_deref(), e.line), (Some("b.yml"), Some(3)));
    }
}
