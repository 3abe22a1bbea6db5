//! Task runs: units inside a flow run, with upstream dependencies and their own states.
use chrono::{DateTime, Utc};
use entity::{flow_runs, task_run_dependencies, task_run_states, task_runs};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use std::collections::HashSet;
use uuid::Uuid;

use super::access::{require_role, role_of, with_viewer_role, Role};
use super::flow_runs::{verdict, Outcome, Verdict};
use super::orchestration::{bookkeep, decide, Bookkeeping, Decision, NewState, RunFacts};
use super::runs_common;
use super::states::{ProposedState, StateRecord, StateType};
use super::validate;
use crate::auth::Viewer;
use crate::error::{is_unique_violation, AppError, AppResult};
use crate::events::{self, NewEvent};
use crate::graphql::pagination::{encode_cursor, Page, PageArgs};
use crate::state::AppState;

pub const MAX_UPSTREAM: usize = 1_000;

#[derive(Debug, Clone, Default)]
pub struct NewTaskRun {
    pub task_key: String,
    pub dynamic_key: Option<String>,
    pub name: Option<String>,
    pub tags: Option<Vec<String>>,
    pub upstream_task_run_ids: Option<Vec<Uuid>>,
    pub state: Option<ProposedState>,
}

pub async fn create(
    state: &AppState,
    viewer: &Viewer,
    flow_run_id: Uuid,
    input: NewTaskRun,
) -> AppResult<task_runs::Model> {
    let task_key = validate::name("taskKey", &input.task_key, 200)?;
    let dynamic_key = match &input.dynamic_key {
        Some(k) if k.len() > 200 => {
            return Err(AppError::bad_input(
                "dynamicKey",
                "must be at most 200 characters",
            ))
        }
        Some(k) => k.clone(),
        None => "0".to_owned(),
    };
    let name = input
        .name
        .as_deref()
        .map(|n| validate::name("name", n, 200))
        .transpose()?;
    let tags = runs_common::tags("tags", input.tags.clone())?;
    let upstream: Vec<Uuid> = {
        let mut seen = HashSet::new();
        input
            .upstream_task_run_ids
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|id| seen.insert(*id))
            .collect()
    };
    if upstream.len() > MAX_UPSTREAM {
        return Err(AppError::bad_input(
            "upstreamTaskRunIds",
            format!("at most {MAX_UPSTREAM} upstream task runs"),
        ));
    }
    let proposed = input
        .state
        .clone()
        .unwrap_or_else(|| ProposedState::new(StateType::Pending));
    proposed.validate()?;

    let txn = state.db.begin_write().await?;
    let flow_run = flow_runs::Entity::find_by_id(flow_run_id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("flow run"))?;
    require_role(
        &txn,
        viewer,
        flow_run.workspace_id,
        Role::Editor,
        "flow run",
    )
    .await?;
    if let Some(existing) = find_by_key(&txn, flow_run.id, &task_key, &dynamic_key).await? {
        return Ok(existing);
    }
    // Upstream task runs must be task runs of this same flow run; anything else is not found.
    if !upstream.is_empty() {
        let found = task_runs::Entity::find()
            .filter(task_runs::Column::FlowRunId.eq(flow_run.id))
            .filter(task_runs::Column::Id.is_in(upstream.iter().copied()))
            .count(&txn)
            .await?;
        if found != upstream.len() as u64 {
            return Err(AppError::NotFound(
                "upstreamTaskRunIds: upstream task run not found in this flow run".into(),
            ));
        }
    }
    let now = super::runs_common::now();
    let initial = match decide(&facts_for_new(now), &proposed, true, now) {
        Decision::Accept(s) => s,
        _ => return Err(AppError::internal("no initial task run state")),
    };
    let books = bookkeep(&empty_books(), None, &initial, now);
    let id = Uuid::now_v7();
    let state_id = Uuid::now_v7();
    let inserted = task_runs::ActiveModel {
        id: Set(id),
        workspace_id: Set(flow_run.workspace_id),
        flow_run_id: Set(flow_run.id),
        task_key: Set(task_key.clone()),
        dynamic_key: Set(dynamic_key.clone()),
        name: Set(name.unwrap_or_else(|| format!("{task_key}-{dynamic_key}"))),
        tags: Set(serde_json::json!(tags)),
        run_count: Set(books.run_count),
        total_run_time: Set(books.total_run_time),
        start_time: Set(books.start_time),
        end_time: Set(books.end_time),
        state_id: Set(state_id),
        state_type: Set(initial.state_type.as_str().to_owned()),
        state_name: Set(initial.name.clone()),
        state_message: Set(initial.message.clone()),
        state_timestamp: Set(now),
        state_scheduled_time: Set(initial.scheduled_time),
        state_transition_id: Set(initial.transition_id.clone()),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await;
    let task = match inserted {
        Ok(task) => task,
        Err(err) if is_unique_violation(&err) => {
            drop(txn);
            return find_by_key(state.db.write(), flow_run.id, &task_key, &dynamic_key)
                .await?
                .ok_or_else(|| AppError::Conflict("this task run already exists".into()));
        }
        Err(err) => return Err(err.into()),
    };
    if !upstream.is_empty() {
        task_run_dependencies::Entity::insert_many(upstream.iter().map(|up| {
            task_run_dependencies::ActiveModel {
                task_run_id: Set(task.id),
                upstream_task_run_id: Set(*up),
                workspace_id: Set(task.workspace_id),
                flow_run_id: Set(task.flow_run_id),
            }
        }))
        .exec(&txn)
        .await?;
    }
    let record = write_history(&txn, &task, state_id, &initial, now).await?;
    let seq = state_event(&txn, &task, None, &record).await?;
    txn.commit().await?;
    state.events.committed(task.workspace_id, seq);
    Ok(task)
}

