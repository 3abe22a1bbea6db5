//! Workspace roles and the one access rule: what the caller cannot access is `NOT_FOUND`; a role
//! too low inside a workspace the caller belongs to is `FORBIDDEN`.
use entity::workspace_members;
use sea_orm::sea_query::{Expr, Query, SimpleExpr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryResult,
    QuerySelect, Select, SelectModel, Selector,
};
use uuid::Uuid;

use crate::auth::Viewer;
use crate::error::{AppError, AppResult};

/// Ordered by power: `Viewer < Editor < Owner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Viewer,
    Editor,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "VIEWER",
            Role::Editor => "EDITOR",
            Role::Owner => "OWNER",
        }
    }

    pub fn parse(value: &str) -> AppResult<Self> {
        match value {
            "VIEWER" => Ok(Role::Viewer),
            "EDITOR" => Ok(Role::Editor),
            "OWNER" => Ok(Role::Owner),
            other => Err(AppError::internal(format!(
                "unknown role in database: {other}"
            ))),
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Role::Viewer => "read",
            Role::Editor => "change",
            Role::Owner => "administer",
        }
    }
}

pub async fn role_of(
    conn: &impl ConnectionTrait,
    account_id: Uuid,
    workspace_id: Uuid,
) -> AppResult<Option<Role>> {
    let member = workspace_members::Entity::find()
        .filter(workspace_members::Column::WorkspaceId.eq(workspace_id))
        .filter(workspace_members::Column::AccountId.eq(account_id))
        .one(conn)
        .await?;
    member.map(|m| Role::parse(&m.role)).transpose()
}

/// Checks that the viewer holds at least `min` in the workspace. `what` names the object the
/// caller asked for, so a non-member learns only that it was not found.
pub async fn require_role(
    conn: &impl ConnectionTrait,
    viewer: &Viewer,
    workspace_id: Uuid,
    min: Role,
    what: &str,
) -> AppResult<Role> {
    check_role(
        role_of(conn, viewer.account_id, workspace_id).await?,
        min,
        what,
    )
}

/// A row and the viewer's role in its workspace, read by [`with_viewer_role`].
pub struct WithRole<M> {
    pub row: M,
    role: Option<String>,
}

impl<M> WithRole<M> {
    /// The row, if the viewer holds at least `min` in its workspace (see [`require_role`]).
    pub fn require(self, min: Role, what: &str) -> AppResult<M> {
        let role = self.role.as_deref().map(Role::parse).transpose()?;
        check_role(role, min, what)?;
        Ok(self.row)
    }
}

impl<M: FromQueryResult> FromQueryResult for WithRole<M> {
    fn from_query_result(row: &QueryResult, prefix: &str) -> Result<Self, DbErr> {
        Ok(Self {
            row: M::from_query_result(row, prefix)?,
            role: row.try_get(prefix, VIEWER_ROLE)?,
        })
    }
}

const VIEWER_ROLE: &str = "viewer_role";

/// Adds the viewer's role in each row's workspace (`workspace_column`) to a select, so a
/// writer reads (and locks) the row and checks access in one statement instead of two. On
/// PostgreSQL the role is read as of the statement's start, before any wait for the row lock:
/// a role change that commits during that wait applies from the next request.
pub fn with_viewer_role<E: EntityTrait>(
    select: Select<E>,
    workspace_column: E::Column,
    viewer: &Viewer,
) -> Selector<SelectModel<WithRole<E::Model>>> {
    use workspace_members::Column as M;
    let role = Query::select()
        .column((workspace_members::Entity, M::Role))
        .from(workspace_members::Entity)
        .and_where(
            Expr::col((workspace_members::Entity, M::WorkspaceId))
                .equals((E::default(), workspace_column)),
        )
        .and_where(Expr::col((workspace_members::Entity, M::AccountId)).eq(viewer.account_id))
        .to_owned();
    select
        .expr_as(
            SimpleExpr::SubQuery(None, Box::new(role.into_sub_query_statement())),
            VIEWER_ROLE,
        )
        .into_model()
}

fn check_role(role: Option<Role>, min: Role, what: &str) -> AppResult<Role> {
    match role {
        None => Err(AppError::not_found(what)),
        Some(role) if role < min => Err(AppError::forbidden(format!(
            "your role in this workspace ({}) cannot {} it; {} is required",
            role.as_str(),
            min.verb(),
            min.as_str()
        ))),
        Some(role) => Ok(role),
    }
}
