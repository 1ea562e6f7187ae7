//! What the subcommands' tests share: meshctl's `service` flags parsed as clap parses them.

use anyhow::Result;
use clap::Parser;
use mesh_cluster::state::ServiceSpec;

use super::{ServiceCommand, create_spec};

#[derive(Parser, Debug)]
struct Cli {
    #[command(subcommand)]
    cmd: ServiceCommand,
}

pub(super) fn parse(args: &[&str]) -> ServiceCommand {
    let mut v = vec!["service"];
    v.extend_from_slice(args);
    Cli::try_parse_from(v).unwrap().cmd
}

pub(super) fn create(args: &[&str]) -> Result<ServiceSpec> {
    let ServiceCommand::Create(a) = parse(&[&["create"], args].concat()) else {
        panic!()
    };
    create_spec(&a)
}
