//! `run_alerts`: a run became late, failed or crashed (`kind`: `LATE`, `FAILED`, `CRASHED`).
//! `seq` is the workspace event cursor at which the alert was committed.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "run_alerts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub seq: i64,
    pub flow_run_id: Uuid,
    #[sea_orm(column_type = "Text")]
    pub kind: String,
    #[sea_orm(column_type = "Text")]
    pub message: String,
    pub occurred_at: DateTimeUtc,
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
