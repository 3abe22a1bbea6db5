//! Deployments: a flow packaged to run server-side, name unique per flow, with an optional
//! schedule. Every id it references (flow, storage block) must be of the same workspace.
use chrono::{DateTime, Utc};
use entity::{deployments, storage_blocks, work_queues};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::access::{require_role, role_of, Role};
use super::accounts::conflict_or_internal;
use super::schedules::{self, Schedule, ScheduleInput};
use super::validate;
use crate::auth::Viewer;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

pub const NAME_MAX: usize = 200;
pub const DESCRIPTION_MAX: usize = 2000;
pub const ENTRYPOINT_MAX: usize = 1000;
pub const WORK_QUEUE_NAME_MAX: usize = 100;
pub const PARAMETERS_MAX_BYTES: usize = 512 * 1024;

const NAME_TAKEN: &str = "a deployment with this name already exists for this flow";

pub struct NewDeployment {
    pub flow_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub schedule: Option<ScheduleInput>,
    pub is_schedule_active: Option<bool>,
    pub parameters: Option<serde_json::Value>,
    pub tags: Option<Vec<String>>,
    pub entrypoint: Option<String>,
    pub work_queue_name: Option<String>,
    pub storage_block_id: Option<Uuid>,
}

/// A partial update: `None` keeps a field; `Some(None)` clears a nullable one.
#[derive(Default)]
pub struct DeploymentUpdate {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub schedule: Option<Option<ScheduleInput>>,
    pub is_schedule_active: Option<bool>,
    pub parameters: Option<serde_json::Value>,
    pub tags: Option<Vec<String>>,
    pub entrypoint: Option<Option<String>>,
    pub work_queue_name: Option<Option<String>>,
    pub storage_block_id: Option<Option<Uuid>>,
}

fn parameters(value: serde_json::Value) -> AppResult<serde_json::Value> {
    validate::json_object("parameters", value, PARAMETERS_MAX_BYTES)
}

fn description(value: Option<&str>) -> AppResult<Option<String>> {
    validate::optional_text("description", value, DESCRIPTION_MAX)
}

fn entrypoint(value: Option<&str>) -> AppResult<Option<String>> {
    validate::optional_text("entrypoint", value, ENTRYPOINT_MAX)
}

fn work_queue_name(value: Option<&str>) -> AppResult<Option<String>> {
    validate::optional_text("workQueueName", value, WORK_QUEUE_NAME_MAX)
}

