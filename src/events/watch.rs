//! One subscriber's view of a workspace's event log: replay from a cursor, then live events,
//! with no gap and no duplicate, ending when the viewer loses access.
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::bus::Notice;
use super::feed::{fetch, head, LiveItem};
use crate::auth::Viewer;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// Access is re-checked this often even without a notice (an API key may expire).
const RECHECK_EVERY: Duration = Duration::from_secs(30);

/// Which retention applies to a subscription's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Events,
    Logs,
}

/// Streams every event of the workspace after `after` (or from now), in cursor order.
/// `notices` must be subscribed before the caller's access check, so no change is missed.
pub fn watch(
    state: AppState,
    viewer: Viewer,
    workspace_id: Uuid,
    after: Option<i64>,
    source: Source,
    mut notices: broadcast::Receiver<Notice>,
) -> impl Stream<Item = AppResult<LiveItem>> {
    async_stream::try_stream! {
        // Join the feed before reading the position, so nothing committed in between is missed.
        let mut feed = state.hub.join(workspace_id);
        let mut last = match after {
            Some(cursor) => {
                let floor = Box::pin(retention_floor(&state, workspace_id, source)).await?;
                if cursor < floor {
                    Err(AppError::bad_input(
                        "after",
                        "this cursor is older than the event retention; subscribe again without `after` (and reload the current state)",
                    ))?;
                }
                cursor
            }
            None => Box::pin(head(&state.db, workspace_id)).await?,
        };
        // Replay what the client missed. The database futures are boxed here and below: held
        // inline they would make every idle subscription as large as the largest of them.
        loop {
            let batch = Box::pin(fetch(&state.db, workspace_id, last)).await?;
            last = batch.last;
            for item in batch.items {
                yield item;
            }
            if !batch.more {
                break;
            }
        }
        // Spread the periodic re-checks: subscriptions opened together (a dashboard, a
        // reconnecting fleet) would otherwise all hit the database in the same instant.
        let first = RECHECK_EVERY.mul_f64(0.5 + rand::random::<f64>() * 0.5);
        let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + first, RECHECK_EVERY);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = tokio::select! {
                received = feed.recv() => Wake::Feed(received),
                notice = notices.recv() => Wake::Notice(notice),
                _ = recheck.tick() => Wake::Recheck,
            };
            match wake {
                Wake::Feed(Ok(batch)) if batch.after <= last => {
                    for item in batch.items.iter().filter(|i| i.seq() > last) {
                        yield item.clone();
                    }
                    last = last.max(batch.last);
                }
                // Fell behind, or the feed started later than this subscriber: read the log.
                Wake::Feed(received) => {
                    if let Err(broadcast::error::RecvError::Closed) = received {
                        feed = state.hub.join(workspace_id);
                    }
                    loop {
                        let batch = Box::pin(fetch(&state.db, workspace_id, last)).await?;
                        last = batch.last;
                        for item in batch.items {
                            yield item;
                        }
                        if !batch.more {
                            break;
                        }
                    }
                }
                Wake::Notice(notice) => {
                    let affected = match notice {
                        Ok(Notice::AccessChanged { account_id }) => {
                            account_id.is_none_or(|id| id == viewer.account_id)
                        }
                        Ok(Notice::Committed { .. }) | Err(broadcast::error::RecvError::Closed) => false,
                        Err(broadcast::error::RecvError::Lagged(_)) => true,
                    };
                    if affected {
                        Box::pin(ensure_access(&state, &viewer, workspace_id)).await?;
                    }
                }
                Wake::Recheck => Box::pin(ensure_access(&state, &viewer, workspace_id)).await?,
            }
        }
    }
}

enum Wake {
    Feed(Result<std::sync::Arc<super::feed::Batch>, broadcast::error::RecvError>),
    Notice(Result<Notice, broadcast::error::RecvError>),
    Recheck,
}

async fn ensure_access(state: &AppState, viewer: &Viewer, workspace_id: Uuid) -> AppResult<()> {
    if !crate::auth::viewer::still_valid(state, viewer).await? {
        return Err(AppError::Unauthenticated(
            "your credentials are no longer valid; the subscription has ended".into(),
        ));
    }
    crate::domain::access::require_role(
        state.db.read(),
        viewer,
        workspace_id,
        crate::domain::Role::Viewer,
        "workspace",
    )
    .await?;
    Ok(())
}

/// Cursors at or below this were deleted by retention.
async fn retention_floor(state: &AppState, workspace_id: Uuid, source: Source) -> AppResult<i64> {
    let workspace = crate::domain::workspaces::find(state.db.read(), workspace_id).await?;
    Ok(match source {
        Source::Events => workspace.events_pruned_seq,
        Source::Logs => workspace.logs_pruned_seq,
    })
}
