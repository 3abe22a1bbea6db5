//! The late-run detector: a `SCHEDULED` run named `Scheduled` whose expected start is more than
//! `FLOWCLOUD_LATE_AFTER_SECONDS` in the past becomes `Late`. The expected start is the time
//! its current `SCHEDULED` state is for (a re-run's new time, not the first run's) (through the orchestration rules,
//! with a `LATE` alert). It sleeps until the next run's due time rather than polling; a run
//! scheduled to be due before then wakes it (`AppState::run_state_written`).
use chrono::{DateTime, Duration, Utc};
use entity::flow_runs;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use crate::domain::flow_runs::{lock_run, transition, SetStateStatus};
use crate::domain::states::{ProposedState, StateType, NAME_LATE, NAME_SCHEDULED};
use crate::error::AppResult;
use crate::state::AppState;

const BATCH: u64 = 500;

/// When a run in this state started waiting, if the detector will mark it late once it has
/// waited longer than the threshold: only a `SCHEDULED` state named `Scheduled`, for a time.
pub fn waiting_since(
    state_type: &str,
    name: &str,
    scheduled_time: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    (state_type == StateType::Scheduled.as_str() && name == NAME_SCHEDULED)
        .then_some(scheduled_time)
        .flatten()
}

pub struct Tick {
    /// Runs marked late in this step.
    pub marked: usize,
    /// When the next run becomes late, if any is waiting.
    pub next_due: Option<DateTime<Utc>>,
}

pub async fn try_tick(state: &AppState, now: DateTime<Utc>) -> AppResult<Tick> {
    let threshold = Duration::seconds(i64::from(state.config.late_after_seconds));
    let cutoff = now - threshold;
    let due: Vec<Uuid> = flow_runs::Entity::find()
        .select_only()
        .column(flow_runs::Column::Id)
        .filter(flow_runs::Column::StateType.eq(StateType::Scheduled.as_str()))
        .filter(flow_runs::Column::StateName.eq(NAME_SCHEDULED))
        .filter(flow_runs::Column::StateScheduledTime.lt(cutoff))
        .order_by_asc(flow_runs::Column::StateScheduledTime)
        .limit(BATCH)
        .into_tuple()
        .all(state.db.read())
        .await?;
    let mut marked = 0;
    for id in &due {
        let txn = state.db.begin_write().await?;
        // Re-read under the lock: a run claimed meanwhile is PENDING and is left alone.
        let Some(run) = lock_run(&txn, *id).await? else {
            continue;
        };
        // Rescheduled meanwhile: not late (yet).
        if run.state_scheduled_time.is_none_or(|at| at >= cutoff) {
            continue;
        }
        let workspace_id = run.workspace_id;
        let mut late = ProposedState::new(StateType::Scheduled).named(NAME_LATE);
        late.scheduled_time = run.state_scheduled_time;
        late.message = Some(format!(
            "expected to start at {} and not started {} s later",
            run.state_scheduled_time
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
            threshold.num_seconds()
        ));
        let (outcome, seq) = transition(&txn, run, &late, false, now).await?;
        txn.commit().await?;
        if outcome.status == SetStateStatus::Accept {
            marked += 1;
        }
        if let Some(seq) = seq {
            state.events.committed(workspace_id, seq);
        }
    }
    let next: Option<Option<DateTime<Utc>>> = flow_runs::Entity::find()
        .select_only()
        .column(flow_runs::Column::StateScheduledTime)
        .filter(flow_runs::Column::StateType.eq(StateType::Scheduled.as_str()))
        .filter(flow_runs::Column::StateName.eq(NAME_SCHEDULED))
        .order_by_asc(flow_runs::Column::StateScheduledTime)
        .into_tuple()
        .one(state.db.read())
        .await?;
    let next_due = if due.len() as u64 == BATCH {
        Some(now)
    } else {
        next.flatten().map(|t| t + threshold)
    };
    Ok(Tick { marked, next_due })
}
