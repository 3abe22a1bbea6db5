//! Claiming: agents take `SCHEDULED` runs from a work queue, each run handed out exactly once.
use chrono::{DateTime, Duration, Utc};
use entity::{flow_runs, work_queues};
use sea_orm::sea_query::LockBehavior;
use sea_orm::sea_query::LockType;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use super::access::{require_role, Role};
use super::flow_runs::{has_tag, transition, SetStateStatus};
use super::runs_common::tags_from_json;
use super::states::{ProposedState, StateType, NAME_LATE, NAME_SCHEDULED};
use crate::auth::Viewer;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

pub const MAX_CLAIM: i32 = 200;
pub const DEFAULT_LOOKAHEAD: Duration = Duration::seconds(10);

/// Moves up to `limit` due runs of the queue to `PENDING` for the caller, in one transaction.
/// The queue row is locked for the duration, so concurrent claimers of one queue take turns
/// and the concurrency limit holds; on PostgreSQL the candidate runs are also taken with
/// `FOR UPDATE SKIP LOCKED`, so a run being changed elsewhere is skipped rather than waited on.
/// Runs are due by the time their current `SCHEDULED` state is for (a re-run's new time).
pub async fn claim(
    state: &AppState,
    viewer: &Viewer,
    work_queue_id: Uuid,
    limit: i32,
    scheduled_before: Option<DateTime<Utc>>,
) -> AppResult<Vec<flow_runs::Model>> {
    if !(1..=MAX_CLAIM).contains(&limit) {
        return Err(AppError::bad_input(
            "limit",
            format!("must be between 1 and {MAX_CLAIM}"),
        ));
    }
    let now = super::runs_common::now();
    let scheduled_before = scheduled_before.unwrap_or(now + DEFAULT_LOOKAHEAD);
    let txn = state.db.begin_write().await?;
    let queue = work_queues::Entity::find_by_id(work_queue_id)
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("work queue"))?;
    require_role(&txn, viewer, queue.workspace_id, Role::Editor, "work queue").await?;
    let workspace_id = queue.workspace_id;
    let queue_name = queue.name.clone();
    let paused = queue.is_paused;
    let concurrency_limit = queue.concurrency_limit;
    let queue_tags = tags_from_json(&queue.tags);
    let queue_deployments: Vec<Uuid> = queue
        .deployment_ids
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().and_then(|s| Uuid::parse_str(s).ok()))
                .collect()
        })
        .unwrap_or_default();
    let mut active: work_queues::ActiveModel = queue.into();
    active.last_polled_at = Set(Some(now));
    active.update(&txn).await?;
    if paused {
        txn.commit().await?;
        return Ok(Vec::new());
    }
    let mut available = i64::from(limit);
    if let Some(cap) = concurrency_limit {
        let busy = flow_runs::Entity::find()
            .filter(flow_runs::Column::WorkspaceId.eq(workspace_id))
            .filter(flow_runs::Column::WorkQueueName.eq(queue_name.as_str()))
            .filter(
                flow_runs::Column::StateType
                    .is_in([StateType::Pending.as_str(), StateType::Running.as_str()]),
            )
            .count(&txn)
            .await? as i64;
        available = available.min(i64::from(cap) - busy);
    }
    if available <= 0 {
        txn.commit().await?;
        return Ok(Vec::new());
    }
    let mut candidates = flow_runs::Entity::find()
        .filter(flow_runs::Column::WorkspaceId.eq(workspace_id))
        .filter(flow_runs::Column::WorkQueueName.eq(queue_name.as_str()))
        .filter(flow_runs::Column::StateType.eq(StateType::Scheduled.as_str()))
        .filter(flow_runs::Column::StateName.is_in([NAME_SCHEDULED, NAME_LATE]))
        .filter(flow_runs::Column::StateScheduledTime.lte(scheduled_before));
    for tag in &queue_tags {
        candidates = candidates.filter(has_tag("flow_runs", tag, state.db.backend()));
    }
    if !queue_deployments.is_empty() {
        candidates = candidates.filter(flow_runs::Column::DeploymentId.is_in(queue_deployments));
    }
    let mut candidates = candidates
        .order_by_asc(flow_runs::Column::StateScheduledTime)
        .order_by_asc(flow_runs::Column::Id)
        .limit(available as u64);
    if state.db.is_postgres() {
        candidates = candidates.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let runs = candidates.all(&txn).await?;
    let mut claimed = Vec::with_capacity(runs.len());
    let mut last_seq = None;
    for run in runs {
        let id = run.id;
        let (outcome, seq) = transition(
            &txn,
            run,
            &ProposedState::new(StateType::Pending),
            false,
            now,
        )
        .await?;
        if outcome.status == SetStateStatus::Accept {
            claimed.push(id);
            last_seq = seq.or(last_seq);
        }
    }
    let models = if claimed.is_empty() {
        Vec::new()
    } else {
        flow_runs::Entity::find()
            .filter(flow_runs::Column::Id.is_in(claimed.iter().copied()))
            .order_by_asc(flow_runs::Column::ExpectedStartTime)
            .order_by_asc(flow_runs::Column::Id)
            .all(&txn)
            .await?
    };
    txn.commit().await?;
    if let Some(seq) = last_seq {
        // Claimed runs leave the late detector's watch: nothing for it to look at sooner.
        state.events.committed(workspace_id, seq);
    }
    Ok(models)
}
