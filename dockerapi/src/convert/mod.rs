//! The pure translation between the Engine API's JSON and meshd's requests and replies.

pub mod filters;
pub mod node_update;
pub mod objects;
pub mod spec_in;
pub mod spec_out;
pub mod unsupported;
