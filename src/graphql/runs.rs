//! Flow runs, task runs, states, orchestration results, the run graph, summaries and alerts.
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::{Context, Enum, InputObject, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::{flow_runs, run_alerts, task_runs};
use uuid::Uuid;

use super::loaders::{load_failed, LoadOneBoxed, TaskRunPageKey};
use super::logs::{LogConnection, LogLevel};
use super::pagination::{PageArgs, PageInfo};
use super::plain_fields::{
    ready, ready_list, ready_object, ready_optional_object, Plain, PlainFields, PlainValue,
};
use super::ContextExt;
use crate::domain::flow_runs::RunColumns;
use crate::domain::flow_runs::{
    self as domain_runs, AlertKind as DomainAlertKind, FlowRunFilter as DomainFilter,
    FlowRunSort as DomainSort, NewFlowRun, NewRunFromDeployment, Outcome,
    SetStateStatus as DomainStatus,
};
use crate::domain::states::{ProposedState, StateRecord, StateType as DomainStateType};
use crate::domain::task_runs::TaskRunColumns;
use crate::domain::{claiming, logs as domain_logs, task_runs as domain_tasks};
use crate::error::{AppError, AppResult};

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum StateType {
    Scheduled,
    Pending,
    Running,
    Completed,
    Failed,
    Cancelling,
    Cancelled,
    Crashed,
    Paused,
}

impl From<DomainStateType> for StateType {
    fn from(t: DomainStateType) -> Self {
        match t {
            DomainStateType::Scheduled => Self::Scheduled,
            DomainStateType::Pending => Self::Pending,
            DomainStateType::Running => Self::Running,
            DomainStateType::Completed => Self::Completed,
            DomainStateType::Failed => Self::Failed,
            DomainStateType::Cancelling => Self::Cancelling,
            DomainStateType::Cancelled => Self::Cancelled,
            DomainStateType::Crashed => Self::Crashed,
            DomainStateType::Paused => Self::Paused,
        }
    }
}

impl From<StateType> for DomainStateType {
    fn from(t: StateType) -> Self {
        match t {
            StateType::Scheduled => Self::Scheduled,
            StateType::Pending => Self::Pending,
            StateType::Running => Self::Running,
            StateType::Completed => Self::Completed,
            StateType::Failed => Self::Failed,
            StateType::Cancelling => Self::Cancelling,
            StateType::Cancelled => Self::Cancelled,
            StateType::Crashed => Self::Crashed,
            StateType::Paused => Self::Paused,
        }
    }
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum SetStateStatus {
    Accept,
    Reject,
    Abort,
    Wait,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum AlertKind {
    Late,
    Failed,
    Crashed,
}

impl From<AlertKind> for DomainAlertKind {
    fn from(k: AlertKind) -> Self {
        match k {
            AlertKind::Late => Self::Late,
            AlertKind::Failed => Self::Failed,
            AlertKind::Crashed => Self::Crashed,
        }
    }
}

impl From<DomainAlertKind> for AlertKind {
    fn from(k: DomainAlertKind) -> Self {
        match k {
            DomainAlertKind::Late => Self::Late,
            DomainAlertKind::Failed => Self::Failed,
            DomainAlertKind::Crashed => Self::Crashed,
        }
    }
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum FlowRunSort {
    ExpectedStartTimeAsc,
    #[default]
    ExpectedStartTimeDesc,
    CreatedDesc,
    NameAsc,
}

impl From<FlowRunSort> for DomainSort {
    fn from(s: FlowRunSort) -> Self {
        match s {
            FlowRunSort::ExpectedStartTimeAsc => Self::ExpectedStartTimeAsc,
            FlowRunSort::ExpectedStartTimeDesc => Self::ExpectedStartTimeDesc,
            FlowRunSort::CreatedDesc => Self::CreatedDesc,
            FlowRunSort::NameAsc => Self::NameAsc,
        }
    }
}

/// A run state.
#[derive(Clone)]
pub struct State(pub StateRecord);

impl PlainValue for StateType {
    fn plain_value(self) -> async_graphql::Value {
        async_graphql::resolver_utils::enum_value(self)
    }
}

impl PlainFields for State {
    fn plain_field(&self, ctx: &Context<'_>) -> Option<async_graphql::Value> {
        match ctx.item.node.name.node.as_str() {
            "id" => ready(self.id(ctx)),
            "type" => ready(self.state_type(ctx)),
            "name" => ready(self.name(ctx)),
            "message" => ready(self.message(ctx)),
            "timestamp" => ready(self.timestamp(ctx)),
            "scheduledTime" => ready(self.scheduled_time(ctx)),
            _ => None,
        }
    }
}

#[Object]
impl State {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    #[graphql(name = "type")]
    async fn state_type(&self) -> StateType {
        self.0.state_type.into()
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn message(&self) -> Option<&str> {
        self.0.message.as_deref()
    }
    async fn timestamp(&self) -> DateTime<Utc> {
        self.0.timestamp
    }
    async fn scheduled_time(&self) -> Option<DateTime<Utc>> {
        self.0.scheduled_time
    }
}

#[derive(InputObject, Clone)]
pub struct StateInput {
    #[graphql(name = "type")]
    pub state_type: StateType,
    pub name: Option<String>,
    pub message: Option<String>,
    pub scheduled_time: Option<DateTime<Utc>>,
    /// Retrying a call with the same id is safe: the second is rejected with the current state.
    pub transition_id: Option<String>,
}

impl From<StateInput> for ProposedState {
    fn from(input: StateInput) -> Self {
        ProposedState {
            state_type: input.state_type.into(),
            name: input.name,
            message: input.message,
            scheduled_time: input.scheduled_time.map(crate::domain::runs_common::micros),
            transition_id: input.transition_id,
        }
    }
}

pub struct OrchestrationResult(pub Outcome);

#[Object]
impl OrchestrationResult {
    async fn status(&self) -> SetStateStatus {
        match self.0.status {
            DomainStatus::Accept => SetStateStatus::Accept,
            DomainStatus::Reject => SetStateStatus::Reject,
            DomainStatus::Abort => SetStateStatus::Abort,
            DomainStatus::Wait => SetStateStatus::Wait,
        }
    }
    /// The run's state after the call: the new one when accepted, the current one otherwise.
    async fn state(&self) -> State {
        State(self.0.state.clone())
    }
    async fn reason(&self) -> Option<&str> {
        self.0.reason.as_deref()
    }
    async fn delay_seconds(&self) -> Option<i32> {
        self.0
            .delay_seconds
            .map(|d| i32::try_from(d).unwrap_or(i32::MAX))
    }
}

#[derive(InputObject, Default, Clone)]
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

impl From<FlowRunFilter> for DomainFilter {
    fn from(f: FlowRunFilter) -> Self {
        DomainFilter {
            flow_ids: f.flow_ids,
            deployment_ids: f.deployment_ids,
            flow_run_ids: f.flow_run_ids,
            state_types: f
                .state_types
                .map(|v| v.into_iter().map(Into::into).collect()),
            state_names: f.state_names,
            tags: f.tags,
            work_queue_names: f.work_queue_names,
            expected_start_time_after: f.expected_start_time_after,
            expected_start_time_before: f.expected_start_time_before,
        }
    }
}

/// Shared rows: a page, a loader batch and a live event hand the same row to many fields.
/// A run on a page also shares what the page loaded ahead for all its runs.
#[derive(Clone)]
pub struct FlowRun(pub Arc<flow_runs::Model>, pub Option<Arc<PageRelations>>);

impl From<flow_runs::Model> for FlowRun {
    fn from(m: flow_runs::Model) -> Self {
        Self(Arc::new(m), None)
    }
}

impl From<Arc<flow_runs::Model>> for FlowRun {
    fn from(m: Arc<flow_runs::Model>) -> Self {
        Self(m, None)
    }
}

/// The related rows a page of runs selects (flows, deployments, nested task-run pages),
/// loaded for the whole page before its runs resolve, so that each run's fields are answered
/// in place instead of each waiting on a loader (`plain_fields`). Batched through the same
/// loaders, so a page costs the same statements either way.
#[derive(Default)]
pub struct PageRelations {
    flows: Option<HashMap<Uuid, Arc<entity::flows::Model>>>,
    deployments: Option<HashMap<Uuid, Arc<entity::deployments::Model>>>,
    task_runs: Option<PageTaskRuns>,
}

/// Every run's first task-run page for one set of `taskRuns` arguments. Without the row past
/// the page when the selection does not read `hasNextPage` (it then reads `false`, unseen).
struct PageTaskRuns {
    first: Option<i32>,
    after: Option<String>,
    by_run: HashMap<Uuid, Vec<Arc<task_runs::Model>>>,
}

impl PageRelations {
    /// Loads what the runs' selection (`nodes`) asks of their relations. Anything it does not
    /// recognise (`taskRuns` twice with different arguments, arguments that do not parse) is
    /// left to the runs' own resolvers.
    async fn load<'a>(
        ctx: &Context<'_>,
        runs: impl Iterator<Item = &'a Arc<flow_runs::Model>> + Clone,
        nodes: impl Iterator<Item = async_graphql::SelectionField<'_>>,
    ) -> AppResult<Option<Arc<Self>>> {
        let (mut flows, mut deployments) = (false, false);
        let mut task_run_arguments = Vec::new();
        let mut task_run_columns = TaskRunColumns::KEYS;
        let mut asks_next_task_run_page = false;
        for field in nodes {
            match field.name() {
                "flow" => flows = true,
                "deployment" => deployments = true,
                "taskRuns" => {
                    let arguments = page_arguments(&field);
                    if !task_run_arguments.contains(&arguments) {
                        task_run_arguments.push(arguments);
                    }
                    task_run_columns = task_run_columns.with(connection_columns(&field));
                    asks_next_task_run_page |= asks_has_next_page(&field);
                }
                _ => {}
            }
        }
        let task_runs = match task_run_arguments.as_slice() {
            // Invalid arguments are left to the resolver, which reports them.
            [Some((first, after))] => PageArgs::parse(*first, after.clone())
                .and_then(|args| task_run_page_key(Uuid::nil(), &args))
                .ok()
                .map(|key| {
                    let key = TaskRunPageKey {
                        columns: task_run_columns,
                        // The row past the page only tells `hasNextPage`: a sixth of the rows
                        // of a page of five, not read unless asked for.
                        fetch: match asks_next_task_run_page {
                            true => key.fetch,
                            false => key.fetch - 1,
                        },
                        ..key
                    };
                    (first, after, key)
                }),
            _ => None,
        };
        if !flows && !deployments && task_runs.is_none() {
            return Ok(None);
        }
        let loaders = ctx.loaders()?;
        let load_flows = load_if(flows, &loaders.flows, runs.clone().map(|r| r.flow_id));
        let load_deployments = load_if(
            deployments,
            &loaders.deployments,
            runs.clone().filter_map(|r| r.deployment_id),
        );
        let load_task_runs = async {
            let Some((first, after, key)) = &task_runs else {
                return Ok(None);
            };
            let keys = runs.clone().map(|r| TaskRunPageKey {
                flow_run_id: r.id,
                ..key.clone()
            });
            let pages = load_batch(&loaders.task_run_pages, keys).await?;
            Ok(Some(PageTaskRuns {
                first: **first,
                after: (*after).clone(),
                by_run: pages
                    .into_iter()
                    .map(|(key, rows)| (key.flow_run_id, rows))
                    .collect(),
            }))
        };
        let (flows, deployments, task_runs) =
            futures_util::try_join!(load_flows, load_deployments, load_task_runs)
                .map_err(load_failed)?;
        Ok(Some(Arc::new(Self {
            flows,
            deployments,
            task_runs,
        })))
    }
}

/// `loader`'s values for `ids` (repeats are loaded once), if `wanted`.
async fn load_if<T: async_graphql::dataloader::Loader<Uuid, Error = super::loaders::LoadError>>(
    wanted: bool,
    loader: &async_graphql::dataloader::DataLoader<T>,
    ids: impl Iterator<Item = Uuid>,
) -> Result<Option<HashMap<Uuid, T::Value>>, super::loaders::LoadError> {
    if !wanted {
        return Ok(None);
    }
    load_batch(loader, ids).await.map(Some)
}

/// One batch of `keys` (repeats once) through `loader`'s own batch load, at once. A page holds
/// every key it will need before its runs resolve, so waiting out the DataLoader's batching
/// window (a spawned task and a 1 ms timer per relation) gathers nothing more; that wait was
/// a floor under every page's latency.
async fn load_batch<K, T>(
    loader: &async_graphql::dataloader::DataLoader<T>,
    keys: impl Iterator<Item = K>,
) -> Result<HashMap<K, T::Value>, T::Error>
where
    K: Send + Sync + std::hash::Hash + Eq + Clone + 'static,
    T: async_graphql::dataloader::Loader<K>,
{
    let mut unique = std::collections::HashSet::new();
    let keys: Vec<K> = keys.filter(|key| unique.insert(key.clone())).collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    loader.loader().load(&keys).await
}

/// A `taskRuns` field's `first` and `after`, as its resolver would receive them; `None` if
/// they are not plain values of those types.
fn page_arguments(
    field: &async_graphql::SelectionField<'_>,
) -> Option<(Option<i32>, Option<String>)> {
    let (mut first, mut after) = (None, None);
    for (name, value) in field.arguments().ok()? {
        match (name.as_str(), value) {
            ("first", async_graphql::Value::Number(n)) => {
                first = Some(i32::try_from(n.as_i64()?).ok()?)
            }
            ("after", async_graphql::Value::String(cursor)) => after = Some(cursor),
            (_, async_graphql::Value::Null) => {}
            _ => return None,
        }
    }
    Some((first, after))
}

/// The state columns a `state { … }` selection reads, of `all` (in the order type, id, name,
/// message, timestamp, scheduled time, transition id): the type always (a state is built by
/// parsing it), the others by field; all of them for a field not listed here.
fn state_columns<C: Copy>(state: &async_graphql::SelectionField<'_>, all: [C; 7]) -> Vec<C> {
    let [state_type, id, name, message, timestamp, scheduled_time, _transition_id] = all;
    let mut columns = vec![state_type];
    for field in state.selection_set() {
        match field.name() {
            "type" | "__typename" => {}
            "id" => columns.push(id),
            "name" => columns.push(name),
            "message" => columns.push(message),
            "timestamp" => columns.push(timestamp),
            "scheduledTime" => columns.push(scheduled_time),
            _ => return all.to_vec(),
        }
    }
    columns
}

/// Whether a connection's selection (`field` is the connection) reads `pageInfo.hasNextPage`.
fn asks_has_next_page(field: &async_graphql::SelectionField<'_>) -> bool {
    field
        .selection_set()
        .filter(|part| part.name() == "pageInfo")
        .any(|page_info| {
            page_info.selection_set().any(|f| {
                !matches!(
                    f.name(),
                    "hasPreviousPage" | "startCursor" | "endCursor" | "__typename"
                )
            })
        })
}

/// The run columns a run connection's selection reads (`field` is the connection).
fn run_connection_columns(field: &async_graphql::SelectionField<'_>) -> RunColumns {
    let mut columns = RunColumns::KEYS;
    for part in field.selection_set() {
        match part.name() {
            "nodes" => columns = columns.with(run_columns(part.selection_set())),
            "edges" => {
                for edge in part.selection_set() {
                    match edge.name() {
                        "node" => columns = columns.with(run_columns(edge.selection_set())),
                        "cursor" | "__typename" => {}
                        _ => return RunColumns::ALL,
                    }
                }
            }
            // From the rows' sort keys (cursors) or a query of its own.
            "pageInfo" | "totalCount" | "__typename" => {}
            _ => return RunColumns::ALL,
        }
    }
    columns
}

/// The columns the `FlowRun` fields selected read (see the resolvers below); all of them when a
/// field is not listed here, so a new field is safe until it is.
fn run_columns<'a>(fields: impl Iterator<Item = async_graphql::SelectionField<'a>>) -> RunColumns {
    use flow_runs::Column as C;
    let mut columns = RunColumns::KEYS;
    for field in fields {
        let reads = match field.name() {
            // Only the row's identity: the rest loads by id.
            "__typename" | "id" | "stateHistory" | "taskRuns" | "logs" | "graph" => {
                RunColumns::KEYS
            }
            "flow" => RunColumns::of(&[C::FlowId]),
            "deployment" => RunColumns::of(&[C::DeploymentId]),
            "name" => RunColumns::of(&[C::Name]),
            "workQueueName" => RunColumns::of(&[C::WorkQueueName]),
            "parameters" => RunColumns::of(&[C::Parameters]),
            "tags" => RunColumns::of(&[C::Tags]),
            "idempotencyKey" => RunColumns::of(&[C::IdempotencyKey]),
            "expectedStartTime" => RunColumns::of(&[C::ExpectedStartTime]),
            "startTime" => RunColumns::of(&[C::StartTime]),
            "endTime" => RunColumns::of(&[C::EndTime]),
            "totalRunTime" => RunColumns::of(&[C::TotalRunTime, C::StateType, C::StateTimestamp]),
            "runCount" => RunColumns::of(&[C::RunCount]),
            "retries" => RunColumns::of(&[C::Retries]),
            "retryDelaySeconds" => RunColumns::of(&[C::RetryDelaySeconds]),
            "estimatedStartTimeDelta" => RunColumns::of(&[C::ExpectedStartTime, C::StartTime]),
            "autoScheduled" => RunColumns::of(&[C::AutoScheduled]),
            "createdAt" => RunColumns::of(&[C::CreatedAt]),
            "updatedAt" => RunColumns::of(&[C::UpdatedAt]),
            "state" => RunColumns::of(&state_columns(
                &field,
                [
                    C::StateType,
                    C::StateId,
                    C::StateName,
                    C::StateMessage,
                    C::StateTimestamp,
                    C::StateScheduledTime,
                    C::StateTransitionId,
                ],
            )),
            _ => return RunColumns::ALL,
        };
        columns = columns.with(reads);
    }
    columns
}

/// The task-run columns a task-run connection's selection reads (`field` is the connection).
fn connection_columns(field: &async_graphql::SelectionField<'_>) -> TaskRunColumns {
    let mut columns = TaskRunColumns::KEYS;
    for part in field.selection_set() {
        match part.name() {
            "nodes" => columns = columns.with(task_run_columns(part.selection_set())),
            "edges" => {
                for edge in part.selection_set() {
                    match edge.name() {
                        "node" => columns = columns.with(task_run_columns(edge.selection_set())),
                        "cursor" | "__typename" => {}
                        _ => return TaskRunColumns::ALL,
                    }
                }
            }
            // From the rows' keys (cursors) or queries of their own.
            "pageInfo" | "totalCount" | "__typename" => {}
            _ => return TaskRunColumns::ALL,
        }
    }
    columns
}

/// The columns the `TaskRun` fields selected read (see the resolvers below); all of them when a
/// field is not listed here, so a new field is safe until it is.
fn task_run_columns<'a>(
    fields: impl Iterator<Item = async_graphql::SelectionField<'a>>,
) -> TaskRunColumns {
    use task_runs::Column as C;
    let mut columns = TaskRunColumns::KEYS;
    for field in fields {
        let reads = match field.name() {
            // Only the row's keys (id, run, creation time): the rest loads by id.
            "__typename" | "id" | "createdAt" | "flowRun" | "stateHistory" | "upstream"
            | "logs" => TaskRunColumns::KEYS,
            "name" => TaskRunColumns::of(&[C::Name]),
            "taskKey" => TaskRunColumns::of(&[C::TaskKey]),
            "dynamicKey" => TaskRunColumns::of(&[C::DynamicKey]),
            "tags" => TaskRunColumns::of(&[C::Tags]),
            "startTime" => TaskRunColumns::of(&[C::StartTime]),
            "endTime" => TaskRunColumns::of(&[C::EndTime]),
            "runCount" => TaskRunColumns::of(&[C::RunCount]),
            "totalRunTime" => {
                TaskRunColumns::of(&[C::TotalRunTime, C::StateType, C::StateTimestamp])
            }
            "state" => TaskRunColumns::of(&state_columns(
                &field,
                [
                    C::StateType,
                    C::StateId,
                    C::StateName,
                    C::StateMessage,
                    C::StateTimestamp,
                    C::StateScheduledTime,
                    C::StateTransitionId,
                ],
            )),
            _ => return TaskRunColumns::ALL,
        };
        columns = columns.with(reads);
    }
    columns
}

/// The loader key of a run's task-run page for validated arguments, every column read.
fn task_run_page_key(flow_run_id: Uuid, args: &PageArgs) -> AppResult<TaskRunPageKey> {
    let position = args
        .after
        .as_deref()
        .map(domain_tasks::decode_position)
        .transpose()?;
    Ok(TaskRunPageKey {
        flow_run_id,
        fetch: args.fetch_limit(),
        after: position,
        columns: TaskRunColumns::ALL,
    })
}

impl FlowRun {
    fn page_relations(&self) -> Option<&PageRelations> {
        self.1.as_deref()
    }

    /// The run's flow, if the page loaded the flows (`Some(None)`: it has none).
    fn page_flow(&self) -> Option<Option<Arc<entity::flows::Model>>> {
        let flows = self.page_relations()?.flows.as_ref()?;
        Some(flows.get(&self.0.flow_id).cloned())
    }

    fn page_deployment(&self) -> Option<Option<Arc<entity::deployments::Model>>> {
        let deployments = self.page_relations()?.deployments.as_ref()?;
        Some(
            self.0
                .deployment_id
                .and_then(|id| deployments.get(&id).cloned()),
        )
    }

    /// The run's task runs, if the page loaded them for these arguments.
    fn page_task_runs(
        &self,
        first: Option<i32>,
        after: &Option<String>,
    ) -> Option<Vec<Arc<task_runs::Model>>> {
        let pages = self.page_relations()?.task_runs.as_ref()?;
        (pages.first == first && &pages.after == after)
            .then(|| pages.by_run.get(&self.0.id).cloned().unwrap_or_default())
    }
}

impl PlainFields for FlowRun {
    fn plain_field(&self, ctx: &Context<'_>) -> Option<async_graphql::Value> {
        match ctx.item.node.name.node.as_str() {
            "state" => ready_object(ctx, self.state(ctx)),
            // Only what the page loaded: the loader's future must not start here and be dropped.
            "flow" if self.page_flow().is_some() => ready_object(ctx, self.flow(ctx)),
            "deployment" if self.page_deployment().is_some() || self.0.deployment_id.is_none() => {
                ready_optional_object(ctx, self.deployment(ctx))
            }
            "taskRuns" => {
                let first = ctx.param_value::<Option<i32>>("first", None).ok()?.1;
                let after = ctx.param_value::<Option<String>>("after", None).ok()?.1;
                self.page_task_runs(first, &after)?;
                ready_object(ctx, self.task_runs(ctx, first, after))
            }
            "id" => ready(self.id(ctx)),
            "name" => ready(self.name(ctx)),
            "workQueueName" => ready(self.work_queue_name(ctx)),
            "tags" => ready(self.tags(ctx)),
            "idempotencyKey" => ready(self.idempotency_key(ctx)),
            "expectedStartTime" => ready(self.expected_start_time(ctx)),
            "startTime" => ready(self.start_time(ctx)),
            "endTime" => ready(self.end_time(ctx)),
            "totalRunTime" => ready(self.total_run_time(ctx)),
            "runCount" => ready(self.run_count(ctx)),
            "retries" => ready(self.retries(ctx)),
            "retryDelaySeconds" => ready(self.retry_delay_seconds(ctx)),
            "estimatedStartTimeDelta" => ready(self.estimated_start_time_delta(ctx)),
            "autoScheduled" => ready(self.auto_scheduled(ctx)),
            "createdAt" => ready(self.created_at(ctx)),
            "updatedAt" => ready(self.updated_at(ctx)),
            _ => None,
        }
    }
}

#[Object]
impl FlowRun {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn flow(&self, ctx: &Context<'_>) -> AppResult<Plain<super::flows::Flow>> {
        if let Some(flow) = self.page_flow() {
            return flow
                .map(|flow| Plain(super::flows::Flow::from(flow)))
                .ok_or_else(|| AppError::not_found("flow"));
        }
        ctx.loaders()?
            .flows
            .load_one_boxed(self.0.flow_id)
            .await
            .map_err(load_failed)?
            .map(|flow| Plain(super::flows::Flow::from(flow)))
            .ok_or_else(|| AppError::not_found("flow"))
    }
    async fn deployment(
        &self,
        ctx: &Context<'_>,
    ) -> AppResult<Option<Plain<super::deployments::Deployment>>> {
        let Some(id) = self.0.deployment_id else {
            return Ok(None);
        };
        if let Some(deployment) = self.page_deployment() {
            return Ok(deployment.map(|d| Plain(super::deployments::Deployment::from(d))));
        }
        Ok(ctx
            .loaders()?
            .deployments
            .load_one_boxed(id)
            .await
            .map_err(load_failed)?
            .map(|deployment| Plain(super::deployments::Deployment::from(deployment))))
    }
    async fn work_queue_name(&self) -> Option<&str> {
        self.0.work_queue_name.as_deref()
    }
    async fn state(&self) -> AppResult<Plain<State>> {
        Ok(Plain(State(StateRecord::of_flow_run(&self.0)?)))
    }
    /// Oldest first.
    async fn state_history(&self, ctx: &Context<'_>) -> AppResult<Vec<Plain<State>>> {
        let rows = ctx
            .loaders()?
            .flow_run_states
            .load_one_boxed(self.0.id)
            .await
            .map_err(load_failed)?
            .unwrap_or_default();
        rows.iter()
            .map(|r| StateRecord::of_flow_run_state(r).map(|s| Plain(State(s))))
            .collect()
    }
    async fn parameters(&self) -> Json<serde_json::Value> {
        Json(self.0.parameters.clone())
    }
    async fn tags(&self) -> Vec<String> {
        crate::domain::runs_common::tags_from_json(&self.0.tags)
    }
    async fn idempotency_key(&self) -> Option<&str> {
        self.0.idempotency_key.as_deref()
    }
    async fn expected_start_time(&self) -> Option<DateTime<Utc>> {
        self.0.expected_start_time
    }
    async fn start_time(&self) -> Option<DateTime<Utc>> {
        self.0.start_time
    }
    async fn end_time(&self) -> Option<DateTime<Utc>> {
        self.0.end_time
    }
    /// Seconds spent running, including the current attempt so far.
    async fn total_run_time(&self) -> f64 {
        running_total(
            self.0.total_run_time,
            &self.0.state_type,
            self.0.state_timestamp,
        )
    }
    async fn run_count(&self) -> i32 {
        self.0.run_count
    }
    async fn retries(&self) -> i32 {
        self.0.retries
    }
    async fn retry_delay_seconds(&self) -> i32 {
        self.0.retry_delay_seconds
    }
    /// How far past its expected start the run began (or is, while not started), in seconds.
    async fn estimated_start_time_delta(&self) -> f64 {
        let Some(expected) = self.0.expected_start_time else {
            return 0.0;
        };
        let started = self.0.start_time.unwrap_or_else(Utc::now);
        ((started - expected).num_milliseconds() as f64 / 1000.0).max(0.0)
    }
    async fn auto_scheduled(&self) -> bool {
        self.0.auto_scheduled
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    async fn task_runs(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> AppResult<TaskRunConnection> {
        let loaded_with_page = self.page_task_runs(first, &after);
        let args = PageArgs::parse(first, after)?;
        if let Some(rows) = loaded_with_page {
            return Ok(TaskRunConnection::new(rows, &args, Some(self.0.id)));
        }
        let key = task_run_page_key(self.0.id, &args)?;
        let rows = ctx
            .loaders()?
            .task_run_pages
            .load_one_boxed(key)
            .await
            .map_err(load_failed)?
            .unwrap_or_default();
        Ok(TaskRunConnection::new(rows, &args, Some(self.0.id)))
    }
    async fn logs(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        min_level: Option<LogLevel>,
        task_run_id: Option<Uuid>,
        #[graphql(default = false)] newest_first: bool,
    ) -> AppResult<LogConnection> {
        let args = PageArgs::parse(first, after)?;
        let page = Box::pin(domain_logs::list(
            ctx.app()?,
            &domain_logs::LogQuery {
                flow_run_id: self.0.id,
                task_run_id,
                min_level: min_level.map(Into::into),
                newest_first,
            },
            &args,
        ))
        .await?;
        Ok(LogConnection(page))
    }
    /// The task runs as nodes and their dependencies as edges (at most 10,000 nodes).
    async fn graph(&self, ctx: &Context<'_>) -> AppResult<FlowRunGraph> {
        let (nodes, edges) = Box::pin(domain_tasks::graph(ctx.app()?, self.0.id, 10_000)).await?;
        Ok(FlowRunGraph {
            nodes: nodes
                .into_iter()
                .map(|t| {
                    Ok(GraphNode {
                        id: t.id,
                        name: t.name.clone(),
                        state: State(StateRecord::of_task_run(&t)?),
                        start_time: t.start_time,
                        end_time: t.end_time,
                    })
                })
                .collect::<AppResult<_>>()?,
            edges: edges
                .into_iter()
                .map(|e| GraphEdge {
                    from: e.upstream_task_run_id,
                    to: e.task_run_id,
                })
                .collect(),
        })
    }
}

fn running_total(total: f64, state_type: &str, since: DateTime<Utc>) -> f64 {
    if state_type == DomainStateType::Running.as_str() {
        total + ((Utc::now() - since).num_milliseconds().max(0) as f64 / 1000.0)
    } else {
        total
    }
}

#[derive(SimpleObject)]
pub struct FlowRunGraph {
    nodes: Vec<GraphNode>,
    edges: Vec<GraphEdge>,
}

#[derive(SimpleObject)]
pub struct GraphNode {
    id: Uuid,
    name: String,
    state: State,
    start_time: Option<DateTime<Utc>>,
    end_time: Option<DateTime<Utc>>,
}

/// `from` is the upstream task run, `to` the downstream one.
#[derive(SimpleObject)]
pub struct GraphEdge {
    from: Uuid,
    to: Uuid,
}

#[derive(Clone)]
pub struct TaskRun(pub Arc<task_runs::Model>);

impl From<task_runs::Model> for TaskRun {
    fn from(m: task_runs::Model) -> Self {
        Self(Arc::new(m))
    }
}

impl From<Arc<task_runs::Model>> for TaskRun {
    fn from(m: Arc<task_runs::Model>) -> Self {
        Self(m)
    }
}

impl PlainFields for TaskRun {
    fn plain_field(&self, ctx: &Context<'_>) -> Option<async_graphql::Value> {
        match ctx.item.node.name.node.as_str() {
            "state" => ready_object(ctx, self.state(ctx)),
            "id" => ready(self.id(ctx)),
            "name" => ready(self.name(ctx)),
            "taskKey" => ready(self.task_key(ctx)),
            "dynamicKey" => ready(self.dynamic_key(ctx)),
            "tags" => ready(self.tags(ctx)),
            "startTime" => ready(self.start_time(ctx)),
            "endTime" => ready(self.end_time(ctx)),
            "totalRunTime" => ready(self.total_run_time(ctx)),
            "runCount" => ready(self.run_count(ctx)),
            "createdAt" => ready(self.created_at(ctx)),
            _ => None,
        }
    }
}

#[Object]
impl TaskRun {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn task_key(&self) -> &str {
        &self.0.task_key
    }
    async fn dynamic_key(&self) -> &str {
        &self.0.dynamic_key
    }
    async fn flow_run(&self, ctx: &Context<'_>) -> AppResult<FlowRun> {
        ctx.loaders()?
            .flow_runs
            .load_one_boxed(self.0.flow_run_id)
            .await
            .map_err(load_failed)?
            .map(FlowRun::from)
            .ok_or_else(|| AppError::not_found("flow run"))
    }
    async fn state(&self) -> AppResult<Plain<State>> {
        Ok(Plain(State(StateRecord::of_task_run(&self.0)?)))
    }
    async fn state_history(&self, ctx: &Context<'_>) -> AppResult<Vec<Plain<State>>> {
        let rows = ctx
            .loaders()?
            .task_run_states
            .load_one_boxed(self.0.id)
            .await
            .map_err(load_failed)?
            .unwrap_or_default();
        rows.iter()
            .map(|r| StateRecord::of_task_run_state(r).map(|s| Plain(State(s))))
            .collect()
    }
    async fn tags(&self) -> Vec<String> {
        crate::domain::runs_common::tags_from_json(&self.0.tags)
    }
    /// The task runs this one depends on.
    async fn upstream(&self, ctx: &Context<'_>) -> AppResult<Vec<TaskRun>> {
        Ok(ctx
            .loaders()?
            .upstream_task_runs
            .load_one_boxed(self.0.id)
            .await
            .map_err(load_failed)?
            .unwrap_or_default()
            .into_iter()
            .map(TaskRun::from)
            .collect())
    }
    async fn start_time(&self) -> Option<DateTime<Utc>> {
        self.0.start_time
    }
    async fn end_time(&self) -> Option<DateTime<Utc>> {
        self.0.end_time
    }
    async fn total_run_time(&self) -> f64 {
        running_total(
            self.0.total_run_time,
            &self.0.state_type,
            self.0.state_timestamp,
        )
    }
    async fn run_count(&self) -> i32 {
        self.0.run_count
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn logs(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        min_level: Option<LogLevel>,
        #[graphql(default = false)] newest_first: bool,
    ) -> AppResult<LogConnection> {
        let args = PageArgs::parse(first, after)?;
        let page = Box::pin(domain_logs::list(
            ctx.app()?,
            &domain_logs::LogQuery {
                flow_run_id: self.0.flow_run_id,
                task_run_id: Some(self.0.id),
                min_level: min_level.map(Into::into),
                newest_first,
            },
            &args,
        ))
        .await?;
        Ok(LogConnection(page))
    }
}

#[derive(SimpleObject)]
pub struct TaskRunEdge {
    cursor: String,
    node: Plain<TaskRun>,
}

/// Task runs, oldest first. `totalCount` is counted only when asked for, in one batched query.
pub struct TaskRunConnection {
    rows: Vec<Arc<task_runs::Model>>,
    has_next_page: bool,
    has_previous_page: bool,
    flow_run_id: Option<Uuid>,
    known_total: Option<u64>,
}

impl TaskRunConnection {
    /// From rows fetched with `args.fetch_limit()` (one past the page).
    fn new(
        mut rows: Vec<Arc<task_runs::Model>>,
        args: &PageArgs,
        flow_run_id: Option<Uuid>,
    ) -> Self {
        let has_next_page = rows.len() as u64 > args.first;
        rows.truncate(args.first as usize);
        Self {
            rows,
            has_next_page,
            has_previous_page: args.after.is_some(),
            flow_run_id,
            known_total: None,
        }
    }
}

impl PlainFields for TaskRunConnection {
    fn plain_field(&self, ctx: &Context<'_>) -> Option<async_graphql::Value> {
        match ctx.item.node.name.node.as_str() {
            "nodes" => ready_list(ctx, self.nodes(ctx)),
            "pageInfo" => ready_object(ctx, self.page_info(ctx)),
            _ => None,
        }
    }
}

#[Object]
impl TaskRunConnection {
    async fn edges(&self) -> Vec<TaskRunEdge> {
        self.rows
            .iter()
            .map(|t| TaskRunEdge {
                cursor: domain_tasks::cursor_of(t),
                node: Plain(TaskRun(t.clone())),
            })
            .collect()
    }
    async fn nodes(&self) -> Vec<Plain<TaskRun>> {
        self.rows
            .iter()
            .map(|t| Plain(TaskRun(t.clone())))
            .collect()
    }
    async fn page_info(&self) -> PageInfo {
        PageInfo {
            has_next_page: self.has_next_page,
            has_previous_page: self.has_previous_page,
            start_cursor: self.rows.first().map(|t| domain_tasks::cursor_of(t)),
            end_cursor: self.rows.last().map(|t| domain_tasks::cursor_of(t)),
        }
    }
    async fn total_count(&self, ctx: &Context<'_>) -> AppResult<i64> {
        if let Some(n) = self.known_total {
            return Ok(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let Some(flow_run_id) = self.flow_run_id else {
            return Ok(0);
        };
        let n = ctx
            .loaders()?
            .task_run_counts
            .load_one_boxed(flow_run_id)
            .await
            .map_err(load_failed)?
            .unwrap_or(0);
        Ok(n)
    }
}

#[derive(SimpleObject)]
pub struct FlowRunEdge {
    cursor: String,
    node: Plain<FlowRun>,
}

/// A page of flow runs; `totalCount` runs its COUNT only when a client asks for it.
pub struct FlowRunConnection(pub domain_runs::RunPage);

impl FlowRunConnection {
    fn runs(&self) -> impl Iterator<Item = &Arc<flow_runs::Model>> + Clone {
        self.0.rows.iter()
    }
}

#[Object]
impl FlowRunConnection {
    async fn edges(&self, ctx: &Context<'_>) -> AppResult<Vec<FlowRunEdge>> {
        let field = ctx.field();
        let edges: Vec<_> = field
            .selection_set()
            .filter(|f| f.name() == "node")
            .collect();
        let nodes: Vec<_> = edges.iter().flat_map(|node| node.selection_set()).collect();
        let related = Box::pin(PageRelations::load(ctx, self.runs(), nodes.into_iter())).await?;
        Ok(self
            .0
            .rows
            .iter()
            .map(|run| FlowRunEdge {
                cursor: domain_runs::run_cursor(run, self.0.sort),
                node: Plain(FlowRun(run.clone(), related.clone())),
            })
            .collect())
    }
    async fn nodes(&self, ctx: &Context<'_>) -> AppResult<Vec<Plain<FlowRun>>> {
        let field = ctx.field();
        let nodes: Vec<_> = field.selection_set().collect();
        let related = Box::pin(PageRelations::load(ctx, self.runs(), nodes.into_iter())).await?;
        Ok(self
            .0
            .rows
            .iter()
            .map(|r| Plain(FlowRun(r.clone(), related.clone())))
            .collect())
    }
    async fn page_info(&self) -> PageInfo {
        PageInfo {
            has_next_page: self.0.has_next_page,
            has_previous_page: self.0.has_previous_page,
            start_cursor: (self.0.rows.first()).map(|r| domain_runs::run_cursor(r, self.0.sort)),
            end_cursor: (self.0.rows.last()).map(|r| domain_runs::run_cursor(r, self.0.sort)),
        }
    }
    async fn total_count(&self, ctx: &Context<'_>) -> AppResult<i64> {
        let n = domain_runs::count(ctx.app()?, self.0.count_query.clone()).await?;
        Ok(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

#[derive(SimpleObject)]
pub struct StateTypeCount {
    state_type: StateType,
    count: i32,
}

#[derive(SimpleObject)]
pub struct SummaryBucket {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    by_state_type: Vec<StateTypeCount>,
}

#[derive(SimpleObject)]
pub struct FlowRunSummary {
    total: i32,
    by_state_type: Vec<StateTypeCount>,
    history: Vec<SummaryBucket>,
}

fn all_counts(counts: &[(DomainStateType, i64)]) -> Vec<StateTypeCount> {
    DomainStateType::ALL
        .into_iter()
        .map(|t| StateTypeCount {
            state_type: t.into(),
            count: counts
                .iter()
                .find(|(s, _)| *s == t)
                .map(|(_, n)| i32::try_from(*n).unwrap_or(i32::MAX))
                .unwrap_or(0),
        })
        .collect()
}

pub struct RunAlert(pub run_alerts::Model);

#[Object]
impl RunAlert {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn kind(&self) -> AppResult<AlertKind> {
        Ok(DomainAlertKind::parse(&self.0.kind)?.into())
    }
    async fn flow_run(&self, ctx: &Context<'_>) -> AppResult<FlowRun> {
        ctx.loaders()?
            .flow_runs
            .load_one_boxed(self.0.flow_run_id)
            .await
            .map_err(load_failed)?
            .map(FlowRun::from)
            .ok_or_else(|| AppError::not_found("flow run"))
    }
    async fn message(&self) -> &str {
        &self.0.message
    }
    async fn occurred_at(&self) -> DateTime<Utc> {
        self.0.occurred_at
    }
    /// Resume a `runAlerts` subscription after this alert.
    async fn cursor(&self) -> String {
        crate::events::encode_cursor(self.0.seq)
    }
}

/// Workspace fields for runs, delegated from `Workspace`.
/// `checked_member`: the workspace object was read by a member (its role is known), so the
/// access check already happened for this request and is not repeated on the hot page.
pub async fn workspace_flow_runs(
    ctx: &Context<'_>,
    workspace_id: Uuid,
    checked_member: bool,
    first: Option<i32>,
    after: Option<String>,
    filter: Option<FlowRunFilter>,
    sort: Option<FlowRunSort>,
) -> AppResult<FlowRunConnection> {
    let args = PageArgs::parse(first, after)?;
    let filter = filter.unwrap_or_default().into();
    let sort = sort.unwrap_or_default().into();
    let app = ctx.app()?;
    let request = domain_runs::RunPageRequest {
        sort,
        first: args.first,
        after: args.after,
        columns: run_connection_columns(&ctx.field()),
    };
    let page = if checked_member {
        domain_runs::list_unchecked(app, workspace_id, &filter, request).await?
    } else {
        domain_runs::list(app, ctx.viewer()?, workspace_id, &filter, request).await?
    };
    Ok(FlowRunConnection(page))
}

/// Runs under an object the viewer already reads (a flow or deployment).
pub async fn nested_flow_runs(
    ctx: &Context<'_>,
    workspace_id: Uuid,
    first: Option<i32>,
    after: Option<String>,
    filter: FlowRunFilter,
) -> AppResult<FlowRunConnection> {
    let args = PageArgs::parse(first, after)?;
    // Boxed: held inline, the list query's large future would size every field of the flows
    // and deployments that call this.
    let page = Box::pin(domain_runs::list_unchecked(
        ctx.app()?,
        workspace_id,
        &filter.into(),
        domain_runs::RunPageRequest {
            sort: DomainSort::default(),
            first: args.first,
            after: args.after,
            columns: run_connection_columns(&ctx.field()),
        },
    ))
    .await?;
    Ok(FlowRunConnection(page))
}

pub async fn workspace_task_runs(
    ctx: &Context<'_>,
    workspace_id: Uuid,
    first: Option<i32>,
    after: Option<String>,
    flow_run_id: Option<Uuid>,
) -> AppResult<TaskRunConnection> {
    let args = PageArgs::parse(first, after)?;
    let page =
        domain_tasks::list(ctx.app()?, ctx.viewer()?, workspace_id, flow_run_id, &args).await?;
    Ok(TaskRunConnection {
        rows: page.items.into_iter().map(|(_, t)| Arc::new(t)).collect(),
        has_next_page: page.has_next_page,
        has_previous_page: page.has_previous_page,
        flow_run_id,
        known_total: Some(page.total_count),
    })
}

pub async fn workspace_summary(
    ctx: &Context<'_>,
    workspace_id: Uuid,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    buckets: i32,
    filter: Option<FlowRunFilter>,
) -> AppResult<FlowRunSummary> {
    if !(1..=100).contains(&buckets) {
        return Err(AppError::bad_input("buckets", "must be between 1 and 100"));
    }
    if until <= since {
        return Err(AppError::bad_input("until", "must be after since"));
    }
    let app = ctx.app()?;
    crate::domain::access::require_role(
        app.db.read(),
        ctx.viewer()?,
        workspace_id,
        crate::domain::Role::Viewer,
        "workspace",
    )
    .await?;
    let counts = domain_runs::summary(
        app,
        workspace_id,
        since,
        until,
        i64::from(buckets),
        &filter.unwrap_or_default().into(),
    )
    .await?;
    let n = i64::from(buckets);
    let boundary = |i: i64| domain_runs::bucket_start(since, until, n, i);
    let history = counts
        .buckets
        .iter()
        .enumerate()
        .map(|(i, c)| SummaryBucket {
            start: boundary(i as i64),
            end: if i as i64 == n - 1 {
                until
            } else {
                boundary(i as i64 + 1)
            },
            by_state_type: all_counts(c),
        })
        .collect();
    Ok(FlowRunSummary {
        total: i32::try_from(counts.total).unwrap_or(i32::MAX),
        by_state_type: all_counts(&counts.by_state),
        history,
    })
}

pub async fn workspace_upcoming(
    ctx: &Context<'_>,
    workspace_id: Uuid,
    first: i32,
    deployment_id: Option<Uuid>,
) -> AppResult<Vec<FlowRun>> {
    if !(0..=200).contains(&first) {
        return Err(AppError::bad_input("first", "must be between 0 and 200"));
    }
    let app = ctx.app()?;
    crate::domain::access::require_role(
        app.db.read(),
        ctx.viewer()?,
        workspace_id,
        crate::domain::Role::Viewer,
        "workspace",
    )
    .await?;
    let rows = domain_runs::upcoming(app, workspace_id, deployment_id, first as u64).await?;
    Ok(rows.into_iter().map(FlowRun::from).collect())
}

pub async fn workspace_alerts(
    ctx: &Context<'_>,
    workspace_id: Uuid,
    first: i32,
    kinds: Option<Vec<AlertKind>>,
) -> AppResult<Vec<RunAlert>> {
    if !(0..=200).contains(&first) {
        return Err(AppError::bad_input("first", "must be between 0 and 200"));
    }
    let rows = domain_runs::alerts(
        ctx.app()?,
        ctx.viewer()?,
        workspace_id,
        kinds.map(|k| k.into_iter().map(Into::into).collect()),
        first as u64,
    )
    .await?;
    Ok(rows.into_iter().map(RunAlert).collect())
}

#[derive(InputObject)]
pub struct CreateFlowRunInput {
    flow_id: Uuid,
    name: Option<String>,
    parameters: Option<Json<serde_json::Value>>,
    tags: Option<Vec<String>>,
    idempotency_key: Option<String>,
    state: Option<StateInput>,
    deployment_id: Option<Uuid>,
    work_queue_name: Option<String>,
    retries: Option<i32>,
    retry_delay_seconds: Option<i32>,
}

#[derive(InputObject)]
pub struct CreateFlowRunFromDeploymentInput {
    name: Option<String>,
    parameters: Option<Json<serde_json::Value>>,
    tags: Option<Vec<String>>,
    idempotency_key: Option<String>,
    state: Option<StateInput>,
}

#[derive(InputObject)]
pub struct CreateTaskRunInput {
    task_key: String,
    dynamic_key: Option<String>,
    name: Option<String>,
    tags: Option<Vec<String>>,
    upstream_task_run_ids: Option<Vec<Uuid>>,
    state: Option<StateInput>,
}

#[derive(Default)]
pub struct RunQuery;

#[Object]
impl RunQuery {
    /// A flow run; null if absent or not accessible.
    async fn flow_run(&self, ctx: &Context<'_>, id: Uuid) -> AppResult<Option<FlowRun>> {
        Ok(domain_runs::get(ctx.app()?, ctx.viewer()?, id)
            .await?
            .map(FlowRun::from))
    }

    /// A task run; null if absent or not accessible.
    async fn task_run(&self, ctx: &Context<'_>, id: Uuid) -> AppResult<Option<TaskRun>> {
        Ok(domain_tasks::get(ctx.app()?, ctx.viewer()?, id)
            .await?
            .map(TaskRun::from))
    }
}

#[derive(Default)]
pub struct RunMutation;

#[Object]
impl RunMutation {
    /// Creates a flow run. With an `idempotencyKey` already used for the flow, returns that run.
    async fn create_flow_run(
        &self,
        ctx: &Context<'_>,
        workspace_id: Uuid,
        input: CreateFlowRunInput,
    ) -> AppResult<FlowRun> {
        let run = domain_runs::create(
            ctx.app()?,
            ctx.viewer()?,
            workspace_id,
            NewFlowRun {
                flow_id: input.flow_id,
                name: input.name,
                parameters: input.parameters.map(|j| j.0),
                tags: input.tags,
                idempotency_key: input.idempotency_key,
                state: input.state.map(Into::into),
                deployment_id: input.deployment_id,
                work_queue_name: input.work_queue_name,
                retries: input.retries,
                retry_delay_seconds: input.retry_delay_seconds,
                auto_scheduled: false,
            },
        )
        .await?;
        Ok(FlowRun::from(run))
    }

    /// An ad-hoc run of a deployment: parameter overrides merged over the deployment's.
    async fn create_flow_run_from_deployment(
        &self,
        ctx: &Context<'_>,
        deployment_id: Uuid,
        input: Option<CreateFlowRunFromDeploymentInput>,
    ) -> AppResult<FlowRun> {
        let input = input.map(|i| NewRunFromDeployment {
            name: i.name,
            parameters: i.parameters.map(|j| j.0),
            tags: i.tags,
            idempotency_key: i.idempotency_key,
            state: i.state.map(Into::into),
        });
        let run = domain_runs::create_from_deployment(
            ctx.app()?,
            ctx.viewer()?,
            deployment_id,
            input.unwrap_or_default(),
        )
        .await?;
        Ok(FlowRun::from(run))
    }

    async fn set_flow_run_state(
        &self,
        ctx: &Context<'_>,
        flow_run_id: Uuid,
        state: StateInput,
        #[graphql(default_with = "Some(false)")] force: Option<bool>,
    ) -> AppResult<OrchestrationResult> {
        let outcome = domain_runs::set_state(
            ctx.app()?,
            ctx.viewer()?,
            flow_run_id,
            state.into(),
            force.unwrap_or(false),
        )
        .await?;
        Ok(OrchestrationResult(outcome))
    }

    async fn create_task_run(
        &self,
        ctx: &Context<'_>,
        flow_run_id: Uuid,
        input: CreateTaskRunInput,
    ) -> AppResult<TaskRun> {
        let task = domain_tasks::create(
            ctx.app()?,
            ctx.viewer()?,
            flow_run_id,
            domain_tasks::NewTaskRun {
                task_key: input.task_key,
                dynamic_key: input.dynamic_key,
                name: input.name,
                tags: input.tags,
                upstream_task_run_ids: input.upstream_task_run_ids,
                state: input.state.map(Into::into),
            },
        )
        .await?;
        Ok(TaskRun::from(task))
    }

    async fn set_task_run_state(
        &self,
        ctx: &Context<'_>,
        task_run_id: Uuid,
        state: StateInput,
        #[graphql(default_with = "Some(false)")] force: Option<bool>,
    ) -> AppResult<OrchestrationResult> {
        let outcome = domain_tasks::set_state(
            ctx.app()?,
            ctx.viewer()?,
            task_run_id,
            state.into(),
            force.unwrap_or(false),
        )
        .await?;
        Ok(OrchestrationResult(outcome))
    }

    /// Hands due `SCHEDULED` runs of the queue to the caller, moving them to `PENDING`.
    async fn claim_flow_runs(
        &self,
        ctx: &Context<'_>,
        work_queue_id: Uuid,
        #[graphql(default = 10)] limit: i32,
        scheduled_before: Option<DateTime<Utc>>,
    ) -> AppResult<Vec<FlowRun>> {
        let runs = claiming::claim(
            ctx.app()?,
            ctx.viewer()?,
            work_queue_id,
            limit,
            scheduled_before,
        )
        .await?;
        Ok(runs.into_iter().map(FlowRun::from).collect())
    }
}
