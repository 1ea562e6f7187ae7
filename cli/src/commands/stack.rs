//! `meshctl stack deploy | ls | ps | services | rm`, done on the client as the docker CLI does
//! it: the compose files are planned by `mesh-compose` (nothing is sent when they have an error),
//! then networks, secrets, configs and services are created or updated with the same requests
//! `network create`, `secret create` and `service create/update` send. A stack is whatever
//! carries the label `com.docker.stack.namespace=STACK`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use mesh_api::transport::Client;
use mesh_api::{BlobCreate, BlobData, BlobKind, Reply, Request};
use mesh_cluster::Id;
use mesh_cluster::state::{NetworkSpec, ServiceSpec};
use mesh_compose::{Environment, STACK_LABEL, Sources, StackPlan, parse_env_file};

use super::service::ServiceCommand;
use super::service::ls::{SERVICE_LIST, service_filters, service_matches, service_row};
use super::service::registry::{RegistryArgs, print_warnings};
use super::{Reported, Target, connect, reported, runtime, unexpected};
use crate::format::{FilterArg, ListFormat, parse_filter_arg, write_list};

#[derive(Args, Debug, Clone)]
pub struct DeployArgs {
    /// A compose file (repeatable: later files override earlier ones).
    #[arg(long = "compose-file", short = 'c', required = true)]
    pub compose_files: Vec<String>,
    /// Remove the stack's services that are no longer in the compose files.
    #[arg(long)]
    pub prune: bool,
    /// Send registry credentials to the nodes (as `service create --with-registry-auth`).
    #[arg(long)]
    pub with_registry_auth: bool,
    pub stack: String,
}

#[derive(Subcommand, Debug)]
pub enum StackCommand {
    /// Deploy a new stack or update an existing one.
    #[command(alias = "up")]
    Deploy(DeployArgs),
    /// List the stacks.
    #[command(alias = "list")]
    Ls {
        /// A Go template ('{{.Name}} {{.Services}}'), or `json`.
        #[arg(long)]
        format: Option<String>,
    },
    /// List the tasks of a stack.
    Ps {
        #[arg(long)]
        no_trunc: bool,
        #[arg(long, short)]
        quiet: bool,
        /// `desired-state=`, `id=`, `label=`, `name=`, `node=` (repeatable).
        #[arg(long, short, value_parser = parse_filter_arg)]
        filter: Vec<FilterArg>,
        /// A Go template (`{{.Name}} {{.CurrentState}}`), or `json`.
        #[arg(long)]
        format: Option<String>,
        stack: String,
    },
    /// List the services of a stack.
    Services {
        #[arg(long, short)]
        quiet: bool,
        /// `id=`, `label=`, `mode=`, `name=` (repeatable).
        #[arg(long, short, value_parser = parse_filter_arg)]
        filter: Vec<FilterArg>,
        /// A Go template ('{{.Name}} {{.Replicas}}'), or `json`.
        #[arg(long)]
        format: Option<String>,
        stack: String,
    },
    /// Remove one or more stacks.
    #[command(alias = "remove", alias = "down")]
    Rm {
        #[arg(required = true)]
        stacks: Vec<String>,
    },
}

pub fn run(target: &Target, cmd: StackCommand, out: &mut impl Write) -> Result<i32> {
    match cmd {
        StackCommand::Deploy(a) => deploy(target, &a, out)?,
        StackCommand::Ls { format } => ls(target, format.as_deref(), out)?,
        StackCommand::Ps {
            no_trunc,
            quiet,
            filter,
            format,
            stack,
        } => {
            // Checked before anything is asked, as every filter.
            super::service::ps::task_filters(&filter)?;
            let names = Conn::new(target)?.stack_services(&stack)?;
            if names.is_empty() {
                bail!(Reported(format!("nothing found in stack: {stack}")));
            }
            let services = names.into_iter().map(|s| s.spec.name).collect();
            let ps = ServiceCommand::Ps {
                no_trunc,
                quiet,
                filter,
                format,
                services,
            };
            super::service::run(target, ps, out)?;
        }
        StackCommand::Services {
            quiet,
            filter,
            format,
            stack,
        } => services(target, &stack, quiet, &filter, format.as_deref(), out)?,
        StackCommand::Rm { stacks } => {
            for stack in stacks {
                rm(target, &stack, out)?;
            }
        }
    }
    Ok(0)
}

