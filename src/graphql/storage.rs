//! Storage blocks: settings with write-only secrets, one default per workspace.
use async_graphql::{Context, InputObject, Json, Object};
use chrono::{DateTime, Utc};
use entity::storage_blocks;
use uuid::Uuid;

use super::ContextExt;
use crate::domain::storage::{self, StorageBlockInput as DomainInput};
use crate::error::AppResult;

#[derive(Clone)]
pub struct StorageBlock(pub storage_blocks::Model);

impl From<storage_blocks::Model> for StorageBlock {
    fn from(model: storage_blocks::Model) -> Self {
        Self(model)
    }
}

#[Object]
impl StorageBlock {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// What the block is (e.g. `local-file-system`, `s3`, `gcs`, `azure`).
    async fn kind(&self) -> &str {
        &self.0.kind
    }
    /// Secret settings (keys ending in secret, password, token or key) read as "********";
    /// send "********" back on update to keep them.
    async fn settings(&self) -> Json<serde_json::Value> {
        Json(storage::masked_settings(&self.0.settings))
    }
    async fn is_default(&self) -> bool {
        self.0.is_default
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

#[derive(InputObject)]
pub struct StorageBlockInput {
    name: String,
    kind: String,
    settings: Json<serde_json::Value>,
    /// Making a block the default clears the flag on the others. Left out: false on create,
    /// unchanged on update.
    is_default: Option<bool>,
}

impl From<StorageBlockInput> for DomainInput {
    fn from(input: StorageBlockInput) -> Self {
        Self {
            name: input.name,
            kind: input.kind,
            settings: input.settings.0,
            is_default: input.is_default,
        }
    }
}

/// `Workspace.storageBlocks`: the workspace's storage blocks by name.
pub async fn workspace_storage_blocks(
    ctx: &Context<'_>,
    workspace_id: Uuid,
) -> AppResult<Vec<StorageBlock>> {
    let rows = storage::list(ctx.app()?, ctx.viewer()?, workspace_id).await?;
    Ok(rows.into_iter().map(StorageBlock).collect())
}

#[derive(Default)]
pub struct StorageMutation;

#[Object]
impl StorageMutation {
    async fn create_storage_block(
        &self,
        ctx: &Context<'_>,
        workspace_id: Uuid,
        input: StorageBlockInput,
    ) -> AppResult<StorageBlock> {
        let block = storage::create(ctx.app()?, ctx.viewer()?, workspace_id, input.into()).await?;
        Ok(StorageBlock(block))
    }

    async fn update_storage_block(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        input: StorageBlockInput,
    ) -> AppResult<StorageBlock> {
        let block = storage::update(ctx.app()?, ctx.viewer()?, id, input.into()).await?;
        Ok(StorageBlock(block))
    }

    /// Deletes the block (deployments using it are left without storage); returns its id.
    async fn delete_storage_block(&self, ctx: &Context<'_>, id: Uuid) -> AppResult<Uuid> {
        storage::delete(ctx.app()?, ctx.viewer()?, id).await
    }
}
