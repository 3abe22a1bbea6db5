//! The scheduler keeps each active deployment schedule filled with `SCHEDULED` runs: at least
//! 3 runs and 1 hour ahead, at most 100 runs and 100 days ahead. Each auto-scheduled run carries
//! an idempotency key built from deployment, schedule and time, so restarts and concurrent
//! replicas never create duplicates (the unique index refuses the second insert, which is
//! skipped inside a savepoint).
use chrono::{DateTime, Duration, Utc};
use entity::{deployments, flow_runs};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use uuid::Uuid;

use crate::domain::flow_runs::{insert_run, InsertError, NewRunRow};
use crate::domain::runs_common::tags_from_json;
use crate::domain::schedules::{next_occurrences, Schedule};
use crate::domain::states::{ProposedState, StateType, NAME_SCHEDULED};
use crate::error::AppResult;
use crate::state::AppState;

pub const MIN_RUNS: usize = 3;
pub const MAX_RUNS: usize = 100;
pub fn min_horizon() -> Duration {
    Duration::hours(1)
}
pub fn max_horizon() -> Duration {
    Duration::days(100)
}

/// The times a schedule should have runs for, seen from `now`.
pub fn desired_times(schedule: &Schedule, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let min_until = now + min_horizon();
    next_occurrences(schedule, now, MAX_RUNS, Some(now + max_horizon()))
        .into_iter()
        .enumerate()
        .take_while(|(i, t)| *i < MIN_RUNS || *t <= min_until)
        .map(|(_, t)| t)
        .collect()
}

/// Identifies the schedule in idempotency keys, so a changed schedule gets new runs.
pub fn fingerprint(deployment: &deployments::Model) -> String {
    let mut hasher = Sha256::new();
    for part in [
        deployment.schedule_cron.clone().unwrap_or_default(),
        deployment
            .schedule_interval_seconds
            .map(|s| s.to_string())
            .unwrap_or_default(),
        deployment
            .schedule_anchor_date
            .map(|d| d.to_rfc3339())
            .unwrap_or_default(),
        deployment.schedule_rrule.clone().unwrap_or_default(),
        deployment.schedule_timezone.clone().unwrap_or_default(),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex::encode(&hasher.finalize()[..8])
}

pub fn idempotency_key(deployment: &deployments::Model, at: DateTime<Utc>) -> String {
    format!(
        "scheduled:{}:{}:{}",
        deployment.id,
        fingerprint(deployment),
        at.timestamp_millis()
    )
}

/// Fills every active schedule; returns how many runs it created.
pub async fn try_tick(state: &AppState, now: DateTime<Utc>) -> AppResult<usize> {
    let ids: Vec<Uuid> = deployments::Entity::find()
        .select_only()
        .column(deployments::Column::Id)
        .filter(deployments::Column::IsScheduleActive.eq(true))
        .filter(
            sea_orm::Condition::any()
                .add(deployments::Column::ScheduleCron.is_not_null())
                .add(deployments::Column::ScheduleIntervalSeconds.is_not_null())
                .add(deployments::Column::ScheduleRrule.is_not_null()),
        )
        .into_tuple()
        .all(state.db.read())
        .await?;
    let mut created = 0;
    for id in ids {
        created += fill(state, id, now).await?;
    }
    Ok(created)
}

/// Fills one deployment's schedule in one transaction, the deployment row locked so a
/// concurrent pause or schedule change is decided before or after, never in between.
pub async fn fill(state: &AppState, deployment_id: Uuid, now: DateTime<Utc>) -> AppResult<usize> {
    let txn = state.db.begin_write().await?;
    let Some(deployment) = deployments::Entity::find_by_id(deployment_id)
        .lock_exclusive()
        .one(&txn)
        .await?
    else {
        return Ok(0);
    };
    if !deployment.is_schedule_active {
        return Ok(0);
    }
    let Some(schedule) = Schedule::from_model(&deployment)? else {
        return Ok(0);
    };
    let times = desired_times(&schedule, now);
    let Some(last) = times.last().copied() else {
        return Ok(0);
    };
    let existing: HashSet<String> = flow_runs::Entity::find()
        .select_only()
        .column(flow_runs::Column::IdempotencyKey)
        .filter(flow_runs::Column::DeploymentId.eq(deployment.id))
        .filter(flow_runs::Column::AutoScheduled.eq(true))
        .filter(flow_runs::Column::ExpectedStartTime.gt(now))
        .filter(flow_runs::Column::ExpectedStartTime.lte(last))
        .into_tuple::<Option<String>>()
        .all(&txn)
        .await?
        .into_iter()
        .flatten()
        .collect();
    let mut created = 0;
    let mut last_seq = None;
    let mut earliest: Option<DateTime<Utc>> = None;
    for at in times {
        let key = idempotency_key(&deployment, at);
        if existing.contains(&key) {
            continue;
        }
        let mut state_input = ProposedState::new(StateType::Scheduled).named(NAME_SCHEDULED);
        state_input.scheduled_time = Some(at);
        let row = NewRunRow {
            workspace_id: deployment.workspace_id,
            flow_id: deployment.flow_id,
            deployment_id: Some(deployment.id),
            work_queue_name: deployment.work_queue_name.clone(),
            name: None,
            parameters: deployment.parameters.clone(),
            tags: tags_from_json(&deployment.tags),
            idempotency_key: Some(key),
            auto_scheduled: true,
            retries: 0,
            retry_delay_seconds: 0,
            state: state_input,
        };
        // A savepoint: a duplicate from another replica is skipped without aborting the rest.
        let savepoint = txn.begin().await?;
        match insert_run(&savepoint, row).await {
            Ok((_, seq)) => {
                savepoint.commit().await?;
                created += 1;
                last_seq = Some(seq);
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
            }
            Err(InsertError::Duplicate) => savepoint.rollback().await?,
            Err(InsertError::App(err)) => return Err(err),
        }
    }
    txn.commit().await?;
    if let Some(seq) = last_seq {
        state.events.committed(deployment.workspace_id, seq);
        state.run_state_written(StateType::Scheduled.as_str(), NAME_SCHEDULED, earliest);
    }
    Ok(created)
}

/// Removes the deployment's future auto-scheduled runs that have not started (on pause,
/// schedule change or delete). Runs inside the caller's transaction.
pub async fn remove_future_runs(
    conn: &impl ConnectionTrait,
    deployment_id: Uuid,
    now: DateTime<Utc>,
) -> AppResult<u64> {
    let result = flow_runs::Entity::delete_many()
        .filter(flow_runs::Column::DeploymentId.eq(deployment_id))
        .filter(flow_runs::Column::AutoScheduled.eq(true))
        .filter(flow_runs::Column::StateType.eq(StateType::Scheduled.as_str()))
        .filter(flow_runs::Column::ExpectedStartTime.gt(now))
        .exec(conn)
        .await?;
    Ok(result.rows_affected)
}
