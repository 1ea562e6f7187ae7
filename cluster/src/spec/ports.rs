//! `--publish`: the short form `8080:80[/udp]` or `80`, and the long form
//! `published=8080,target=80[,protocol=udp][,mode=host]`.

use super::SpecError;
use crate::state::{PortConfig, Protocol, PublishMode};

const ACCEPTED: &str = "expected PUBLISHED:TARGET[/PROTOCOL] (such as 8080:80 or 8080:80/udp), \
                        TARGET alone, or published=P,target=T[,protocol=tcp|udp][,mode=ingress|host]";

/// Parses one `--publish` value. A missing published port is 0: the allocator picks one from
/// 30000-32767 (ingress mode) or Docker picks one on the node (host mode).
pub fn parse_port(input: &str) -> Result<PortConfig, SpecError> {
    let s = input.trim();
    if s.contains('=') {
        parse_long(input, s)
    } else {
        parse_short(input, s)
    }
}

fn bad(input: &str, why: &str) -> SpecError {
    SpecError::new(format!("invalid port {input:?}: {why}; {ACCEPTED}"))
}

fn port_number(input: &str, what: &str, value: &str, min: u16) -> Result<u16, SpecError> {
    match value.trim().parse::<u16>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(bad(
            input,
            &format!("{what} port {value:?} is not a number from {min} to 65535"),
        )),
    }
}

fn protocol(input: &str, value: &str) -> Result<Protocol, SpecError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        other => Err(bad(
            input,
            &format!("protocol {other:?} is neither tcp nor udp"),
        )),
    }
}

fn parse_short(input: &str, s: &str) -> Result<PortConfig, SpecError> {
    if s.is_empty() {
        return Err(bad(input, "it is empty"));
    }
    let (ports, proto) = match s.split_once('/') {
        Some((ports, proto)) => (ports, protocol(input, proto)?),
        None => (s, Protocol::Tcp),
    };
    if ports.contains('-') {
        return Err(bad(input, "port ranges are not supported"));
    }
    let parts: Vec<&str> = ports.split(':').collect();
    let (published, target) = match parts.as_slice() {
        [target] => (0, port_number(input, "target", target, 1)?),
        [published, target] => (
            port_number(input, "published", published, 1)?,
            port_number(input, "target", target, 1)?,
        ),
        _ => return Err(bad(input, "a host address cannot be given in swarm mode")),
    };
    Ok(PortConfig {
        name: String::new(),
        protocol: proto,
        target_port: target,
        published_port: published,
        publish_mode: PublishMode::Ingress,
    })
}

fn parse_long(input: &str, s: &str) -> Result<PortConfig, SpecError> {
    let mut port = PortConfig::default();
    let mut seen: Vec<&str> = Vec::new();
    for field in s.split(',') {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| bad(input, &format!("{field:?} is not KEY=VALUE")))?;
        let key = key.trim();
        if seen.contains(&key) {
            return Err(bad(input, &format!("{key} is given twice")));
        }
        seen.push(key);
        match key {
            "published" => port.published_port = port_number(input, "published", value, 0)?,
            "target" => port.target_port = port_number(input, "target", value, 1)?,
            "protocol" => port.protocol = protocol(input, value)?,
            "mode" => {
                port.publish_mode = match value.trim().to_ascii_lowercase().as_str() {
                    "ingress" => PublishMode::Ingress,
                    "host" => PublishMode::Host,
                    other => {
                        return Err(bad(
                            input,
                            &format!("mode {other:?} is neither ingress nor host"),
                        ));
                    }
                }
            }
            other => {
                return Err(bad(
                    input,
                    &format!("unknown key {other:?} (keys: published, target, protocol, mode)"),
                ));
            }
        }
    }
    if !seen.contains(&"target") {
        return Err(bad(input, "target is missing"));
    }
    Ok(port)
}

/// The long form, which [`parse_port`] reads back: `published=8080,target=80,protocol=tcp,mode=ingress`.
pub fn format_port(p: &PortConfig) -> String {
    let mode = match p.publish_mode {
        PublishMode::Ingress => "ingress",
        PublishMode::Host => "host",
    };
    let published = if p.published_port == 0 {
        String::new()
    } else {
        format!("published={},", p.published_port)
    };
    format!(
        "{published}target={},protocol={},mode={mode}",
        p.target_port,
        p.protocol.as_str()
    )
}

/// As `service ls` and `service ps` print a port: `*:8080->80/tcp`.
pub fn format_published(p: &PortConfig) -> String {
    format!(
        "*:{}->{}/{}",
        p.published_port,
        p.target_port,
        p.protocol.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::TestRng;

    fn port(published: u16, target: u16, protocol: Protocol, mode: PublishMode) -> PortConfig {
        PortConfig {
            name: String::new(),
            protocol,
            target_port: target,
            published_port: published,
            publish_mode: mode,
        }
    }

    #[test]
    fn short_and_long_forms() {
        use Protocol::{Tcp, Udp};
        use PublishMode::{Host, Ingress};
        let rows: &[(&str, Option<PortConfig>)] = &[
            ("8080:80", Some(port(8080, 80, Tcp, Ingress))),
            ("8080:80/udp", Some(port(8080, 80, Udp, Ingress))),
            ("8080:80/TCP", Some(port(8080, 80, Tcp, Ingress))),
            ("80", Some(port(0, 80, Tcp, Ingress))),
            ("53/udp", Some(port(0, 53, Udp, Ingress))),
            (
                "published=8080,target=80",
                Some(port(8080, 80, Tcp, Ingress)),
            ),
            (
                "published=53,target=53,protocol=udp,mode=host",
                Some(port(53, 53, Udp, Host)),
            ),
            ("target=80,mode=host", Some(port(0, 80, Tcp, Host))),
            (
                " published = 8080 , target = 80 ",
                Some(port(8080, 80, Tcp, Ingress)),
            ),
            ("", None),
            ("0", None),            // target 0
            ("8080:0", None),       // target 0
            ("70000:80", None),     // out of range
            ("8080:80/sctp", None), // protocol
            ("8080-8081:80", None), // range
            ("127.0.0.1:8080:80", None),
            ("published=8080", None), // no target
            ("target=80,target=81", None),
            ("target=80,mode=bridge", None),
            ("target=80,hostip=1.2.3.4", None),
            ("target=80,published", None),
        ];
        for (input, want) in rows {
            assert_eq!(parse_port(input).ok(), *want, "parse_port({input:?})");
        }
        let err = parse_port("8080:80/sctp").unwrap_err().to_string();
        assert!(err.contains("sctp") && err.contains("8080:80/udp"), "{err}");
        assert_eq!(
            format_published(&port(8080, 2368, Tcp, Ingress)),
            "*:8080->2368/tcp"
        );
    }

    #[test]
    fn ports_round_trip() {
        let mut rng = TestRng::new(11);
        for _ in 0..2_000 {
            let p = port(
                rng.below(65_536) as u16,
                1 + rng.below(65_535) as u16,
                *rng.pick(&[Protocol::Tcp, Protocol::Udp]),
                *rng.pick(&[PublishMode::Ingress, PublishMode::Host]),
            );
            assert_eq!(parse_port(&format_port(&p)), Ok(p.clone()));
        }
        for _ in 0..crate::spec::fuzz_cases(5_000) {
            let s = rng.noise(b"0123456789:/=,tcpudpublishedtargetmodehostingress ", 24);
            if let Ok(p) = parse_port(&s) {
                assert_eq!(parse_port(&format_port(&p)), Ok(p), "{s:?}");
            }
        }
    }
}
