//! Workspaces, collaborators and invitations.
use async_graphql::{Context, Enum, InputObject, MaybeUndefined, Object};
use chrono::{DateTime, Utc};
use entity::{invitations, workspace_members};
use uuid::Uuid;

use super::accounts::Account;
use super::loaders::LoadOneBoxed;
use super::runs;
use super::ContextExt;
use crate::domain::collaborators::{self, InvitationStatus as DomainInvitationStatus};
use crate::domain::workspaces::{self, NewWorkspace, WorkspaceUpdate, WorkspaceView};
use crate::domain::Role;
use crate::error::{AppError, AppResult};

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum WorkspaceRole {
    Owner,
    Editor,
    Viewer,
}

impl From<Role> for WorkspaceRole {
    fn from(role: Role) -> Self {
        match role {
            Role::Owner => Self::Owner,
            Role::Editor => Self::Editor,
            Role::Viewer => Self::Viewer,
        }
    }
}

impl From<WorkspaceRole> for Role {
    fn from(role: WorkspaceRole) -> Self {
        match role {
            WorkspaceRole::Owner => Role::Owner,
            WorkspaceRole::Editor => Role::Editor,
            WorkspaceRole::Viewer => Role::Viewer,
        }
    }
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Revoked,
    Expired,
}

impl From<DomainInvitationStatus> for InvitationStatus {
    fn from(status: DomainInvitationStatus) -> Self {
        match status {
            DomainInvitationStatus::Pending => Self::Pending,
            DomainInvitationStatus::Accepted => Self::Accepted,
            DomainInvitationStatus::Revoked => Self::Revoked,
            DomainInvitationStatus::Expired => Self::Expired,
        }
    }
}

/// A workspace as the viewer sees it. `viewer_role` is `None` only for an invitee looking at
/// the workspace an invitation names.
pub struct Workspace {
    pub model: entity::workspaces::Model,
    pub viewer_role: Option<Role>,
}

impl From<WorkspaceView> for Workspace {
    fn from(view: WorkspaceView) -> Self {
        Self {
            model: view.workspace,
            viewer_role: Some(view.viewer_role),
        }
    }
}

pub(crate) async fn load_account(ctx: &Context<'_>, id: Uuid) -> AppResult<Account> {
    ctx.loaders()?
        .accounts
        .load_one_boxed(id)
        .await
        .map_err(super::loaders::load_failed)?
        .map(Account)
        .ok_or_else(|| AppError::not_found("account"))
}

