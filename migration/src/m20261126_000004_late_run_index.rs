//! The late-run detector looks across workspaces for `SCHEDULED` runs named `Scheduled` by
//! expected start time; this index answers that without a scan.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum FlowRuns {
    Table,
    StateType,
    StateName,
    ExpectedStartTime,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("ix_flow_runs_state_name_expected")
                .table(FlowRuns::Table)
                .col(FlowRuns::StateType)
                .col(FlowRuns::StateName)
                .col(FlowRuns::ExpectedStartTime)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("ix_flow_runs_state_name_expected")
                .table(FlowRuns::Table)
                .to_owned(),
        )
        .await
    }
}
