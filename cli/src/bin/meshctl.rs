//! `meshctl`: the command line, as Docker's.

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};
use mesh_cli::commands::{
    self, Reported, blob::BlobCommand, lab::LabCommand, mesh::MeshCommand, network::NetworkCommand,
    node::NodeCommand, service::ServiceCommand, stack::StackCommand, swarm::SwarmCommand,
};

#[derive(Parser, Debug)]
#[command(
    name = "meshctl",
    version,
    about = "Drive a meshd cluster",
    propagate_version = true
)]
struct Cli {
    #[command(flatten)]
    target: commands::Target,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Manage the swarm: init, join, join-token, leave.
    #[command(subcommand)]
    Swarm(SwarmCommand),
    /// Manage the swarm's nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Manage services: create, ls, ps, inspect, logs, scale, update, publish, rollback, rm.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Manage stacks (compose files): deploy, ls, ps, services, rm.
    #[command(subcommand)]
    Stack(StackCommand),
    /// The routing mesh: stats.
    #[command(subcommand)]
    Mesh(MeshCommand),
    /// Manage overlay networks: create, ls, inspect, rm.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Manage secrets: create, ls, inspect (never the data), rm.
    #[command(subcommand)]
    Secret(BlobCommand),
    /// Manage configs: create, ls, inspect, rm.
    #[command(subcommand)]
    Config(BlobCommand),
    /// This node's parts, each OK or degraded (exits 1 when anything is degraded).
    Status {
        /// `json`: the node's whole status; or a Go template on it ('{{.hostname}} {{.role}}').
        #[arg(long)]
        format: Option<String>,
    },
    /// Run a whole cluster on this machine, in network namespaces.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Show the client's and the node's versions.
    Version {
        /// A Go template ('{{.Client.Version}}'), or `json`.
        #[arg(long, short)]
        format: Option<String>,
    },
    /// Show this node's place in the swarm (docker's `Swarm:` section).
    Info {
        /// A Go template ('{{.Swarm.LocalNodeState}}'), or `json`.
        #[arg(long, short)]
        format: Option<String>,
    },
    /// Print a shell completion script: `meshctl completion bash > /etc/bash_completion.d/meshctl`.
    Completion { shell: clap_complete::Shell },
    /// Print the manual page (roff): `meshctl man | man -l -`; with a folder, write one page
    /// per command there.
    Man { dir: Option<std::path::PathBuf> },
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => std::process::exit(usage_error(&e, &args)),
    };
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            if let Some(r) = e.downcast_ref::<Reported>() {
                eprintln!("{r}");
            } else {
                eprintln!("Error: {e:#}");
            }
            std::process::exit(1);
        }
    }
}

/// Docker's answer to a bad command line: the problem, `See 'meshctl COMMAND --help'.`, exit
/// 125. Help and version asked for are printed as clap prints them (exit 0).
fn usage_error(e: &clap::Error, args: &[String]) -> i32 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            0
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // `meshctl service` alone: its usage, as `docker service` prints it.
            print!("{}", e.render());
            0
        }
        _ => {
            let path = command_path(&Cli::command(), args);
            eprintln!("{}", usage_message(&e.render().to_string(), &path));
            USAGE_EXIT
        }
    }
}

/// Docker's exit code for a command line it cannot run.
const USAGE_EXIT: i32 = 125;

/// Clap's problem (its first paragraph, on one line, without `error: `) and docker's pointer
/// to the help.
fn usage_message(clap_text: &str, path: &str) -> String {
    let problem: Vec<&str> = clap_text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let problem = problem.join(" ");
    let problem = problem.strip_prefix("error: ").unwrap_or(&problem);
    format!("{problem}\nSee '{path} --help'.")
}

/// The command the words name (`meshctl service ls`), options and their values skipped.
fn command_path(root: &clap::Command, args: &[String]) -> String {
    let mut path = vec![root.get_name().to_owned()];
    let mut cur = root;
    let mut words = args.iter().skip(1);
    while let Some(w) = words.next() {
        if w == "--" {
            break;
        }
        if w.starts_with('-') {
            // The global options that take a value in the next word.
            if matches!(w.as_str(), "-H" | "--host" | "--cert-dir") {
                words.next();
            }
            continue;
        }
        let Some(sub) = cur.find_subcommand(w) else {
            break;
        };
        path.push(sub.get_name().to_owned());
        cur = sub;
    }
    path.join(" ")
}

fn run(cli: Cli) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Swarm(cmd) => commands::swarm::run(&cli.target, cmd, &mut out),
        Command::Node(cmd) => commands::node::run(&cli.target, cmd, &mut out),
        Command::Service(cmd) => commands::service::run(&cli.target, cmd, &mut out),
        Command::Stack(cmd) => commands::stack::run(&cli.target, cmd, &mut out),
        Command::Network(cmd) => commands::network::run(&cli.target, cmd, &mut out),
        Command::Mesh(cmd) => commands::mesh::run(&cli.target, cmd, &mut out),
        Command::Secret(cmd) => {
            commands::blob::run(&cli.target, mesh_api::BlobKind::Secret, cmd, &mut out)
        }
        Command::Config(cmd) => {
            commands::blob::run(&cli.target, mesh_api::BlobKind::Config, cmd, &mut out)
        }
        Command::Status { format } => {
            commands::status::run(&cli.target, format.as_deref(), &mut out)
        }
        Command::Lab(cmd) => commands::lab::run(cmd, &mut out),
        Command::Version { format } => {
            commands::system::version(&cli.target, format.as_deref(), &mut out)
        }
        Command::Info { format } => {
            commands::system::info(&cli.target, format.as_deref(), &mut out)
        }
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "meshctl", &mut out);
            Ok(0)
        }
        Command::Man { dir } => {
            match dir {
                Some(d) => {
                    std::fs::create_dir_all(&d)?;
                    clap_mangen::generate_to(Cli::command(), &d)?;
                }
                None => clap_mangen::Man::new(Cli::command()).render(&mut out)?,
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_owned).collect()
    }

    /// A bad command line is docker's usage error: the problem, the help pointer, exit 125.
    #[test]
    fn usage_errors_point_at_the_commands_help() {
        let line = args("meshctl -H unix:///x service ls --bogus");
        let e = Cli::try_parse_from(&line).unwrap_err();
        let path = command_path(&Cli::command(), &line);
        assert_eq!(path, "meshctl service ls");
        let text = usage_message(&e.render().to_string(), &path);
        assert!(
            text.ends_with("\nSee 'meshctl service ls --help'."),
            "{text}"
        );
        assert!(text.contains("--bogus"), "{text}");
        assert_eq!(usage_error(&e, &line), 125);

        let line = args("meshctl service ls --filter name");
        let e = Cli::try_parse_from(&line).unwrap_err();
        assert!(
            e.render()
                .to_string()
                .contains("bad format of filter (expected name=value)"),
            "{e}"
        );
        assert_eq!(usage_error(&e, &line), 125);
        assert_eq!(
            command_path(&Cli::command(), &args("meshctl node inspect")),
            "meshctl node inspect"
        );
        assert_eq!(
            command_path(&Cli::command(), &args("meshctl nope")),
            "meshctl"
        );
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
