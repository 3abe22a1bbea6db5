//! `event_counters`: the last event cursor handed out in each workspace, bumped in every
//! transaction that writes events, logs or alerts. Kept off the `workspaces` row, which every
//! foreign key points at (see migration `m20261127_000006_event_counters`).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "event_counters")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: Uuid,
    pub last_event_seq: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
