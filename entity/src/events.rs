//! `events`: the shared, per-workspace event log behind subscription cursors.
//! `id` is a database-assigned auto-increment key; `seq` is the per-workspace cursor
//! (unique with `workspace_id`). `flow_run_id` / `task_run_id` carry no foreign key, so
//! events outlive the runs they describe until retention removes them.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub workspace_id: Uuid,
    pub seq: i64,
    #[sea_orm(column_type = "Text")]
    pub kind: String,
    pub flow_run_id: Option<Uuid>,
    pub task_run_id: Option<Uuid>,
    #[sea_orm(column_type = "Json")]
    pub payload: Json,
    pub occurred_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
