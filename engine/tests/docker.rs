//! `mesh-engine` against the real dockerd (CI runs it as root with dockerd started by
//! `scripts/deps.sh`). Every container made here carries `meshd.test=<pid>.<test>` and is
//! removed by [`Cleanup`]'s `Drop`, also when a test panics.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::HealthStatusEnum;
use futures::StreamExt;
use mesh_engine::{
    BindMount, ContainerEvent, ContainerEventKind, ContainerSpec, ContainerStatus, Engine,
    EngineError, HealthStatus, LogLine, LogStream, container_name, render_resolv_conf, task_labels,
};
use mesh_engine::{EngineMount, EngineMountKind, Healthcheck};

const IMAGE: &str = "meshd/busybox";
/// A bound on waiting for something that must happen, so a broken engine fails instead of
/// hanging; never a speed assertion.
const PATIENCE: Duration = Duration::from_mins(1);

/// Removes every container carrying this test's label when dropped.
struct Cleanup {
    test: String,
}

impl Cleanup {
    async fn new(test: &str) -> (Self, Engine) {
        let guard = Self {
            test: test.to_owned(),
        };
        let engine = Engine::connect()
            .await
            .expect("dockerd must run (./scripts/deps.sh starts it)");
        ensure_test_image(&engine).await;
        (guard, engine)
    }

    fn label(&self) -> String {
        format!("meshd.test={}.{}", std::process::id(), self.test)
    }

    /// A task container running `sh -c script`, named and labelled like meshd's.
    fn spec(&self, slot: u32, script: &str) -> ContainerSpec {
        let task = format!("t{}x{slot}", std::process::id());
        let mut labels = task_labels(&task, "svc-enginetest", "node-enginetest", "enginetest");
        let (k, v) = self
            .label()
            .split_once('=')
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .unwrap();
        labels.insert(k, v);
        ContainerSpec {
            name: container_name(
                &format!("enginetest-{}-{}", std::process::id(), self.test),
                slot,
                &task,
            ),
            image: IMAGE.into(),
            command: vec!["sh".into(), "-c".into()],
            args: vec![script.into()],
            labels,
            stop_grace: Duration::from_secs(1),
            ..ContainerSpec::default()
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // The docker CLI needs no runtime, so this works while the test's runtime unwinds.
        let filter = format!("label={}", self.label());
        let Ok(out) = Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
        else {
            return;
        };
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&ids)
                .output();
        }
    }
}

/// `meshd/busybox` is built by `meshctl lab up` (lab/src/image.rs); these tests may run
/// before any lab did, so they build the same image the same way when it is missing.
async fn ensure_test_image(engine: &Engine) {
    static BUILD: Mutex<()> = Mutex::new(());
    if engine.image_exists(IMAGE).await.unwrap() {
        return;
    }
    // Parallel tests: one builds, the others wait and find it built.
    let _once = BUILD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let present = Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .output()
        .unwrap();
    if !present.status.success() {
        build_test_image();
    }
}

