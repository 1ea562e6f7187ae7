//! `service publish PORT SERVICE`: `service update --publish-add` by another name.

use std::io::Write;

use anyhow::Result;
use mesh_cluster::spec::parse_port;

use super::flags::{CommonArgs, spec_err};
use super::update::{self, UpdateArgs};
use crate::commands::Target;

/// `service publish`, with `--detach` and `--quiet`.
pub(super) fn run(
    target: &Target,
    port: String,
    service: String,
    (detach, quiet): (bool, bool),
    out: &mut impl Write,
) -> Result<()> {
    // Checked before anything is sent.
    parse_port(&port).map_err(spec_err)?;
    let a = UpdateArgs {
        publish_add: vec![port],
        service,
        common: CommonArgs {
            detach,
            quiet,
            ..CommonArgs::default()
        },
        ..UpdateArgs::default()
    };
    update::run(target, &a, out)
}

#[cfg(test)]
mod tests {
    use mesh_cluster::state::ServiceSpec;

    use super::super::ServiceCommand;
    use super::super::testing::{create, parse};
    use super::super::update::update_spec;

    /// `--publish-add` (and `service publish`) adds a port as Docker does: other ports of the
    /// same target stay, the same port again is one port, a published port given a new target
    /// is replaced.
    #[test]
    fn publish_adds_ports_as_docker_does() {
        let ServiceCommand::Publish { port, service, .. } =
            parse(&["publish", "8081:80/udp", "web"])
        else {
            panic!()
        };
        assert_eq!((port.as_str(), service.as_str()), ("8081:80/udp", "web"));
        let current = create(&["--name", "web", "-p", "8080:80", "meshd/busybox"]).unwrap();
        let add = |spec: &ServiceSpec, p: &str| {
            let ServiceCommand::Update(a) = parse(&["update", "--publish-add", p, "web"]) else {
                panic!()
            };
            update_spec(spec, &a).unwrap()
        };
        let ports = |s: &ServiceSpec| {
            s.endpoint
                .ports
                .iter()
                .map(|p| {
                    format!(
                        "{}:{}/{}",
                        p.published_port,
                        p.target_port,
                        p.protocol.as_str()
                    )
                })
                .collect::<Vec<_>>()
        };
        let two = add(&current, "8081:80");
        assert_eq!(ports(&two), ["8080:80/tcp", "8081:80/tcp"]);
        assert_eq!(ports(&add(&two, "8081:80")), ["8080:80/tcp", "8081:80/tcp"]);
        assert_eq!(ports(&add(&two, "8081:90")), ["8080:80/tcp", "8081:90/tcp"]);
        assert_eq!(
            ports(&add(&two, "8081:80/udp")),
            ["8080:80/tcp", "8081:80/tcp", "8081:80/udp"]
        );
    }
}
