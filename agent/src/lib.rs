//! `mesh-agent`: what every node runs for the swarm. Its session with the leader ([`session`]:
//! a heartbeat every second, the node's assignments down, task states, log lines and mesh
//! counters up), the task runner that turns assignments into containers on the node's engine
//! ([`tasks`], [`logs`]), and the node's networking ([`net`]: overlay devices, task plumbing,
//! gossip, and the routing mesh and DNS runtimes that follow it), behind the seam the runner
//! plumbs tasks through ([`networking`]).
//!
//! The agent knows nothing of the manager or the daemon: it reaches the node it runs on through
//! [`session::NodeEvents`], and the managers through the API's client.

mod logs;
pub mod net;
pub mod networking;
pub mod session;
pub mod tasks;

pub use session::{AgentConfig, Describer, NodeEvents, run};
