//! The integration test suite: one binary, the real server on port 0, a fresh database per test
//! (SQLite by default, PostgreSQL when `TEST_DATABASE_URL` is set).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod accounts;
mod agent;
mod catalog;
mod collaborators;
mod db;
mod errors;
mod http;
mod live;
mod migrations;
mod orchestration;
mod schema_file;
mod services;
mod workspaces;
mod ws_client;
