//! Subscriptions: run state changes, log lines and alerts, replayed from a cursor and then live.
use std::sync::Arc;

use async_graphql::{Context, Object, Subscription};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use uuid::Uuid;

use super::logs::{Log, LogLevel};
use super::runs::{AlertKind, FlowRun, FlowRunFilter, RunAlert, State, TaskRun};
use super::ContextExt;
use crate::domain::flow_runs::AlertKind as DomainAlertKind;
use crate::domain::logs::LogLevel as DomainLevel;
use crate::domain::states::StateRecord;
use crate::domain::{access, Role};
use crate::error::AppError;
use crate::events::feed::StateChange;
use crate::events::watch::{watch, Source};
use crate::events::{decode_cursor, encode_cursor, LiveItem};

pub struct FlowRunStateEvent(Arc<StateChange<entity::flow_runs::Model>>);

#[Object]
impl FlowRunStateEvent {
    /// Resume after this event with `after: cursor`.
    async fn cursor(&self) -> String {
        encode_cursor(self.0.seq)
    }
    async fn flow_run(&self) -> FlowRun {
        FlowRun::from(self.0.run.clone())
    }
    async fn from_state(&self) -> Option<State> {
        self.0.from.clone().map(State)
    }
    async fn to_state(&self) -> State {
        State(self.0.to.clone())
    }
    async fn occurred_at(&self) -> DateTime<Utc> {
        self.0.occurred_at
    }
}

pub struct TaskRunStateEvent(Arc<StateChange<entity::task_runs::Model>>);

#[Object]
impl TaskRunStateEvent {
    async fn cursor(&self) -> String {
        encode_cursor(self.0.seq)
    }
    async fn task_run(&self) -> TaskRun {
        TaskRun::from(self.0.run.clone())
    }
    async fn from_state(&self) -> Option<State> {
        self.0.from.clone().map(State)
    }
    async fn to_state(&self) -> State {
        State(self.0.to.clone())
    }
    async fn occurred_at(&self) -> DateTime<Utc> {
        self.0.occurred_at
    }
}

/// Checks access once, up front, so a refused subscription gets an error and never an event.
async fn open(
    ctx: &Context<'_>,
    workspace_id: Uuid,
    after: Option<String>,
    source: Source,
) -> Result<impl Stream<Item = Result<LiveItem, AppError>>, AppError> {
    let state = ctx.app()?.clone();
    let viewer = ctx.viewer()?.clone();
    let after = after.map(|c| decode_cursor("after", &c)).transpose()?;
    // Listen for access changes before checking: a removal that commits between the check and
    // the stream's first poll would otherwise go unnoticed until the periodic re-check.
    let access_notices = state.events.subscribe_access();
    // Boxed: async-graphql keeps each subscription's stream in one allocation as large as the
    // largest future it ever held, and held inline this check (a database query) made every
    // idle subscription several KiB larger for the moment it took.
    Box::pin(access::require_role(
        state.db.read(),
        &viewer,
        workspace_id,
        Role::Viewer,
        "workspace",
    ))
    .await?;
    Ok(watch(
        state,
        viewer,
        workspace_id,
        after,
        source,
        access_notices,
    ))
}

fn matches_filter(
    filter: &FlowRunFilter,
    run: &entity::flow_runs::Model,
    to: &StateRecord,
) -> bool {
    let within = |ids: &Option<Vec<Uuid>>, id: Option<Uuid>| {
        ids.as_ref()
            .is_none_or(|ids| id.is_some_and(|id| ids.contains(&id)))
    };
    within(&filter.flow_ids, Some(run.flow_id))
        && within(&filter.deployment_ids, run.deployment_id)
        && within(&filter.flow_run_ids, Some(run.id))
        && filter.state_types.as_ref().is_none_or(|types| {
            types
                .iter()
                .any(|t| crate::domain::states::StateType::from(*t) == to.state_type)
        })
        && filter
            .state_names
            .as_ref()
            .is_none_or(|names| names.contains(&to.name))
        && filter.tags.as_ref().is_none_or(|wanted| {
            // Parsed only when asked for: this runs per event per subscription.
            let tags = crate::domain::runs_common::tags_from_json(&run.tags);
            wanted.iter().all(|t| tags.contains(t))
        })
        && filter.work_queue_names.as_ref().is_none_or(|names| {
            run.work_queue_name
                .as_ref()
                .is_some_and(|q| names.contains(q))
        })
        && filter
            .expected_start_time_after
            .is_none_or(|at| run.expected_start_time.is_some_and(|t| t >= at))
        && filter
            .expected_start_time_before
            .is_none_or(|at| run.expected_start_time.is_some_and(|t| t < at))
}