fn build_test_image() {
    let ctx = std::env::temp_dir().join(format!("mesh-engine-image-{}", std::process::id()));
    let root = ctx.join("rootfs");
    for d in ["bin", "etc", "tmp", "www", "run", "var/www"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("busybox-static (./scripts/deps.sh)");
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|a| *a != "busybox")
    {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY rootfs /\nENV PATH=/bin\nCMD [\"sh\"]\n",
    )
    .unwrap();
    // The classic builder: Debian's docker.io has no buildx.
    let out = Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", IMAGE])
        .arg(&ctx)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&ctx);
    assert!(
        out.status.success(),
        "docker build {IMAGE}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn docker() -> Docker {
    Docker::connect_with_socket_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap()
}

/// Runs `cmd` inside the container; its exit code and combined output.
async fn exec(id: &str, cmd: &[&str]) -> (i64, String) {
    let docker = docker().await;
    let options = CreateExecOptions {
        cmd: Some(cmd.iter().map(|s| (*s).to_owned()).collect()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let created = docker.create_exec(id, options).await.unwrap();
    let StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&created.id, None).await.unwrap()
    else {
        panic!("exec {cmd:?} did not attach");
    };
    let mut text = String::new();
    while let Some(chunk) = output.next().await {
        text.push_str(&chunk.unwrap().to_string());
    }
    let code = docker
        .inspect_exec(&created.id)
        .await
        .unwrap()
        .exit_code
        .unwrap_or(-1);
    (code, text)
}

async fn all_logs(engine: &Engine, id: &str) -> Vec<LogLine> {
    engine
        .logs(id, None, false, false)
        .map(Result::unwrap)
        .collect()
        .await
}

/// Polls the logs until `done` holds for them; panics with what it saw after [`PATIENCE`].
async fn logs_until(engine: &Engine, id: &str, done: impl Fn(&[LogLine]) -> bool) -> Vec<LogLine> {
    let start = std::time::Instant::now();
    loop {
        let lines = all_logs(engine, id).await;
        if done(&lines) {
            return lines;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "logs of {id} never satisfied the test: {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn texts(lines: &[LogLine], stream: LogStream) -> Vec<&str> {
    lines
        .iter()
        .filter(|l| l.stream == stream)
        .map(|l| l.text.as_str())
        .collect()
}

/// Reads events until one of `id` matches `want`, returning every event of `id` seen.
async fn events_until(
    events: &mut futures::stream::BoxStream<'static, Result<ContainerEvent, EngineError>>,
    id: &str,
    want: impl Fn(&ContainerEventKind) -> bool,
) -> Vec<ContainerEventKind> {
    let mut seen = Vec::new();
    let wait = async {
        while let Some(e) = events.next().await {
            let e = e.unwrap();
            if e.id == id {
                seen.push(e.kind);
                if want(&e.kind) {
                    return;
                }
            }
        }
        panic!("the event stream ended");
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| panic!("events of {id}: only {seen:?}"));
    seen
}

fn netns(pid: &str) -> std::path::PathBuf {
    std::fs::read_link(Path::new("/proc").join(pid).join("ns/net")).unwrap()
}

#[tokio::test]
async fn connect_names_the_socket_when_dockerd_is_absent() {
    let err = Engine::connect_at("/nonexistent/docker.sock")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cannot reach dockerd at /nonexistent/docker.sock: "),
        "{err}"
    );
}

#[tokio::test]
async fn version_and_resources_come_from_dockerd() {
    let engine = Engine::connect().await.unwrap();
    let version = engine.version().await.unwrap();
    let cli = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .unwrap();
    assert_eq!(version, String::from_utf8_lossy(&cli.stdout).trim());
    let (nano_cpus, memory) = engine.resources().await.unwrap();
    assert!(
        nano_cpus >= 1_000_000_000 && nano_cpus % 1_000_000_000 == 0,
        "{nano_cpus}"
    );
    assert!(memory > 0);
}

#[tokio::test]
async fn runs_a_task_in_its_own_namespace_with_its_spec_logs_and_labels() {
    let (guard, engine) = Cleanup::new("run").await;
    let secret = std::env::temp_dir().join(format!("mesh-engine-secret-{}", std::process::id()));
    std::fs::write(&secret, "s3cret").unwrap();
    let mut spec = guard.spec(
        1,
        "echo hi; echo oops >&2; echo \"$GREETING\"; hostname; pwd; echo done; exec sleep 30",
    );
    spec.env = vec!["GREETING=hello".into()];
    spec.hostname = "taskhost".into();
    spec.workdir = "/tmp".into();
    spec.nano_cpus = 500_000_000;
    spec.memory_bytes = 64 << 20;
    spec.binds = vec![BindMount {
        host: secret.clone(),
        container: "/run/secrets/token".into(),
    }];

    let running = engine.run(&spec).await.unwrap();
    let pid = running.pid.expect("sleep 30 still runs").to_string();
    assert_ne!(
        netns(&pid),
        netns("self"),
        "the task must have its own network namespace"
    );

    // stdout and stderr are copied into the log by separate readers, so "oops" may land
    // after "done": wait for both, and compare the tail with the log's own last line.
    let lines = logs_until(&engine, &running.id, |l| {
        l.iter().any(|l| l.text == "done") && l.iter().any(|l| l.text == "oops")
    })
    .await;
    assert_eq!(
        texts(&lines, LogStream::Stdout),
        ["hi", "hello", "taskhost", "/tmp", "done"]
    );
    assert_eq!(texts(&lines, LogStream::Stderr), ["oops"]);
    let last: Vec<LogLine> = engine
        .logs(&running.id, Some(1), false, true)
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(Some(&last[0].text), lines.last().map(|l| &l.text));
    assert!(
        last[0]
            .timestamp
            .as_deref()
            .is_some_and(|t| t.ends_with('Z')),
        "{last:?}"
    );

    let state = engine.inspect_state(&running.id).await.unwrap();
    assert_eq!(
        (state.status, state.pid, state.exit_code),
        (ContainerStatus::Running, running.pid, None)
    );
    assert!(state.started_at.is_some());

    let rows = engine.list(&[&guard.label()]).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].id.as_str(), rows[0].name.as_str()),
        (running.id.as_str(), spec.name.as_str())
    );
    assert_eq!(rows[0].state, ContainerStatus::Running);
    for key in [
        "meshd.task",
        "meshd.service",
        "meshd.node",
        "meshd.hostname",
    ] {
        assert_eq!(rows[0].labels.get(key), spec.labels.get(key), "{key}");
    }

    let inspect = docker()
        .await
        .inspect_container(&running.id, None)
        .await
        .unwrap();
    let hc = inspect.host_config.unwrap();
    assert_eq!(hc.network_mode.as_deref(), Some("none"));
    assert_eq!(
        (hc.nano_cpus, hc.memory),
        (Some(500_000_000), Some(64 << 20))
    );
    assert_eq!(
        exec(&running.id, &["cat", "/run/secrets/token"]).await,
        (0, "s3cret".into())
    );
    let (code, out) = exec(&running.id, &["sh", "-c", "echo x > /run/secrets/token"]).await;
    assert_ne!(code, 0, "the bind mount must be read-only: {out}");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "s3cret");

    // PID 1 ignores SIGTERM without a handler: the grace runs out and SIGKILL ends it.
    engine
        .stop(&running.id, Duration::from_secs(1))
        .await
        .unwrap();
    let state = engine.inspect_state(&running.id).await.unwrap();
    assert_eq!(
        (state.status, state.exit_code, state.pid),
        (ContainerStatus::Exited, Some(137), None)
    );
    assert!(state.finished_at.is_some());
    engine
        .stop(&running.id, Duration::from_secs(1))
        .await
        .expect("stopping twice is fine");

    engine.remove(&running.id).await.unwrap();
    assert_eq!(engine.list(&[&guard.label()]).await.unwrap(), []);
    let gone = engine.inspect_state(&running.id).await.unwrap_err();
    assert!(gone.is_not_found(), "{gone}");
    engine
        .remove(&running.id)
        .await
        .expect("removing twice is fine");
    let _ = std::fs::remove_file(&secret);
}

