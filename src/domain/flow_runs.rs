//! Flow runs: creation (direct, from a deployment, idempotent), state changes through the
//! orchestration rules, queries for the dashboard, and claiming from work queues.
use chrono::{DateTime, Utc};
use entity::{deployments, flow_run_states, flow_runs, flows, run_alerts};
use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait,
    FromQueryResult, Order, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Select, Set,
};
use uuid::Uuid;

use super::access::{require_role, role_of, with_viewer_role, Role};
use super::orchestration::{bookkeep, decide, Bookkeeping, Decision, NewState, RunFacts};
use super::runs_common;
use super::states::{ProposedState, StateRecord, StateType};
use super::validate;
use crate::auth::Viewer;
use crate::error::{is_unique_violation, AppError, AppResult};
use crate::events::{self, NewEvent};
use crate::state::AppState;

/// What a state proposal came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetStateStatus {
    Accept,
    Reject,
    Abort,
    Wait,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: SetStateStatus,
    /// The run's state after the call.
    pub state: StateRecord,
    pub reason: Option<String>,
    pub delay_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct NewFlowRun {
    pub flow_id: Uuid,
    pub name: Option<String>,
    pub parameters: Option<serde_json::Value>,
    pub tags: Option<Vec<String>>,
    pub idempotency_key: Option<String>,
    pub state: Option<ProposedState>,
    pub deployment_id: Option<Uuid>,
    pub work_queue_name: Option<String>,
    pub retries: Option<i32>,
    pub retry_delay_seconds: Option<i32>,
    pub auto_scheduled: bool,
}

/// A readable name like `brave-otter`.
pub fn generate_name() -> String {
    petname::petname(2, "-")
        .unwrap_or_else(|| format!("run-{}", &Uuid::new_v4().simple().to_string()[..8]))
}

fn validate_new(input: &mut NewFlowRun) -> AppResult<()> {
    if let Some(name) = &input.name {
        input.name = Some(validate::name("name", name, 200)?);
    }
    if let Some(key) = &input.idempotency_key {
        if key.is_empty() || key.len() > 200 {
            return Err(AppError::bad_input(
                "idempotencyKey",
                "must be 1-200 characters",
            ));
        }
    }
    if input.retries.is_some_and(|r| !(0..=100).contains(&r)) {
        return Err(AppError::bad_input("retries", "must be between 0 and 100"));
    }
    if input
        .retry_delay_seconds
        .is_some_and(|r| !(0..=7 * 86_400).contains(&r))
    {
        return Err(AppError::bad_input(
            "retryDelaySeconds",
            "must be between 0 and 604800",
        ));
    }
    if let Some(queue) = &input.work_queue_name {
        input.work_queue_name = Some(validate::name("workQueueName", queue, 200)?);
    }
    if let Some(state) = &input.state {
        state.validate()?;
    }
    Ok(())
}

pub async fn create(
    state: &AppState,
    viewer: &Viewer,
    workspace_id: Uuid,
    mut input: NewFlowRun,
) -> AppResult<flow_runs::Model> {
    validate_new(&mut input)?;
    let tags = runs_common::tags("tags", input.tags.take())?;
    let parameters = runs_common::parameters("parameters", input.parameters.take())?;
    let txn = state.db.begin_write().await?;
    // The flow and the viewer's role in one statement; without a flow, the role still decides
    // the answer, so a stranger learns nothing about the workspace's flows.
    let flow = match with_viewer_role(
        flows::Entity::find_by_id(input.flow_id)
            .filter(flows::Column::WorkspaceId.eq(workspace_id)),
        flows::Column::WorkspaceId,
        viewer,
    )
    .one(&txn)
    .await?
    {
        Some(found) => found.require(Role::Editor, "workspace")?,
        None => {
            require_role(&txn, viewer, workspace_id, Role::Editor, "workspace").await?;
            return Err(AppError::not_found("flow"));
        }
    };
    let deployment = match input.deployment_id {
        None => None,
        Some(id) => {
            let d = deployments::Entity::find_by_id(id)
                .filter(deployments::Column::WorkspaceId.eq(workspace_id))
                .one(&txn)
                .await?
                .ok_or_else(|| AppError::not_found("deployment"))?;
            if d.flow_id != flow.id {
                return Err(AppError::bad_input(
                    "deploymentId",
                    "the deployment belongs to another flow",
                ));
            }
            Some(d)
        }
    };
    if let Some(key) = &input.idempotency_key {
        if let Some(existing) = find_by_idempotency_key(&txn, flow.id, key).await? {
            return Ok(existing);
        }
    }
    let work_queue_name = input
        .work_queue_name
        .clone()
        .or_else(|| deployment.as_ref().and_then(|d| d.work_queue_name.clone()));
    let run = NewRunRow {
        workspace_id,
        flow_id: flow.id,
        deployment_id: deployment.as_ref().map(|d| d.id),
        work_queue_name,
        name: input.name.clone(),
        parameters,
        tags,
        idempotency_key: input.idempotency_key.clone(),
        auto_scheduled: input.auto_scheduled,
        retries: input.retries.unwrap_or(0),
        retry_delay_seconds: input.retry_delay_seconds.unwrap_or(0),
        state: input
            .state
            .clone()
            .unwrap_or_else(|| ProposedState::new(StateType::Scheduled)),
    };
    match insert_run(&txn, run).await {
        Ok((model, seq)) => {
            txn.commit().await?;
            state.events.committed(workspace_id, seq);
            state.run_state_written(
                &model.state_type,
                &model.state_name,
                model.state_scheduled_time,
            );
            Ok(model)
        }
        Err(InsertError::Duplicate) => {
            // A concurrent request with the same idempotency key won: return its run.
            drop(txn);
            let key = input.idempotency_key.unwrap_or_default();
            find_by_idempotency_key(state.db.write(), flow.id, &key)
                .await?
                .ok_or_else(|| AppError::Conflict("a run with this idempotency key exists".into()))
        }
        Err(InsertError::App(err)) => Err(err),
    }
}