/// One connection for the several calls a stack command makes.
struct Conn {
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl Conn {
    fn new(target: &Target) -> Result<Self> {
        let rt = runtime()?;
        let client = {
            let _guard = rt.enter();
            connect(target)?
        };
        Ok(Self { rt, client })
    }

    fn call(&self, req: &Request) -> Result<Reply> {
        self.rt
            .block_on(self.client.call_with_timeout(req, Duration::from_secs(30)))
            .map_err(|e| reported(&self.client, &e))
    }

    fn services(&self) -> Result<Vec<mesh_api::ServiceSummary>> {
        match self.call(&Request::ServiceList)? {
            Reply::Services(list) => Ok(list),
            other => Err(unexpected(&other)),
        }
    }

    fn stack_services(&self, stack: &str) -> Result<Vec<mesh_cluster::state::Service>> {
        Ok(self
            .services()?
            .into_iter()
            .map(|s| s.service)
            .filter(|s| stack_of(&s.spec.labels) == Some(stack))
            .collect())
    }

    fn networks(&self) -> Result<Vec<mesh_cluster::state::Network>> {
        match self.call(&Request::NetworkList)? {
            Reply::Networks(list) => Ok(list),
            other => Err(unexpected(&other)),
        }
    }

    fn blobs(&self, kind: BlobKind) -> Result<Vec<mesh_api::BlobInfo>> {
        match self.call(&Request::BlobList { kind })? {
            Reply::Blobs(list) => Ok(list),
            other => Err(unexpected(&other)),
        }
    }
}

/// The stack a labelled object belongs to.
pub fn stack_of(labels: &BTreeMap<String, String>) -> Option<&str> {
    labels.get(STACK_LABEL).map(String::as_str)
}

/// What exists in the cluster, by name, for [`deploy_steps`].
#[derive(Debug, Default)]
pub struct Existing {
    pub networks: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
    pub configs: BTreeSet<String>,
    /// Every service's name → id.
    pub services: BTreeMap<String, Id>,
    /// The names of this stack's services.
    pub stack_services: BTreeSet<String>,
}

/// One thing `stack deploy` does.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    CreateNetwork(NetworkSpec),
    CreateBlob(BlobKind, String),
    CreateService(ServiceSpec),
    UpdateService(Id, ServiceSpec),
    RemoveService(String),
}

/// The steps of a deploy, in order (networks, secrets, configs, services, pruned services), or
/// why none can be taken: an external network, secret or config that does not exist.
pub fn deploy_steps(plan: &StackPlan, have: &Existing, prune: bool) -> Result<Vec<Step>, String> {
    let mut missing = Vec::new();
    for (what, names, known) in [
        ("network", &plan.external_networks, &have.networks),
        ("secret", &plan.external_secrets, &have.secrets),
        ("config", &plan.external_configs, &have.configs),
    ] {
        missing.extend(
            names
                .iter()
                .filter(|n| !known.contains(*n))
                .map(|n| format!("{what} {n:?}")),
        );
    }
    if !missing.is_empty() {
        return Err(format!(
            "the compose file uses external {} that could not be found: create {} before the stack \
             is deployed (meshctl network create -d overlay / secret create / config create); \
             nothing was changed",
            missing.join(", "),
            if missing.len() == 1 { "it" } else { "them" }
        ));
    }
    let mut steps: Vec<Step> = plan
        .networks
        .iter()
        .filter(|n| !have.networks.contains(&n.name))
        .map(|n| Step::CreateNetwork(n.clone()))
        .collect();
    for (kind, blobs, known) in [
        (BlobKind::Secret, &plan.secrets, &have.secrets),
        (BlobKind::Config, &plan.configs, &have.configs),
    ] {
        steps.extend(
            blobs
                .iter()
                .filter(|b| !known.contains(&b.name))
                .map(|b| Step::CreateBlob(kind, b.name.clone())),
        );
    }
    for spec in &plan.services {
        steps.push(match have.services.get(&spec.name) {
            Some(id) => Step::UpdateService(id.clone(), spec.clone()),
            None => Step::CreateService(spec.clone()),
        });
    }
    if prune {
        let wanted: BTreeSet<&str> = plan.services.iter().map(|s| s.name.as_str()).collect();
        steps.extend(
            have.stack_services
                .iter()
                .filter(|n| !wanted.contains(n.as_str()))
                .map(|n| Step::RemoveService(n.clone())),
        );
    }
    Ok(steps)
}

