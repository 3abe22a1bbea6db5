//! Flows: `createFlow`, `Workspace.flows` / `Workspace.flow`, `Flow.deployments`.
use async_graphql::{Context, InputObject, Object};
use chrono::{DateTime, Utc};
use entity::flows as flow_rows;
use uuid::Uuid;

use super::deployments::Deployment;
use super::loaders::LoadOneBoxed;
use super::pagination::{encode_cursor, Page, PageArgs};
use super::plain_fields::{ready, PlainFields};
use super::ContextExt;
use crate::connection_type;
use crate::domain::flows::{self, FlowCursor, NewFlow};
use crate::domain::validate;
use crate::error::{AppError, AppResult};

#[derive(Clone)]
pub struct Flow(pub std::sync::Arc<flow_rows::Model>);

impl From<flow_rows::Model> for Flow {
    fn from(model: flow_rows::Model) -> Self {
        Self(std::sync::Arc::new(model))
    }
}

impl From<std::sync::Arc<flow_rows::Model>> for Flow {
    fn from(model: std::sync::Arc<flow_rows::Model>) -> Self {
        Self(model)
    }
}

connection_type!(FlowConnection, FlowEdge, Flow, flow_rows::Model);

impl PlainFields for Flow {
    fn plain_field(&self, ctx: &Context<'_>) -> Option<async_graphql::Value> {
        match ctx.item.node.name.node.as_str() {
            "id" => ready(self.id(ctx)),
            "name" => ready(self.name(ctx)),
            "tags" => ready(self.tags(ctx)),
            "createdAt" => ready(self.created_at(ctx)),
            _ => None,
        }
    }
}

#[Object]
impl Flow {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn tags(&self) -> Vec<String> {
        validate::stored_strings(&self.0.tags)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// The flow's runs, expected start time newest first.
    async fn flow_runs(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> AppResult<super::runs::FlowRunConnection> {
        let filter = super::runs::FlowRunFilter {
            flow_ids: Some(vec![self.0.id]),
            ..Default::default()
        };
        super::runs::nested_flow_runs(ctx, self.0.workspace_id, first, after, filter).await
    }
    /// The flow's deployments, by name.
    async fn deployments(&self, ctx: &Context<'_>) -> AppResult<Vec<Deployment>> {
        let rows = ctx
            .loaders()?
            .deployments_by_flow
            .load_one_boxed(self.0.id)
            .await
            .map_err(super::loaders::load_failed)?
            .unwrap_or_default();
        Ok(rows.into_iter().map(Deployment::from).collect())
    }
}

#[derive(InputObject)]
pub struct CreateFlowInput {
    name: String,
    tags: Option<Vec<String>>,
}

fn flow_cursor(flow: &flow_rows::Model) -> String {
    encode_cursor(&[&flow.name, &flow.id.to_string()])
}

fn decode_flow_cursor(parts: Vec<String>) -> AppResult<FlowCursor> {
    match parts.as_slice() {
        [name, id] => Ok(FlowCursor {
            name: name.clone(),
            id: Uuid::parse_str(id)
                .map_err(|_| AppError::bad_input("after", "not a cursor this server issued"))?,
        }),
        _ => Err(AppError::bad_input(
            "after",
            "not a cursor this server issued",
        )),
    }
}

/// `Workspace.flows`: the workspace's flows by name.
pub async fn workspace_flows(
    ctx: &Context<'_>,
    workspace_id: Uuid,
    first: Option<i32>,
    after: Option<String>,
) -> AppResult<FlowConnection> {
    let args = PageArgs::parse(first, after)?;
    let cursor = args.after.clone().map(decode_flow_cursor).transpose()?;
    let (rows, total) = flows::list(
        ctx.app()?,
        ctx.viewer()?,
        workspace_id,
        cursor,
        args.fetch_limit(),
    )
    .await?;
    Ok(FlowConnection(Page::from_rows(
        rows,
        &args,
        total,
        flow_cursor,
    )))
}

/// `Workspace.flow`: one flow by id and/or name; null when there is none.
pub async fn workspace_flow(
    ctx: &Context<'_>,
    workspace_id: Uuid,
    id: Option<Uuid>,
    name: Option<String>,
) -> AppResult<Option<Flow>> {
    let flow = flows::get(ctx.app()?, ctx.viewer()?, workspace_id, id, name.as_deref()).await?;
    Ok(flow.map(Flow::from))
}

#[derive(Default)]
pub struct FlowMutation;

#[Object]
impl FlowMutation {
    /// Creates a flow, or returns the workspace's flow of that name if it exists.
    async fn create_flow(
        &self,
        ctx: &Context<'_>,
        workspace_id: Uuid,
        input: CreateFlowInput,
    ) -> AppResult<Flow> {
        let flow = flows::create(
            ctx.app()?,
            ctx.viewer()?,
            workspace_id,
            NewFlow {
                name: input.name,
                tags: input.tags.unwrap_or_default(),
            },
        )
        .await?;
        Ok(Flow::from(flow))
    }
}
