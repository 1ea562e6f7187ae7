//! meshd reads every flag from `MESHD_*` too, and refuses bad settings before it starts
//! anything. Each case here fails during start-up, so no daemon is left running.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs meshd with `env` and `args` (and an unused data dir), expects it to fail within 10 s,
/// and returns its stderr.
fn meshd_fails(env: &[(&str, &str)], args: &[&str]) -> String {
    let dir = std::env::temp_dir().join(format!("meshd-env-test-{}", std::process::id()));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshd"));
    for (k, _) in std::env::vars() {
        if k.starts_with("MESHD_") || k == "DOCKER_HOST" {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .env("MESHD_DATA_DIR", &dir)
        .envs(env.iter().copied())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
            let _ = child.wait();
            panic!("meshd {args:?} with {env:?} did not fail: it started");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_interface_from_the_environment_that_does_not_exist_is_named() {
    let err = meshd_fails(&[("MESHD_ADVERTISE_ADDR", "nosuchif0")], &[]);
    assert!(err.contains("no interface \"nosuchif0\""), "{err}");
    assert!(err.contains("an IPv4 address"), "{err}");
}

#[test]
fn a_flag_wins_over_its_environment_variable() {
    let err = meshd_fails(
        &[("MESHD_ADVERTISE_ADDR", "lo")],
        &["--advertise-addr", "nosuchif1"],
    );
    assert!(err.contains("nosuchif1"), "{err}");
}

#[test]
fn a_bad_value_in_the_environment_is_refused() {
    let err = meshd_fails(&[("MESHD_DATAPATH", "ebpf")], &[]);
    assert!(err.contains("ebpf") && err.contains("tc, xdp"), "{err}");
    let err = meshd_fails(&[("MESHD_CONNTRACK_TCP_TIMEOUT", "0s")], &[]);
    assert!(err.contains("longer than 0"), "{err}");
}

#[test]
fn the_engine_comes_from_meshd_engine_before_docker_host() {
    let lo = ("MESHD_ADVERTISE_ADDR", "127.0.0.1");
    let err = meshd_fails(
        &[
            lo,
            ("MESHD_ENGINE", "tcp://192.0.2.1:2375"),
            ("DOCKER_HOST", "unix:///x.sock"),
        ],
        &[],
    );
    assert!(err.contains("from --engine (MESHD_ENGINE)"), "{err}");
    let err = meshd_fails(&[lo, ("DOCKER_HOST", "tcp://192.0.2.1:2375")], &[]);
    assert!(err.contains("from DOCKER_HOST"), "{err}");
}
