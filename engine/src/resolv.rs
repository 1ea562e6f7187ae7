//! A task's `/etc/resolv.conf`, pointing it at meshd's DNS server.

use std::net::Ipv4Addr;

use crate::EngineError;

/// glibc and musl both read at most three `nameserver` lines and ignore the rest silently.
pub const MAX_NAMESERVERS: usize = 3;

/// Renders resolv.conf. Refuses what a resolver would misread: no nameserver (it would fall
/// back to 127.0.0.1 inside the container), more than it reads, or words with whitespace.
pub fn render_resolv_conf(
    nameservers: &[Ipv4Addr],
    search: &[String],
    options: &[String],
) -> Result<String, EngineError> {
    if nameservers.is_empty() || nameservers.len() > MAX_NAMESERVERS {
        return Err(EngineError::Invalid(format!(
            "resolv.conf needs 1 to {MAX_NAMESERVERS} nameservers, got {}",
            nameservers.len()
        )));
    }
    let bad_word =
        |w: &String| w.is_empty() || w.chars().any(|c| c.is_whitespace() || c == '#' || c == ';');
    if let Some(w) = search.iter().chain(options).find(|w| bad_word(w)) {
        return Err(EngineError::Invalid(format!(
            "resolv.conf search domains and options are single words without whitespace, \
             '#' or ';': got {w:?}"
        )));
    }
    let mut lines = vec!["# written by meshd".to_owned()];
    lines.extend(nameservers.iter().map(|ns| format!("nameserver {ns}")));
    if !search.is_empty() {
        lines.push(format!("search {}", search.join(" ")));
    }
    if !options.is_empty() {
        lines.push(format!("options {}", options.join(" ")));
    }
    Ok(lines.join("\n") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_nameservers_search_and_options() {
        let text = render_resolv_conf(
            &[Ipv4Addr::new(10, 0, 1, 2)],
            &["svc.local".into(), "local".into()],
            &["ndots:0".into()],
        )
        .unwrap();
        assert_eq!(
            text,
            "# written by meshd\nnameserver 10.0.1.2\nsearch svc.local local\noptions ndots:0\n"
        );
        let bare = render_resolv_conf(&[Ipv4Addr::new(10, 0, 1, 2)], &[], &[]).unwrap();
        assert_eq!(bare, "# written by meshd\nnameserver 10.0.1.2\n");
    }

    #[test]
    fn refuses_what_a_resolver_would_misread() {
        let ns = [Ipv4Addr::new(10, 0, 0, 2)];
        assert!(render_resolv_conf(&[], &[], &[]).is_err());
        assert!(render_resolv_conf(&[ns[0]; 4], &[], &[]).is_err());
        let err = render_resolv_conf(&ns, &["a b".into()], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"a b\""), "{err}");
        assert!(render_resolv_conf(&ns, &[], &[String::new()]).is_err());
        assert!(render_resolv_conf(&ns, &[], &["x\nnameserver 1.1.1.1".into()]).is_err());
    }
}