fn facts_for_new(now: DateTime<Utc>) -> RunFacts {
    RunFacts {
        current: StateRecord {
            id: Uuid::nil(),
            state_type: StateType::Pending,
            name: String::new(),
            message: None,
            timestamp: now,
            scheduled_time: None,
            transition_id: None,
        },
        has_deployment: false,
        run_count: 0,
        retries: 0,
        retry_delay_seconds: 0,
        flow_run_state: None,
    }
}

fn empty_books() -> Bookkeeping {
    Bookkeeping {
        run_count: 0,
        start_time: None,
        end_time: None,
        total_run_time: 0.0,
        expected_start_time: None,
    }
}

async fn find_by_key(
    conn: &impl ConnectionTrait,
    flow_run_id: Uuid,
    task_key: &str,
    dynamic_key: &str,
) -> AppResult<Option<task_runs::Model>> {
    Ok(task_runs::Entity::find()
        .filter(task_runs::Column::FlowRunId.eq(flow_run_id))
        .filter(task_runs::Column::TaskKey.eq(task_key))
        .filter(task_runs::Column::DynamicKey.eq(dynamic_key))
        .one(conn)
        .await?)
}

async fn write_history(
    conn: &impl ConnectionTrait,
    task: &task_runs::Model,
    state_id: Uuid,
    new: &NewState,
    now: DateTime<Utc>,
) -> AppResult<StateRecord> {
    task_run_states::ActiveModel {
        id: Set(state_id),
        workspace_id: Set(task.workspace_id),
        task_run_id: Set(task.id),
        r#type: Set(new.state_type.as_str().to_owned()),
        name: Set(new.name.clone()),
        message: Set(new.message.clone()),
        timestamp: Set(now),
        scheduled_time: Set(new.scheduled_time),
        transition_id: Set(new.transition_id.clone()),
    }
    .insert(conn)
    .await?;
    Ok(StateRecord {
        id: state_id,
        state_type: new.state_type,
        name: new.name.clone(),
        message: new.message.clone(),
        timestamp: now,
        scheduled_time: new.scheduled_time,
        transition_id: new.transition_id.clone(),
    })
}

async fn state_event(
    conn: &impl ConnectionTrait,
    task: &task_runs::Model,
    from: Option<&StateRecord>,
    to: &StateRecord,
) -> AppResult<i64> {
    events::append(
        conn,
        NewEvent {
            workspace_id: task.workspace_id,
            kind: events::KIND_TASK_RUN_STATE,
            flow_run_id: Some(task.flow_run_id),
            task_run_id: Some(task.id),
            payload: serde_json::json!({
                "fromState": from.map(StateRecord::to_json),
                "toState": to.to_json(),
            }),
            occurred_at: to.timestamp,
        },
    )
    .await
}