#[tokio::test]
async fn events_report_start_die_with_exit_code_and_destroy() {
    let (guard, engine) = Cleanup::new("events").await;
    let mut events = engine.events();
    let running = engine.run(&guard.spec(1, "exit 3")).await.unwrap();

    let seen = events_until(&mut events, &running.id, |k| {
        matches!(k, ContainerEventKind::Die { .. })
    })
    .await;
    assert_eq!(
        seen,
        [
            ContainerEventKind::Start,
            ContainerEventKind::Die { exit_code: Some(3) }
        ]
    );
    let state = engine.inspect_state(&running.id).await.unwrap();
    assert_eq!(
        (state.status, state.exit_code),
        (ContainerStatus::Exited, Some(3))
    );
    let rows = engine.list(&[&guard.label()]).await.unwrap();
    assert_eq!(
        (rows[0].state, rows[0].exit_code),
        (ContainerStatus::Exited, Some(3)),
        "{rows:?}"
    );

    engine.remove(&running.id).await.unwrap();
    let seen = events_until(&mut events, &running.id, |k| {
        *k == ContainerEventKind::Destroy
    })
    .await;
    assert_eq!(seen, [ContainerEventKind::Destroy]);
}

#[tokio::test]
async fn an_oom_kill_is_reported() {
    let (guard, engine) = Cleanup::new("oom").await;
    let mut events = engine.events();
    let mut spec = guard.spec(1, "a=$(head -c 64m /dev/zero | tr '\\0' x); echo ${#a}");
    spec.memory_bytes = 16 << 20;
    let running = engine.run(&spec).await.unwrap();
    let mut seen = events_until(&mut events, &running.id, |k| {
        matches!(k, ContainerEventKind::Die { .. })
    })
    .await;
    assert_eq!(
        seen.last(),
        Some(&ContainerEventKind::Die {
            exit_code: Some(137)
        })
    );
    // dockerd relays containerd's OOM event and the exit separately: under load the "oom" can
    // come after the "die".
    if !seen.contains(&ContainerEventKind::Oom) {
        seen.extend(
            events_until(&mut events, &running.id, |k| *k == ContainerEventKind::Oom).await,
        );
    }
    assert!(seen.contains(&ContainerEventKind::Oom), "{seen:?}");
    let state = engine.inspect_state(&running.id).await.unwrap();
    assert!(state.oom_killed, "{state:?}");
}

