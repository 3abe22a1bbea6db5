//! Workspaces: isolated environments owned by an account.
use chrono::Utc;
use entity::{event_counters, workspace_members, workspaces};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, JoinType, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, RelationTrait, Set,
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

/// A workspace as one viewer sees it.
#[derive(Debug, Clone)]
pub struct WorkspaceView {
    pub workspace: workspaces::Model,
    pub viewer_role: Role,
}

pub struct NewWorkspace {
    pub handle: String,
    pub name: String,
    pub description: Option<String>,
}

pub async fn create(
    state: &AppState,
    viewer: &Viewer,
    input: NewWorkspace,
) -> AppResult<WorkspaceView> {
    let handle = validate::handle("handle", &input.handle)?;
    let name = validate::name("name", &input.name, NAME_MAX)?;
    let description =
        validate::optional_text("description", input.description.as_deref(), DESCRIPTION_MAX)?;
    let txn = state.db.begin_write().await?;
    crate::auth::viewer::account_of(&txn, viewer).await?;
    let owned = workspaces::Entity::find()
        .filter(workspaces::Column::OwnerId.eq(viewer.account_id))
        .count(&txn)
        .await?;
    let limit = u64::from(state.config.max_workspaces_per_account);
    if owned >= limit {
        return Err(AppError::LimitExceeded(format!(
            "an account may own at most {limit} workspace(s)"
        )));
    }
    ensure_handle_free(&txn, &handle, None).await?;
    let now = Utc::now();
    let workspace = workspaces::ActiveModel {
        id: Set(Uuid::now_v7()),
        handle: Set(handle),
        name: Set(name),
        description: Set(description),
        owner_id: Set(viewer.account_id),
        events_pruned_seq: Set(0),
        logs_pruned_seq: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await
    .map_err(|e| conflict_or_internal(e, "this workspace handle is taken"))?;
    workspace_members::ActiveModel {
        workspace_id: Set(workspace.id),
        account_id: Set(viewer.account_id),
        role: Set(Role::Owner.as_str().to_owned()),
        joined_at: Set(now),
    }
    .insert(&txn)
    .await?;
    event_counters::ActiveModel {
        workspace_id: Set(workspace.id),
        last_event_seq: Set(0),
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(WorkspaceView {
        workspace,
        viewer_role: Role::Owner,
    })
}

pub struct WorkspaceUpdate {
    pub handle: Option<String>,
    pub name: Option<String>,
    pub description: Option<Option<String>>,
}

pub async fn update(
    state: &AppState,
    viewer: &Viewer,
    id: Uuid,
    input: WorkspaceUpdate,
) -> AppResult<WorkspaceView> {
    let handle = input
        .handle
        .as_deref()
        .map(|h| validate::handle("handle", h))
        .transpose()?;
    let name = input
        .name
        .as_deref()
        .map(|n| validate::name("name", n, NAME_MAX))
        .transpose()?;
    let description = input
        .description
        .map(|d| validate::optional_text("description", d.as_deref(), DESCRIPTION_MAX))
        .transpose()?;
    let txn = state.db.begin_write().await?;
    let role = require_role(&txn, viewer, id, Role::Owner, "workspace").await?;
    let workspace = find(&txn, id).await?;
    if let Some(handle) = &handle {
        ensure_handle_free(&txn, handle, Some(id)).await?;
    }
    let mut active: workspaces::ActiveModel = workspace.into();
    if let Some(handle) = handle {
        active.handle = Set(handle);
    }
    if let Some(name) = name {
        active.name = Set(name);
    }
    if let Some(description) = description {
        active.description = Set(description);
    }
    active.updated_at = Set(Utc::now());
    let workspace = active
        .update(&txn)
        .await
        .map_err(|e| conflict_or_internal(e, "this workspace handle is taken"))?;
    txn.commit().await?;
    Ok(WorkspaceView {
        workspace,
        viewer_role: role,
    })
}

/// Deletes the workspace and, through cascading foreign keys, everything inside it.
pub async fn delete(state: &AppState, viewer: &Viewer, id: Uuid) -> AppResult<Uuid> {
    let txn = state.db.begin_write().await?;
    require_role(&txn, viewer, id, Role::Owner, "workspace").await?;
    workspaces::Entity::delete_by_id(id).exec(&txn).await?;
    txn.commit().await?;
    // Every member's subscriptions to it must end.
    crate::events::access_changed(state, None).await;
    Ok(id)
}

/// The workspaces the viewer owns or collaborates in, oldest first.
pub async fn list(state: &AppState, viewer: &Viewer) -> AppResult<Vec<WorkspaceView>> {
    let rows = workspaces::Entity::find()
        .join(JoinType::InnerJoin, workspaces::Relation::Members.def())
        .filter(workspace_members::Column::AccountId.eq(viewer.account_id))
        .select_also(workspace_members::Entity)
        .order_by_asc(workspaces::Column::CreatedAt)
        .all(state.db.read())
        .await?;
    rows.into_iter()
        .filter_map(|(workspace, member)| member.map(|m| (workspace, m)))
        .map(|(workspace, member)| {
            Ok(WorkspaceView {
                workspace,
                viewer_role: Role::parse(&member.role)?,
            })
        })
        .collect()
}

/// One workspace by id or handle, or `None` when absent or not accessible to the viewer.
pub async fn get(
    state: &AppState,
    viewer: &Viewer,
    id: Option<Uuid>,
    handle: Option<&str>,
) -> AppResult<Option<WorkspaceView>> {
    let mut query = workspaces::Entity::find();
    match (id, handle) {
        (Some(id), _) => query = query.filter(workspaces::Column::Id.eq(id)),
        (None, Some(handle)) => {
            query = query.filter(workspaces::Column::Handle.eq(handle.trim().to_lowercase()))
        }
        (None, None) => return Err(AppError::bad_input("id", "give an id or a handle")),
    }
    if let (Some(_), Some(handle)) = (id, handle) {
        query = query.filter(workspaces::Column::Handle.eq(handle.trim().to_lowercase()));
    }
    // The workspace and the viewer's role in one query: a dashboard asks on every page.
    let query = query
        .join(JoinType::InnerJoin, workspaces::Relation::Members.def())
        .filter(workspace_members::Column::AccountId.eq(viewer.account_id))
        .column(workspace_members::Column::Role)
        .limit(1);
    let found = state
        .db
        .read_by_position::<WorkspaceWithRole>(
            sea_orm::QueryTrait::build(&query, state.db.backend()),
            1,
        )
        .await?;
    match found.into_iter().next() {
        Some(WorkspaceWithRole(workspace, role)) => Ok(Some(WorkspaceView {
            workspace,
            viewer_role: Role::parse(&role)?,
        })),
        None => Ok(None),
    }
}

/// A `workspaces` row by column position (see `flow_runs::RunByPosition`).
pub struct WorkspaceByPosition(pub workspaces::Model);

crate::db::positional_decoders!(
    WorkspaceByPosition,
    workspaces::Model {
        id,
        handle,
        name,
        description,
        owner_id,
        events_pruned_seq,
        logs_pruned_seq,
        created_at,
        updated_at,
    }
);

/// A workspace's columns followed by one member's role.
pub struct WorkspaceWithRole(pub workspaces::Model, pub String);

/// The role's column, after the workspace's.
fn role_column() -> usize {
    <workspaces::Column as sea_orm::Iterable>::iter().count()
}

impl sea_orm::FromQueryResult for WorkspaceWithRole {
    fn from_query_result(row: &sea_orm::QueryResult, _: &str) -> Result<Self, sea_orm::DbErr> {
        crate::db::from_sqlx_row(
            row,
            <Self as crate::db::ByPosition>::from_row,
            <Self as crate::db::ByPosition>::from_row,
        )
    }
}

impl crate::db::ByPosition for WorkspaceWithRole {
    fn from_row<R: crate::db::PositionalRow>(row: &R) -> Result<Self, R::Error> {
        let WorkspaceByPosition(workspace) = WorkspaceByPosition::from_row(row)?;
        Ok(Self(workspace, row.column(role_column())?))
    }
}

/// Reads a workspace the caller has already been checked against.
pub async fn find(conn: &impl sea_orm::ConnectionTrait, id: Uuid) -> AppResult<workspaces::Model> {
    workspaces::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or_else(|| AppError::not_found("workspace"))
}

async fn ensure_handle_free(
    conn: &impl sea_orm::ConnectionTrait,
    handle: &str,
    except: Option<Uuid>,
) -> AppResult<()> {
    let holder = workspaces::Entity::find()
        .filter(workspaces::Column::Handle.eq(handle))
        .one(conn)
        .await?;
    match holder {
        Some(w) if Some(w.id) != except => {
            Err(AppError::Conflict("this workspace handle is taken".into()))
        }
        _ => Ok(()),
    }
}
