//! meshd's end-to-end tests: one binary (hickory, openraft), one module per area, each test on
//! its own lab. They need root and dockerd; `./scripts/test.sh` provides both.
#![expect(
    clippy::too_many_lines,
    reason = "an end-to-end scenario reads as one story, step after step"
)]

mod support;

mod autolock;
mod bench_control;
mod bench_scale;
mod certs;
mod chaos;
mod clientip;
mod control;
mod datapath;
mod dockerapi;
mod dockerapi_clients;
mod egress;
mod engines;
mod format;
mod gossip;
mod health;
mod lab;
mod mesh;
mod metrics;
mod native;
mod networks;
mod overlay;
mod pathmtu;
mod registry;
mod secrets;
mod services;
mod socklb;
mod specs;
mod stacks;
mod syn_flood;
mod trust;
mod tutorial;
mod vxlan_filter;