pub async fn create(
    state: &AppState,
    viewer: &Viewer,
    workspace_id: Uuid,
    input: NewDeployment,
) -> AppResult<deployments::Model> {
    let now = Utc::now();
    let name = validate::name("name", &input.name, NAME_MAX)?;
    let description = description(input.description.as_deref())?;
    let schedule = input
        .schedule
        .map(|s| schedules::validate("schedule", s, now))
        .transpose()?;
    let parameters = parameters(input.parameters.unwrap_or_else(|| serde_json::json!({})))?;
    let tags = validate::tags("tags", input.tags.unwrap_or_default())?;
    let entrypoint = entrypoint(input.entrypoint.as_deref())?;
    let work_queue_name = work_queue_name(input.work_queue_name.as_deref())?;

    let txn = state.db.begin_write().await?;
    require_role(&txn, viewer, workspace_id, Role::Editor, "workspace").await?;
    let flow = super::flows::find_in_workspace(&txn, workspace_id, input.flow_id).await?;
    if let Some(id) = input.storage_block_id {
        ensure_storage_block(&txn, workspace_id, id).await?;
    }
    ensure_name_free(&txn, flow.id, &name, None).await?;
    let mut row = deployments::ActiveModel {
        id: Set(Uuid::now_v7()),
        workspace_id: Set(workspace_id),
        flow_id: Set(flow.id),
        name: Set(name),
        description: Set(description),
        is_schedule_active: Set(input.is_schedule_active.unwrap_or(true)),
        parameters: Set(parameters),
        tags: Set(serde_json::json!(tags)),
        entrypoint: Set(entrypoint),
        work_queue_name: Set(work_queue_name),
        storage_block_id: Set(input.storage_block_id),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    Schedule::store(schedule.as_ref(), &mut row);
    let deployment = row
        .insert(&txn)
        .await
        .map_err(|e| conflict_or_internal(e, NAME_TAKEN))?;
    txn.commit().await?;
    state.wake_scheduler();
    Ok(deployment)
}

pub async fn update(
    state: &AppState,
    viewer: &Viewer,
    id: Uuid,
    input: DeploymentUpdate,
) -> AppResult<deployments::Model> {
    let now = Utc::now();
    let name = input
        .name
        .as_deref()
        .map(|n| validate::name("name", n, NAME_MAX))
        .transpose()?;
    let description = input
        .description
        .map(|d| description(d.as_deref()))
        .transpose()?;
    let schedule = input
        .schedule
        .map(|s| {
            s.map(|s| schedules::validate("schedule", s, now))
                .transpose()
        })
        .transpose()?;
    let parameters = input.parameters.map(parameters).transpose()?;
    let tags = input.tags.map(|t| validate::tags("tags", t)).transpose()?;
    let entrypoint = input
        .entrypoint
        .map(|e| entrypoint(e.as_deref()))
        .transpose()?;
    let work_queue_name = input
        .work_queue_name
        .map(|w| work_queue_name(w.as_deref()))
        .transpose()?;

    let txn = state.db.begin_write().await?;
    let deployment = find_for(&txn, viewer, id, Role::Editor).await?;
    if let Some(Some(block_id)) = input.storage_block_id {
        ensure_storage_block(&txn, deployment.workspace_id, block_id).await?;
    }
    if let Some(name) = &name {
        ensure_name_free(&txn, deployment.flow_id, name, Some(id)).await?;
    }
    let mut row: deployments::ActiveModel = deployment.into();
    if let Some(name) = name {
        row.name = Set(name);
    }
    if let Some(description) = description {
        row.description = Set(description);
    }
    let schedule_changed = schedule.is_some();
    if let Some(schedule) = schedule {
        Schedule::store(schedule.as_ref(), &mut row);
    }
    if let Some(active) = input.is_schedule_active {
        row.is_schedule_active = Set(active);
    }
    if let Some(parameters) = parameters {
        row.parameters = Set(parameters);
    }
    if let Some(tags) = tags {
        row.tags = Set(serde_json::json!(tags));
    }
    if let Some(entrypoint) = entrypoint {
        row.entrypoint = Set(entrypoint);
    }
    if let Some(work_queue_name) = work_queue_name {
        row.work_queue_name = Set(work_queue_name);
    }
    if let Some(storage_block_id) = input.storage_block_id {
        row.storage_block_id = Set(storage_block_id);
    }
    row.updated_at = Set(now);
    let deployment = row
        .update(&txn)
        .await
        .map_err(|e| conflict_or_internal(e, NAME_TAKEN))?;
    // Pausing or changing the schedule takes back the runs it had planned (a changed schedule
    // is refilled by the scheduler, woken below).
    if schedule_changed || input.is_schedule_active == Some(false) {
        crate::services::scheduler::remove_future_runs(&txn, deployment.id, now).await?;
    }
    txn.commit().await?;
    state.wake_scheduler();
    Ok(deployment)
}

/// Pauses (`false`) or resumes (`true`) the deployment's schedule.
pub async fn set_schedule_active(
    state: &AppState,
    viewer: &Viewer,
    id: Uuid,
    active: bool,
) -> AppResult<deployments::Model> {
    update(
        state,
        viewer,
        id,
        DeploymentUpdate {
            is_schedule_active: Some(active),
            ..Default::default()
        },
    )
    .await
}

/// Deletes the deployment (its flow runs keep running without it) and drops it from the
/// work-queue filters that named it.
pub async fn delete(state: &AppState, viewer: &Viewer, id: Uuid) -> AppResult<Uuid> {
    let txn = state.db.begin_write().await?;
    let deployment = find_for(&txn, viewer, id, Role::Editor).await?;
    let queues = work_queues::Entity::find()
        .filter(work_queues::Column::WorkspaceId.eq(deployment.workspace_id))
        .all(&txn)
        .await?;
    let id_text = id.to_string();
    for queue in queues {
        let ids = validate::stored_strings(&queue.deployment_ids);
        if ids.contains(&id_text) {
            let kept: Vec<String> = ids.into_iter().filter(|d| *d != id_text).collect();
            let mut row: work_queues::ActiveModel = queue.into();
            row.deployment_ids = Set(serde_json::json!(kept));
            row.updated_at = Set(Utc::now());
            row.update(&txn).await?;
        }
    }
    crate::services::scheduler::remove_future_runs(&txn, id, Utc::now()).await?;
    deployments::Entity::delete_by_id(id).exec(&txn).await?;
    txn.commit().await?;
    Ok(id)
}

/// One deployment, or `None` when absent or not accessible to the viewer.
pub async fn get(
    state: &AppState,
    viewer: &Viewer,
    id: Uuid,
) -> AppResult<Option<deployments::Model>> {
    let db = state.db.read();
    let Some(deployment) = deployments::Entity::find_by_id(id).one(db).await? else {
        return Ok(None);
    };
    let role = role_of(db, viewer.account_id, deployment.workspace_id).await?;
    Ok(role.map(|_| deployment))
}

/// Where a page of deployments starts: after this (createdAt, id).
#[derive(Debug, Clone)]
pub struct DeploymentCursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// Deployments of the workspace, oldest first, at most `limit` after `after`, and the total.
pub async fn list(
    state: &AppState,
    viewer: &Viewer,
    workspace_id: Uuid,
    after: Option<DeploymentCursor>,
    limit: u64,
) -> AppResult<(Vec<deployments::Model>, u64)> {
    let db = state.db.read();
    require_role(db, viewer, workspace_id, Role::Viewer, "workspace").await?;
    let base =
        deployments::Entity::find().filter(deployments::Column::WorkspaceId.eq(workspace_id));
    let total = base.clone().count(db).await?;
    let mut query = base;
    if let Some(cursor) = after {
        query = query.filter(
            Condition::any()
                .add(deployments::Column::CreatedAt.gt(cursor.created_at))
                .add(
                    Condition::all()
                        .add(deployments::Column::CreatedAt.eq(cursor.created_at))
                        .add(deployments::Column::Id.gt(cursor.id)),
                ),
        );
    }
    let rows = query
        .order_by_asc(deployments::Column::CreatedAt)
        .order_by_asc(deployments::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    Ok((rows, total))
}

/// Loads a deployment and checks the viewer's role in its workspace.
/// Reads a deployment to change it, its row locked until the transaction ends, so a
/// concurrent scheduler fill is decided entirely before or after this change.
async fn find_for(
    conn: &impl ConnectionTrait,
    viewer: &Viewer,
    id: Uuid,
    min: Role,
) -> AppResult<deployments::Model> {
    let deployment = deployments::Entity::find_by_id(id)
        .lock_exclusive()
        .one(conn)
        .await?
        .ok_or_else(|| AppError::not_found("deployment"))?;
    require_role(conn, viewer, deployment.workspace_id, min, "deployment").await?;
    Ok(deployment)
}

async fn ensure_storage_block(
    conn: &impl ConnectionTrait,
    workspace_id: Uuid,
    id: Uuid,
) -> AppResult<()> {
    let found = storage_blocks::Entity::find_by_id(id)
        .filter(storage_blocks::Column::WorkspaceId.eq(workspace_id))
        .count(conn)
        .await?;
    if found == 0 {
        return Err(AppError::not_found("storage block"));
    }
    Ok(())
}

async fn ensure_name_free(
    conn: &impl ConnectionTrait,
    flow_id: Uuid,
    name: &str,
    except: Option<Uuid>,
) -> AppResult<()> {
    let holder = deployments::Entity::find()
        .filter(deployments::Column::FlowId.eq(flow_id))
        .filter(deployments::Column::Name.eq(name))
        .one(conn)
        .await?;
    match holder {
        Some(d) if Some(d.id) != except => Err(AppError::Conflict(NAME_TAKEN.into())),
        _ => Ok(()),
    }
}

/// Checks that every id names a deployment of the workspace (`NOT_FOUND` otherwise).
pub async fn ensure_all_in_workspace(
    conn: &impl ConnectionTrait,
    workspace_id: Uuid,
    ids: &[Uuid],
) -> AppResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let found = deployments::Entity::find()
        .filter(deployments::Column::WorkspaceId.eq(workspace_id))
        .filter(deployments::Column::Id.is_in(ids.iter().copied()))
        .count(conn)
        .await?;
    if found != ids.len() as u64 {
        return Err(AppError::not_found("deployment"));
    }
    Ok(())
}

/// A `deployments` row decoded by column position (see `flow_runs::RunByPosition`), for the
/// deployment loader. Only for `deployments::Entity::find()` selects.
pub struct DeploymentByPosition(pub deployments::Model);

crate::db::positional_decoders!(
    DeploymentByPosition,
    deployments::Model {
        id,
        workspace_id,
        flow_id,
        name,
        description,
        schedule_cron,
        schedule_interval_seconds,
        schedule_anchor_date,
        schedule_rrule,
        schedule_timezone,
        is_schedule_active,
        parameters,
        tags,
        entrypoint,
        work_queue_name,
        storage_block_id,
        created_at,
        updated_at,
    }
);