async fn find_by_idempotency_key(
    conn: &impl ConnectionTrait,
    flow_id: Uuid,
    key: &str,
) -> AppResult<Option<flow_runs::Model>> {
    Ok(flow_runs::Entity::find()
        .filter(flow_runs::Column::FlowId.eq(flow_id))
        .filter(flow_runs::Column::IdempotencyKey.eq(key))
        .one(conn)
        .await?)
}

#[derive(Debug, Clone, Default)]
pub struct NewRunFromDeployment {
    pub name: Option<String>,
    pub parameters: Option<serde_json::Value>,
    pub tags: Option<Vec<String>>,
    pub idempotency_key: Option<String>,
    pub state: Option<ProposedState>,
}

/// An ad-hoc run: the overrides merged over the deployment's parameters, tags unioned, routed
/// to the deployment's work queue, `SCHEDULED` at the given time or now.
pub async fn create_from_deployment(
    state: &AppState,
    viewer: &Viewer,
    deployment_id: Uuid,
    input: NewRunFromDeployment,
) -> AppResult<flow_runs::Model> {
    let deployment = deployments::Entity::find_by_id(deployment_id)
        .one(state.db.read())
        .await?
        .ok_or_else(|| AppError::not_found("deployment"))?;
    require_role(
        state.db.read(),
        viewer,
        deployment.workspace_id,
        Role::Editor,
        "deployment",
    )
    .await?;
    let overrides = runs_common::parameters("parameters", input.parameters)?;
    let mut parameters = deployment.parameters.clone();
    if !parameters.is_object() {
        parameters = serde_json::json!({});
    }
    if let (Some(base), Some(over)) = (parameters.as_object_mut(), overrides.as_object()) {
        for (k, v) in over {
            base.insert(k.clone(), v.clone());
        }
    }
    let mut tags = runs_common::tags_from_json(&deployment.tags);
    for tag in input.tags.unwrap_or_default() {
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    let initial = match input.state {
        Some(s) => s,
        None => ProposedState::new(StateType::Scheduled),
    };
    create(
        state,
        viewer,
        deployment.workspace_id,
        NewFlowRun {
            flow_id: deployment.flow_id,
            name: input.name,
            parameters: Some(parameters),
            tags: Some(tags),
            idempotency_key: input.idempotency_key,
            state: Some(initial),
            deployment_id: Some(deployment.id),
            work_queue_name: None,
            retries: None,
            retry_delay_seconds: None,
            auto_scheduled: false,
        },
    )
    .await
}

/// Everything needed to insert a run row with its first state.
pub struct NewRunRow {
    pub workspace_id: Uuid,
    pub flow_id: Uuid,
    pub deployment_id: Option<Uuid>,
    pub work_queue_name: Option<String>,
    pub name: Option<String>,
    pub parameters: serde_json::Value,
    pub tags: Vec<String>,
    pub idempotency_key: Option<String>,
    pub auto_scheduled: bool,
    pub retries: i32,
    pub retry_delay_seconds: i32,
    pub state: ProposedState,
}

pub enum InsertError {
    Duplicate,
    App(AppError),
}

impl From<AppError> for InsertError {
    fn from(err: AppError) -> Self {
        InsertError::App(err)
    }
}

impl From<sea_orm::DbErr> for InsertError {
    fn from(err: sea_orm::DbErr) -> Self {
        if is_unique_violation(&err) {
            InsertError::Duplicate
        } else {
            InsertError::App(AppError::internal(err))
        }
    }
}

/// Inserts a run, its first state and the state event. Returns the run and the event cursor.
pub async fn insert_run(
    conn: &impl ConnectionTrait,
    row: NewRunRow,
) -> Result<(flow_runs::Model, i64), InsertError> {
    let now = super::runs_common::now();
    let initial = match decide_initial(&row.state, now) {
        Some(s) => s,
        None => return Err(InsertError::App(AppError::internal("no initial state"))),
    };
    let books = bookkeep(
        &Bookkeeping {
            run_count: 0,
            start_time: None,
            end_time: None,
            total_run_time: 0.0,
            expected_start_time: None,
        },
        None,
        &initial,
        now,
    );
    let run_id = Uuid::now_v7();
    let state_id = Uuid::now_v7();
    let model = flow_runs::ActiveModel {
        id: Set(run_id),
        workspace_id: Set(row.workspace_id),
        flow_id: Set(row.flow_id),
        deployment_id: Set(row.deployment_id),
        work_queue_name: Set(row.work_queue_name),
        name: Set(row.name.unwrap_or_else(generate_name)),
        parameters: Set(row.parameters),
        tags: Set(serde_json::json!(row.tags)),
        idempotency_key: Set(row.idempotency_key),
        auto_scheduled: Set(row.auto_scheduled),
        retries: Set(row.retries),
        retry_delay_seconds: Set(row.retry_delay_seconds),
        run_count: Set(books.run_count),
        total_run_time: Set(books.total_run_time),
        expected_start_time: Set(books.expected_start_time),
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
    .insert(conn)
    .await?;
    let record = write_history(conn, &model, state_id, &initial, now).await?;
    let seq = state_event(conn, &model, None, &record).await?;
    Ok((model, seq))
}

fn decide_initial(proposed: &ProposedState, now: DateTime<Utc>) -> Option<NewState> {
    let facts = RunFacts {
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
    };
    // A new run takes its first state as given (force), fully named and timed.
    match decide(&facts, proposed, true, now) {
        Decision::Accept(s) => Some(s),
        _ => None,
    }
}

async fn write_history(
    conn: &impl ConnectionTrait,
    run: &flow_runs::Model,
    state_id: Uuid,
    new: &NewState,
    now: DateTime<Utc>,
) -> AppResult<StateRecord> {
    flow_run_states::ActiveModel {
        id: Set(state_id),
        workspace_id: Set(run.workspace_id),
        flow_run_id: Set(run.id),
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
    run: &flow_runs::Model,
    from: Option<&StateRecord>,
    to: &StateRecord,
) -> AppResult<i64> {
    events::append(
        conn,
        NewEvent {
            workspace_id: run.workspace_id,
            kind: events::KIND_FLOW_RUN_STATE,
            flow_run_id: Some(run.id),
            task_run_id: None,
            payload: serde_json::json!({
                "flowId": run.flow_id,
                "deploymentId": run.deployment_id,
                "fromState": from.map(StateRecord::to_json),
                "toState": to.to_json(),
            }),
            occurred_at: to.timestamp,
        },
    )
    .await
}

/// Proposes a state for a flow run on behalf of the viewer (EDITOR or OWNER).
pub async fn set_state(
    state: &AppState,
    viewer: &Viewer,
    flow_run_id: Uuid,
    proposed: ProposedState,
    force: bool,
) -> AppResult<Outcome> {
    proposed.validate()?;
    let txn = state.db.begin_write().await?;
    let run = with_viewer_role(
        flow_runs::Entity::find_by_id(flow_run_id).lock_exclusive(),
        flow_runs::Column::WorkspaceId,
        viewer,
    )
    .one(&txn)
    .await?
    .ok_or_else(|| AppError::not_found("flow run"))?
    .require(Role::Editor, "flow run")?;
    let workspace_id = run.workspace_id;
    let (outcome, seq) = transition(&txn, run, &proposed, force, super::runs_common::now()).await?;
    txn.commit().await?;
    if let Some(seq) = seq {
        state.events.committed(workspace_id, seq);
        // Scheduled again (a re-run): late from its new time.
        state.run_state_written(
            outcome.state.state_type.as_str(),
            &outcome.state.name,
            outcome.state.scheduled_time,
        );
    }
    Ok(outcome)
}

/// A decision, split into what to write or what to answer without writing.
pub enum Verdict {
    /// Write `state`, then answer with `status` and `reason`.
    Write {
        state: NewState,
        status: SetStateStatus,
        reason: Option<String>,
    },
    /// Nothing is written: the current state stands.
    Answer(Outcome),
}

pub fn verdict(decision: Decision, current: &StateRecord) -> Verdict {
    let unchanged = |status, reason, delay_seconds| {
        Verdict::Answer(Outcome {
            status,
            state: current.clone(),
            reason: Some(reason),
            delay_seconds,
        })
    };
    match decision {
        Decision::Accept(state) => Verdict::Write {
            state,
            status: SetStateStatus::Accept,
            reason: None,
        },
        Decision::RejectAndWrite { state, reason } => Verdict::Write {
            state,
            status: SetStateStatus::Reject,
            reason: Some(reason),
        },
        Decision::Reject { reason } => unchanged(SetStateStatus::Reject, reason, None),
        Decision::Wait {
            delay_seconds,
            reason,
        } => unchanged(SetStateStatus::Wait, reason, Some(delay_seconds)),
        Decision::Abort { reason } => unchanged(SetStateStatus::Abort, reason, None),
    }
}

/// Reads a run and locks its row until the transaction ends (PostgreSQL `FOR UPDATE`; on
/// SQLite the single writer connection already serializes writing transactions).
pub async fn lock_run(
    conn: &impl ConnectionTrait,
    flow_run_id: Uuid,
) -> AppResult<Option<flow_runs::Model>> {
    Ok(flow_runs::Entity::find_by_id(flow_run_id)
        .lock_exclusive()
        .one(conn)
        .await?)
}

/// Decides and applies a proposal on a locked run. Returns the outcome and, when something
/// was written, the last event cursor.
pub async fn transition(
    conn: &impl ConnectionTrait,
    run: flow_runs::Model,
    proposed: &ProposedState,
    force: bool,
    now: DateTime<Utc>,
) -> AppResult<(Outcome, Option<i64>)> {
    let current = StateRecord::of_flow_run(&run)?;
    let facts = RunFacts {
        current: current.clone(),
        has_deployment: run.deployment_id.is_some(),
        run_count: run.run_count,
        retries: run.retries,
        retry_delay_seconds: run.retry_delay_seconds,
        flow_run_state: None,
    };
    match verdict(decide(&facts, proposed, force, now), &current) {
        Verdict::Write {
            state,
            status,
            reason,
        } => {
            let (record, seq) = write_state(conn, run, &current, &state, now).await?;
            Ok((
                Outcome {
                    status,
                    state: record,
                    reason,
                    delay_seconds: None,
                },
                Some(seq),
            ))
        }
        Verdict::Answer(outcome) => Ok((outcome, None)),
    }
}

async fn write_state(
    conn: &impl ConnectionTrait,
    run: flow_runs::Model,
    current: &StateRecord,
    new: &NewState,
    now: DateTime<Utc>,
) -> AppResult<(StateRecord, i64)> {
    let books = bookkeep(
        &Bookkeeping {
            run_count: run.run_count,
            start_time: run.start_time,
            end_time: run.end_time,
            total_run_time: run.total_run_time,
            expected_start_time: run.expected_start_time,
        },
        Some(current),
        new,
        now,
    );
    let mut new = new.clone();
    // The scheduled time travels with the run from SCHEDULED into PENDING, so the WAIT rule
    // still knows it when RUNNING is proposed.
    if new.state_type == StateType::Pending && new.scheduled_time.is_none() {
        new.scheduled_time = current.scheduled_time;
    }
    let state_id = Uuid::now_v7();
    let mut active: flow_runs::ActiveModel = run.clone().into();
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
    active.expected_start_time = Set(books.expected_start_time);
    active.updated_at = Set(now);
    let run = active.update(conn).await?;
    let record = write_history(conn, &run, state_id, &new, now).await?;
    let mut seq = state_event(conn, &run, Some(current), &record).await?;
    let alert = match new.state_type {
        StateType::Failed => Some(AlertKind::Failed),
        StateType::Crashed => Some(AlertKind::Crashed),
        StateType::Scheduled if new.name == super::states::NAME_LATE => Some(AlertKind::Late),
        _ => None,
    };
    if let Some(kind) = alert {
        let message = format!(
            "flow run {} {}{}",
            run.name,
            match kind {
                AlertKind::Failed => "failed",
                AlertKind::Crashed => "crashed",
                AlertKind::Late => "is late",
            },
            new.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
        seq = write_alert(conn, &run, kind, &message, now).await?;
    }
    Ok((record, seq))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    Late,
    Failed,
    Crashed,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Late => "LATE",
            AlertKind::Failed => "FAILED",
            AlertKind::Crashed => "CRASHED",
        }
    }

    pub fn parse(value: &str) -> AppResult<Self> {
        match value {
            "LATE" => Ok(AlertKind::Late),
            "FAILED" => Ok(AlertKind::Failed),
            "CRASHED" => Ok(AlertKind::Crashed),
            other => Err(AppError::internal(format!("unknown alert kind: {other}"))),
        }
    }
}

/// Writes a run alert with its own cursor; returns the cursor.
pub async fn write_alert(
    conn: &impl ConnectionTrait,
    run: &flow_runs::Model,
    kind: AlertKind,
    message: &str,
    now: DateTime<Utc>,
) -> AppResult<i64> {
    let id = Uuid::now_v7();
    let backend = conn.get_database_backend();
    if backend == DbBackend::Postgres {
        return events::pg_insert_with_cursor(
            conn,
            run.workspace_id,
            "run_alerts",
            [
                ("id", id.into()),
                ("flow_run_id", run.id.into()),
                ("kind", kind.as_str().into()),
                ("message", message.into()),
                ("occurred_at", now.into()),
            ],
        )
        .await;
    }
    let seq = events::reserve(conn, run.workspace_id, 1).await?;
    run_alerts::ActiveModel {
        id: Set(id),
        workspace_id: Set(run.workspace_id),
        seq: Set(seq),
        flow_run_id: Set(run.id),
        kind: Set(kind.as_str().to_owned()),
        message: Set(message.to_owned()),
        occurred_at: Set(now),
    }
    .insert(conn)
    .await?;
    Ok(seq)
}

/// A run the viewer may read, or `None`.
pub async fn get(
    state: &AppState,
    viewer: &Viewer,
    id: Uuid,
) -> AppResult<Option<flow_runs::Model>> {
    let db = state.db.read();
    let Some(run) = flow_runs::Entity::find_by_id(id).one(db).await? else {
        return Ok(None);
    };
    Ok(role_of(db, viewer.account_id, run.workspace_id)
        .await?
        .map(|_| run))
}

#[derive(Debug, Clone, Default)]
pub struct FlowRunFilter {
    pub flow_ids: Option<Vec<Uuid>>,
    pub deployment_ids: Option<Vec<Uuid>>,
    pub flow_run_ids: Option<Vec<Uuid>>,
    pub state_types: Option<Vec<StateType>>,
    pub state_names: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub work_queue_names: Option<Vec<String>>,
    pub expected_start_time_after: Option<DateTime<Utc>>,
    pub expected_start_time_before: Option<DateTime<Utc>>,
}

/// The filter as SQL, for the given database.
pub fn filter_condition(
    workspace_id: Uuid,
    filter: &FlowRunFilter,
    backend: DbBackend,
) -> Condition {
    use flow_runs::Column as C;
    let mut cond = Condition::all().add(C::WorkspaceId.eq(workspace_id));
    if let Some(ids) = &filter.flow_ids {
        cond = cond.add(C::FlowId.is_in(ids.iter().copied()));
    }
    if let Some(ids) = &filter.deployment_ids {
        cond = cond.add(C::DeploymentId.is_in(ids.iter().copied()));
    }
    if let Some(ids) = &filter.flow_run_ids {
        cond = cond.add(C::Id.is_in(ids.iter().copied()));
    }
    if let Some(types) = &filter.state_types {
        cond = cond.add(C::StateType.is_in(types.iter().map(|t| t.as_str())));
    }
    if let Some(names) = &filter.state_names {
        cond = cond.add(C::StateName.is_in(names.iter().cloned()));
    }
    if let Some(names) = &filter.work_queue_names {
        cond = cond.add(C::WorkQueueName.is_in(names.iter().cloned()));
    }
    if let Some(after) = filter.expected_start_time_after {
        cond = cond.add(C::ExpectedStartTime.gte(after));
    }
    if let Some(before) = filter.expected_start_time_before {
        cond = cond.add(C::ExpectedStartTime.lt(before));
    }
    for tag in filter.tags.iter().flatten() {
        cond = cond.add(has_tag("flow_runs", tag, backend));
    }
    cond
}

/// `table.tags` (a JSON array) contains `tag`.
pub fn has_tag(table: &str, tag: &str, backend: DbBackend) -> SimpleExpr {
    match backend {
        DbBackend::Postgres => Expr::cust_with_values(
            format!("(\"{table}\".\"tags\"::jsonb @> jsonb_build_array($1::text))"),
            [tag.to_owned()],
        ),
        _ => Expr::cust_with_values(
            format!(
                "EXISTS (SELECT 1 FROM json_each(\"{table}\".\"tags\") WHERE json_each.value = ?)"
            ),
            [tag.to_owned()],
        ),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlowRunSort {
    ExpectedStartTimeAsc,
    #[default]
    ExpectedStartTimeDesc,
    CreatedDesc,
    NameAsc,
}

/// One page of runs by keyset, plus a lazily counted total.
pub struct RunPage {
    /// Shared, so the page's nodes and edges hand the rows out without copying them.
    pub rows: Vec<std::sync::Arc<flow_runs::Model>>,
    /// The order, which the rows' cursors are made of (each made only if asked for).
    pub sort: FlowRunSort,
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub count_query: Select<flow_runs::Entity>,
}

fn sort_key(run: &flow_runs::Model, sort: FlowRunSort) -> String {
    match sort {
        FlowRunSort::ExpectedStartTimeAsc | FlowRunSort::ExpectedStartTimeDesc => run
            .expected_start_time
            .unwrap_or(run.created_at)
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        FlowRunSort::CreatedDesc => run
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        FlowRunSort::NameAsc => run.name.clone(),
    }
}

pub fn run_cursor(run: &flow_runs::Model, sort: FlowRunSort) -> String {
    crate::graphql::pagination::encode_cursor(&[&sort_key(run, sort), &run.id.to_string()])
}

fn parse_time(field: &str, value: &str) -> AppResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| AppError::bad_input(field, "not a cursor this server issued"))
}

/// Lists runs of a workspace the viewer may read.
pub async fn list(
    state: &AppState,
    viewer: &Viewer,
    workspace_id: Uuid,
    filter: &FlowRunFilter,
    page: RunPageRequest,
) -> AppResult<RunPage> {
    let db = state.db.read();
    require_role(db, viewer, workspace_id, Role::Viewer, "workspace").await?;
    list_unchecked(state, workspace_id, filter, page).await
}

/// Which page of runs, in what order, and the columns its rows must carry.
pub struct RunPageRequest {
    pub sort: FlowRunSort,
    pub first: u64,
    pub after: Option<Vec<String>>,
    /// The rows' other columns may be left empty: only the fields that read none of them may
    /// be answered from these rows.
    pub columns: RunColumns,
}

/// Lists runs without an access check: for callers that already checked (nested fields of an
/// object the viewer was allowed to read).
pub async fn list_unchecked(
    state: &AppState,
    workspace_id: Uuid,
    filter: &FlowRunFilter,
    RunPageRequest {
        sort,
        first,
        after,
        columns,
    }: RunPageRequest,
) -> AppResult<RunPage> {
    use flow_runs::Column as C;
    let cond = filter_condition(workspace_id, filter, state.db.backend());
    let count_query = flow_runs::Entity::find().filter(cond.clone());
    let (col, order) = match sort {
        FlowRunSort::ExpectedStartTimeAsc => (C::ExpectedStartTime, Order::Asc),
        FlowRunSort::ExpectedStartTimeDesc => (C::ExpectedStartTime, Order::Desc),
        FlowRunSort::CreatedDesc => (C::CreatedAt, Order::Desc),
        FlowRunSort::NameAsc => (C::Name, Order::Asc),
    };
    // The cursors are made of the sort key (a missing expected start time falls back to the
    // creation time).
    let columns = columns.with(RunColumns::of(&[col, C::CreatedAt]));
    let mut query = flow_runs::Entity::find().filter(cond);
    if columns != RunColumns::ALL {
        // In place of the columns not read, NULL: the database neither reads nor sends them.
        query = query.select_only();
        for column in <C as sea_orm::Iterable>::iter() {
            query = match columns.reads(column) {
                true => query.column(column),
                false => query.expr(Expr::cust("NULL")),
            };
        }
    }
    let has_previous_page = after.is_some();
    if let Some(parts) = after {
        let [key, id] = parts.as_slice() else {
            return Err(AppError::bad_input(
                "after",
                "not a cursor this server issued",
            ));
        };
        let id = Uuid::parse_str(id)
            .map_err(|_| AppError::bad_input("after", "not a cursor this server issued"))?;
        let key_value: sea_orm::Value = match sort {
            FlowRunSort::NameAsc => key.clone().into(),
            _ => parse_time("after", key)?.into(),
        };
        let keyset = match order {
            Order::Asc => Condition::any()
                .add(Expr::col(col).gt(key_value.clone()))
                .add(
                    Condition::all()
                        .add(Expr::col(col).eq(key_value))
                        .add(C::Id.gt(id)),
                ),
            _ => Condition::any()
                .add(Expr::col(col).lt(key_value.clone()))
                .add(
                    Condition::all()
                        .add(Expr::col(col).eq(key_value))
                        .add(C::Id.lt(id)),
                ),
        };
        query = query.filter(keyset);
    }
    let page = query.order_by(col, order.clone()).order_by(C::Id, order);
    let mut statement = sea_orm::QueryTrait::build(&page, state.db.backend());
    // The page size as a literal, not a parameter: PostgreSQL plans a statement whose LIMIT is
    // a parameter anew on every execution (a generic plan looks costlier without the number),
    // a tenth of a page's database time; with the literal it reuses one plan.
    statement.sql.push_str(&format!(" LIMIT {}", first + 1));
    let rows = state
        .db
        .read_columns::<RunByPosition>(statement, first + 1, columns)
        .await?;
    let has_next_page = rows.len() as u64 > first;
    let rows = rows
        .into_iter()
        .take(first as usize)
        .map(|RunByPosition(r)| std::sync::Arc::new(r))
        .collect();
    Ok(RunPage {
        rows,
        sort,
        has_next_page,
        has_previous_page,
        count_query,
    })
}

/// A `flow_runs` row decoded by column position, for the run page. The derived decoder formats
/// each column's name into a new `String` and hashes it, per column per row: a tenth of a page's
/// CPU. Only for `flow_runs::Entity::find()` selects, whose columns come in `Model` field order
/// (a test compares both decoders on the same run).
pub struct RunByPosition(pub flow_runs::Model);

crate::db::positional_decoders!(
    RunByPosition,
    flow_runs::Model {
        id,
        workspace_id,
        flow_id,
        deployment_id,
        work_queue_name,
        name,
        parameters,
        tags,
        idempotency_key,
        auto_scheduled,
        retries,
        retry_delay_seconds,
        run_count,
        total_run_time,
        expected_start_time,
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

crate::db::column_set!(
    /// Which columns of a `flow_runs` row a page of runs decodes (see `RunByPosition`).
    RunColumns,
    flow_runs::Column,
    /// What every row needs: its identity.
    KEYS = [flow_runs::Column::Id]
);

impl crate::db::ReadsColumns for RunByPosition {
    type Columns = RunColumns;

    /// Decodes the row's `columns`; the others get empty values that nothing reads (the caller
    /// asks only for what the fields it will answer read).
    fn from_row_reading<R: crate::db::PositionalRow>(
        row: &R,
        columns: RunColumns,
    ) -> Result<Self, R::Error> {
        use flow_runs::Column as C;
        fn read<R: crate::db::PositionalRow, T: crate::db::ColumnValue + Default>(
            row: &R,
            columns: RunColumns,
            which: C,
        ) -> Result<T, R::Error> {
            row.column_if(columns.reads(which), which as usize, T::default)
        }
        Ok(Self(flow_runs::Model {
            id: row.column(C::Id as usize)?,
            workspace_id: read(row, columns, C::WorkspaceId)?,
            flow_id: read(row, columns, C::FlowId)?,
            deployment_id: read(row, columns, C::DeploymentId)?,
            work_queue_name: read(row, columns, C::WorkQueueName)?,
            name: read(row, columns, C::Name)?,
            parameters: read(row, columns, C::Parameters)?,
            tags: read(row, columns, C::Tags)?,
            idempotency_key: read(row, columns, C::IdempotencyKey)?,
            auto_scheduled: read(row, columns, C::AutoScheduled)?,
            retries: read(row, columns, C::Retries)?,
            retry_delay_seconds: read(row, columns, C::RetryDelaySeconds)?,
            run_count: read(row, columns, C::RunCount)?,
            total_run_time: read(row, columns, C::TotalRunTime)?,
            expected_start_time: read(row, columns, C::ExpectedStartTime)?,
            start_time: read(row, columns, C::StartTime)?,
            end_time: read(row, columns, C::EndTime)?,
            state_id: read(row, columns, C::StateId)?,
            state_type: read(row, columns, C::StateType)?,
            state_name: read(row, columns, C::StateName)?,
            state_message: read(row, columns, C::StateMessage)?,
            state_timestamp: read(row, columns, C::StateTimestamp)?,
            state_scheduled_time: read(row, columns, C::StateScheduledTime)?,
            state_transition_id: read(row, columns, C::StateTransitionId)?,
            created_at: read(row, columns, C::CreatedAt)?,
            updated_at: read(row, columns, C::UpdatedAt)?,
        }))
    }
}

pub async fn count(state: &AppState, query: Select<flow_runs::Entity>) -> AppResult<u64> {
    Ok(query.count(state.db.read()).await?)
}

/// `SCHEDULED` runs whose expected start is in the future, earliest first.
pub async fn upcoming(
    state: &AppState,
    workspace_id: Uuid,
    deployment_id: Option<Uuid>,
    limit: u64,
) -> AppResult<Vec<flow_runs::Model>> {
    use flow_runs::Column as C;
    let mut query = flow_runs::Entity::find()
        .filter(C::WorkspaceId.eq(workspace_id))
        .filter(C::StateType.eq(StateType::Scheduled.as_str()))
        .filter(C::ExpectedStartTime.gt(Utc::now()));
    if let Some(id) = deployment_id {
        query = query.filter(C::DeploymentId.eq(id));
    }
    Ok(query
        .order_by_asc(C::ExpectedStartTime)
        .order_by_asc(C::Id)
        .limit(limit)
        .all(state.db.read())
        .await?)
}

pub struct SummaryCounts {
    pub total: i64,
    pub by_state: Vec<(StateType, i64)>,
    /// Per bucket index, counts per state type.
    pub buckets: Vec<Vec<(StateType, i64)>>,
}

#[derive(FromQueryResult)]
struct BucketRow {
    bucket: i64,
    state_type: String,
    n: i64,
}

/// Where bucket `i` of `n` over `[since, until)` starts: `since + ceil(i × width)`, in whole
/// microseconds, so a run at offset `o` µs is in bucket `floor(o × n / total)` exactly —
/// the integer arithmetic [`summary`] does in SQL.
pub fn bucket_start(since: DateTime<Utc>, until: DateTime<Utc>, n: i64, i: i64) -> DateTime<Utc> {
    let total = i128::from((until - since).num_microseconds().unwrap_or(i64::MAX));
    let (i, n) = (i128::from(i), i128::from(n.max(1)));
    let offset = (total * i + n - 1) / n;
    since + chrono::Duration::microseconds(i64::try_from(offset).unwrap_or(i64::MAX))
}

/// Counts runs per state type in `[since, until)` and per bucket, in the database
/// (one GROUP BY over the indexed time range).
pub async fn summary(
    state: &AppState,
    workspace_id: Uuid,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    buckets: i64,
    filter: &FlowRunFilter,
) -> AppResult<SummaryCounts> {
    use flow_runs::Column as C;
    let total_us = (until - since)
        .num_microseconds()
        .unwrap_or(i64::MAX)
        .max(1);
    let since_us = since.timestamp_micros();
    let backend = state.db.backend();
    // The run's expected start in whole microseconds since the epoch, in each dialect; then
    // integer arithmetic only (floating point put runs on a boundary in the bucket before).
    // Offsets are never negative (the range starts at `since`), so integer division floors.
    let micros_sql = match backend {
        DbBackend::Postgres => {
            "CAST(ROUND(EXTRACT(EPOCH FROM \"flow_runs\".\"expected_start_time\") * 1000000) AS BIGINT)"
                .to_owned()
        }
        // Stored as RFC 3339 text, `YYYY-MM-DDTHH:MM:SS[.fff…]+00:00`.
        _ => {
            let col = "\"flow_runs\".\"expected_start_time\"";
            format!(
                "(CAST(strftime('%s', {col}) AS INTEGER) * 1000000 + CASE WHEN substr({col}, 20, 1) = '.' \
                 THEN CAST(substr(substr({col}, 21, instr({col}, '+') - 21) || '000000', 1, 6) AS INTEGER) \
                 ELSE 0 END)"
            )
        }
    };
    let bucket_sql = format!("(({micros_sql} - {since_us}) * {buckets} / {total_us})");
    let mut cond = filter_condition(workspace_id, filter, backend);
    cond = cond
        .add(C::ExpectedStartTime.gte(since))
        .add(C::ExpectedStartTime.lt(until));
    let rows = flow_runs::Entity::find()
        .select_only()
        .column_as(Expr::cust(bucket_sql.clone()), "bucket")
        .column_as(C::StateType, "state_type")
        .column_as(Expr::col((flow_runs::Entity, C::Id)).count(), "n")
        .filter(cond)
        .group_by(Expr::cust(bucket_sql))
        .group_by(C::StateType)
        .into_model::<BucketRow>()
        .all(state.db.read())
        .await?;
    let n_buckets = buckets as usize;
    let mut per_bucket: Vec<Vec<(StateType, i64)>> = vec![Vec::new(); n_buckets];
    let mut by_state: Vec<(StateType, i64)> = Vec::new();
    let mut total = 0;
    for row in rows {
        let t = StateType::parse(&row.state_type)?;
        // Float rounding at the far edge can land a run one bucket too far.
        let index = (row.bucket.max(0) as usize).min(n_buckets - 1);
        add_count(&mut per_bucket[index], t, row.n);
        add_count(&mut by_state, t, row.n);
        total += row.n;
    }
    Ok(SummaryCounts {
        total,
        by_state,
        buckets: per_bucket,
    })
}

fn add_count(counts: &mut Vec<(StateType, i64)>, t: StateType, n: i64) {
    match counts.iter_mut().find(|(s, _)| *s == t) {
        Some((_, c)) => *c += n,
        None => counts.push((t, n)),
    }
}

/// Newest alerts first.
pub async fn alerts(
    state: &AppState,
    viewer: &Viewer,
    workspace_id: Uuid,
    kinds: Option<Vec<AlertKind>>,
    first: u64,
) -> AppResult<Vec<run_alerts::Model>> {
    let db = state.db.read();
    require_role(db, viewer, workspace_id, Role::Viewer, "workspace").await?;
    let mut query =
        run_alerts::Entity::find().filter(run_alerts::Column::WorkspaceId.eq(workspace_id));
    if let Some(kinds) = kinds {
        query = query.filter(run_alerts::Column::Kind.is_in(kinds.iter().map(|k| k.as_str())));
    }
    Ok(query
        .order_by_desc(run_alerts::Column::Seq)
        .limit(first)
        .all(db)
        .await?)
}
