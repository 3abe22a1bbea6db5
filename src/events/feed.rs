//! Fan-out: one feed task per watched workspace reads new events from the log once and
//! broadcasts them to every local subscriber. A subscriber that falls behind (or resumes from
//! a cursor) catches up from the log itself, so it never loses an event and never slows the
//! others or the writers.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{event_counters, events, flow_runs, logs, run_alerts, task_runs};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio::sync::broadcast;
use uuid::Uuid;

use super::bus::Notice;
use super::{KIND_FLOW_RUN_STATE, KIND_TASK_RUN_STATE};
use crate::db::Db;
use crate::domain::states::StateRecord;
use crate::error::{AppError, AppResult};

/// Rows read from each source table per fetch.
const FETCH_LIMIT: u64 = 2_000;
/// Batches a feed keeps for slow subscribers before they must catch up from the log.
const FEED_CAPACITY: usize = 1_024;
/// A feed also looks at the log this often, in case a wake-up was missed.
const FEED_POLL: Duration = Duration::from_secs(1);

/// A state change of a flow run or a task run (`R` is the run's model).
#[derive(Debug)]
pub struct StateChange<R> {
    pub seq: i64,
    pub run: R,
    pub from: Option<StateRecord>,
    pub to: StateRecord,
    pub occurred_at: DateTime<Utc>,
}

/// One event, as subscribers receive it. Cloning is cheap (one reference count): a batch is
/// read once and handed to every subscriber of the workspace.
#[derive(Debug, Clone)]
pub enum LiveItem {
    FlowRunState(Arc<StateChange<flow_runs::Model>>),
    TaskRunState(Arc<StateChange<task_runs::Model>>),
    Log(Arc<logs::Model>),
    Alert(Arc<run_alerts::Model>),
}

impl LiveItem {
    pub fn seq(&self) -> i64 {
        match self {
            LiveItem::FlowRunState(c) => c.seq,
            LiveItem::TaskRunState(c) => c.seq,
            LiveItem::Log(l) => l.seq,
            LiveItem::Alert(a) => a.seq,
        }
    }
}

/// Consecutive events of one workspace: `items` covers every cursor in `(after, last]`
/// (cursors of rows that were deleted since are simply absent).
#[derive(Debug)]
pub struct Batch {
    pub after: i64,
    pub last: i64,
    pub items: Vec<LiveItem>,
    /// More events were committed than this batch holds.
    pub more: bool,
}

/// The workspace's newest cursor.
pub async fn head(db: &Db, workspace_id: Uuid) -> AppResult<i64> {
    let seq: Option<i64> = event_counters::Entity::find_by_id(workspace_id)
        .select_only()
        .column(event_counters::Column::LastEventSeq)
        .into_tuple()
        .one(db.read())
        .await?;
    seq.ok_or_else(|| AppError::not_found("workspace"))
}

/// Reads events after `after`, merged from the three sources in cursor order. Cursors are
/// handed out contiguously and committed in order, so what comes back is complete up to `last`.
pub async fn fetch(db: &Db, workspace_id: Uuid, after: i64) -> AppResult<Batch> {
    let conn = db.read();
    let head = head(db, workspace_id).await?;
    if head <= after {
        return Ok(Batch {
            after,
            last: after,
            items: Vec::new(),
            more: false,
        });
    }
    let (state_events, log_rows, alert_rows) = tokio::try_join!(
        events::Entity::find()
            .filter(events::Column::WorkspaceId.eq(workspace_id))
            .filter(events::Column::Seq.gt(after))
            .filter(events::Column::Seq.lte(head))
            .order_by_asc(events::Column::Seq)
            .limit(FETCH_LIMIT)
            .all(conn),
        logs::Entity::find()
            .filter(logs::Column::WorkspaceId.eq(workspace_id))
            .filter(logs::Column::Seq.gt(after))
            .filter(logs::Column::Seq.lte(head))
            .order_by_asc(logs::Column::Seq)
            .limit(FETCH_LIMIT)
            .all(conn),
        run_alerts::Entity::find()
            .filter(run_alerts::Column::WorkspaceId.eq(workspace_id))
            .filter(run_alerts::Column::Seq.gt(after))
            .filter(run_alerts::Column::Seq.lte(head))
            .order_by_asc(run_alerts::Column::Seq)
            .limit(FETCH_LIMIT)
            .all(conn),
    )?;
    // A source cut off at the limit may hide later rows: stop at the earliest such cut.
    let mut last = head;
    let full = FETCH_LIMIT as usize;
    if state_events.len() == full {
        last = last.min(state_events.last().map_or(head, |e| e.seq));
    }
    if log_rows.len() == full {
        last = last.min(log_rows.last().map_or(head, |l| l.seq));
    }
    if alert_rows.len() == full {
        last = last.min(alert_rows.last().map_or(head, |a| a.seq));
    }

    let run_ids: Vec<Uuid> = state_events
        .iter()
        .filter(|e| e.kind == KIND_FLOW_RUN_STATE)
        .filter_map(|e| e.flow_run_id)
        .collect();
    let task_ids: Vec<Uuid> = state_events
        .iter()
        .filter(|e| e.kind == KIND_TASK_RUN_STATE)
        .filter_map(|e| e.task_run_id)
        .collect();
    let (runs, tasks) = tokio::try_join!(
        async {
            if run_ids.is_empty() {
                return Ok(Vec::new());
            }
            flow_runs::Entity::find()
                .filter(flow_runs::Column::Id.is_in(run_ids))
                .all(conn)
                .await
        },
        async {
            if task_ids.is_empty() {
                return Ok(Vec::new());
            }
            task_runs::Entity::find()
                .filter(task_runs::Column::Id.is_in(task_ids))
                .all(conn)
                .await
        },
    )?;
    let runs: HashMap<Uuid, flow_runs::Model> = runs.into_iter().map(|r| (r.id, r)).collect();
    let tasks: HashMap<Uuid, task_runs::Model> = tasks.into_iter().map(|t| (t.id, t)).collect();

    let mut items = Vec::with_capacity(state_events.len() + log_rows.len() + alert_rows.len());
    for event in state_events.into_iter().filter(|e| e.seq <= last) {
        let from = event
            .payload
            .get("fromState")
            .filter(|v| !v.is_null())
            .map(StateRecord::from_json)
            .transpose()?;
        let to = event
            .payload
            .get("toState")
            .map(StateRecord::from_json)
            .transpose()?
            .ok_or_else(|| AppError::internal("state event without toState"))?;
        match event.kind.as_str() {
            KIND_FLOW_RUN_STATE => {
                if let Some(run) = event.flow_run_id.and_then(|id| runs.get(&id)) {
                    items.push(LiveItem::FlowRunState(Arc::new(StateChange {
                        seq: event.seq,
                        run: run.clone(),
                        from,
                        to,
                        occurred_at: event.occurred_at,
                    })));
                }
            }
            KIND_TASK_RUN_STATE => {
                if let Some(task) = event.task_run_id.and_then(|id| tasks.get(&id)) {
                    items.push(LiveItem::TaskRunState(Arc::new(StateChange {
                        seq: event.seq,
                        run: task.clone(),
                        from,
                        to,
                        occurred_at: event.occurred_at,
                    })));
                }
            }
            _ => {}
        }
    }
    items.extend(
        log_rows
            .into_iter()
            .filter(|l| l.seq <= last)
            .map(|l| LiveItem::Log(Arc::new(l))),
    );
    items.extend(
        alert_rows
            .into_iter()
            .filter(|a| a.seq <= last)
            .map(|a| LiveItem::Alert(Arc::new(a))),
    );
    items.sort_by_key(LiveItem::seq);
    Ok(Batch {
        after,
        last,
        items,
        more: last < head,
    })
}