#[Object]
impl Workspace {
    async fn id(&self) -> Uuid {
        self.model.id
    }
    async fn handle(&self) -> &str {
        &self.model.handle
    }
    async fn name(&self) -> &str {
        &self.model.name
    }
    async fn description(&self) -> Option<&str> {
        self.model.description.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.model.created_at
    }
    async fn owner(&self, ctx: &Context<'_>) -> AppResult<Account> {
        load_account(ctx, self.model.owner_id).await
    }
    async fn viewer_role(&self) -> AppResult<WorkspaceRole> {
        self.viewer_role
            .map(WorkspaceRole::from)
            .ok_or_else(|| AppError::forbidden("you are not a member of this workspace yet"))
    }
    /// Every member, the owner included.
    async fn collaborators(&self, ctx: &Context<'_>) -> AppResult<Vec<Collaborator>> {
        let members = collaborators::list(ctx.app()?, ctx.viewer()?, self.model.id).await?;
        Ok(members.into_iter().map(Collaborator).collect())
    }
    /// Flow runs, filtered and sorted (default: expected start time, newest first).
    async fn flow_runs(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<runs::FlowRunFilter>,
        sort: Option<runs::FlowRunSort>,
    ) -> AppResult<runs::FlowRunConnection> {
        runs::workspace_flow_runs(
            ctx,
            self.model.id,
            self.viewer_role.is_some(),
            first,
            after,
            filter,
            sort,
        )
        .await
    }
    /// Task runs, oldest first, optionally of one flow run.
    async fn task_runs(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        flow_run_id: Option<Uuid>,
    ) -> AppResult<runs::TaskRunConnection> {
        runs::workspace_task_runs(ctx, self.model.id, first, after, flow_run_id).await
    }
    /// Runs per state type in `[since, until)`, overall and per time bucket (1-100).
    async fn flow_run_summary(
        &self,
        ctx: &Context<'_>,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        #[graphql(default = 24)] buckets: i32,
        filter: Option<runs::FlowRunFilter>,
    ) -> AppResult<runs::FlowRunSummary> {
        runs::workspace_summary(ctx, self.model.id, since, until, buckets, filter).await
    }
    /// `SCHEDULED` runs whose expected start is in the future, earliest first.
    async fn upcoming_flow_runs(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
        deployment_id: Option<Uuid>,
    ) -> AppResult<Vec<runs::FlowRun>> {
        runs::workspace_upcoming(ctx, self.model.id, first, deployment_id).await
    }
    /// Late, failed and crashed runs, newest first.
    async fn run_alerts(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: i32,
        kinds: Option<Vec<runs::AlertKind>>,
    ) -> AppResult<Vec<runs::RunAlert>> {
        runs::workspace_alerts(ctx, self.model.id, first, kinds).await
    }
    /// Every invitation of this workspace, newest first. OWNER only.
    async fn invitations(&self, ctx: &Context<'_>) -> AppResult<Vec<Invitation>> {
        let rows =
            collaborators::invitations_of_workspace(ctx.app()?, ctx.viewer()?, self.model.id)
                .await?;
        Ok(rows.into_iter().map(Invitation).collect())
    }
    async fn flows(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> AppResult<super::flows::FlowConnection> {
        super::flows::workspace_flows(ctx, self.model.id, first, after).await
    }
    async fn flow(
        &self,
        ctx: &Context<'_>,
        id: Option<Uuid>,
        name: Option<String>,
    ) -> AppResult<Option<super::flows::Flow>> {
        super::flows::workspace_flow(ctx, self.model.id, id, name).await
    }
    async fn deployments(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> AppResult<super::deployments::DeploymentConnection> {
        super::deployments::workspace_deployments(ctx, self.model.id, first, after).await
    }
    async fn storage_blocks(
        &self,
        ctx: &Context<'_>,
    ) -> AppResult<Vec<super::storage::StorageBlock>> {
        super::storage::workspace_storage_blocks(ctx, self.model.id).await
    }
    async fn work_queues(
        &self,
        ctx: &Context<'_>,
    ) -> AppResult<Vec<super::work_queues::WorkQueue>> {
        super::work_queues::workspace_work_queues(ctx, self.model.id).await
    }
}

pub struct Collaborator(pub workspace_members::Model);

#[Object]
impl Collaborator {
    async fn account(&self, ctx: &Context<'_>) -> AppResult<Account> {
        load_account(ctx, self.0.account_id).await
    }
    async fn role(&self) -> AppResult<WorkspaceRole> {
        Ok(Role::parse(&self.0.role)?.into())
    }
    async fn joined_at(&self) -> DateTime<Utc> {
        self.0.joined_at
    }
}

pub struct Invitation(pub invitations::Model);

#[Object]
impl Invitation {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    /// The workspace invited to. Its name and handle are visible to the invitee before accepting.
    async fn workspace(&self, ctx: &Context<'_>) -> AppResult<Workspace> {
        let model = ctx
            .loaders()?
            .workspaces
            .load_one_boxed(self.0.workspace_id)
            .await
            .map_err(super::loaders::load_failed)?
            .ok_or_else(|| AppError::not_found("workspace"))?;
        let viewer = ctx.viewer()?;
        let viewer_role =
            crate::domain::access::role_of(ctx.app()?.db.read(), viewer.account_id, model.id)
                .await?;
        Ok(Workspace { model, viewer_role })
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn role(&self) -> AppResult<WorkspaceRole> {
        Ok(Role::parse(&self.0.role)?.into())
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn expires_at(&self) -> DateTime<Utc> {
        self.0.expires_at
    }
    async fn status(&self) -> InvitationStatus {
        DomainInvitationStatus::of(&self.0).into()
    }
}

#[derive(InputObject)]
pub struct CreateWorkspaceInput {
    handle: String,
    name: String,
    description: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateWorkspaceInput {
    handle: Option<String>,
    name: Option<String>,
    /// Left out: unchanged; `null`: cleared.
    description: MaybeUndefined<String>,
}

#[derive(Default)]
pub struct WorkspaceQuery;

#[Object]
impl WorkspaceQuery {
    /// The workspaces the caller owns or collaborates in.
    async fn workspaces(&self, ctx: &Context<'_>) -> AppResult<Vec<Workspace>> {
        let views = workspaces::list(ctx.app()?, ctx.viewer()?).await?;
        Ok(views.into_iter().map(Workspace::from).collect())
    }

    /// One workspace by id or handle; null if absent or not accessible.
    async fn workspace(
        &self,
        ctx: &Context<'_>,
        id: Option<Uuid>,
        handle: Option<String>,
    ) -> AppResult<Option<Workspace>> {
        let view = workspaces::get(ctx.app()?, ctx.viewer()?, id, handle.as_deref()).await?;
        Ok(view.map(Workspace::from))
    }

    /// Pending invitations addressed to the caller.
    async fn invitations(&self, ctx: &Context<'_>) -> AppResult<Vec<Invitation>> {
        let rows = collaborators::invitations_for_viewer(ctx.app()?, ctx.viewer()?).await?;
        Ok(rows.into_iter().map(Invitation).collect())
    }
}

#[derive(Default)]
pub struct WorkspaceMutation;

#[Object]
impl WorkspaceMutation {
    async fn create_workspace(
        &self,
        ctx: &Context<'_>,
        input: CreateWorkspaceInput,
    ) -> AppResult<Workspace> {
        let view = workspaces::create(
            ctx.app()?,
            ctx.viewer()?,
            NewWorkspace {
                handle: input.handle,
                name: input.name,
                description: input.description,
            },
        )
        .await?;
        Ok(view.into())
    }

    async fn update_workspace(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        input: UpdateWorkspaceInput,
    ) -> AppResult<Workspace> {
        let description = match input.description {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(v) => Some(Some(v)),
        };
        let view = workspaces::update(
            ctx.app()?,
            ctx.viewer()?,
            id,
            WorkspaceUpdate {
                handle: input.handle,
                name: input.name,
                description,
            },
        )
        .await?;
        Ok(view.into())
    }

    /// Deletes the workspace and everything in it. OWNER only.
    async fn delete_workspace(&self, ctx: &Context<'_>, id: Uuid) -> AppResult<Uuid> {
        workspaces::delete(ctx.app()?, ctx.viewer()?, id).await
    }

    async fn invite_collaborator(
        &self,
        ctx: &Context<'_>,
        workspace_id: Uuid,
        email: String,
        role: WorkspaceRole,
    ) -> AppResult<Invitation> {
        let invitation =
            collaborators::invite(ctx.app()?, ctx.viewer()?, workspace_id, &email, role.into())
                .await?;
        Ok(Invitation(invitation))
    }

    async fn accept_invitation(&self, ctx: &Context<'_>, id: Uuid) -> AppResult<Collaborator> {
        let member = collaborators::accept(ctx.app()?, ctx.viewer()?, id).await?;
        Ok(Collaborator(member))
    }

    async fn revoke_invitation(&self, ctx: &Context<'_>, id: Uuid) -> AppResult<Invitation> {
        let invitation = collaborators::revoke(ctx.app()?, ctx.viewer()?, id).await?;
        Ok(Invitation(invitation))
    }

    async fn set_collaborator_role(
        &self,
        ctx: &Context<'_>,
        workspace_id: Uuid,
        account_id: Uuid,
        role: WorkspaceRole,
    ) -> AppResult<Collaborator> {
        let member = collaborators::set_role(
            ctx.app()?,
            ctx.viewer()?,
            workspace_id,
            account_id,
            role.into(),
        )
        .await?;
        Ok(Collaborator(member))
    }

    /// Removes a collaborator (OWNER), or the caller themselves (leaving). Returns the account id.
    async fn remove_collaborator(
        &self,
        ctx: &Context<'_>,
        workspace_id: Uuid,
        account_id: Uuid,
    ) -> AppResult<Uuid> {
        collaborators::remove(ctx.app()?, ctx.viewer()?, workspace_id, account_id).await
    }
}
