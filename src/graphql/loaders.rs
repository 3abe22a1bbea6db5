//! One DataLoader per relation, created per request so nothing is cached across viewers.
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use entity::{accounts, deployments, flows, storage_blocks, workspaces};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
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
    pub flows: DataLoader<FlowLoader>,
    pub deployments: DataLoader<DeploymentLoader>,
    pub deployments_by_flow: DataLoader<DeploymentsByFlowLoader>,
    pub storage_blocks: DataLoader<StorageBlockLoader>,
}

impl Loaders {
    pub fn new(state: &AppState) -> Self {
        Self {
            accounts: DataLoader::new(AccountLoader(state.clone()), tokio::spawn),
            workspaces: DataLoader::new(WorkspaceLoader(state.clone()), tokio::spawn),
            flows: DataLoader::new(FlowLoader(state.clone()), tokio::spawn),
            deployments: DataLoader::new(DeploymentLoader(state.clone()), tokio::spawn),
            deployments_by_flow: DataLoader::new(
                DeploymentsByFlowLoader(state.clone()),
                tokio::spawn,
            ),
            storage_blocks: DataLoader::new(StorageBlockLoader(state.clone()), tokio::spawn),
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

/// Flow by id (the flow of a deployment or run).
pub struct FlowLoader(AppState);

impl Loader<Uuid> for FlowLoader {
    type Value = flows::Model;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = flows::Entity::find()
            .filter(flows::Column::Id.is_in(keys.iter().copied()))
            .all(self.0.db.read())
            .await
            .map_err(load_error)?;
        Ok(rows.into_iter().map(|r| (r.id, r)).collect())
    }
}

/// Deployment by id (the deployment of a run).
pub struct DeploymentLoader(AppState);

impl Loader<Uuid> for DeploymentLoader {
    type Value = deployments::Model;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = deployments::Entity::find()
            .filter(deployments::Column::Id.is_in(keys.iter().copied()))
            .all(self.0.db.read())
            .await
            .map_err(load_error)?;
        Ok(rows.into_iter().map(|r| (r.id, r)).collect())
    }
}

/// A flow's deployments (flow id → its deployments by name).
pub struct DeploymentsByFlowLoader(AppState);

impl Loader<Uuid> for DeploymentsByFlowLoader {
    type Value = Vec<deployments::Model>;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = deployments::Entity::find()
            .filter(deployments::Column::FlowId.is_in(keys.iter().copied()))
            .order_by_asc(deployments::Column::Name)
            .all(self.0.db.read())
            .await
            .map_err(load_error)?;
        let mut by_flow: HashMap<Uuid, Self::Value> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        for row in rows {
            by_flow.entry(row.flow_id).or_default().push(row);
        }
        Ok(by_flow)
    }
}

/// Storage block by id (the storage of a deployment).
pub struct StorageBlockLoader(AppState);

impl Loader<Uuid> for StorageBlockLoader {
    type Value = storage_blocks::Model;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = storage_blocks::Entity::find()
            .filter(storage_blocks::Column::Id.is_in(keys.iter().copied()))
            .all(self.0.db.read())
            .await
            .map_err(load_error)?;
        Ok(rows.into_iter().map(|r| (r.id, r)).collect())
    }
}
