//! One DataLoader per relation, created per request so nothing is cached across viewers.
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use entity::{accounts, workspaces};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::state::AppState;

/// Errors cross the loader boundary as a shared, already-logged message.
pub type LoadError = Arc<String>;

fn load_error(err: sea_orm::DbErr) -> LoadError {
    tracing::error!(error = %err, "loader query failed");
    Arc::new("internal server error".into())
}

pub struct Loaders {
    pub accounts: DataLoader<AccountLoader>,
    pub workspaces: DataLoader<WorkspaceLoader>,
}

impl Loaders {
    pub fn new(state: &AppState) -> Self {
        Self {
            accounts: DataLoader::new(AccountLoader(state.clone()), tokio::spawn),
            workspaces: DataLoader::new(WorkspaceLoader(state.clone()), tokio::spawn),
        }
    }
}

pub struct AccountLoader(AppState);

impl Loader<Uuid> for AccountLoader {
    type Value = accounts::Model;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = accounts::Entity::find()
            .filter(accounts::Column::Id.is_in(keys.iter().copied()))
            .all(self.0.db.read())
            .await
            .map_err(load_error)?;
        Ok(rows.into_iter().map(|r| (r.id, r)).collect())
    }
}

pub struct WorkspaceLoader(AppState);

impl Loader<Uuid> for WorkspaceLoader {
    type Value = workspaces::Model;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = workspaces::Entity::find()
            .filter(workspaces::Column::Id.is_in(keys.iter().copied()))
            .all(self.0.db.read())
            .await
            .map_err(load_error)?;
        Ok(rows.into_iter().map(|r| (r.id, r)).collect())
    }
}