#[tokio::test]
async fn follow_streams_logs_until_the_container_ends() {
    let (guard, engine) = Cleanup::new("follow").await;
    let running = engine
        .run(&guard.spec(1, "for i in 1 2 3; do echo line$i; sleep 0.2; done"))
        .await
        .unwrap();
    let follow = engine
        .logs(&running.id, None, true, false)
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    let lines = tokio::time::timeout(PATIENCE, follow)
        .await
        .expect("follow must end with the container");
    assert_eq!(
        texts(&lines, LogStream::Stdout),
        ["line1", "line2", "line3"]
    );
}

#[tokio::test]
async fn an_unknown_image_is_refused_readably_and_leaves_nothing() {
    let (guard, engine) = Cleanup::new("image").await;
    assert!(engine.image_exists(IMAGE).await.unwrap());
    engine
        .ensure_image(IMAGE)
        .await
        .expect("a present image needs no pull");

    // A registry on loopback that is not there: never Docker Hub.
    let absent = format!("127.0.0.1:9/meshd/absent-{}:v1", std::process::id());
    assert!(!engine.image_exists(&absent).await.unwrap());
    let err = engine.ensure_image(&absent).await.unwrap_err();
    assert!(
        matches!(err, EngineError::ImageUnavailable { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "image {absent} is not present on this node and could not be pulled: "
        )),
        "{text}"
    );

    let mut spec = guard.spec(1, "true");
    spec.image.clone_from(&absent);
    let err = engine.run(&spec).await.unwrap_err().to_string();
    assert!(
        err.contains("is not present on this node and could not be pulled"),
        "{err}"
    );
    assert_eq!(engine.list(&[&guard.label()]).await.unwrap(), []);

    let err = engine.ensure_image("Not An Image").await.unwrap_err();
    assert!(matches!(err, EngineError::Invalid(_)), "{err:?}");
}

#[tokio::test]
async fn a_failed_start_leaves_nothing() {
    let (guard, engine) = Cleanup::new("badstart").await;
    let mut spec = guard.spec(1, "");
    spec.command = vec!["/no/such/program".into()];
    spec.args = Vec::new();
    let err = engine.run(&spec).await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("starting container {}: ", spec.name)),
        "{err}"
    );
    assert!(
        err.contains("/no/such/program"),
        "Docker's own words must reach the user: {err}"
    );
    assert_eq!(engine.list(&[&guard.label()]).await.unwrap(), []);
}

