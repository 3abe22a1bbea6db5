//! The event log: every run state change, log line and alert gets a per-workspace cursor
//! (`seq`) in the same transaction as the change. Cursors only grow, and because the counter
//! row (`event_counters`) stays locked until commit, events of one workspace commit in cursor
//! order.
pub mod bus;
pub mod feed;
pub mod replicas;
pub mod watch;

use sea_orm::sea_query::{Expr, Query};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbBackend, FromQueryResult, Set, Statement};
use uuid::Uuid;

use crate::error::{AppError, AppResult};

pub use bus::{EventBus, Notice};
pub use feed::{Hub, LiveItem};

pub const KIND_FLOW_RUN_STATE: &str = "flow_run_state";
pub const KIND_TASK_RUN_STATE: &str = "task_run_state";

#[derive(FromQueryResult)]
struct LastSeq {
    last_event_seq: i64,
}

/// Reserves `count` cursors in the workspace and returns the first. Call inside the
/// transaction that writes the events: its counter row stays locked until it commits.
pub async fn reserve(
    conn: &impl ConnectionTrait,
    workspace_id: Uuid,
    count: i64,
) -> AppResult<i64> {
    use entity::event_counters::Column;
    let backend = conn.get_database_backend();
    let statement = if backend == DbBackend::Postgres {
        Statement::from_sql_and_values(
            backend,
            pg_reserve_sql("$1", "$2"),
            [count.into(), workspace_id.into()],
        )
    } else {
        backend.build(
            Query::update()
                .table(entity::event_counters::Entity)
                .value(
                    Column::LastEventSeq,
                    Expr::col(Column::LastEventSeq).add(count),
                )
                .and_where(Expr::col(Column::WorkspaceId).eq(workspace_id))
                .returning_col(Column::LastEventSeq),
        )
    };
    let row = LastSeq::find_by_statement(statement)
        .one(conn)
        .await?
        .ok_or_else(|| AppError::not_found("workspace"))?;
    Ok(row.last_event_seq - count + 1)
}

/// Tells this and every other process that an account's access changed, so its open
/// subscriptions re-check now. Call after the change committed.
pub async fn access_changed(state: &crate::state::AppState, account_id: Option<Uuid>) {
    let notice = Notice::AccessChanged { account_id };
    state.events.publish(notice);
    if let Err(err) = replicas::notify(state.db.write(), &notice).await {
        tracing::warn!(error = ?err, "could not notify other processes of an access change");
    }
}

/// A row for the `events` table, written by [`append`].
pub struct NewEvent {
    pub workspace_id: Uuid,
    pub kind: &'static str,
    pub flow_run_id: Option<Uuid>,
    pub task_run_id: Option<Uuid>,
    pub payload: serde_json::Value,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
}

/// Appends one event with a fresh cursor; returns the cursor.
pub async fn append(conn: &impl ConnectionTrait, event: NewEvent) -> AppResult<i64> {
    let backend = conn.get_database_backend();
    if backend == DbBackend::Postgres {
        return pg_insert_with_cursor(
            conn,
            event.workspace_id,
            "events",
            [
                ("kind", event.kind.into()),
                ("flow_run_id", event.flow_run_id.into()),
                ("task_run_id", event.task_run_id.into()),
                ("payload", event.payload.into()),
                ("occurred_at", event.occurred_at.into()),
            ],
        )
        .await;
    }
    let seq = reserve(conn, event.workspace_id, 1).await?;
    entity::events::ActiveModel {
        id: sea_orm::NotSet,
        workspace_id: Set(event.workspace_id),
        seq: Set(seq),
        kind: Set(event.kind.to_owned()),
        flow_run_id: Set(event.flow_run_id),
        task_run_id: Set(event.task_run_id),
        payload: Set(event.payload),
        occurred_at: Set(event.occurred_at),
    }
    .insert(conn)
    .await?;
    Ok(seq)
}

/// PostgreSQL: an `UPDATE … RETURNING "workspace_id", "last_event_seq"` that reserves `amount`
/// cursors (SQL) in the workspace whose id is `id_param`, and queues the notification to other
/// processes (sent when the transaction commits).
fn pg_reserve_sql(amount: &str, id_param: &str) -> String {
    format!(
        r#"UPDATE "event_counters" SET "last_event_seq" = "last_event_seq" + {amount} WHERE "workspace_id" = {id_param} RETURNING "workspace_id", "last_event_seq", {} AS "notified""#,
        replicas::COMMITTED_NOTIFY_SQL
    )
}

#[derive(FromQueryResult)]
struct InsertedSeq {
    seq: i64,
}

/// PostgreSQL: inserts one row into `table` (which has `workspace_id` and `seq` besides
/// `columns`) with a fresh cursor of the workspace, reserved in the same statement: the counter
/// row is locked from here to the commit, so every round trip saved here is one less that the
/// workspace's writers wait for in turn. Returns the cursor.
pub async fn pg_insert_with_cursor<const N: usize>(
    conn: &impl ConnectionTrait,
    workspace_id: Uuid,
    table: &str,
    columns: [(&str, sea_orm::Value); N],
) -> AppResult<i64> {
    let names: String = columns
        .iter()
        .map(|(name, _)| format!(", \"{name}\""))
        .collect();
    let params: String = (2..N + 2).map(|i| format!(", ${i}")).collect();
    let sql = format!(
        r#"WITH "reserved" AS ({}) INSERT INTO "{table}" ("workspace_id", "seq"{names}) SELECT "workspace_id", "last_event_seq"{params} FROM "reserved" RETURNING "seq""#,
        pg_reserve_sql("1", "$1")
    );
    let values = std::iter::once(workspace_id.into()).chain(columns.into_iter().map(|(_, v)| v));
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, sql, values);
    Ok(InsertedSeq::find_by_statement(statement)
        .one(conn)
        .await?
        .ok_or_else(|| AppError::not_found("workspace"))?
        .seq)
}

/// Cursors are opaque to clients; today they are the decimal sequence number.
pub fn encode_cursor(seq: i64) -> String {
    seq.to_string()
}

pub fn decode_cursor(field: &str, cursor: &str) -> AppResult<i64> {
    cursor
        .parse::<i64>()
        .ok()
        .filter(|s| *s >= 0)
        .ok_or_else(|| AppError::bad_input(field, "not a cursor this server issued"))
}
