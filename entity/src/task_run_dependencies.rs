//! `task_run_dependencies`: edge upstream → downstream between task runs of one flow run.
//! `task_run_id` is the downstream task run; primary key (task_run_id, upstream_task_run_id).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "task_run_dependencies")]
pub struct Model {
    /// The downstream task run.
    #[sea_orm(primary_key, auto_increment = false)]
    pub task_run_id: Uuid,
    /// The task run it depends on.
    #[sea_orm(primary_key, auto_increment = false)]
    pub upstream_task_run_id: Uuid,
    pub workspace_id: Uuid,
    pub flow_run_id: Uuid,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::task_runs::Entity",
        from = "Column::TaskRunId",
        to = "super::task_runs::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    TaskRuns,
    #[sea_orm(
        belongs_to = "super::task_runs::Entity",
        from = "Column::UpstreamTaskRunId",
        to = "super::task_runs::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    UpstreamTaskRuns,
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