pub async fn set_state(
    state: &AppState,
    viewer: &Viewer,
    task_run_id: Uuid,
    proposed: ProposedState,
    force: bool,
) -> AppResult<Outcome> {
    proposed.validate()?;
    let txn = state.db.begin_write().await?;
    let task = with_viewer_role(
        task_runs::Entity::find_by_id(task_run_id).lock_exclusive(),
        task_runs::Column::WorkspaceId,
        viewer,
    )
    .one(&txn)
    .await?
    .ok_or_else(|| AppError::not_found("task run"))?
    .require(Role::Editor, "task run")?;
    let flow_run = flow_runs::Entity::find_by_id(task.flow_run_id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("flow run"))?;
    let now = super::runs_common::now();
    let current = StateRecord::of_task_run(&task)?;
    let facts = RunFacts {
        current: current.clone(),
        has_deployment: false,
        run_count: task.run_count,
        retries: 0,
        retry_delay_seconds: 0,
        flow_run_state: Some(StateType::parse(&flow_run.state_type)?),
    };
    let workspace_id = task.workspace_id;
    let (outcome, seq) = match verdict(decide(&facts, &proposed, force, now), &current) {
        Verdict::Write {
            state: new,
            status,
            reason,
        } => {
            let books = bookkeep(
                &Bookkeeping {
                    run_count: task.run_count,
                    start_time: task.start_time,
                    end_time: task.end_time,
                    total_run_time: task.total_run_time,
                    expected_start_time: None,
                },
                Some(&current),
                &new,
                now,
            );
            let state_id = Uuid::now_v7();
            let mut active: task_runs::ActiveModel = task.into();
            active.state_id = Set(state_id);
            active.state_type = Set(new.state_type.as_str().to_owned());
            active.state_name = Set(new.name.clone());
            active.state_message = Set(new.message.clone());
            active.state_timestamp = Set(now);
            active.state_scheduled_time = Set(new.scheduled_time);
            active.state_transition_id = Set(new.transition_id.clone());
            active.run_count = Set(books.run_count);
            active.start_time = Set(books.start_time);
            active.end_time = Set(books.end_time);
            active.total_run_time = Set(books.total_run_time);
            active.updated_at = Set(now);
            let task = active.update(&txn).await?;
            let record = write_history(&txn, &task, state_id, &new, now).await?;
            let seq = state_event(&txn, &task, Some(&current), &record).await?;
            (
                Outcome {
                    status,
                    state: record,
                    reason,
                    delay_seconds: None,
                },
                Some(seq),
            )
        }
        Verdict::Answer(outcome) => (outcome, None),
    };
    txn.commit().await?;
    if let Some(seq) = seq {
        state.events.committed(workspace_id, seq);
    }
    Ok(outcome)
}

pub async fn get(
    state: &AppState,
    viewer: &Viewer,
    id: Uuid,
) -> AppResult<Option<task_runs::Model>> {
    let db = state.db.read();
    let Some(task) = task_runs::Entity::find_by_id(id).one(db).await? else {
        return Ok(None);
    };
    Ok(role_of(db, viewer.account_id, task.workspace_id)
        .await?
        .map(|_| task))
}

/// A `task_runs` row decoded by column position (see `flow_runs::RunByPosition`), for the nested
/// task-run pages. Only for selects that list `task_runs::Column::iter()` first, in that order.
pub struct TaskRunByPosition(pub task_runs::Model);

crate::db::positional_decoders!(
    TaskRunByPosition,
    task_runs::Model {
        id,
        workspace_id,
        flow_run_id,
        task_key,
        dynamic_key,
        name,
        tags,
        run_count,
        total_run_time,
        start_time,
        end_time,
        state_id,
        state_type,
        state_name,
        state_message,
        state_timestamp,
        state_scheduled_time,
        state_transition_id,
        created_at,
        updated_at,
    }
);

pub fn cursor_of(task: &task_runs::Model) -> String {
    encode_cursor(&[
        &task
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        &task.id.to_string(),
    ])
}

/// Decodes a task run cursor into its keyset position.
pub fn decode_position(parts: &[String]) -> AppResult<(DateTime<Utc>, Uuid)> {
    let invalid = || AppError::bad_input("after", "not a cursor this server issued");
    let [at, id] = parts else {
        return Err(invalid());
    };
    let at = DateTime::parse_from_rfc3339(at)
        .map_err(|_| invalid())?
        .with_timezone(&Utc);
    let id = Uuid::parse_str(id).map_err(|_| invalid())?;
    Ok((at, id))
}

pub fn after_condition(at: DateTime<Utc>, id: Uuid) -> Condition {
    Condition::any()
        .add(task_runs::Column::CreatedAt.gt(at))
        .add(
            Condition::all()
                .add(task_runs::Column::CreatedAt.eq(at))
                .add(task_runs::Column::Id.gt(id)),
        )
}

