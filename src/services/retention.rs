//! Retention: events older than the configured period (default 7 days) and log lines older
//! than theirs (default 30 days) are deleted in small batches, one short transaction each, so
//! no long lock is ever held. The newest deleted cursor is remembered per workspace, so a
//! subscriber resuming from before it is told rather than silently missing events.
use std::collections::HashMap;

use chrono::{Duration, Utc};
use entity::{events, logs, workspaces};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use crate::error::AppResult;
use crate::state::AppState;

pub const BATCH: u64 = 1_000;

/// What one step deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub events: u64,
    pub logs: u64,
}

/// Deletes at most one batch of expired events and one of expired log lines per workspace.
/// Returns what it deleted; call again while it deletes anything.
pub async fn try_tick(state: &AppState) -> AppResult<Pruned> {
    let now = Utc::now();
    let event_cutoff = now - Duration::days(i64::from(state.config.event_retention_days));
    let log_cutoff = now - Duration::days(i64::from(state.config.log_retention_days));
    let workspace_ids: Vec<Uuid> = workspaces::Entity::find()
        .select_only()
        .column(workspaces::Column::Id)
        .into_tuple()
        .all(state.db.read())
        .await?;
    let mut pruned = Pruned::default();
    for workspace_id in workspace_ids {
        let expired_events: Vec<(i64, i64)> = events::Entity::find()
            .select_only()
            .column(events::Column::Id)
            .column(events::Column::Seq)
            .filter(events::Column::WorkspaceId.eq(workspace_id))
            .filter(events::Column::OccurredAt.lt(event_cutoff))
            .order_by_asc(events::Column::OccurredAt)
            .limit(BATCH)
            .into_tuple()
            .all(state.db.read())
            .await?;
        let expired_logs: Vec<(Uuid, i64)> = logs::Entity::find()
            .select_only()
            .column(logs::Column::Id)
            .column(logs::Column::Seq)
            .filter(logs::Column::WorkspaceId.eq(workspace_id))
            .filter(logs::Column::Timestamp.lt(log_cutoff))
            .order_by_asc(logs::Column::Timestamp)
            .limit(BATCH)
            .into_tuple()
            .all(state.db.read())
            .await?;
        if expired_events.is_empty() && expired_logs.is_empty() {
            continue;
        }
        let txn = state.db.begin_write().await?;
        let mut markers: HashMap<&str, i64> = HashMap::new();
        if let Some(max) = expired_events.iter().map(|(_, seq)| *seq).max() {
            events::Entity::delete_many()
                .filter(events::Column::Id.is_in(expired_events.iter().map(|(id, _)| *id)))
                .exec(&txn)
                .await?;
            markers.insert("events", max);
            pruned.events += expired_events.len() as u64;
        }
        if let Some(max) = expired_logs.iter().map(|(_, seq)| *seq).max() {
            logs::Entity::delete_many()
                .filter(logs::Column::Id.is_in(expired_logs.iter().map(|(id, _)| *id)))
                .exec(&txn)
                .await?;
            markers.insert("logs", max);
            pruned.logs += expired_logs.len() as u64;
        }
        for (source, max) in markers {
            let column = if source == "events" {
                workspaces::Column::EventsPrunedSeq
            } else {
                workspaces::Column::LogsPrunedSeq
            };
            // Only ever moves forward.
            workspaces::Entity::update_many()
                .col_expr(column, Expr::value(max))
                .filter(workspaces::Column::Id.eq(workspace_id))
                .filter(column.lt(max))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
    }
    Ok(pruned)
}