/// Reads the compose files and plans them; nothing is sent.
fn plan_files(a: &DeployArgs, err: &mut impl Write) -> Result<StackPlan> {
    let mut files = Vec::new();
    for f in &a.compose_files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read compose file {f:?}"))?;
        files.push((f.clone(), text));
    }
    let first = Path::new(&a.compose_files[0]);
    let dir = first
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = std::fs::canonicalize(dir)
        .with_context(|| format!("cannot find the folder of {}", first.display()))?;
    let working_dir = dir.to_string_lossy().into_owned();
    // The process environment over `.env` next to the first compose file, as compose does.
    let process: Environment = std::env::vars().collect();
    let mut env = Environment::new();
    if let Ok(text) = std::fs::read_to_string(dir.join(".env")) {
        let vars = parse_env_file(&text, &process)
            .map_err(|e| anyhow::anyhow!("{working_dir}/.env {e}"))?;
        env.extend(vars);
    }
    env.extend(process);
    let read = |p: &str| std::fs::read(p).map_err(|e| e.to_string());
    let src = Sources {
        working_dir: &working_dir,
        env: &env,
        read: &read,
    };
    let (plan, warnings) = mesh_compose::load_and_plan(&files, &a.stack, &src)
        .map_err(|e| Reported(format!("invalid compose file: {e}")))?;
    for w in warnings {
        writeln!(err, "{w}")?;
    }
    Ok(plan)
}

fn existing(conn: &Conn, stack: &str) -> Result<Existing> {
    let names = |list: Vec<mesh_api::BlobInfo>| list.into_iter().map(|b| b.name).collect();
    let services = conn.services()?;
    Ok(Existing {
        networks: conn.networks()?.into_iter().map(|n| n.spec.name).collect(),
        secrets: names(conn.blobs(BlobKind::Secret)?),
        configs: names(conn.blobs(BlobKind::Config)?),
        stack_services: services
            .iter()
            .filter(|s| stack_of(&s.service.spec.labels) == Some(stack))
            .map(|s| s.service.spec.name.clone())
            .collect(),
        services: services
            .into_iter()
            .map(|s| (s.service.spec.name, s.service.id))
            .collect(),
    })
}

