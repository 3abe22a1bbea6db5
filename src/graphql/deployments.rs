//! Deployments and their schedules: `createDeployment`, `updateDeployment`,
//! `setDeploymentScheduleActive`, `deleteDeployment`, `Query.deployment`,
//! `Workspace.deployments`.
use async_graphql::{Context, InputObject, Json, MaybeUndefined, Object, SimpleObject};
use chrono::{DateTime, SecondsFormat, Utc};
use entity::deployments as deployment_rows;
use uuid::Uuid;

use super::flows::Flow;
use super::loaders::LoadOneBoxed;
use super::pagination::{encode_cursor, Page, PageArgs};
use super::plain_fields::{ready, PlainFields};
use super::storage::StorageBlock;
use super::ContextExt;
use crate::connection_type;
use crate::domain::deployments::{self, DeploymentCursor, DeploymentUpdate, NewDeployment};
use crate::domain::schedules::{self, ScheduleInput as DomainScheduleInput};
use crate::domain::validate;
use crate::error::{AppError, AppResult};

/// `MaybeUndefined` as the domain's partial-update shape: left out → `None`, `null` →
/// `Some(None)`.
pub(crate) fn maybe<T>(value: MaybeUndefined<T>) -> Option<Option<T>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v)),
    }
}

#[derive(Clone)]
pub struct Deployment(pub std::sync::Arc<deployment_rows::Model>);

impl From<deployment_rows::Model> for Deployment {
    fn from(model: deployment_rows::Model) -> Self {
        Self(std::sync::Arc::new(model))
    }
}

impl From<std::sync::Arc<deployment_rows::Model>> for Deployment {
    fn from(model: std::sync::Arc<deployment_rows::Model>) -> Self {
        Self(model)
    }
}

connection_type!(
    DeploymentConnection,
    DeploymentEdge,
    Deployment,
    deployment_rows::Model
);

/// When a deployment runs: exactly one of `cron`, `interval` (seconds) or `rrule`.
#[derive(SimpleObject, Clone, Debug)]
pub struct Schedule {
    /// A 5-field cron expression, evaluated in `timezone`.
    cron: Option<String>,
    /// Seconds between runs, counted from `anchorDate`.
    interval: Option<i32>,
    anchor_date: Option<DateTime<Utc>>,
    /// An iCalendar recurrence rule (with its DTSTART).
    rrule: Option<String>,
    /// IANA time zone name.
    timezone: String,
}

impl From<&schedules::Schedule> for Schedule {
    fn from(schedule: &schedules::Schedule) -> Self {
        Self {
            cron: schedule.cron().map(str::to_owned),
            interval: schedule
                .interval_seconds()
                .map(|s| i32::try_from(s).unwrap_or(i32::MAX)),
            anchor_date: schedule.anchor_date(),
            rrule: schedule.rrule().map(str::to_owned),
            timezone: schedule.timezone().name().to_owned(),
        }
    }
}

impl PlainFields for Deployment {
    fn plain_field(&self, ctx: &Context<'_>) -> Option<async_graphql::Value> {
        match ctx.item.node.name.node.as_str() {
            "id" => ready(self.id(ctx)),
            "name" => ready(self.name(ctx)),
            "description" => ready(self.description(ctx)),
            "isScheduleActive" => ready(self.is_schedule_active(ctx)),
            "tags" => ready(self.tags(ctx)),
            "entrypoint" => ready(self.entrypoint(ctx)),
            "workQueueName" => ready(self.work_queue_name(ctx)),
            "createdAt" => ready(self.created_at(ctx)),
            "updatedAt" => ready(self.updated_at(ctx)),
            _ => None,
        }
    }
}

