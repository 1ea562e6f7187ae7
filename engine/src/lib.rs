//! `mesh-engine`: the Docker engine behind a narrow type. It runs a task as a container
//! (`network_mode: none`, labelled `meshd.task`), finds its network namespace, streams its logs,
//! watches it end, stops and removes it. It alone touches bollard.
//!
//! [`Engine`] is the only type that does I/O; everything it sends or receives goes through
//! plain data ([`ContainerSpec`], [`ContainerState`], [`ContainerEvent`], [`LogLine`]) and pure
//! functions that are unit-tested without Docker. Docker's own error messages reach the caller
//! verbatim inside a sentence that says what meshd was doing.

mod error;
mod handle;
mod reference;
mod resolv;
mod spec;
mod status;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::container::LogOutput;
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, EventsOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StopContainerOptions,
};
use bollard::{API_DEFAULT_VERSION, Docker};
use futures::stream::{self, BoxStream, StreamExt};
use tokio::io::AsyncWriteExt;

pub use error::EngineError;
pub use handle::EngineHandle;
pub use reference::{RegistryLogin, is_digest, is_pinned, pin, strip_digest, unpinned_warning};
pub use resolv::{MAX_NAMESERVERS, render_resolv_conf};
pub use spec::{
    BindMount, ContainerSpec, DEFAULT_STOP_GRACE, LABEL_HOSTNAME, LABEL_NODE, LABEL_SERVICE,
    LABEL_TASK, NETWORK_MODE, container_name, task_labels,
};
pub use status::{
    ContainerEvent, ContainerEventKind, ContainerState, ContainerStatus, ContainerSummary,
    HealthStatus, LogLine, LogStream,
};

use error::docker_error;
use spec::{create_body, grace_seconds, is_container_ref, split_image_reference};

// A service's own mounts and health check (`--mount`, `--health-*`).
pub use spec::{BIND_PROPAGATIONS, EngineMount, EngineMountKind, Healthcheck};

/// Where dockerd listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// How long a request may wait for Docker's answer (bollard's default). `stop` waits longer:
/// Docker answers it only after the grace period.
const REQUEST_TIMEOUT: Duration = Duration::from_mins(2);
/// A daemon that accepts the connection but never answers should not hang startup.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A pull that reports no progress for this long is abandoned: progress is its only sign of
/// life (a big layer keeps reporting bytes), so a silent registry fails the pull, never hangs it.
pub const PULL_STALL: Duration = Duration::from_mins(1);
/// A digest lookup asks the registry one small question; no answer by then means "not
/// reachable", and the service keeps its tag.
const DIGEST_TIMEOUT: Duration = Duration::from_secs(20);

type Result<T, E = EngineError> = std::result::Result<T, E>;

/// A connection to one dockerd. Cheap to clone; clones share the connection pool.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    socket: String,
}

/// A started task container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningContainer {
    pub id: String,
    /// The main process, whose `/proc/PID/ns/net` is the namespace to plumb. `None` when the
    /// process already ended by the time Docker was asked: the container is kept, so that its
    /// exit code and logs stay readable, and a `Die` event reports the end.
    pub pid: Option<u32>,
    /// Its health check's verdict when it started (`Starting`); `None` without a health check.
    pub health: Option<HealthStatus>,
}

impl Engine {
    /// Connects to dockerd on [`DEFAULT_SOCKET`] and agrees on an API version with it.
    pub async fn connect() -> Result<Self> {
        Self::connect_at(DEFAULT_SOCKET).await
    }

