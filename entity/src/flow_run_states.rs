//! `flow_run_states`: the state history of a flow run (oldest first by `timestamp`).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "flow_run_states")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub flow_run_id: Uuid,
    /// State type (`SCHEDULED`, `RUNNING`, …); column `type`, `Column::Type`.
    #[sea_orm(column_type = "Text")]
    pub r#type: String,
    #[sea_orm(column_type = "Text")]
    pub name: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub message: Option<String>,
    pub timestamp: DateTimeUtc,
    pub scheduled_time: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text", nullable)]
    pub transition_id: Option<String>,
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
}

impl Related<super::flow_runs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::FlowRuns.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