#[tokio::test]
async fn a_name_in_use_is_refused_and_the_owner_is_untouched() {
    let (guard, engine) = Cleanup::new("conflict").await;
    let first = engine.run(&guard.spec(1, "exec sleep 30")).await.unwrap();
    let err = engine
        .run(&guard.spec(1, "exec sleep 30"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Conflict"), "{err}");
    assert_eq!(
        engine.inspect_state(&first.id).await.unwrap().status,
        ContainerStatus::Running
    );
    assert_eq!(engine.list(&[&guard.label()]).await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_invalid_spec_creates_nothing() {
    let (guard, engine) = Cleanup::new("invalid").await;
    let mut spec = guard.spec(1, "true");
    spec.env = vec!["NOEQUALS".into()];
    let err = engine.run(&spec).await.unwrap_err();
    assert!(matches!(err, EngineError::Invalid(_)), "{err:?}");
    assert_eq!(engine.list(&[&guard.label()]).await.unwrap(), []);
}

/// Removes the named volumes a test made when dropped (after its containers: declare it first).
struct VolumeCleanup {
    names: Vec<String>,
}

impl Drop for VolumeCleanup {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f"])
            .args(&self.names)
            .output();
    }
}

/// Runs `spec` and waits for it to exit 0; its stdout lines.
async fn run_to_end(engine: &Engine, spec: &ContainerSpec) -> Vec<String> {
    let mut events = engine.events();
    let running = engine.run(spec).await.unwrap();
    let seen = events_until(&mut events, &running.id, |k| {
        matches!(k, ContainerEventKind::Die { .. })
    })
    .await;
    let lines = all_logs(engine, &running.id).await;
    assert_eq!(
        seen.last(),
        Some(&ContainerEventKind::Die { exit_code: Some(0) }),
        "{}: {lines:?}",
        spec.name
    );
    engine.remove(&running.id).await.unwrap();
    texts(&lines, LogStream::Stdout)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// A named volume is made by the engine on create (with its labels) and keeps what one task
/// wrote for the next; a tmpfs mount is a memory file system that does not.
#[tokio::test]
async fn a_volume_outlives_its_container_and_a_tmpfs_does_not() {
    let volume = format!("meshd-enginetest-{}-data", std::process::id());
    let _volumes = VolumeCleanup {
        names: vec![volume.clone()],
    };
    let (guard, engine) = Cleanup::new("mounts").await;
    let mounts = vec![
        EngineMount {
            target: "/data".into(),
            readonly: false,
            kind: EngineMountKind::Volume {
                name: volume.clone(),
                driver: String::new(),
                driver_options: std::collections::BTreeMap::new(),
                labels: [("meshd.test".to_owned(), "mounts".to_owned())].into(),
                nocopy: false,
            },
        },
        EngineMount {
            target: "/cache".into(),
            readonly: false,
            kind: EngineMountKind::Tmpfs {
                size_bytes: 1 << 20,
                mode: 0o1777,
            },
        },
    ];
    let mut writer = guard.spec(
        1,
        "echo kept > /data/f && echo gone > /cache/f && grep ' /cache ' /proc/mounts",
    );
    writer.mounts.clone_from(&mounts);
    let out = run_to_end(&engine, &writer).await;
    assert!(
        out.iter().any(|l| l.starts_with("tmpfs /cache tmpfs")),
        "/cache must be a tmpfs: {out:?}"
    );
    let labels = Command::new("docker")
        .args(["volume", "inspect", "-f", "{{json .Labels}}", &volume])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&labels.stdout).contains("\"meshd.test\":\"mounts\""),
        "the volume was made with its labels: {}{}",
        String::from_utf8_lossy(&labels.stdout),
        String::from_utf8_lossy(&labels.stderr)
    );
    let mut reader = guard.spec(2, "cat /data/f && ls /cache | wc -l");
    reader.mounts = mounts;
    let out = run_to_end(&engine, &reader).await;
    assert_eq!(out, ["kept", "0"], "what the second task saw");
}

/// Polls Docker's `State.Health.Status` of `id` until it is `want`.
async fn health_until(id: &str, want: HealthStatusEnum) {
    let docker = docker().await;
    let start = std::time::Instant::now();
    loop {
        let state = docker.inspect_container(id, None).await.unwrap().state;
        let status = state
            .as_ref()
            .and_then(|s| s.health.as_ref())
            .and_then(|h| h.status);
        if status == Some(want) {
            return;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "{id} never became {want}: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The service's health check reaches Docker and runs: a passing one reports `healthy`, a
/// failing one `unhealthy`, in `docker inspect`'s `State.Health`.
#[tokio::test]
async fn a_health_check_runs_and_reports_in_inspect() {
    let (guard, engine) = Cleanup::new("healthspec").await;
    let check = |cmd: &str| Healthcheck {
        test: vec!["CMD-SHELL".into(), cmd.into()],
        interval: Duration::from_millis(200),
        timeout: Duration::from_secs(5),
        start_period: Duration::ZERO,
        retries: 2,
    };
    let mut good = guard.spec(1, "touch /tmp/ready && exec sleep 60");
    good.healthcheck = Some(check("test -f /tmp/ready"));
    let mut bad = guard.spec(2, "exec sleep 60");
    bad.healthcheck = Some(check("test -f /tmp/ready"));
    let good = engine.run(&good).await.unwrap();
    let bad = engine.run(&bad).await.unwrap();
    health_until(&good.id, HealthStatusEnum::HEALTHY).await;
    health_until(&bad.id, HealthStatusEnum::UNHEALTHY).await;
}

#[tokio::test]
async fn the_written_resolv_conf_is_what_the_task_reads() {
    let (guard, engine) = Cleanup::new("resolv").await;
    let running = engine.run(&guard.spec(1, "exec sleep 30")).await.unwrap();
    let ns = ["10.0.9.2".parse().unwrap()];
    let search = ["svc.enginetest".to_owned()];
    let options = ["ndots:0".to_owned()];
    engine
        .write_resolv_conf(&running.id, &ns, &search, &options)
        .await
        .unwrap();
    let expected = render_resolv_conf(&ns, &search, &options).unwrap();
    assert_eq!(
        exec(&running.id, &["cat", "/etc/resolv.conf"]).await,
        (0, expected.clone())
    );

    // Bad input changes nothing.
    let err = engine
        .write_resolv_conf(&running.id, &[], &search, &options)
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Invalid(_)), "{err:?}");
    assert_eq!(
        exec(&running.id, &["cat", "/etc/resolv.conf"]).await,
        (0, expected)
    );
}

/// A throw-away image `FROM meshd/busybox` with a `HEALTHCHECK` (what Docker runs for a task
/// whose spec says nothing of health), removed when dropped.
struct HealthImage {
    name: String,
}

impl HealthImage {
    /// Healthy while `/tmp/ok` exists, checked every second, unhealthy after one failure.
    fn build(test: &str) -> Self {
        let name = format!("meshd/enginetest-health-{}-{test}", std::process::id());
        let ctx = std::env::temp_dir().join(format!("{name}-ctx").replace('/', "-"));
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            format!(
                "FROM {IMAGE}\nHEALTHCHECK --interval=1s --timeout=1s --retries=1 CMD test -e /tmp/ok\n"
            ),
        )
        .unwrap();
        let out = Command::new("docker")
            .env("DOCKER_BUILDKIT", "0")
            .args(["build", "-q", "-t", &name])
            .arg(&ctx)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&ctx);
        assert!(
            out.status.success(),
            "docker build {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { name }
    }
}

impl Drop for HealthImage {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["image", "rm", "-f", &self.name])
            .output();
    }
}