#[derive(Default)]
pub struct LiveSubscription;

#[Subscription]
impl LiveSubscription {
    /// Flow run state changes in a workspace.
    async fn flow_run_state_changed(
        &self,
        ctx: &Context<'_>,
        workspace_id: Uuid,
        filter: Option<FlowRunFilter>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<FlowRunStateEvent, AppError>>, AppError> {
        let filter = filter.unwrap_or_default();
        let items = open(ctx, workspace_id, after, Source::Events).await?;
        Ok(items.filter_map(move |item| {
            let out = match item {
                Ok(LiveItem::FlowRunState(change))
                    if matches_filter(&filter, &change.run, &change.to) =>
                {
                    Some(Ok(FlowRunStateEvent(change)))
                }
                Ok(_) => None,
                Err(err) => Some(Err(err)),
            };
            std::future::ready(out)
        }))
    }

    /// Task run state changes in a workspace, optionally of one flow run.
    async fn task_run_state_changed(
        &self,
        ctx: &Context<'_>,
        workspace_id: Uuid,
        flow_run_id: Option<Uuid>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<TaskRunStateEvent, AppError>>, AppError> {
        let items = open(ctx, workspace_id, after, Source::Events).await?;
        Ok(items.filter_map(move |item| {
            let out = match item {
                Ok(LiveItem::TaskRunState(change))
                    if flow_run_id.is_none_or(|id| id == change.run.flow_run_id) =>
                {
                    Some(Ok(TaskRunStateEvent(change)))
                }
                Ok(_) => None,
                Err(err) => Some(Err(err)),
            };
            std::future::ready(out)
        }))
    }

    /// Log lines of a flow run as they are stored.
    async fn logs(
        &self,
        ctx: &Context<'_>,
        workspace_id: Uuid,
        flow_run_id: Uuid,
        task_run_id: Option<Uuid>,
        min_level: Option<LogLevel>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<Log, AppError>>, AppError> {
        let min_level: Option<DomainLevel> = min_level.map(Into::into);
        let items = open(ctx, workspace_id, after, Source::Logs).await?;
        Ok(items.filter_map(move |item| {
            let out = match item {
                Ok(LiveItem::Log(line))
                    if line.flow_run_id == flow_run_id
                        && task_run_id.is_none_or(|t| line.task_run_id == Some(t))
                        && min_level.is_none_or(|min| line.level >= min as i32) =>
                {
                    Some(Ok(Log(Arc::unwrap_or_clone(line))))
                }
                Ok(_) => None,
                Err(err) => Some(Err(err)),
            };
            std::future::ready(out)
        }))
    }

    /// Alerts: a run became late, failed or crashed.
    async fn run_alerts(
        &self,
        ctx: &Context<'_>,
        workspace_id: Uuid,
        kinds: Option<Vec<AlertKind>>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<RunAlert, AppError>>, AppError> {
        let kinds: Option<Vec<DomainAlertKind>> =
            kinds.map(|k| k.into_iter().map(Into::into).collect());
        let items = open(ctx, workspace_id, after, Source::Events).await?;
        Ok(items.filter_map(move |item| {
            let out = match item {
                Ok(LiveItem::Alert(alert)) => {
                    let wanted = match DomainAlertKind::parse(&alert.kind) {
                        Ok(kind) => kinds.as_ref().is_none_or(|k| k.contains(&kind)),
                        Err(_) => false,
                    };
                    wanted.then(|| Ok(RunAlert(Arc::unwrap_or_clone(alert))))
                }
                Ok(_) => None,
                Err(err) => Some(Err(err)),
            };
            std::future::ready(out)
        }))
    }
}
