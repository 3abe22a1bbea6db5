//! The behaviour, one module per concept: functions over a connection, no GraphQL types.
//! Access control lives here, once: every function that takes an id resolves it to its
//! workspace and checks the viewer's role there.
pub mod access;
pub mod accounts;
pub mod claiming;
pub mod collaborators;
pub mod deployments;
pub mod flow_runs;
pub mod flows;
pub mod logs;
pub mod orchestration;
pub mod runs_common;
pub mod schedules;
pub mod states;
pub mod storage;
pub mod task_runs;
pub mod validate;
pub mod work_queues;
pub mod workspaces;

pub use access::Role;
