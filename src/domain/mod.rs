//! The behaviour, one module per concept: functions over a connection, no GraphQL types.
//! Access control lives here, once: every function that takes an id resolves it to its
//! workspace and checks the viewer's role there.
pub mod access;
pub mod accounts;
pub mod claiming;
pub mod collaborators;
pub mod flow_runs;
pub mod logs;
pub mod orchestration;
pub mod runs_common;
pub mod states;
pub mod task_runs;
pub mod validate;
pub mod workspaces;

pub use access::Role;
