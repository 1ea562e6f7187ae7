//! mesh-bench: meshd's routing mesh measured beside the alternatives, in one run. It builds a
//! lab per data path (`meshctl lab up`), places one backend task on n2 and reaches it from the
//! lab's client by every scenario in turn (direct forwarding, the mesh through another node and
//! through its own, kube-proxy-style iptables, `HAProxy`), measuring each with the same Debian
//! tools (iperf3, wrk, dnsperf), then meshd's DNS beside unbound, convergence and memory. Pure
//! parts (`parse`, `report`, `config`, `machine`, `chart`'s data) are unit-tested; `lab`, `sys`
//! and `run` are the thin runtime, whose guards remove everything on exit. `chart` draws a run's
//! SVG.

pub mod bpfstats;
pub mod chart;
pub mod config;
pub mod lab;
pub mod machine;
pub mod panel;
pub mod parse;
pub mod report;
pub mod run;
pub mod scale;
pub mod sys;
