//! `logs`: log lines of a flow run (optionally a task run).
//! `level` is numeric: DEBUG 10, INFO 20, WARNING 30, ERROR 40, CRITICAL 50.
//! `seq` is the workspace event cursor at which the line was committed.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "logs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub seq: i64,
    pub flow_run_id: Uuid,
    pub task_run_id: Option<Uuid>,
    pub level: i32,
    #[sea_orm(column_type = "Text")]
    pub name: String,
    #[sea_orm(column_type = "Text")]
    pub message: String,
    pub timestamp: DateTimeUtc,
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
    #[sea_orm(
        belongs_to = "super::task_runs::Entity",
        from = "Column::TaskRunId",
        to = "super::task_runs::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    TaskRuns,
}

impl Related<super::flow_runs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::FlowRuns.def()
    }
}

impl Related<super::task_runs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::TaskRuns.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
