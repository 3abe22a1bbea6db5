//! Work queues.
use async_graphql::{Context, InputObject, MaybeUndefined, Object};
use chrono::{DateTime, Utc};
use entity::work_queues as queue_rows;
use uuid::Uuid;

use super::ContextExt;
use crate::domain::validate;
use crate::domain::work_queues::{self, WorkQueueInput as DomainInput};
use crate::error::AppResult;

#[derive(Clone)]
pub struct WorkQueue(pub queue_rows::Model);

impl From<queue_rows::Model> for WorkQueue {
    fn from(model: queue_rows::Model) -> Self {
        Self(model)
    }
}

#[Object]
impl WorkQueue {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    /// A paused queue hands out no runs.
    async fn is_paused(&self) -> bool {
        self.0.is_paused
    }
    /// At most this many of the queue's runs PENDING or RUNNING at once; null: no limit.
    async fn concurrency_limit(&self) -> Option<i32> {
        self.0.concurrency_limit
    }
    /// Filter: only runs carrying all these tags.
    async fn tags(&self) -> Vec<String> {
        validate::stored_strings(&self.0.tags)
    }
    /// Filter: only runs of these deployments (empty: any).
    async fn deployment_ids(&self) -> Vec<Uuid> {
        work_queues::deployment_ids(&self.0)
    }
    async fn last_polled_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_polled_at
    }
}

/// Create or update a work queue. On update, a field left out keeps its value and `null`
/// clears `description` / `concurrencyLimit`.
#[derive(InputObject)]
pub struct WorkQueueInput {
    name: String,
    description: MaybeUndefined<String>,
    is_paused: Option<bool>,
    concurrency_limit: MaybeUndefined<i32>,
    tags: Option<Vec<String>>,
    deployment_ids: Option<Vec<Uuid>>,
}

impl From<WorkQueueInput> for DomainInput {
    fn from(input: WorkQueueInput) -> Self {
        Self {
            name: input.name,
            description: super::deployments::maybe(input.description),
            is_paused: input.is_paused,
            concurrency_limit: super::deployments::maybe(input.concurrency_limit),
            tags: input.tags,
            deployment_ids: input.deployment_ids,
        }
    }
}

/// `Workspace.workQueues`: the workspace's work queues by name.
pub async fn workspace_work_queues(
    ctx: &Context<'_>,
    workspace_id: Uuid,
) -> AppResult<Vec<WorkQueue>> {
    let rows = work_queues::list(ctx.app()?, ctx.viewer()?, workspace_id).await?;
    Ok(rows.into_iter().map(WorkQueue).collect())
}

#[derive(Default)]
pub struct WorkQueueMutation;

#[Object]
impl WorkQueueMutation {
    async fn create_work_queue(
        &self,
        ctx: &Context<'_>,
        workspace_id: Uuid,
        input: WorkQueueInput,
    ) -> AppResult<WorkQueue> {
        let queue =
            work_queues::create(ctx.app()?, ctx.viewer()?, workspace_id, input.into()).await?;
        Ok(WorkQueue(queue))
    }

    async fn update_work_queue(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        input: WorkQueueInput,
    ) -> AppResult<WorkQueue> {
        let queue = work_queues::update(ctx.app()?, ctx.viewer()?, id, input.into()).await?;
        Ok(WorkQueue(queue))
    }

    /// Deletes the queue; returns its id.
    async fn delete_work_queue(&self, ctx: &Context<'_>, id: Uuid) -> AppResult<Uuid> {
        work_queues::delete(ctx.app()?, ctx.viewer()?, id).await
    }
}
