//! Workspace roles and the one access rule: what the caller cannot access is `NOT_FOUND`; a role
//! too low inside a workspace the caller belongs to is `FORBIDDEN`.
use entity::workspace_members;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
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
    match role_of(conn, viewer.account_id, workspace_id).await? {
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