    /// Connects to dockerd on the unix socket `socket`.
    pub async fn connect_at(socket: &str) -> Result<Self> {
        let unreachable = |reason: String| EngineError::Unreachable {
            socket: socket.to_owned(),
            reason,
        };
        let docker =
            Docker::connect_with_socket(socket, REQUEST_TIMEOUT.as_secs(), API_DEFAULT_VERSION)
                .map_err(|e| unreachable(error::chain(&e)))?;
        // bollard speaks a newer API than Debian's dockerd 20.10 (1.41); negotiating makes it
        // send the server's version, which 20.10 accepts.
        let docker = tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(|_| unreachable(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| unreachable(error::chain(&e)))?;
        Ok(Self {
            docker,
            socket: socket.to_owned(),
        })
    }

    fn err(&self, action: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> EngineError {
        let socket = self.socket.clone();
        let action = action.into();
        move |e| docker_error(&socket, action, &e)
    }

    /// The engine's version, as `docker version` prints it (`20.10.24+dfsg1`).
    pub async fn version(&self) -> Result<String> {
        let v = self
            .docker
            .version()
            .await
            .map_err(self.err("asking dockerd for its version"))?;
        Ok(v.version.unwrap_or_default())
    }

    /// What this node offers: `(nano_cpus, memory_bytes)`, from `docker info`.
    pub async fn resources(&self) -> Result<(i64, i64)> {
        let info = self
            .docker
            .info()
            .await
            .map_err(self.err("asking dockerd for its resources"))?;
        let cpus = info.ncpu.unwrap_or(0);
        Ok((
            cpus.saturating_mul(1_000_000_000),
            info.mem_total.unwrap_or(0),
        ))
    }

    /// Whether the image is present on this node.
    pub async fn image_exists(&self, image: &str) -> Result<bool> {
        spec::validate_image_reference(image)?;
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if error::status(&e) == Some(404) => Ok(false),
            Err(e) => Err(self.err(format!("inspecting image {image}"))(e)),
        }
    }

    /// The registry digests this engine knows for the image's repository (its `RepoDigests` of
    /// that name: none for an image built or loaded here, never pulled under it), or `None`
    /// when the engine does not have the image.
    pub async fn local_repo_digests(&self, image: &str) -> Result<Option<Vec<String>>> {
        spec::validate_image_reference(image)?;
        let (repo, _) = split_image_reference(strip_digest(image));
        match self.docker.inspect_image(image).await {
            Ok(i) => Ok(Some(
                i.repo_digests
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|d| d.split_once('@').is_some_and(|(r, _)| r == repo))
                    .collect(),
            )),
            Err(e) if error::status(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.err(format!("inspecting image {image}"))(e)),
        }
    }

    /// Makes sure the image is present: pulls it when it is not. A failed pull says that the
    /// image is not here and why the registry refused it, so the task is rejected readably.
    pub async fn ensure_image(&self, image: &str) -> Result<()> {
        if self.image_exists(image).await? {
            return Ok(());
        }
        self.pull_image(image, None).await
    }

    /// Pulls the image (with `login` for its registry, if given). Bounded in time: a pull that
    /// reports no progress for [`PULL_STALL`] fails. The error is
    /// [`EngineError::ImageUnavailable`] with Docker's (or the registry's) words as the reason.
    pub async fn pull_image(&self, image: &str, login: Option<&RegistryLogin>) -> Result<()> {
        spec::validate_image_reference(image)?;
        let unavailable = |reason: String| EngineError::ImageUnavailable {
            image: image.to_owned(),
            reason,
        };
        let (repo, tag) = split_image_reference(image);
        let options = CreateImageOptions {
            from_image: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
            ..CreateImageOptions::default()
        };
        // The pull reports progress as a stream; a registry error arrives as one of its items.
        let mut progress =
            self.docker
                .create_image(Some(options), None, login.map(RegistryLogin::to_docker));
        loop {
            match tokio::time::timeout(PULL_STALL, progress.next()).await {
                Err(_) => {
                    return Err(unavailable(format!(
                        "the pull made no progress for {}s",
                        PULL_STALL.as_secs()
                    )));
                }
                Ok(None) => break,
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return Err(unavailable(error::message(&e))),
            }
        }
        if self.image_exists(image).await? {
            Ok(())
        } else {
            Err(unavailable(format!("No such image: {image}")))
        }
    }

    /// The digest the image's registry gives for `image` (`GET /distribution/NAME/json`, what
    /// the docker CLI pins a service to), with `login` for that registry if given. An image
    /// that exists only in this engine, or a registry that does not answer, is an error.
    pub async fn registry_digest(
        &self,
        image: &str,
        login: Option<&RegistryLogin>,
    ) -> Result<String> {
        spec::validate_image_reference(image)?;
        let action = format!("asking the registry for the digest of {image}");
        let answer = tokio::time::timeout(
            DIGEST_TIMEOUT,
            self.docker
                .inspect_registry_image(image, login.map(RegistryLogin::to_docker)),
        )
        .await
        .map_err(|_| EngineError::Docker {
            action: action.clone(),
            status: None,
            message: format!("no answer within {}s", DIGEST_TIMEOUT.as_secs()),
        })?
        .map_err(self.err(action.clone()))?;
        match answer.descriptor.digest {
            Some(d) if is_digest(&d) => Ok(d),
            other => Err(EngineError::Docker {
                action,
                status: None,
                message: format!("the registry answered no usable digest ({other:?})"),
            }),
        }
    }

