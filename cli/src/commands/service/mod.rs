//! `meshctl service create | ls | ps | inspect | logs | scale | update | publish | rollback | rm`,
//! with Docker's flags and output. One module per subcommand; [`flags`] holds the flags `create`
//! and `update` share and how they become a spec, `client` the connection they all use.
//!
//! The client builds specs from flags ([`create_spec`], [`update_spec`]: pure, unit-tested) and
//! sends them whole; the manager checks everything before it stores anything. `update` reads the
//! service, applies the flags to its spec and sends it back with the version it read (re-read
//! and re-applied when another write got in between). Without `--detach`, create, update, scale
//! and rollback then follow the service until it converges ([`progress`]).

mod client;
mod create;
mod flags;
pub(crate) mod inspect;
mod logs;
pub(crate) mod ls;
mod progress;
pub(crate) mod ps;
mod publish;
pub(crate) mod registry;
mod rm;
mod rollback;
mod scale;
#[cfg(test)]
mod testing;
mod update;

use std::io::Write;

use anyhow::Result;
use clap::Subcommand;

pub use create::{CreateArgs, create_spec};
pub use flags::{CommonArgs, parse_network, resolve_networks};
pub use update::{UpdateArgs, update_spec};

pub use ps::{PsOutput, node_ps};

use super::Target;
use crate::format::{FilterArg, parse_filter_arg};

#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// Create a new service.
    Create(Box<CreateArgs>),
    /// List services.
    #[command(alias = "list")]
    Ls {
        /// Only IDs.
        #[arg(long, short)]
        quiet: bool,
        /// `id=`, `label=KEY[=VALUE]`, `mode=replicated|global`, `name=` (repeatable).
        #[arg(long, short, value_parser = parse_filter_arg)]
        filter: Vec<FilterArg>,
        /// A Go template ('{{.Name}} {{.Replicas}}', 'table {{.ID}}\t{{.Name}}'), or `json`.
        #[arg(long)]
        format: Option<String>,
    },
    /// List the tasks of one or more services.
    Ps {
        /// Full IDs and errors.
        #[arg(long)]
        no_trunc: bool,
        /// Only task IDs.
        #[arg(long, short)]
        quiet: bool,
        /// `desired-state=running|shutdown|...`, `id=`, `label=`, `name=`, `node=NODE|self`.
        #[arg(long, short, value_parser = parse_filter_arg)]
        filter: Vec<FilterArg>,
        /// A Go template ('{{.Name}} {{.Node}}', 'table {{.ID}}\t{{.CurrentState}}'), or `json`.
        #[arg(long)]
        format: Option<String>,
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Show services in detail: JSON, `--pretty`, or `--format '{{json .Spec}}'`.
    Inspect {
        #[arg(long)]
        pretty: bool,
        /// `json`, or a template such as '{{json .Endpoint.Spec.Ports}}' or '{{.Spec.Name}}'.
        #[arg(long, short)]
        format: Option<String>,
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Fetch the logs of a service or a task.
    Logs {
        /// Lines from the end of each task's log (`all` or a number).
        #[arg(long, short = 'n', default_value = "all")]
        tail: String,
        /// Keep streaming new lines.
        #[arg(long, short)]
        follow: bool,
        /// Show timestamps.
        #[arg(long, short)]
        timestamps: bool,
        /// Full task IDs in the prefix.
        #[arg(long)]
        no_trunc: bool,
        /// A service, or a task ID.
        target: String,
    },
    /// Scale one or more replicated services: SERVICE=REPLICAS...
    Scale {
        /// Exit at once instead of waiting for the services to converge.
        #[arg(long, short)]
        detach: bool,
        #[arg(required = true)]
        scales: Vec<String>,
    },
    /// Update a service.
    Update(Box<UpdateArgs>),
    /// Publish a port of an existing service: `publish 8080:80 web` (as `update --publish-add`;
    /// the service's tasks are replaced, as any change of its ports does).
    Publish {
        /// Exit at once instead of waiting for the service to converge.
        #[arg(long, short)]
        detach: bool,
        /// Print no progress.
        #[arg(long, short)]
        quiet: bool,
        /// PUBLISHED:TARGET[/udp], TARGET alone (a free port from 30000-32767 is published), or
        /// published=P,target=T[,protocol=tcp|udp][,mode=ingress|host].
        port: String,
        service: String,
    },
    /// Revert a service to its previous spec.
    Rollback {
        #[arg(long, short)]
        detach: bool,
        #[arg(long, short)]
        quiet: bool,
        service: String,
    },
    /// Remove one or more services.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        services: Vec<String>,
    },
}

pub fn run(target: &Target, cmd: ServiceCommand, out: &mut impl Write) -> Result<i32> {
    match cmd {
        ServiceCommand::Create(a) => create::run(target, &a, out)?,
        ServiceCommand::Ls {
            quiet,
            filter,
            format,
        } => ls::run(target, quiet, &filter, format.as_deref(), out)?,
        ServiceCommand::Ps {
            no_trunc,
            quiet,
            filter,
            format,
            services,
        } => {
            let how = PsOutput {
                no_trunc,
                quiet,
                format: format.as_deref(),
            };
            ps::run(target, services, &filter, how, out)?;
        }
        ServiceCommand::Inspect {
            pretty,
            format,
            services,
        } => inspect::run(target, &services, pretty, format.as_deref(), out)?,
        ServiceCommand::Logs {
            tail,
            follow,
            timestamps,
            no_trunc,
            target: what,
        } => logs::run(target, what, &tail, (follow, timestamps, no_trunc), out)?,
        ServiceCommand::Scale { detach, scales } => scale::run(target, &scales, detach, out)?,
        ServiceCommand::Update(a) => update::run(target, &a, out)?,
        ServiceCommand::Publish {
            detach,
            quiet,
            port,
            service,
        } => publish::run(target, port, service, (detach, quiet), out)?,
        ServiceCommand::Rollback {
            detach,
            quiet,
            service,
        } => rollback::run(target, &service, (detach, quiet), out)?,
        ServiceCommand::Rm { services } => rm::run(target, &services, out)?,
    }
    Ok(0)
}
