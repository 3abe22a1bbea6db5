//! Due runs are found by the time their current `SCHEDULED` state is for: the late-run detector
//! across workspaces (by state name), and claiming within a workspace's queue.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum FlowRuns {
    Table,
    StateType,
    StateName,
    StateScheduledTime,
    WorkspaceId,
    WorkQueueName,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("ix_flow_runs_late_candidates")
                .table(FlowRuns::Table)
                .col(FlowRuns::StateType)
                .col(FlowRuns::StateName)
                .col(FlowRuns::StateScheduledTime)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_flow_runs_queue_due")
                .table(FlowRuns::Table)
                .col(FlowRuns::WorkspaceId)
                .col(FlowRuns::WorkQueueName)
                .col(FlowRuns::StateType)
                .col(FlowRuns::StateScheduledTime)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("ix_flow_runs_queue_due")
                .table(FlowRuns::Table)
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("ix_flow_runs_late_candidates")
                .table(FlowRuns::Table)
                .to_owned(),
        )
        .await
    }
}