/// The feeds of this process, one per watched workspace.
#[derive(Clone)]
pub struct Hub {
    db: Db,
    bus: super::EventBus,
    feeds: Arc<Mutex<HashMap<Uuid, broadcast::Sender<Arc<Batch>>>>>,
}

impl Hub {
    pub fn new(db: Db, bus: super::EventBus) -> Self {
        Self {
            db,
            bus,
            feeds: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Joins the workspace's feed, starting it if nobody watched the workspace yet.
    pub fn join(&self, workspace_id: Uuid) -> broadcast::Receiver<Arc<Batch>> {
        let mut feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = feeds.get(&workspace_id) {
            return sender.subscribe();
        }
        let (sender, receiver) = broadcast::channel(FEED_CAPACITY);
        feeds.insert(workspace_id, sender.clone());
        let hub = self.clone();
        tokio::spawn(async move { hub.run_feed(workspace_id, sender).await });
        receiver
    }

    async fn run_feed(self, workspace_id: Uuid, sender: broadcast::Sender<Arc<Batch>>) {
        let mut notices = self.bus.subscribe_committed();
        // Start from the newest cursor. Starting from 0 after a failed read would re-read and
        // re-send the workspace's whole history, so wait for the database instead.
        let mut last: i64 = loop {
            match head(&self.db, workspace_id).await {
                Ok(seq) => break seq,
                Err(err) => {
                    tracing::warn!(%workspace_id, error = ?err, "event feed could not read the log head");
                    tokio::time::sleep(FEED_POLL).await;
                }
            }
        };
        // Announce where the feed starts. A subscriber that joined before this read and read
        // the log before an event the feed now counts as seen would otherwise wait for the next
        // event to notice the gap; the announcement sends it to the log at once.
        let _ = sender.send(Arc::new(Batch {
            after: last,
            last,
            items: Vec::new(),
            more: false,
        }));
        let mut poll = tokio::time::interval(FEED_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            {
                let mut feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
                if sender.receiver_count() == 0 {
                    feeds.remove(&workspace_id);
                    return;
                }
            }
            // Drain everything that is committed, then wait for the next hint.
            loop {
                match fetch(&self.db, workspace_id, last).await {
                    Ok(batch) if batch.last > last => {
                        let more = batch.more;
                        last = batch.last;
                        let _ = sender.send(Arc::new(batch));
                        if !more {
                            break;
                        }
                    }
                    Ok(_) => break,
                    Err(err) => {
                        tracing::warn!(%workspace_id, error = ?err, "event feed could not read the log");
                        break;
                    }
                }
            }
            loop {
                tokio::select! {
                    notice = notices.recv() => match notice {
                        Ok(Notice::Committed { workspace_id: ws, last_seq })
                            if ws == workspace_id && last_seq > last => break,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = poll.tick() => break,
                }
            }
        }
    }
}
