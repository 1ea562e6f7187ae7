//! Parsers and validators for what users type (`meshctl` flags, compose keys): each returns the
//! typed value or a [`SpecError`] naming the input and what is accepted, and each type has a
//! display form that parses back to the same value.

mod constraint;
mod files;
mod health;
pub mod limits;
mod mounts;
mod ports;
mod service;
mod units;
mod words;

pub use constraint::{Constraint, ConstraintKey, ConstraintOp, matches_all, parse_constraints};
pub use files::{
    DEFAULT_FILE_MODE, SECRETS_DIR, check_file_targets, container_path, parse_file_reference,
    update_file_references,
};
pub use health::{
    HEALTH_CMD, HEALTH_CMD_SHELL, HEALTH_NONE, HealthFlags, apply_health, check_health,
};
pub use mounts::{BIND_PROPAGATIONS, check_mounts, format_mount, parse_mount, update_mounts};
pub use ports::{format_port, format_published, parse_port};
pub use service::{
    format_mode, format_placement_pref, parse_endpoint_mode, parse_env, parse_failure_action,
    parse_mode, parse_placement_pref, parse_replicas, parse_restart_condition, parse_update_order,
    validate_service_name, validate_service_spec,
};
pub use units::{
    format_cpus, format_duration, format_memory, parse_cpus, parse_duration, parse_memory,
};
pub use words::split_words;

/// Bad input: the message names the input and what is accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

impl SpecError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// How many noise cases a fuzz loop runs: `default` in the test suite, `MESH_FUZZ_CASES` in the
/// long runs of `scripts/fuzz.sh`.
#[cfg(test)]
pub(crate) fn fuzz_cases(default: u64) -> u64 {
    fuzz_env("MESH_FUZZ_CASES", default)
}

#[cfg(test)]
fn fuzz_env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator for the parse → display → parse tests.
#[cfg(test)]
pub(crate) struct TestRng(u64);

#[cfg(test)]
impl TestRng {
    /// `seed`, mixed with `MESH_FUZZ_SEED` when `scripts/fuzz.sh` sets it.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed ^ fuzz_env("MESH_FUZZ_SEED", 0))
    }
    /// splitmix64.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    /// A short string over `alphabet`, for feeding parsers noise.
    pub(crate) fn noise(&mut self, alphabet: &[u8], max_len: u64) -> String {
        let len = self.below(max_len + 1);
        (0..len).map(|_| *self.pick(alphabet) as char).collect()
    }
}
