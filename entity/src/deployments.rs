//! `deployments`: a flow packaged to run server-side, with an optional schedule.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "deployments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub flow_id: Uuid,
    #[sea_orm(column_type = "Text")]
    pub name: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub description: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub schedule_cron: Option<String>,
    pub schedule_interval_seconds: Option<i64>,
    pub schedule_anchor_date: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text", nullable)]
    pub schedule_rrule: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub schedule_timezone: Option<String>,
    pub is_schedule_active: bool,
    #[sea_orm(column_type = "Json")]
    pub parameters: Json,
    #[sea_orm(column_type = "Json")]
    pub tags: Json,
    #[sea_orm(column_type = "Text", nullable)]
    pub entrypoint: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub work_queue_name: Option<String>,
    pub storage_block_id: Option<Uuid>,
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
        belongs_to = "super::storage_blocks::Entity",
        from = "Column::StorageBlockId",
        to = "super::storage_blocks::Column::Id",
        on_update = "NoAction",
        on_delete = "SetNull"
    )]
    StorageBlocks,
    #[sea_orm(has_many = "super::flow_runs::Entity")]
    FlowRuns,
}

impl Related<super::flows::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Flows.def()
    }
}

impl Related<super::storage_blocks::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::StorageBlocks.def()
    }
}

impl Related<super::flow_runs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::FlowRuns.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
