//! Passwords, session tokens, API keys and the viewer (who is calling).
pub mod api_keys;
pub mod jwt;
pub mod password;
pub mod throttle;
pub mod viewer;

pub use viewer::{Auth, Viewer};