    /// Creates and starts the task's container with no network of its own, and returns its
    /// id and main process. Pulls the image if it is missing. Any failure removes what was
    /// created, so no half-made container stays behind. (A future dropped midway can still
    /// leave one: the agent reconciles with [`Engine::list`] by the `meshd.task` label.)
    pub async fn run(&self, spec: &ContainerSpec) -> Result<RunningContainer> {
        spec.validate()?;
        let id = self.create(spec).await?;
        match self.start_and_inspect(&spec.name, &id).await {
            Ok(state) => Ok(RunningContainer {
                id,
                pid: state.pid,
                health: state.health,
            }),
            Err(e) => {
                if let Err(cleanup) = self.remove(&id).await {
                    tracing::warn!(container = %id, error = %cleanup, "removing a container that failed to start");
                }
                Err(e)
            }
        }
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        let action = format!("creating container {}", spec.name);
        let first = self
            .docker
            .create_container(Some(options.clone()), create_body(spec))
            .await;
        let created = match first {
            // Docker's create does not pull; a missing image is pulled once, then created again.
            Err(e) if error::status(&e) == Some(404) => {
                self.ensure_image(&spec.image).await?;
                self.docker
                    .create_container(Some(options), create_body(spec))
                    .await
            }
            other => other,
        };
        Ok(created.map_err(self.err(action))?.id)
    }

