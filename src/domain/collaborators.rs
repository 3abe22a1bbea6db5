//! Collaborators: invitations by email, roles, removal.
use chrono::{Duration, Utc};
use entity::{accounts, invitations, workspace_members, workspaces};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Set,
};
use uuid::Uuid;

use super::access::{require_role, role_of, Role};
use super::validate;
use crate::auth::Viewer;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

pub const INVITATION_TTL: Duration = Duration::days(7);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Revoked,
    Expired,
}

impl InvitationStatus {
    pub fn of(invitation: &invitations::Model) -> Self {
        match invitation.status.as_str() {
            "ACCEPTED" => Self::Accepted,
            "REVOKED" => Self::Revoked,
            _ if invitation.expires_at <= Utc::now() => Self::Expired,
            _ => Self::Pending,
        }
    }
}

pub async fn invite(
    state: &AppState,
    viewer: &Viewer,
    workspace_id: Uuid,
    email: &str,
    role: Role,
) -> AppResult<invitations::Model> {
    let email = validate::email("email", email)?;
    let txn = state.db.begin_write().await?;
    require_role(&txn, viewer, workspace_id, Role::Owner, "workspace").await?;
    let workspace = super::workspaces::find(&txn, workspace_id).await?;
    let now = Utc::now();
    let invitee = accounts::Entity::find()
        .filter(accounts::Column::Email.eq(email.as_str()))
        .one(&txn)
        .await?;
    if let Some(invitee) = &invitee {
        if role_of(&txn, invitee.id, workspace_id).await?.is_some() {
            return Err(AppError::Conflict(
                "this account is already a member of the workspace".into(),
            ));
        }
    }
    let pending_same = invitations::Entity::find()
        .filter(invitations::Column::WorkspaceId.eq(workspace_id))
        .filter(invitations::Column::Email.eq(email.as_str()))
        .filter(invitations::Column::Status.eq("PENDING"))
        .filter(invitations::Column::ExpiresAt.gt(now))
        .count(&txn)
        .await?;
    if pending_same > 0 {
        return Err(AppError::Conflict(
            "a pending invitation for this email already exists".into(),
        ));
    }
    let used = collaborator_count(&txn, &workspace).await?;
    let limit = u64::from(state.config.max_collaborators_per_workspace);
    if used >= limit {
        return Err(AppError::LimitExceeded(format!(
            "a workspace may have at most {limit} collaborator(s), pending invitations included"
        )));
    }
    let invitation = invitations::ActiveModel {
        id: Set(Uuid::now_v7()),
        workspace_id: Set(workspace_id),
        email: Set(email),
        role: Set(role.as_str().to_owned()),
        invited_by: Set(viewer.account_id),
        status: Set("PENDING".into()),
        created_at: Set(now),
        expires_at: Set(now + INVITATION_TTL),
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(invitation)
}

/// Members other than the workspace's owner, plus pending invitations that have not expired.
async fn collaborator_count(
    conn: &impl ConnectionTrait,
    workspace: &workspaces::Model,
) -> AppResult<u64> {
    let members = workspace_members::Entity::find()
        .filter(workspace_members::Column::WorkspaceId.eq(workspace.id))
        .filter(workspace_members::Column::AccountId.ne(workspace.owner_id))
        .count(conn)
        .await?;
    let pending = invitations::Entity::find()
        .filter(invitations::Column::WorkspaceId.eq(workspace.id))
        .filter(invitations::Column::Status.eq("PENDING"))
        .filter(invitations::Column::ExpiresAt.gt(Utc::now()))
        .count(conn)
        .await?;
    Ok(members + pending)
}

/// The invitation is addressed to the viewer's email (as the account holds it now).
fn addressed_to(viewer: &Viewer) -> sea_orm::sea_query::SimpleExpr {
    invitations::Column::Email.in_subquery(
        sea_orm::sea_query::Query::select()
            .column(accounts::Column::Email)
            .from(accounts::Entity)
            .and_where(accounts::Column::Id.eq(viewer.account_id))
            .to_owned(),
    )
}

/// Pending, unexpired invitations addressed to the viewer's email.
pub async fn invitations_for_viewer(
    state: &AppState,
    viewer: &Viewer,
) -> AppResult<Vec<invitations::Model>> {
    Ok(invitations::Entity::find()
        .filter(addressed_to(viewer))
        .filter(invitations::Column::Status.eq("PENDING"))
        .filter(invitations::Column::ExpiresAt.gt(Utc::now()))
        .order_by_desc(invitations::Column::CreatedAt)
        .all(state.db.read())
        .await?)
}

/// Every invitation of a workspace, newest first (OWNER only).
pub async fn invitations_of_workspace(
    state: &AppState,
    viewer: &Viewer,
    workspace_id: Uuid,
) -> AppResult<Vec<invitations::Model>> {
    let db = state.db.read();
    require_role(db, viewer, workspace_id, Role::Owner, "workspace").await?;
    Ok(invitations::Entity::find()
        .filter(invitations::Column::WorkspaceId.eq(workspace_id))
        .order_by_desc(invitations::Column::CreatedAt)
        .all(db)
        .await?)
}

pub async fn accept(
    state: &AppState,
    viewer: &Viewer,
    invitation_id: Uuid,
) -> AppResult<workspace_members::Model> {
    let txn = state.db.begin_write().await?;
    // Only the invitee may see or accept it; to anyone else it does not exist.
    let invitation = invitations::Entity::find_by_id(invitation_id)
        .filter(addressed_to(viewer))
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("invitation"))?;
    match InvitationStatus::of(&invitation) {
        InvitationStatus::Pending => {}
        InvitationStatus::Accepted => {
            return Err(AppError::Conflict("invitation was already accepted".into()))
        }
        InvitationStatus::Revoked => {
            return Err(AppError::Conflict("invitation was revoked".into()))
        }
        InvitationStatus::Expired => {
            return Err(AppError::Conflict("invitation has expired".into()))
        }
    }
    if role_of(&txn, viewer.account_id, invitation.workspace_id)
        .await?
        .is_some()
    {
        return Err(AppError::Conflict(
            "you are already a member of this workspace".into(),
        ));
    }
    let member = workspace_members::ActiveModel {
        workspace_id: Set(invitation.workspace_id),
        account_id: Set(viewer.account_id),
        role: Set(invitation.role.clone()),
        joined_at: Set(Utc::now()),
    }
    .insert(&txn)
    .await?;
    let mut active: invitations::ActiveModel = invitation.into();
    active.status = Set("ACCEPTED".into());
    active.update(&txn).await?;
    txn.commit().await?;
    Ok(member)
}

