//! `task_runs`: a unit inside a flow run, with its current state denormalized on the row.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "task_runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub flow_run_id: Uuid,
    #[sea_orm(column_type = "Text")]
    pub task_key: String,
    #[sea_orm(column_type = "Text")]
    pub dynamic_key: String,
    #[sea_orm(column_type = "Text")]
    pub name: String,
    #[sea_orm(column_type = "Json")]
    pub tags: Json,
    pub run_count: i32,
    /// Seconds spent in `RUNNING`.
    pub total_run_time: f64,
    pub start_time: Option<DateTimeUtc>,
    pub end_time: Option<DateTimeUtc>,
    // Current state (a copy of the latest `task_run_states` row).
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
        belongs_to = "super::flow_runs::Entity",
        from = "Column::FlowRunId",
        to = "super::flow_runs::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    FlowRuns,
    #[sea_orm(has_many = "super::task_run_states::Entity")]
    TaskRunStates,
}

impl Related<super::flow_runs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::FlowRuns.def()
    }
}

impl Related<super::task_run_states::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::TaskRunStates.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