/// Task runs of a workspace (optionally of one flow run), oldest first.
pub async fn list(
    state: &AppState,
    viewer: &Viewer,
    workspace_id: Uuid,
    flow_run_id: Option<Uuid>,
    args: &PageArgs,
) -> AppResult<Page<task_runs::Model>> {
    let db = state.db.read();
    require_role(db, viewer, workspace_id, Role::Viewer, "workspace").await?;
    let mut base =
        task_runs::Entity::find().filter(task_runs::Column::WorkspaceId.eq(workspace_id));
    if let Some(id) = flow_run_id {
        base = base.filter(task_runs::Column::FlowRunId.eq(id));
    }
    let total = base.clone().count(db).await?;
    let mut query = base;
    if let Some(parts) = &args.after {
        let (at, id) = decode_position(parts)?;
        query = query.filter(after_condition(at, id));
    }
    let rows = query
        .order_by_asc(task_runs::Column::CreatedAt)
        .order_by_asc(task_runs::Column::Id)
        .limit(args.fetch_limit())
        .all(db)
        .await?;
    Ok(Page::from_rows(rows, args, total, cursor_of))
}

/// The dependency graph of a flow run: nodes and edges, refused past `max_nodes`.
pub async fn graph(
    state: &AppState,
    flow_run_id: Uuid,
    max_nodes: u64,
) -> AppResult<(Vec<task_runs::Model>, Vec<task_run_dependencies::Model>)> {
    let db = state.db.read();
    let nodes = task_runs::Entity::find()
        .filter(task_runs::Column::FlowRunId.eq(flow_run_id))
        .order_by_asc(task_runs::Column::CreatedAt)
        .order_by_asc(task_runs::Column::Id)
        .limit(max_nodes + 1)
        .all(db)
        .await?;
    if nodes.len() as u64 > max_nodes {
        return Err(AppError::bad_input(
            "graph",
            format!(
                "the flow run has more than {max_nodes} task runs; page through taskRuns instead"
            ),
        ));
    }
    let edges = task_run_dependencies::Entity::find()
        .filter(task_run_dependencies::Column::FlowRunId.eq(flow_run_id))
        .all(db)
        .await?;
    Ok((nodes, edges))
}

crate::db::column_set!(
    /// Which columns of a `task_runs` row a read decodes. A page of runs shows a few fields of
    /// hundreds of task runs; decoding every text, time and JSON column of each was a sixth of
    /// the page's CPU.
    TaskRunColumns,
    task_runs::Column,
    /// What every row needs: its identity, its run, and its place in the page.
    KEYS = [
        task_runs::Column::Id,
        task_runs::Column::FlowRunId,
        task_runs::Column::CreatedAt,
    ]
);

impl crate::db::ReadsColumns for TaskRunByPosition {
    type Columns = TaskRunColumns;

    /// Decodes the row's `columns`; the others get empty values that nothing reads (the caller
    /// asks only for what the fields it will answer read).
    fn from_row_reading<R: crate::db::PositionalRow>(
        row: &R,
        columns: TaskRunColumns,
    ) -> Result<Self, R::Error> {
        use task_runs::Column as C;
        fn read<R: crate::db::PositionalRow, T: crate::db::ColumnValue>(
            row: &R,
            columns: TaskRunColumns,
            which: C,
            otherwise: impl FnOnce() -> T,
        ) -> Result<T, R::Error> {
            row.column_if(columns.reads(which), which as usize, otherwise)
        }
        let created_at: chrono::DateTime<chrono::Utc> = row.column(C::CreatedAt as usize)?;
        Ok(Self(task_runs::Model {
            id: row.column(C::Id as usize)?,
            workspace_id: read(row, columns, C::WorkspaceId, Uuid::nil)?,
            flow_run_id: row.column(C::FlowRunId as usize)?,
            task_key: read(row, columns, C::TaskKey, String::new)?,
            dynamic_key: read(row, columns, C::DynamicKey, String::new)?,
            name: read(row, columns, C::Name, String::new)?,
            tags: read(row, columns, C::Tags, || serde_json::Value::Null)?,
            run_count: read(row, columns, C::RunCount, || 0)?,
            total_run_time: read(row, columns, C::TotalRunTime, || 0.0)?,
            start_time: read(row, columns, C::StartTime, || None)?,
            end_time: read(row, columns, C::EndTime, || None)?,
            state_id: read(row, columns, C::StateId, Uuid::nil)?,
            state_type: read(row, columns, C::StateType, String::new)?,
            state_name: read(row, columns, C::StateName, String::new)?,
            state_message: read(row, columns, C::StateMessage, || None)?,
            state_timestamp: read(row, columns, C::StateTimestamp, || created_at)?,
            state_scheduled_time: read(row, columns, C::StateScheduledTime, || None)?,
            state_transition_id: read(row, columns, C::StateTransitionId, || None)?,
            created_at,
            updated_at: read(row, columns, C::UpdatedAt, || created_at)?,
        }))
    }
}
