//! `mesh-cli`: the two binaries. `meshd` composes the other crates into a node daemon and holds
//! no logic of its own; `meshctl` is the Docker-like command line, with the `lab` that runs a
//! whole cluster on one machine.

pub mod commands;
pub mod table;
