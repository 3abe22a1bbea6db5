//! flowcloud: a self-hostable orchestration cloud, served as a GraphQL API.

/// `flowcloud agent`: claims runs from a work queue and runs them as local commands.
pub mod agent;
/// Building and running the server.
pub mod app;
/// Passwords, session tokens, API keys and the viewer.
pub mod auth;
/// Typed configuration, validated at start.
pub mod config;
/// Database connections (SQLite writer funnel, PostgreSQL pool).
pub mod db;
/// The behaviour, one module per concept.
pub mod domain;
/// The one error type and its mapping to `extensions.code`.
pub mod error;
/// The event log and its live fan-out.
pub mod events;
/// The GraphQL schema.
pub mod graphql;
/// The HTTP router and handlers.
pub mod http;
/// Background services: retention, scheduler, late-run detector.
pub mod services;
/// Shared application state.
pub mod state;

pub use app::Application;
pub use config::Config;