pub async fn revoke(
    state: &AppState,
    viewer: &Viewer,
    invitation_id: Uuid,
) -> AppResult<invitations::Model> {
    let txn = state.db.begin_write().await?;
    let invitation = invitations::Entity::find_by_id(invitation_id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("invitation"))?;
    require_role(
        &txn,
        viewer,
        invitation.workspace_id,
        Role::Owner,
        "invitation",
    )
    .await?;
    if InvitationStatus::of(&invitation) == InvitationStatus::Accepted {
        return Err(AppError::Conflict(
            "an accepted invitation cannot be revoked; remove the collaborator instead".into(),
        ));
    }
    let mut active: invitations::ActiveModel = invitation.into();
    active.status = Set("REVOKED".into());
    let invitation = active.update(&txn).await?;
    txn.commit().await?;
    Ok(invitation)
}

pub async fn set_role(
    state: &AppState,
    viewer: &Viewer,
    workspace_id: Uuid,
    account_id: Uuid,
    role: Role,
) -> AppResult<workspace_members::Model> {
    let txn = state.db.begin_write().await?;
    require_role(&txn, viewer, workspace_id, Role::Owner, "workspace").await?;
    let workspace = super::workspaces::find(&txn, workspace_id).await?;
    if workspace.owner_id == account_id && role != Role::Owner {
        return Err(AppError::bad_input(
            "accountId",
            "the workspace's owner always keeps the OWNER role",
        ));
    }
    let member = find_member(&txn, workspace_id, account_id).await?;
    let mut active: workspace_members::ActiveModel = member.into();
    active.role = Set(role.as_str().to_owned());
    let member = active.update(&txn).await?;
    txn.commit().await?;
    Ok(member)
}

/// OWNER removes anyone but the workspace's owner; any member may remove themselves (leave).
pub async fn remove(
    state: &AppState,
    viewer: &Viewer,
    workspace_id: Uuid,
    account_id: Uuid,
) -> AppResult<Uuid> {
    let txn = state.db.begin_write().await?;
    let min = if account_id == viewer.account_id {
        Role::Viewer
    } else {
        Role::Owner
    };
    require_role(&txn, viewer, workspace_id, min, "workspace").await?;
    let workspace = super::workspaces::find(&txn, workspace_id).await?;
    if workspace.owner_id == account_id {
        return Err(AppError::bad_input(
            "accountId",
            "the workspace's owner cannot be removed; delete the workspace instead",
        ));
    }
    find_member(&txn, workspace_id, account_id).await?;
    workspace_members::Entity::delete_many()
        .filter(workspace_members::Column::WorkspaceId.eq(workspace_id))
        .filter(workspace_members::Column::AccountId.eq(account_id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    crate::events::access_changed(state, Some(account_id)).await;
    Ok(account_id)
}

/// Every member, the owner included, in the order they joined (any member may read).
pub async fn list(
    state: &AppState,
    viewer: &Viewer,
    workspace_id: Uuid,
) -> AppResult<Vec<workspace_members::Model>> {
    let db = state.db.read();
    require_role(db, viewer, workspace_id, Role::Viewer, "workspace").await?;
    Ok(workspace_members::Entity::find()
        .filter(workspace_members::Column::WorkspaceId.eq(workspace_id))
        .order_by_asc(workspace_members::Column::JoinedAt)
        .all(db)
        .await?)
}

async fn find_member(
    conn: &impl ConnectionTrait,
    workspace_id: Uuid,
    account_id: Uuid,
) -> AppResult<workspace_members::Model> {
    workspace_members::Entity::find()
        .filter(workspace_members::Column::WorkspaceId.eq(workspace_id))
        .filter(workspace_members::Column::AccountId.eq(account_id))
        .one(conn)
        .await?
        .ok_or_else(|| AppError::not_found("collaborator"))
}