#[tokio::test]
async fn health_verdicts_arrive_as_events_and_in_the_state() {
    let (guard, engine) = Cleanup::new("health").await;
    let image = HealthImage::build("health");
    let mut events = engine.events();
    let mut spec = guard.spec(1, "sleep 2; touch /tmp/ok; sleep 3; rm /tmp/ok; sleep 60");
    spec.image.clone_from(&image.name);
    let running = engine.run(&spec).await.unwrap();
    assert_eq!(running.health, Some(HealthStatus::Starting), "{running:?}");

    let seen = events_until(&mut events, &running.id, |k| {
        *k == ContainerEventKind::Health(HealthStatus::Healthy)
    })
    .await;
    assert_eq!(
        seen.last(),
        Some(&ContainerEventKind::Health(HealthStatus::Healthy))
    );
    let state = engine.inspect_state(&running.id).await.unwrap();
    assert_eq!(state.health, Some(HealthStatus::Healthy));

    events_until(&mut events, &running.id, |k| {
        *k == ContainerEventKind::Health(HealthStatus::Unhealthy)
    })
    .await;
    let rows = engine.list(&[&guard.label()]).await.unwrap();
    assert_eq!(rows[0].health, Some(HealthStatus::Unhealthy), "{rows:?}");

    // Without a health check: no verdict at all.
    let plain = engine.run(&guard.spec(2, "sleep 60")).await.unwrap();
    assert_eq!(plain.health, None);
    engine.remove(&running.id).await.unwrap();
    engine.remove(&plain.id).await.unwrap();
}

