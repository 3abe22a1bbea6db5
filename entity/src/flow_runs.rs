//! `flow_runs`: one execution of a flow, with its current state denormalized on the row.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "flow_runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub flow_id: Uuid,
    pub deployment_id: Option<Uuid>,
    #[sea_orm(column_type = "Text", nullable)]
    pub work_queue_name: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub name: String,
    #[sea_orm(column_type = "Json")]
    pub parameters: Json,
    #[sea_orm(column_type = "Json")]
    pub tags: Json,
    #[sea_orm(column_type = "Text", nullable)]
    pub idempotency_key: Option<String>,
    pub auto_scheduled: bool,
    pub retries: i32,
    pub retry_delay_seconds: i32,
    pub run_count: i32,
    /// Seconds spent in `RUNNING`.
    pub total_run_time: f64,
    pub expected_start_time: Option<DateTimeUtc>,
    pub start_time: Option<DateTimeUtc>,
    pub end_time: Option<DateTimeUtc>,
    // Current state (a copy of the latest `flow_run_states` row).
    pub state_id: Uuid,
    #[sea_orm(column_type = "Text")]
    pub state_type: String,
    #[sea_orm(column_type = "Text")]
    pub state_name: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub state_message: Option<String>,
    pub state_timestamp: DateTimeUtc,
    pub state_scheduled_time: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text", nullable)]
    pub state_transition_id: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::flows::Entity",
        from = "Column::FlowId",
        to = "super::flows::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    Flows,
    #[sea_orm(
        belongs_to = "super::deployments::Entity",
        from = "Column::DeploymentId",
        to = "super::deployments::Column::Id",
        on_update = "NoAction",
        on_delete = "SetNull"
    )]
    Deployments,
    #[sea_orm(has_many = "super::flow_run_states::Entity")]
    FlowRunStates,
    #[sea_orm(has_many = "super::task_runs::Entity")]
    TaskRuns,
    #[sea_orm(has_many = "super::logs::Entity")]
    Logs,
    #[sea_orm(has_many = "super::run_alerts::Entity")]
    RunAlerts,
}

impl Related<super::flows::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Flows.def()
    }
}

impl Related<super::deployments::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Deployments.def()
    }
}

impl Related<super::flow_run_states::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::FlowRunStates.def()
    }
}

impl Related<super::task_runs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::TaskRuns.def()
    }
}

impl Related<super::logs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Logs.def()
    }
}

impl Related<super::run_alerts::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::RunAlerts.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
