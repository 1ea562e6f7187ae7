//! `mesh-cli`: `meshctl`, the Docker-like command line. It links the API (`mesh-api`), the pure
//! cluster logic it shares with the managers (`mesh-cluster`: spec parsers, naming) and the lab
//! (`mesh-lab`), and nothing of the manager, the agent or the kernel side.

pub mod commands;
pub mod format;