/// `stack deploy`: plan, check, then create and update; a failure part way removes what this
/// deploy created.
fn deploy(target: &Target, a: &DeployArgs, out: &mut impl Write) -> Result<()> {
    let plan = plan_files(a, &mut std::io::stderr())?;
    let conn = Conn::new(target)?;
    let steps = deploy_steps(&plan, &existing(&conn, &a.stack)?, a.prune).map_err(Reported)?;
    let mut created: Vec<(&'static str, String)> = Vec::new();
    // Images are pinned to their digests and logins sent as `service create` does it.
    let registry = RegistryArgs {
        with_registry_auth: a.with_registry_auth,
        no_resolve_image: false,
    };
    for step in steps {
        if let Err(e) = take_step(&conn, &plan, &registry, step, &mut created, out) {
            undo(&conn, &created, out);
            return Err(e);
        }
    }
    Ok(())
}

fn take_step(
    conn: &Conn,
    plan: &StackPlan,
    registry: &RegistryArgs,
    step: Step,
    created: &mut Vec<(&'static str, String)>,
    out: &mut impl Write,
) -> Result<()> {
    match step {
        Step::CreateNetwork(spec) => {
            writeln!(out, "Creating network {}", spec.name)?;
            let name = spec.name.clone();
            conn.call(&Request::NetworkCreate { spec })?;
            created.push(("network", name));
        }
        Step::CreateBlob(kind, name) => {
            writeln!(out, "Creating {} {name}", kind.as_str())?;
            let blobs = if kind == BlobKind::Secret {
                &plan.secrets
            } else {
                &plan.configs
            };
            let blob = blobs.iter().find(|b| b.name == name).expect("planned");
            conn.call(&Request::BlobCreate(BlobCreate {
                kind,
                name: name.clone(),
                labels: blob.labels.clone(),
                data: BlobData(blob.data.clone()),
            }))?;
            created.push((kind.as_str(), name));
        }
        Step::CreateService(spec) => {
            writeln!(out, "Creating service {}", spec.name)?;
            let name = spec.name.clone();
            let image = registry.options(&spec.task.container.image, true)?;
            let reply = conn.call(&Request::ServiceCreate { spec, image })?;
            print_warnings(&reply.into_parts().1);
            created.push(("service", name));
        }
        Step::UpdateService(id, mut spec) => {
            writeln!(out, "Updating service {} (id: {})", spec.name, id.as_str())?;
            let current = match conn.call(&Request::ServiceInspect {
                service: id.as_str().to_owned(),
            })? {
                Reply::Service(s) => s,
                other => return Err(unexpected(&other)),
            };
            // A re-deploy of the same file changes nothing: keep the forced-update counter.
            spec.task.force_update = current.spec.task.force_update;
            // The same tag as deployed keeps its pinned digest; a new one is pinned again.
            let same_image = current
                .spec
                .task
                .container
                .image
                .split('@')
                .next()
                .is_some_and(|tag| tag == spec.task.container.image);
            if same_image {
                spec.task
                    .container
                    .image
                    .clone_from(&current.spec.task.container.image);
            }
            let image = registry.options(&spec.task.container.image, !same_image)?;
            let reply = conn.call(&Request::ServiceUpdate {
                service: id.as_str().to_owned(),
                version: current.meta.version,
                spec,
                image,
            })?;
            print_warnings(&reply.into_parts().1);
        }
        Step::RemoveService(name) => {
            writeln!(out, "Removing service {name}")?;
            conn.call(&Request::ServiceRemove { service: name })?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Removes what a failed deploy created, newest first; what cannot be removed is said.
fn undo(conn: &Conn, created: &[(&'static str, String)], out: &mut impl Write) {
    for (what, name) in created.iter().rev() {
        let req = match *what {
            "service" => Request::ServiceRemove {
                service: name.clone(),
            },
            "network" => Request::NetworkRemove {
                network: name.clone(),
            },
            "secret" => Request::BlobRemove {
                kind: BlobKind::Secret,
                name: name.clone(),
            },
            _ => Request::BlobRemove {
                kind: BlobKind::Config,
                name: name.clone(),
            },
        };
        let result = retry(|| conn.call(&req).map(drop));
        let _ = match result {
            Ok(()) => writeln!(out, "Removing {what} {name} (the deploy failed)"),
            Err(e) => writeln!(out, "Could not remove {what} {name}: {e}"),
        };
    }
}

/// Networks are refused while the removed services' tasks still hold them: try for a while.
fn retry(mut f: impl FnMut() -> Result<()>) -> Result<()> {
    let mut tries = 0;
    loop {
        match f() {
            Ok(()) => return Ok(()),
            Err(e) if tries >= 20 => return Err(e),
            Err(_) => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// Docker's `stack ls` table.
const STACK_LIST: ListFormat = ListFormat {
    table: "table {{.Name}}\t{{.Services}}",
    headers: &[
        ("Name", "NAME"),
        ("Services", "SERVICES"),
        ("Orchestrator", "ORCHESTRATOR"),
    ],
};

/// `stack ls`: NAME SERVICES.
fn ls(target: &Target, format: Option<&str>, out: &mut impl Write) -> Result<()> {
    let conn = Conn::new(target)?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for s in conn.services()? {
        if let Some(stack) = stack_of(&s.service.spec.labels) {
            *counts.entry(stack.to_owned()).or_default() += 1;
        }
    }
    let rows: Vec<serde_json::Value> = counts
        .into_iter()
        .map(|(n, c)| serde_json::json!({"Name": n, "Services": c.to_string(), "Orchestrator": "Swarm"}))
        .collect();
    write_list(out, &STACK_LIST, format, false, &rows)
}

/// `stack services`: `service ls` of the stack's services.
fn services(
    target: &Target,
    stack: &str,
    quiet: bool,
    filter: &[FilterArg],
    format: Option<&str>,
    out: &mut impl Write,
) -> Result<()> {
    let f = service_filters(filter)?;
    let conn = Conn::new(target)?;
    let list: Vec<_> = conn
        .services()?
        .into_iter()
        .filter(|s| stack_of(&s.service.spec.labels) == Some(stack))
        .collect();
    if list.is_empty() {
        bail!(Reported(format!("Nothing found in stack: {stack}")));
    }
    let rows: Vec<serde_json::Value> = list
        .iter()
        .filter(|s| service_matches(&f, s))
        .map(service_row)
        .collect();
    write_list(out, &SERVICE_LIST, format, quiet, &rows)
}

/// `stack rm`: the services, then the networks, secrets and configs of the stack.
fn rm(target: &Target, stack: &str, out: &mut impl Write) -> Result<()> {
    let conn = Conn::new(target)?;
    let services = conn.stack_services(stack)?;
    let networks: Vec<String> = conn
        .networks()?
        .into_iter()
        .filter(|n| stack_of(&n.spec.labels) == Some(stack))
        .map(|n| n.spec.name)
        .collect();
    let mut blobs = Vec::new();
    for kind in [BlobKind::Secret, BlobKind::Config] {
        for b in conn.blobs(kind)? {
            if stack_of(&b.labels) == Some(stack) {
                blobs.push((kind, b.name));
            }
        }
    }
    if services.is_empty() && networks.is_empty() && blobs.is_empty() {
        writeln!(out, "Nothing found in stack: {stack}")?;
        return Ok(());
    }
    let mut failed = Vec::new();
    for s in services {
        writeln!(out, "Removing service {}", s.spec.name)?;
        if let Err(e) = conn.call(&Request::ServiceRemove {
            service: s.id.as_str().to_owned(),
        }) {
            failed.push(format!("service {}: {e}", s.spec.name));
        }
    }
    for name in networks {
        writeln!(out, "Removing network {name}")?;
        if let Err(e) = retry(|| {
            conn.call(&Request::NetworkRemove {
                network: name.clone(),
            })
            .map(drop)
        }) {
            failed.push(format!("network {name}: {e}"));
        }
    }
    for (kind, name) in blobs {
        writeln!(out, "Removing {} {name}", kind.as_str())?;
        if let Err(e) = retry(|| {
            conn.call(&Request::BlobRemove {
                kind,
                name: name.clone(),
            })
            .map(drop)
        }) {
            failed.push(format!("{} {name}: {e}", kind.as_str()));
        }
    }
    if !failed.is_empty() {
        bail!(Reported(format!(
            "failed to remove some resources from stack {stack}: {}",
            failed.join("; ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use mesh_compose::BlobPlan;

    use super::*;

    fn plan() -> StackPlan {
        let spec = |name: &str| ServiceSpec {
            name: name.into(),
            ..ServiceSpec::default()
        };
        StackPlan {
            stack: "s".into(),
            networks: vec![NetworkSpec {
                name: "s_default".into(),
                ..NetworkSpec::default()
            }],
            secrets: vec![BlobPlan {
                name: "s_pw".into(),
                labels: BTreeMap::new(),
                data: b"x".to_vec(),
            }],
            services: vec![spec("s_api"), spec("s_web")],
            ..StackPlan::default()
        }
    }

    #[test]
    fn a_first_deploy_creates_everything_in_order() {
        let steps = deploy_steps(&plan(), &Existing::default(), false).unwrap();
        let kinds: Vec<String> = steps
            .iter()
            .map(|s| match s {
                Step::CreateNetwork(n) => format!("network {}", n.name),
                Step::CreateBlob(k, n) => format!("{} {n}", k.as_str()),
                Step::CreateService(s) => format!("create {}", s.name),
                Step::UpdateService(_, s) => format!("update {}", s.name),
                Step::RemoveService(n) => format!("rm {n}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "network s_default",
                "secret s_pw",
                "create s_api",
                "create s_web"
            ]
        );
    }

    #[test]
    fn a_redeploy_updates_in_place_and_prunes_only_when_asked() {
        let have = Existing {
            networks: ["s_default".to_owned()].into(),
            secrets: ["s_pw".to_owned()].into(),
            services: [
                ("s_web".to_owned(), Id::from("w1")),
                ("s_old".to_owned(), Id::from("o1")),
            ]
            .into(),
            stack_services: ["s_web".to_owned(), "s_old".to_owned()].into(),
            ..Existing::default()
        };
        let steps = deploy_steps(&plan(), &have, false).unwrap();
        assert!(
            matches!(&steps[0], Step::CreateService(s) if s.name == "s_api"),
            "{steps:?}"
        );
        assert!(
            matches!(&steps[1], Step::UpdateService(id, s) if id.as_str() == "w1" && s.name == "s_web")
        );
        assert_eq!(steps.len(), 2);
        let pruned = deploy_steps(&plan(), &have, true).unwrap();
        assert_eq!(pruned.last(), Some(&Step::RemoveService("s_old".into())));
    }

    /// The files as `stack deploy` reads them: `.env` next to the first file, relative paths
    /// from its folder, the process environment over `.env`.
    #[test]
    fn compose_files_are_read_with_their_env_file_and_relative_paths() {
        let dir = std::env::temp_dir().join(format!("meshctl-stack-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(".env"), "TAG=1.25\nPATH=not-this\n").unwrap();
        std::fs::write(dir.join("pw.txt"), "hunter2").unwrap();
        let compose = "services:\n  web:\n    image: nginx:${TAG}\n    environment: [\"P=${PATH}\"]\n    \
                       secrets: [pw]\n    cap_add: [NET_ADMIN]\nsecrets:\n  pw:\n    file: pw.txt\n";
        std::fs::write(dir.join("compose.yml"), compose).unwrap();
        let args = DeployArgs {
            compose_files: vec![dir.join("compose.yml").display().to_string()],
            prune: false,
            with_registry_auth: false,
            stack: "s".into(),
        };
        let mut warnings = Vec::new();
        let planned = plan_files(&args, &mut warnings);
        let _ = std::fs::remove_dir_all(&dir);
        let plan = planned.unwrap();
        let web = &plan.services[0].task.container;
        assert_eq!(web.image, "nginx:1.25");
        assert_ne!(
            web.env,
            ["P=not-this"],
            "the process environment wins over .env"
        );
        assert_eq!(plan.secrets[0].data, b"hunter2");
        assert_eq!(
            String::from_utf8(warnings).unwrap(),
            "Ignoring unsupported options: cap_add\n"
        );
    }

    #[test]
    fn a_missing_external_changes_nothing_and_is_named() {
        let mut p = plan();
        p.external_networks = vec!["front".into()];
        p.external_secrets = vec!["cert".into()];
        let e = deploy_steps(&p, &Existing::default(), false).unwrap_err();
        assert!(
            e.contains("network \"front\"") && e.contains("secret \"cert\""),
            "{e}"
        );
    }
}
