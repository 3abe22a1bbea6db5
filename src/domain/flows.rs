//! Flows: named workflows, unique per workspace. Creating a name that exists returns that flow.
use chrono::Utc;
use entity::flows;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use super::access::{require_role, Role};
use super::validate;
use crate::auth::Viewer;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

pub const NAME_MAX: usize = 200;

pub struct NewFlow {
    pub name: String,
    pub tags: Vec<String>,
}

/// Creates the flow, or returns the existing one of that name (its tags unchanged). Safe under
/// concurrent callers: the insert does nothing on the unique `(workspace, name)` index and the
/// row is then read back, whoever wrote it.
pub async fn create(
    state: &AppState,
    viewer: &Viewer,
    workspace_id: Uuid,
    input: NewFlow,
) -> AppResult<flows::Model> {
    let name = validate::name("name", &input.name, NAME_MAX)?;
    let tags = validate::tags("tags", input.tags)?;
    let txn = state.db.begin_write().await?;
    require_role(&txn, viewer, workspace_id, Role::Editor, "workspace").await?;
    if let Some(existing) = find_by_name(&txn, workspace_id, &name).await? {
        txn.commit().await?;
        return Ok(existing);
    }
    let now = Utc::now();
    let row = flows::ActiveModel {
        id: Set(Uuid::now_v7()),
        workspace_id: Set(workspace_id),
        name: Set(name.clone()),
        tags: Set(serde_json::json!(tags)),
        created_at: Set(now),
        updated_at: Set(now),
    };
    flows::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([flows::Column::WorkspaceId, flows::Column::Name])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    let flow = find_by_name(&txn, workspace_id, &name)
        .await?
        .ok_or_else(|| AppError::internal("flow vanished right after it was inserted"))?;
    txn.commit().await?;
    Ok(flow)
}

async fn find_by_name(
    conn: &impl ConnectionTrait,
    workspace_id: Uuid,
    name: &str,
) -> AppResult<Option<flows::Model>> {
    Ok(flows::Entity::find()
        .filter(flows::Column::WorkspaceId.eq(workspace_id))
        .filter(flows::Column::Name.eq(name))
        .one(conn)
        .await?)
}

/// A flow of this workspace, or `NOT_FOUND` (also for a flow of another workspace).
pub async fn find_in_workspace(
    conn: &impl ConnectionTrait,
    workspace_id: Uuid,
    id: Uuid,
) -> AppResult<flows::Model> {
    flows::Entity::find_by_id(id)
        .filter(flows::Column::WorkspaceId.eq(workspace_id))
        .one(conn)
        .await?
        .ok_or_else(|| AppError::not_found("flow"))
}

/// One flow of the workspace by id and/or name; `None` when there is no such flow.
pub async fn get(
    state: &AppState,
    viewer: &Viewer,
    workspace_id: Uuid,
    id: Option<Uuid>,
    name: Option<&str>,
) -> AppResult<Option<flows::Model>> {
    if id.is_none() && name.is_none() {
        return Err(AppError::bad_input("id", "give an id or a name"));
    }
    let db = state.db.read();
    require_role(db, viewer, workspace_id, Role::Viewer, "workspace").await?;
    let mut query = flows::Entity::find().filter(flows::Column::WorkspaceId.eq(workspace_id));
    if let Some(id) = id {
        query = query.filter(flows::Column::Id.eq(id));
    }
    if let Some(name) = name {
        query = query.filter(flows::Column::Name.eq(name.trim()));
    }
    Ok(query.one(db).await?)
}

/// Where a page of flows starts: after this (name, id).
#[derive(Debug, Clone)]
pub struct FlowCursor {
    pub name: String,
    pub id: Uuid,
}

/// Flows of the workspace by name (then id), at most `limit` after `after`, and the total.
pub async fn list(
    state: &AppState,
    viewer: &Viewer,
    workspace_id: Uuid,
    after: Option<FlowCursor>,
    limit: u64,
) -> AppResult<(Vec<flows::Model>, u64)> {
    let db = state.db.read();
    require_role(db, viewer, workspace_id, Role::Viewer, "workspace").await?;
    let base = flows::Entity::find().filter(flows::Column::WorkspaceId.eq(workspace_id));
    let total = base.clone().count(db).await?;
    let mut query = base;
    if let Some(cursor) = after {
        query = query.filter(
            Condition::any()
                .add(flows::Column::Name.gt(cursor.name.clone()))
                .add(
                    Condition::all()
                        .add(flows::Column::Name.eq(cursor.name))
                        .add(flows::Column::Id.gt(cursor.id)),
                ),
        );
    }
    let rows = query
        .order_by_asc(flows::Column::Name)
        .order_by_asc(flows::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    Ok((rows, total))
}

/// A `flows` row decoded by column position (see `flow_runs::RunByPosition`), for the flow
/// loader. Only for `flows::Entity::find()` selects.
pub struct FlowByPosition(pub flows::Model);

crate::db::positional_decoders!(
    FlowByPosition,
    flows::Model {
        id,
        workspace_id,
        name,
        tags,
        created_at,
        updated_at,
    }
);