#[Object]
impl Deployment {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    async fn flow(&self, ctx: &Context<'_>) -> AppResult<Flow> {
        ctx.loaders()?
            .flows
            .load_one_boxed(self.0.flow_id)
            .await
            .map_err(super::loaders::load_failed)?
            .map(Flow::from)
            .ok_or_else(|| AppError::not_found("flow"))
    }
    async fn schedule(&self) -> AppResult<Option<Schedule>> {
        Ok(schedules::Schedule::from_model(&self.0)?
            .as_ref()
            .map(Schedule::from))
    }
    /// False while the schedule is paused.
    async fn is_schedule_active(&self) -> bool {
        self.0.is_schedule_active
    }
    async fn parameters(&self) -> Json<serde_json::Value> {
        Json(self.0.parameters.clone())
    }
    async fn tags(&self) -> Vec<String> {
        validate::stored_strings(&self.0.tags)
    }
    async fn entrypoint(&self) -> Option<&str> {
        self.0.entrypoint.as_deref()
    }
    async fn work_queue_name(&self) -> Option<&str> {
        self.0.work_queue_name.as_deref()
    }
    async fn storage_block(&self, ctx: &Context<'_>) -> AppResult<Option<StorageBlock>> {
        let Some(id) = self.0.storage_block_id else {
            return Ok(None);
        };
        Ok(ctx
            .loaders()?
            .storage_blocks
            .load_one_boxed(id)
            .await
            .map_err(super::loaders::load_failed)?
            .map(StorageBlock))
    }
    /// The deployment's runs, expected start time newest first.
    async fn flow_runs(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> AppResult<super::runs::FlowRunConnection> {
        let filter = super::runs::FlowRunFilter {
            deployment_ids: Some(vec![self.0.id]),
            ..Default::default()
        };
        super::runs::nested_flow_runs(ctx, self.0.workspace_id, first, after, filter).await
    }
    /// Its next `SCHEDULED` runs, earliest first.
    async fn upcoming_flow_runs(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 10)] first: i32,
    ) -> AppResult<Vec<super::runs::FlowRun>> {
        if !(0..=200).contains(&first) {
            return Err(crate::error::AppError::bad_input(
                "first",
                "must be between 0 and 200",
            ));
        }
        let rows = Box::pin(crate::domain::flow_runs::upcoming(
            ctx.app()?,
            self.0.workspace_id,
            Some(self.0.id),
            first as u64,
        ))
        .await?;
        Ok(rows.into_iter().map(super::runs::FlowRun::from).collect())
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// Exactly one of `cron` (5 fields, with an optional `timezone`, default UTC), `interval`
/// (seconds ≥ 1, with an optional `anchorDate`, default now) or `rrule`.
#[derive(InputObject)]
pub struct ScheduleInput {
    cron: Option<String>,
    interval: Option<i32>,
    anchor_date: Option<DateTime<Utc>>,
    rrule: Option<String>,
    timezone: Option<String>,
}

impl From<ScheduleInput> for DomainScheduleInput {
    fn from(input: ScheduleInput) -> Self {
        Self {
            cron: input.cron,
            interval: input.interval.map(i64::from),
            anchor_date: input.anchor_date,
            rrule: input.rrule,
            timezone: input.timezone,
        }
    }
}

#[derive(InputObject)]
pub struct CreateDeploymentInput {
    flow_id: Uuid,
    name: String,
    description: Option<String>,
    schedule: Option<ScheduleInput>,
    /// Default true.
    is_schedule_active: Option<bool>,
    /// A JSON object; default `{}`.
    parameters: Option<Json<serde_json::Value>>,
    tags: Option<Vec<String>>,
    entrypoint: Option<String>,
    work_queue_name: Option<String>,
    storage_block_id: Option<Uuid>,
}

/// A partial update: a field left out keeps its value; `null` clears the nullable ones
/// (`description`, `schedule`, `entrypoint`, `workQueueName`, `storageBlockId`).
#[derive(InputObject)]
pub struct UpdateDeploymentInput {
    name: Option<String>,
    description: MaybeUndefined<String>,
    schedule: MaybeUndefined<ScheduleInput>,
    is_schedule_active: Option<bool>,
    parameters: Option<Json<serde_json::Value>>,
    tags: Option<Vec<String>>,
    entrypoint: MaybeUndefined<String>,
    work_queue_name: MaybeUndefined<String>,
    storage_block_id: MaybeUndefined<Uuid>,
}

fn deployment_cursor(deployment: &deployment_rows::Model) -> String {
    encode_cursor(&[
        &deployment
            .created_at
            .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        &deployment.id.to_string(),
    ])
}

fn decode_deployment_cursor(parts: Vec<String>) -> AppResult<DeploymentCursor> {
    let bad = || AppError::bad_input("after", "not a cursor this server issued");
    match parts.as_slice() {
        [created_at, id] => Ok(DeploymentCursor {
            created_at: DateTime::parse_from_rfc3339(created_at)
                .map_err(|_| bad())?
                .with_timezone(&Utc),
            id: Uuid::parse_str(id).map_err(|_| bad())?,
        }),
        _ => Err(bad()),
    }
}

/// `Workspace.deployments`: the workspace's deployments, oldest first.
pub async fn workspace_deployments(
    ctx: &Context<'_>,
    workspace_id: Uuid,
    first: Option<i32>,
    after: Option<String>,
) -> AppResult<DeploymentConnection> {
    let args = PageArgs::parse(first, after)?;
    let cursor = args
        .after
        .clone()
        .map(decode_deployment_cursor)
        .transpose()?;
    let (rows, total) = deployments::list(
        ctx.app()?,
        ctx.viewer()?,
        workspace_id,
        cursor,
        args.fetch_limit(),
    )
    .await?;
    Ok(DeploymentConnection(Page::from_rows(
        rows,
        &args,
        total,
        deployment_cursor,
    )))
}

#[derive(Default)]
pub struct DeploymentQuery;

#[Object]
impl DeploymentQuery {
    /// One deployment; null if absent or not accessible.
    async fn deployment(&self, ctx: &Context<'_>, id: Uuid) -> AppResult<Option<Deployment>> {
        let deployment = deployments::get(ctx.app()?, ctx.viewer()?, id).await?;
        Ok(deployment.map(Deployment::from))
    }
}

#[derive(Default)]
pub struct DeploymentMutation;

#[Object]
impl DeploymentMutation {
    async fn create_deployment(
        &self,
        ctx: &Context<'_>,
        workspace_id: Uuid,
        input: CreateDeploymentInput,
    ) -> AppResult<Deployment> {
        let deployment = deployments::create(
            ctx.app()?,
            ctx.viewer()?,
            workspace_id,
            NewDeployment {
                flow_id: input.flow_id,
                name: input.name,
                description: input.description,
                schedule: input.schedule.map(Into::into),
                is_schedule_active: input.is_schedule_active,
                parameters: input.parameters.map(|p| p.0),
                tags: input.tags,
                entrypoint: input.entrypoint,
                work_queue_name: input.work_queue_name,
                storage_block_id: input.storage_block_id,
            },
        )
        .await?;
        Ok(Deployment::from(deployment))
    }

    async fn update_deployment(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        input: UpdateDeploymentInput,
    ) -> AppResult<Deployment> {
        let deployment = deployments::update(
            ctx.app()?,
            ctx.viewer()?,
            id,
            DeploymentUpdate {
                name: input.name,
                description: maybe(input.description),
                schedule: maybe(input.schedule).map(|s| s.map(Into::into)),
                is_schedule_active: input.is_schedule_active,
                parameters: input.parameters.map(|p| p.0),
                tags: input.tags,
                entrypoint: maybe(input.entrypoint),
                work_queue_name: maybe(input.work_queue_name),
                storage_block_id: maybe(input.storage_block_id),
            },
        )
        .await?;
        Ok(Deployment::from(deployment))
    }

    /// Pauses (`false`) or resumes (`true`) the deployment's schedule.
    async fn set_deployment_schedule_active(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        active: bool,
    ) -> AppResult<Deployment> {
        let deployment =
            deployments::set_schedule_active(ctx.app()?, ctx.viewer()?, id, active).await?;
        Ok(Deployment::from(deployment))
    }

    /// Deletes the deployment; returns its id.
    async fn delete_deployment(&self, ctx: &Context<'_>, id: Uuid) -> AppResult<Uuid> {
        deployments::delete(ctx.app()?, ctx.viewer()?, id).await
    }
}
