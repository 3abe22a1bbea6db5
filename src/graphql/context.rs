//! Typed access to what each request carries, without `unwrap`.
use async_graphql::Context;

use super::loaders::Loaders;
use crate::auth::{Auth, Viewer};
use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// The client's network address, for throttling log-ins.
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

pub trait ContextExt {
    fn app(&self) -> AppResult<&AppState>;
    fn viewer(&self) -> AppResult<&Viewer>;
    fn loaders(&self) -> AppResult<&Loaders>;
    fn client_addr(&self) -> Option<&str>;
}

impl ContextExt for Context<'_> {
    fn app(&self) -> AppResult<&AppState> {
        self.data::<AppState>()
            .map_err(|_| AppError::internal("AppState missing from schema data"))
    }

    fn viewer(&self) -> AppResult<&Viewer> {
        match self.data_opt::<Auth>() {
            Some(auth) => auth.viewer(),
            None => Err(AppError::unauthenticated()),
        }
    }

    fn loaders(&self) -> AppResult<&Loaders> {
        // HTTP requests carry their own; a websocket connection shares one among its operations.
        if let Some(loaders) = self.data_opt::<Loaders>() {
            return Ok(loaders);
        }
        self.data_opt::<std::sync::Arc<Loaders>>()
            .map(|l| l.as_ref())
            .ok_or_else(|| AppError::internal("Loaders missing from request data"))
    }

    fn client_addr(&self) -> Option<&str> {
        self.data_opt::<ClientAddr>().map(|a| a.0.as_str())
    }
}
