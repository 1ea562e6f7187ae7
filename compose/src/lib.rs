//! `mesh-compose`: compose files (format 3.x, as Swarm honours them) read and planned into
//! what `meshctl stack deploy` sends: networks, secrets, configs and service specs named
//! `STACK_NAME` and labelled `com.docker.stack.namespace=STACK`. Pure: the caller passes the
//! files' text, the environment and a reader for the files the compose file names; nothing here
//! touches the disk or the network. An error names its file, line, service and key, and what is
//! accepted; a project with one error plans nothing.

#![forbid(unsafe_code)]

mod deploy;
mod deploy_plan;
mod error;
mod interpolate;
mod model;
mod mounts;
mod plan;
mod print;
mod yaml;

pub use error::ComposeError;
pub use interpolate::{Environment, parse_env_file};
pub use model::{
    DeployDef, FileDef, FileUse, HealthDef, NetworkDef, Project, ResourcesDef, RestartDef,
    ServiceDef, UpdateDef, VolumeDef, VolumeMount,
};
pub use plan::{BlobPlan, DEFAULT_NETWORK, STACK_LABEL, Sources, StackPlan, validate_stack_name};

/// A compose project read from its files, and what the user should be told about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    pub project: Project,
    /// "Ignoring unsupported options: build", unset variables.
    pub warnings: Vec<String>,
}

/// Reads `files` (name, text), merged in order (later files win), variables taken from `env`.
pub fn load(files: &[(String, String)], env: &Environment) -> Result<Loaded, ComposeError> {
    let mut unset = Vec::new();
    let tree = yaml::load_tree(files, env, &mut unset)?;
    let mut ignored = Vec::new();
    let project = Project::from_tree(&tree, &mut ignored).map_err(|e| e.locate(files))?;
    let mut warnings: Vec<String> = unset
        .iter()
        .map(|v| format!("The {v} variable is not set. Defaulting to a blank string."))
        .collect();
    if !ignored.is_empty() {
        ignored.sort_unstable();
        warnings.push(format!(
            "Ignoring unsupported options: {}",
            ignored.join(", ")
        ));
    }
    Ok(Loaded { project, warnings })
}

/// [`load`], then plans the project as stack `stack`.
pub fn load_and_plan(
    files: &[(String, String)],
    stack: &str,
    src: &Sources,
) -> Result<(StackPlan, Vec<String>), ComposeError> {
    let loaded = load(files, src.env)?;
    let plan = plan::plan(stack, &loaded.project, src).map_err(|e| e.locate(files))?;
    Ok((plan, loaded.warnings))
}

#[cfg(test)]
mod tests;