    async fn start_and_inspect(&self, name: &str, id: &str) -> Result<ContainerState> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(self.err(format!("starting container {name}")))?;
        self.inspect_state(id).await
    }

    /// Writes the container's resolv.conf so the task resolves through meshd's DNS. Docker
    /// bind-mounts the host file named by `ResolvConfPath` (for `network_mode: none` too) onto
    /// `/etc/resolv.conf`; that file is rewritten.
    pub async fn write_resolv_conf(
        &self,
        id: &str,
        nameservers: &[Ipv4Addr],
        search: &[String],
        options: &[String],
    ) -> Result<()> {
        let text = render_resolv_conf(nameservers, search, options)?;
        let path = self
            .inspect(id)
            .await?
            .resolv_conf_path
            .filter(|p| !p.is_empty())
            .ok_or_else(|| EngineError::Docker {
                action: format!("writing the resolv.conf of container {id}"),
                status: None,
                message: "Docker reports no ResolvConfPath for it".into(),
            })?;
        let io = |source| EngineError::Io {
            action: format!("writing {path} (container {id})"),
            source,
        };
        // In place, never by rename: the bind mount holds the file's inode, so a new file
        // would stay invisible inside the container. No `create`: Docker made it, or it is gone.
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(io)?;
        file.write_all(text.as_bytes()).await.map_err(io)?;
        file.flush().await.map_err(io)?;
        Ok(())
    }

    /// Sends SIGTERM, then SIGKILL after `grace`. Stopping a stopped container is fine.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        check_ref(id)?;
        let seconds = grace_seconds(grace);
        let t = i32::try_from(seconds).unwrap_or(i32::MAX);
        // Docker answers only once the container is down, up to `grace` later.
        let docker = self
            .docker
            .clone()
            .with_timeout(REQUEST_TIMEOUT + Duration::from_secs(seconds.unsigned_abs()));
        docker
            .stop_container(
                id,
                Some(StopContainerOptions {
                    t: Some(t),
                    signal: None,
                }),
            )
            .await
            .map_err(self.err(format!("stopping container {id}")))
    }

    /// Removes the container, killing it if it runs, with its anonymous volumes. Removing a
    /// container that does not exist is fine: the wanted end state holds.
    pub async fn remove(&self, id: &str) -> Result<()> {
        check_ref(id)?;
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        match self.docker.remove_container(id, Some(options)).await {
            Err(e) if error::status(&e) == Some(404) => Ok(()),
            other => other.map_err(self.err(format!("removing container {id}"))),
        }
    }

    /// The container's state: running or ended with its exit code, Docker's error, times.
    pub async fn inspect_state(&self, id: &str) -> Result<ContainerState> {
        let state = self.inspect(id).await?.state.unwrap_or_default();
        Ok(ContainerState::from_docker(&state))
    }

    async fn inspect(&self, id: &str) -> Result<bollard::models::ContainerInspectResponse> {
        check_ref(id)?;
        self.docker
            .inspect_container(id, None)
            .await
            .map_err(self.err(format!("inspecting container {id}")))
    }

    /// Every container (running or not) whose labels match all of `labels`, each written as
    /// Docker's label filter: `key` (present) or `key=value`.
    pub async fn list(&self, labels: &[&str]) -> Result<Vec<ContainerSummary>> {
        let filters = HashMap::from([(
            "label".to_owned(),
            labels.iter().map(|l| (*l).to_owned()).collect::<Vec<_>>(),
        )]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let rows = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(self.err(format!("listing containers labelled {}", labels.join(", "))))?;
        Ok(rows
            .into_iter()
            .map(ContainerSummary::from_docker)
            .collect())
    }

    /// Lifecycle events (start, die with exit code, oom, destroy, health verdicts) of
    /// containers carrying the `meshd.task` label, from the moment of this call on. The stream ends if dockerd goes
    /// away; subscribe again with [`Engine::events_since`] and reconcile with [`Engine::list`].
    pub fn events(&self) -> BoxStream<'static, Result<ContainerEvent>> {
        self.events_since(SystemTime::now())
    }

    /// Like [`Engine::events`], replaying what Docker still remembers since `since` (it keeps
    /// the last few hundred events). The connection opens at the first poll; `since` makes
    /// sure nothing between this call and that poll is missed.
    pub fn events_since(&self, since: SystemTime) -> BoxStream<'static, Result<ContainerEvent>> {
        let since = since.duration_since(UNIX_EPOCH).unwrap_or_default();
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("label".to_owned(), vec![LABEL_TASK.to_owned()]),
            (
                "event".to_owned(),
                status::EVENT_ACTIONS.map(str::to_owned).to_vec(),
            ),
        ]);
        let options = EventsOptions {
            since: Some(format!("{}.{:09}", since.as_secs(), since.subsec_nanos())),
            until: None,
            filters: Some(filters),
        };
        let socket = self.socket.clone();
        self.docker
            .events(Some(options))
            .filter_map(move |r| {
                let item = match r {
                    Ok(m) => ContainerEvent::from_docker(&m).map(Ok),
                    Err(e) => Some(Err(docker_error(&socket, "watching container events", &e))),
                };
                std::future::ready(item)
            })
            .boxed()
    }

    /// The container's output, line by line: the last `tail` lines (all when `None`), then,
    /// with `follow`, what it writes until it ends.
    pub fn logs(
        &self,
        id: &str,
        tail: Option<usize>,
        follow: bool,
        timestamps: bool,
    ) -> BoxStream<'static, Result<LogLine>> {
        if let Err(e) = check_ref(id) {
            return stream::once(std::future::ready(Err(e))).boxed();
        }
        let options = LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            timestamps,
            tail: tail.map_or_else(|| "all".to_owned(), |n| n.to_string()),
            ..Default::default()
        };
        let socket = self.socket.clone();
        let action = format!("reading the logs of container {id}");
        self.docker
            .logs(id, Some(options))
            .flat_map(move |r| {
                let items: Vec<Result<LogLine>> = match r {
                    Ok(LogOutput::StdErr { message }) => {
                        status::log_lines(LogStream::Stderr, &message, timestamps)
                            .into_iter()
                            .map(Ok)
                            .collect()
                    }
                    // meshd allocates no TTY, so `Console` does not occur; it would be stdout.
                    Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                        status::log_lines(LogStream::Stdout, &message, timestamps)
                            .into_iter()
                            .map(Ok)
                            .collect()
                    }
                    Ok(LogOutput::StdIn { .. }) => Vec::new(),
                    Err(e) => vec![Err(docker_error(&socket, action.clone(), &e))],
                };
                stream::iter(items)
            })
            .boxed()
    }
}

/// Container references go into request paths; see [`spec::is_container_ref`].
fn check_ref(id: &str) -> Result<()> {
    if is_container_ref(id) {
        Ok(())
    } else {
        Err(EngineError::Invalid(format!(
            "{id:?} is not a container id or name (letters, digits, '_', '.', '-')"
        )))
    }
}
