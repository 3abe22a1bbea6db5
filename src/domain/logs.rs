//! Log lines: ingested in batches (one transaction, multi-row inserts), queried by flow run /
//! task run with a stable (timestamp, id) cursor, oldest or newest first.
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use entity::{flow_runs, logs, task_runs};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Statement, Value,
};
use uuid::Uuid;

use super::access::{require_role, Role};
use crate::auth::Viewer;
use crate::error::{AppError, AppResult};
use crate::events;
use crate::graphql::pagination::{encode_cursor, Page, PageArgs};
use crate::state::AppState;

pub const MAX_BATCH: usize = 10_000;
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
pub const MAX_NAME_CHARS: usize = 255;
/// Rows per INSERT statement: 9 parameters a row stays far below every database's limit.
const INSERT_CHUNK: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug = 10,
    Info = 20,
    Warning = 30,
    Error = 40,
    Critical = 50,
}

impl LogLevel {
    pub fn from_number(n: i32) -> Self {
        match n {
            n if n >= 50 => LogLevel::Critical,
            n if n >= 40 => LogLevel::Error,
            n if n >= 30 => LogLevel::Warning,
            n if n >= 20 => LogLevel::Info,
            _ => LogLevel::Debug,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewLog {
    pub flow_run_id: Uuid,
    pub task_run_id: Option<Uuid>,
    pub level: LogLevel,
    pub name: String,
    pub message: String,
    pub timestamp: DateTime<Utc>,
}

/// Stores a batch: all lines or none. Every line must belong to a flow run (and task run) of
/// this workspace, else the whole batch is refused with `NOT_FOUND`.
pub async fn create(
    state: &AppState,
    viewer: &Viewer,
    workspace_id: Uuid,
    lines: Vec<NewLog>,
) -> AppResult<usize> {
    if lines.len() > MAX_BATCH {
        return Err(AppError::bad_input(
            "logs",
            format!("at most {MAX_BATCH} lines per call"),
        ));
    }
    for (i, line) in lines.iter().enumerate() {
        if line.message.is_empty() {
            return Err(AppError::bad_input(
                &format!("logs[{i}].message"),
                "must not be empty",
            ));
        }
        if line.message.len() > MAX_MESSAGE_BYTES {
            return Err(AppError::bad_input(
                &format!("logs[{i}].message"),
                "must be at most 64 KiB",
            ));
        }
        if line.name.chars().count() > MAX_NAME_CHARS {
            return Err(AppError::bad_input(
                &format!("logs[{i}].name"),
                format!("must be at most {MAX_NAME_CHARS} characters"),
            ));
        }
    }
    if lines.is_empty() {
        require_role(
            state.db.read(),
            viewer,
            workspace_id,
            Role::Editor,
            "workspace",
        )
        .await?;
        return Ok(0);
    }
    let flow_run_ids: HashSet<Uuid> = lines.iter().map(|l| l.flow_run_id).collect();
    let task_run_ids: HashSet<Uuid> = lines.iter().filter_map(|l| l.task_run_id).collect();

    // (flow run, task run) of the lines that name a task run.
    let task_lines: Vec<(Uuid, Uuid)> = lines
        .iter()
        .filter_map(|l| l.task_run_id.map(|t| (l.flow_run_id, t)))
        .collect();
    let count = lines.len();
    // The statements are built before the transaction opens, so the (single, on SQLite) writer
    // is held only for the database work; the event cursors are filled in once reserved.
    let backend = state.db.backend();
    let mut statements = Vec::with_capacity(count.div_ceil(INSERT_CHUNK));
    let mut lines = lines.into_iter().peekable();
    while lines.peek().is_some() {
        let mut values: Vec<Value> = Vec::with_capacity(INSERT_CHUNK * LOG_COLUMNS);
        let mut rows = 0;
        for line in lines.by_ref().take(INSERT_CHUNK) {
            values.push(Uuid::now_v7().into());
            values.push(workspace_id.into());
            values.push(Value::BigInt(None)); // seq, set below
            values.push(line.flow_run_id.into());
            values.push(line.task_run_id.into());
            values.push((line.level as i32).into());
            values.push(line.name.into());
            values.push(line.message.into());
            values.push(line.timestamp.into());
            rows += 1;
        }
        statements.push((insert_sql(backend, rows), values));
    }

    let txn = state.db.begin_write().await?;
    check_lines(
        &txn,
        viewer,
        workspace_id,
        &flow_run_ids,
        &task_run_ids,
        &task_lines,
    )
    .await?;
    let first_seq = events::reserve(&txn, workspace_id, count as i64).await?;
    let mut seq = first_seq;
    for (sql, mut values) in statements {
        for row in values.chunks_mut(LOG_COLUMNS) {
            row[2] = Value::BigInt(Some(seq));
            seq += 1;
        }
        txn.execute(Statement::from_sql_and_values(backend, sql, values))
            .await?;
    }
    txn.commit().await?;
    state.events.committed(workspace_id, seq - 1);
    Ok(count)
}

/// The caller may write to the workspace, and every line's flow run (and task run) is one of
/// its own; else nothing is stored.
async fn check_lines(
    txn: &DatabaseTransaction,
    viewer: &Viewer,
    workspace_id: Uuid,
    flow_run_ids: &HashSet<Uuid>,
    task_run_ids: &HashSet<Uuid>,
    task_lines: &[(Uuid, Uuid)],
) -> AppResult<()> {
    require_role(txn, viewer, workspace_id, Role::Editor, "workspace").await?;
    let known_runs: HashSet<Uuid> = flow_runs::Entity::find()
        .select_only()
        .column(flow_runs::Column::Id)
        .filter(flow_runs::Column::WorkspaceId.eq(workspace_id))
        .filter(flow_runs::Column::Id.is_in(flow_run_ids.iter().copied()))
        .into_tuple::<Uuid>()
        .all(txn)
        .await?
        .into_iter()
        .collect();
    if let Some(missing) = flow_run_ids.iter().find(|id| !known_runs.contains(id)) {
        return Err(AppError::NotFound(format!(
            "logs: flow run {missing} not found; nothing was stored"
        )));
    }
    if task_run_ids.is_empty() {
        return Ok(());
    }
    let task_owner: HashMap<Uuid, Uuid> = task_runs::Entity::find()
        .select_only()
        .column(task_runs::Column::Id)
        .column(task_runs::Column::FlowRunId)
        .filter(task_runs::Column::WorkspaceId.eq(workspace_id))
        .filter(task_runs::Column::Id.is_in(task_run_ids.iter().copied()))
        .into_tuple::<(Uuid, Uuid)>()
        .all(txn)
        .await?
        .into_iter()
        .collect();
    for (flow_run, task) in task_lines {
        if task_owner.get(task) != Some(flow_run) {
            return Err(AppError::NotFound(format!(
                "logs: task run {task} not found in flow run {flow_run}; nothing was stored"
            )));
        }
    }
    Ok(())
}

/// Columns of one log row, in the order [`insert_sql`] lists them.
const LOG_COLUMNS: usize = 9;

/// A multi-row INSERT of `rows` log lines with bound values. The full-chunk statement is built
/// once per backend (and so stays one prepared statement in the driver's cache).
fn insert_sql(backend: DbBackend, rows: usize) -> Cow<'static, str> {
    static FULL_SQLITE: OnceLock<String> = OnceLock::new();
    static FULL_POSTGRES: OnceLock<String> = OnceLock::new();
    let build = |rows: usize| {
        let mut sql = String::with_capacity(120 + rows * LOG_COLUMNS * 7);
        sql.push_str(
            "INSERT INTO \"logs\" (\"id\", \"workspace_id\", \"seq\", \"flow_run_id\", \"task_run_id\", \"level\", \"name\", \"message\", \"timestamp\") VALUES ",
        );
        let mut n = 0;
        for row in 0..rows {
            if row > 0 {
                sql.push(',');
            }
            sql.push('(');
            for col in 0..LOG_COLUMNS {
                if col > 0 {
                    sql.push(',');
                }
                n += 1;
                if backend == DbBackend::Postgres {
                    sql.push('$');
                    sql.push_str(&n.to_string());
                } else {
                    sql.push('?');
                }
            }
            sql.push(')');
        }
        sql
    };
    if rows != INSERT_CHUNK {
        return Cow::Owned(build(rows));
    }
    let cell = if backend == DbBackend::Postgres {
        &FULL_POSTGRES
    } else {
        &FULL_SQLITE
    };
    Cow::Borrowed(cell.get_or_init(|| build(rows)).as_str())
}

pub fn cursor_of(line: &logs::Model) -> String {
    encode_cursor(&[
        &line
            .timestamp
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        &line.id.to_string(),
    ])
}

pub struct LogQuery {
    pub flow_run_id: Uuid,
    pub task_run_id: Option<Uuid>,
    pub min_level: Option<LogLevel>,
    pub newest_first: bool,
}

/// A page of a run's log lines. The caller has checked access to the run.
pub async fn list(
    state: &AppState,
    query: &LogQuery,
    args: &PageArgs,
) -> AppResult<Page<logs::Model>> {
    let db = state.db.read();
    let mut base = logs::Entity::find().filter(logs::Column::FlowRunId.eq(query.flow_run_id));
    if let Some(task) = query.task_run_id {
        base = base.filter(logs::Column::TaskRunId.eq(task));
    }
    if let Some(level) = query.min_level {
        base = base.filter(logs::Column::Level.gte(level as i32));
    }
    let total = base.clone().count(db).await?;
    let mut page_query = base;
    if let Some(parts) = &args.after {
        let invalid = || AppError::bad_input("after", "not a cursor this server issued");
        let [at, id] = parts.as_slice() else {
            return Err(invalid());
        };
        let at = DateTime::parse_from_rfc3339(at)
            .map_err(|_| invalid())?
            .with_timezone(&Utc);
        let id = Uuid::parse_str(id).map_err(|_| invalid())?;
        let cond = if query.newest_first {
            Condition::any().add(logs::Column::Timestamp.lt(at)).add(
                Condition::all()
                    .add(logs::Column::Timestamp.eq(at))
                    .add(logs::Column::Id.lt(id)),
            )
        } else {
            Condition::any().add(logs::Column::Timestamp.gt(at)).add(
                Condition::all()
                    .add(logs::Column::Timestamp.eq(at))
                    .add(logs::Column::Id.gt(id)),
            )
        };
        page_query = page_query.filter(cond);
    }
    let page_query = if query.newest_first {
        page_query
            .order_by_desc(logs::Column::Timestamp)
            .order_by_desc(logs::Column::Id)
    } else {
        page_query
            .order_by_asc(logs::Column::Timestamp)
            .order_by_asc(logs::Column::Id)
    };
    let rows = page_query.limit(args.fetch_limit()).all(db).await?;
    Ok(Page::from_rows(rows, args, total, cursor_of))
}
