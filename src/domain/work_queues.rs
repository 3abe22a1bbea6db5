//! Work queues: named queues agents poll, with an optional filter (tags, deployments of the same
//! workspace), a concurrency limit and a pause switch.
use chrono::Utc;
use entity::work_queues;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use uuid::Uuid;

use super::access::{require_role, Role};
use super::accounts::conflict_or_internal;
use super::validate;
use crate::auth::Viewer;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

pub const NAME_MAX: usize = 100;
pub const DESCRIPTION_MAX: usize = 2000;
pub const DEPLOYMENT_IDS_MAX: usize = 500;

const NAME_TAKEN: &str = "a work queue with this name already exists in this workspace";

/// Create or update input. `None` means default on create and unchanged on update;
/// `Some(None)` clears a nullable field.
pub struct WorkQueueInput {
    pub name: String,
    pub description: Option<Option<String>>,
    pub is_paused: Option<bool>,
    pub concurrency_limit: Option<Option<i32>>,
    pub tags: Option<Vec<String>>,
    pub deployment_ids: Option<Vec<Uuid>>,
}

struct Checked {
    name: String,
    description: Option<Option<String>>,
    concurrency_limit: Option<Option<i32>>,
    tags: Option<Vec<String>>,
    deployment_ids: Option<Vec<Uuid>>,
}

fn check(input: &WorkQueueInput) -> AppResult<Checked> {
    let name = validate::name("name", &input.name, NAME_MAX)?;
    let description = input
        .description
        .as_ref()
        .map(|d| validate::optional_text("description", d.as_deref(), DESCRIPTION_MAX))
        .transpose()?;
    if let Some(Some(limit)) = input.concurrency_limit {
        if limit < 0 {
            return Err(AppError::bad_input(
                "concurrencyLimit",
                "must be 0 or more (or null for no limit)",
            ));
        }
    }
    let tags = input
        .tags
        .clone()
        .map(|t| validate::tags("tags", t))
        .transpose()?;
    let deployment_ids = input.deployment_ids.as_ref().map(|ids| {
        let mut unique: Vec<Uuid> = Vec::with_capacity(ids.len());
        for id in ids {
            if !unique.contains(id) {
                unique.push(*id);
            }
        }
        unique
    });
    if deployment_ids
        .as_ref()
        .is_some_and(|ids| ids.len() > DEPLOYMENT_IDS_MAX)
    {
        return Err(AppError::bad_input(
            "deploymentIds",
            format!("at most {DEPLOYMENT_IDS_MAX} deployments"),
        ));
    }
    Ok(Checked {
        name,
        description,
        concurrency_limit: input.concurrency_limit,
        tags,
        deployment_ids,
    })
}

fn ids_json(ids: &[Uuid]) -> serde_json::Value {
    serde_json::json!(ids.iter().map(Uuid::to_string).collect::<Vec<_>>())
}

pub async fn create(
    state: &AppState,
    viewer: &Viewer,
    workspace_id: Uuid,
    input: WorkQueueInput,
) -> AppResult<work_queues::Model> {
    let checked = check(&input)?;
    let txn = state.db.begin_write().await?;
    require_role(&txn, viewer, workspace_id, Role::Editor, "workspace").await?;
    let deployment_ids = checked.deployment_ids.unwrap_or_default();
    super::deployments::ensure_all_in_workspace(&txn, workspace_id, &deployment_ids).await?;
    let now = Utc::now();
    let queue = work_queues::ActiveModel {
        id: Set(Uuid::now_v7()),
        workspace_id: Set(workspace_id),
        name: Set(checked.name),
        description: Set(checked.description.flatten()),
        is_paused: Set(input.is_paused.unwrap_or(false)),
        concurrency_limit: Set(checked.concurrency_limit.flatten()),
        tags: Set(serde_json::json!(checked.tags.unwrap_or_default())),
        deployment_ids: Set(ids_json(&deployment_ids)),
        last_polled_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await
    .map_err(|e| conflict_or_internal(e, NAME_TAKEN))?;
    txn.commit().await?;
    Ok(queue)
}

pub async fn update(
    state: &AppState,
    viewer: &Viewer,
    id: Uuid,
    input: WorkQueueInput,
) -> AppResult<work_queues::Model> {
    let checked = check(&input)?;
    let txn = state.db.begin_write().await?;
    let queue = find_for(&txn, viewer, id).await?;
    if let Some(ids) = &checked.deployment_ids {
        super::deployments::ensure_all_in_workspace(&txn, queue.workspace_id, ids).await?;
    }
    let mut row: work_queues::ActiveModel = queue.into();
    row.name = Set(checked.name);
    if let Some(description) = checked.description {
        row.description = Set(description);
    }
    if let Some(is_paused) = input.is_paused {
        row.is_paused = Set(is_paused);
    }
    if let Some(limit) = checked.concurrency_limit {
        row.concurrency_limit = Set(limit);
    }
    if let Some(tags) = checked.tags {
        row.tags = Set(serde_json::json!(tags));
    }
    if let Some(ids) = checked.deployment_ids {
        row.deployment_ids = Set(ids_json(&ids));
    }
    row.updated_at = Set(Utc::now());
    let queue = row
        .update(&txn)
        .await
        .map_err(|e| conflict_or_internal(e, NAME_TAKEN))?;
    txn.commit().await?;
    Ok(queue)
}

pub async fn delete(state: &AppState, viewer: &Viewer, id: Uuid) -> AppResult<Uuid> {
    let txn = state.db.begin_write().await?;
    find_for(&txn, viewer, id).await?;
    work_queues::Entity::delete_by_id(id).exec(&txn).await?;
    txn.commit().await?;
    Ok(id)
}

/// The workspace's work queues by name.
pub async fn list(
    state: &AppState,
    viewer: &Viewer,
    workspace_id: Uuid,
) -> AppResult<Vec<work_queues::Model>> {
    let db = state.db.read();
    require_role(db, viewer, workspace_id, Role::Viewer, "workspace").await?;
    Ok(work_queues::Entity::find()
        .filter(work_queues::Column::WorkspaceId.eq(workspace_id))
        .order_by_asc(work_queues::Column::Name)
        .order_by_asc(work_queues::Column::Id)
        .all(db)
        .await?)
}

/// The deployment ids of a queue's filter, as stored.
pub fn deployment_ids(queue: &work_queues::Model) -> Vec<Uuid> {
    validate::stored_strings(&queue.deployment_ids)
        .iter()
        .filter_map(|s| Uuid::parse_str(s).ok())
        .collect()
}

async fn find_for(
    conn: &impl ConnectionTrait,
    viewer: &Viewer,
    id: Uuid,
) -> AppResult<work_queues::Model> {
    let queue = work_queues::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or_else(|| AppError::not_found("work queue"))?;
    require_role(conn, viewer, queue.workspace_id, Role::Editor, "work queue").await?;
    Ok(queue)
}