/// Debian's `docker-registry` on 127.0.0.1 (plain HTTP: dockerd trusts 127.0.0.0/8 so), with
/// its storage in a temporary directory; killed and removed when dropped.
struct LocalRegistry {
    child: std::process::Child,
    dir: std::path::PathBuf,
    addr: String,
}

impl LocalRegistry {
    fn start(test: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let dir = std::env::temp_dir().join(format!(
            "mesh-engine-registry-{}-{test}",
            std::process::id()
        ));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .args(["serve"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry (./scripts/deps.sh)");
        let me = Self { child, dir, addr };
        let deadline = std::time::Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(&me.addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the registry never listened on {}",
                me.addr
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        me
    }

    /// Pushes the local `image` as `NAME` into the registry; returns `ADDR/NAME`.
    fn push(&self, image: &str, name: &str) -> String {
        let target = format!("{}/{name}", self.addr);
        let out = Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false"])
            .arg(format!("docker-daemon:{image}"))
            .arg(format!("docker://{target}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy {image} {target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        target
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes the named images when dropped.
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for i in &self.0 {
            let _ = Command::new("docker")
                .args(["image", "rm", "-f", i])
                .output();
        }
    }
}

#[tokio::test]
async fn images_are_pulled_and_pinned_from_a_registry() {
    let (_guard, engine) = Cleanup::new("pull").await;
    let registry = LocalRegistry::start("pull");
    let image = registry.push(
        &format!("{IMAGE}:latest"),
        &format!("enginetest/pull-{}:v1", std::process::id()),
    );
    let pulled = Images(vec![image.clone()]);
    assert!(!engine.image_exists(&image).await.unwrap());

    let digest = engine.registry_digest(&image, None).await.unwrap();
    assert!(mesh_engine::is_digest(&digest), "{digest}");
    engine.pull_image(&image, None).await.unwrap();
    assert!(engine.image_exists(&image).await.unwrap());
    // Pulled: the engine knows its registry digest; built here: none.
    let digests = engine.local_repo_digests(&image).await.unwrap().unwrap();
    assert!(digests.iter().any(|d| d.ends_with(&digest)), "{digests:?}");
    assert_eq!(
        engine.local_repo_digests(IMAGE).await.unwrap(),
        Some(vec![])
    );
    let pinned = mesh_engine::pin(&image, &digest);
    assert!(engine.image_exists(&pinned).await.unwrap(), "{pinned}");

    // A tag the registry does not have: the registry's words.
    let missing = image.replace(":v1", ":nope");
    let err = engine.pull_image(&missing, None).await.unwrap_err();
    assert!(
        matches!(err, EngineError::ImageUnavailable { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("manifest unknown"), "{err}");
    assert!(engine.registry_digest(&missing, None).await.is_err());
    assert_eq!(engine.local_repo_digests(&missing).await.unwrap(), None);
    // An image only this engine has (no registry behind its name) has no digest to pin.
    assert!(
        engine
            .registry_digest(&format!("127.0.0.1:9/{IMAGE}:latest"), None)
            .await
            .is_err()
    );
    drop(pulled);
}
