//! Orchestration tables: flows, storage, work queues, deployments, flow runs, task runs,
//! their state histories, task run dependencies, logs, alerts, the event log and leases.
//!
//! Works unchanged on SQLite and PostgreSQL. Every per-workspace table references
//! `workspaces(id)` (created by `m20261126_000001_foundation`) with ON DELETE CASCADE.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn workspaces() -> Alias {
    Alias::new("workspaces")
}

fn workspaces_id() -> Alias {
    Alias::new("id")
}

/// `workspace_id uuid not null` column.
fn workspace_id_col<T: IntoIden + 'static>(col: T) -> ColumnDef {
    ColumnDef::new(col).uuid().not_null().to_owned()
}

/// Foreign key from `table.col` to `workspaces(id)` ON DELETE CASCADE.
fn fk_workspace<T, C>(name: &str, table: T, col: C) -> ForeignKeyCreateStatement
where
    T: IntoIden + 'static,
    C: IntoIden + 'static,
{
    ForeignKey::create()
        .name(name)
        .from(table, col)
        .to(workspaces(), workspaces_id())
        .on_delete(ForeignKeyAction::Cascade)
        .on_update(ForeignKeyAction::NoAction)
        .to_owned()
}

fn fk<T, C, RT, RC>(
    name: &str,
    table: T,
    col: C,
    ref_table: RT,
    ref_col: RC,
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement
where
    T: IntoIden + 'static,
    C: IntoIden + 'static,
    RT: IntoIden + 'static,
    RC: IntoIden + 'static,
{
    ForeignKey::create()
        .name(name)
        .from(table, col)
        .to(ref_table, ref_col)
        .on_delete(on_delete)
        .on_update(ForeignKeyAction::NoAction)
        .to_owned()
}

#[derive(DeriveIden)]
enum Flows {
    Table,
    Id,
    WorkspaceId,
    Name,
    Tags,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum StorageBlocks {
    Table,
    Id,
    WorkspaceId,
    Name,
    Kind,
    Settings,
    IsDefault,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WorkQueues {
    Table,
    Id,
    WorkspaceId,
    Name,
    Description,
    IsPaused,
    ConcurrencyLimit,
    Tags,
    DeploymentIds,
    LastPolledAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Deployments {
    Table,
    Id,
    WorkspaceId,
    FlowId,
    Name,
    Description,
    ScheduleCron,
    ScheduleIntervalSeconds,
    ScheduleAnchorDate,
    ScheduleRrule,
    ScheduleTimezone,
    IsScheduleActive,
    Parameters,
    Tags,
    Entrypoint,
    WorkQueueName,
    StorageBlockId,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum FlowRuns {
    Table,
    Id,
    WorkspaceId,
    FlowId,
    DeploymentId,
    WorkQueueName,
    Name,
    Parameters,
    Tags,
    IdempotencyKey,
    AutoScheduled,
    Retries,
    RetryDelaySeconds,
    RunCount,
    TotalRunTime,
    ExpectedStartTime,
    StartTime,
    EndTime,
    StateId,
    StateType,
    StateName,
    StateMessage,
    StateTimestamp,
    StateScheduledTime,
    StateTransitionId,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum FlowRunStates {
    Table,
    Id,
    WorkspaceId,
    FlowRunId,
    Type,
    Name,
    Message,
    Timestamp,
    ScheduledTime,
    TransitionId,
}

#[derive(DeriveIden)]
enum TaskRuns {
    Table,
    Id,
    WorkspaceId,
    FlowRunId,
    TaskKey,
    DynamicKey,
    Name,
    Tags,
    RunCount,
    TotalRunTime,
    StartTime,
    EndTime,
    StateId,
    StateType,
    StateName,
    StateMessage,
    StateTimestamp,
    StateScheduledTime,
    StateTransitionId,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum TaskRunStates {
    Table,
    Id,
    WorkspaceId,
    TaskRunId,
    Type,
    Name,
    Message,
    Timestamp,
    ScheduledTime,
    TransitionId,
}

#[derive(DeriveIden)]
enum TaskRunDependencies {
    Table,
    TaskRunId,
    UpstreamTaskRunId,
    WorkspaceId,
    FlowRunId,
}

#[derive(DeriveIden)]
enum Logs {
    Table,
    Id,
    WorkspaceId,
    Seq,
    FlowRunId,
    TaskRunId,
    Level,
    Name,
    Message,
    Timestamp,
}

#[derive(DeriveIden)]
enum RunAlerts {
    Table,
    Id,
    WorkspaceId,
    Seq,
    FlowRunId,
    Kind,
    Message,
    OccurredAt,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
    WorkspaceId,
    Seq,
    Kind,
    FlowRunId,
    TaskRunId,
    Payload,
    OccurredAt,
}

#[derive(DeriveIden)]
enum Leases {
    Table,
    Name,
    Holder,
    ExpiresAt,
}

fn index(name: &str) -> IndexCreateStatement {
    Index::create().name(name).to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // ---------------------------------------------------------------- flows
        manager
            .create_table(
                Table::create()
                    .table(Flows::Table)
                    .col(ColumnDef::new(Flows::Id).uuid().not_null().primary_key())
                    .col(workspace_id_col(Flows::WorkspaceId))
                    .col(ColumnDef::new(Flows::Name).text().not_null())
                    .col(ColumnDef::new(Flows::Tags).json().not_null())
                    .col(
                        ColumnDef::new(Flows::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Flows::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(&mut fk_workspace(
                        "fk_flows_workspace",
                        Flows::Table,
                        Flows::WorkspaceId,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ux_flows_workspace_name")
                    .table(Flows::Table)
                    .col(Flows::WorkspaceId)
                    .col(Flows::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;

        // ------------------------------------------------------- storage_blocks
        manager
            .create_table(
                Table::create()
                    .table(StorageBlocks::Table)
                    .col(
                        ColumnDef::new(StorageBlocks::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(workspace_id_col(StorageBlocks::WorkspaceId))
                    .col(ColumnDef::new(StorageBlocks::Name).text().not_null())
                    .col(ColumnDef::new(StorageBlocks::Kind).text().not_null())
                    .col(ColumnDef::new(StorageBlocks::Settings).json().not_null())
                    .col(
                        ColumnDef::new(StorageBlocks::IsDefault)
                            .boolean()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(StorageBlocks::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(StorageBlocks::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(&mut fk_workspace(
                        "fk_storage_blocks_workspace",
                        StorageBlocks::Table,
                        StorageBlocks::WorkspaceId,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ux_storage_blocks_workspace_name")
                    .table(StorageBlocks::Table)
                    .col(StorageBlocks::WorkspaceId)
                    .col(StorageBlocks::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;

        // ---------------------------------------------------------- work_queues
        manager
            .create_table(
                Table::create()
                    .table(WorkQueues::Table)
                    .col(
                        ColumnDef::new(WorkQueues::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(workspace_id_col(WorkQueues::WorkspaceId))
                    .col(ColumnDef::new(WorkQueues::Name).text().not_null())
                    .col(ColumnDef::new(WorkQueues::Description).text().null())
                    .col(ColumnDef::new(WorkQueues::IsPaused).boolean().not_null())
                    .col(
                        ColumnDef::new(WorkQueues::ConcurrencyLimit)
                            .integer()
                            .null(),
                    )
                    .col(ColumnDef::new(WorkQueues::Tags).json().not_null())
                    .col(ColumnDef::new(WorkQueues::DeploymentIds).json().not_null())
                    .col(
                        ColumnDef::new(WorkQueues::LastPolledAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(WorkQueues::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WorkQueues::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(&mut fk_workspace(
                        "fk_work_queues_workspace",
                        WorkQueues::Table,
                        WorkQueues::WorkspaceId,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ux_work_queues_workspace_name")
                    .table(WorkQueues::Table)
                    .col(WorkQueues::WorkspaceId)
                    .col(WorkQueues::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;

        // ---------------------------------------------------------- deployments
        manager
            .create_table(
                Table::create()
                    .table(Deployments::Table)
                    .col(
                        ColumnDef::new(Deployments::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(workspace_id_col(Deployments::WorkspaceId))
                    .col(ColumnDef::new(Deployments::FlowId).uuid().not_null())
                    .col(ColumnDef::new(Deployments::Name).text().not_null())
                    .col(ColumnDef::new(Deployments::Description).text().null())
                    .col(ColumnDef::new(Deployments::ScheduleCron).text().null())
                    .col(
                        ColumnDef::new(Deployments::ScheduleIntervalSeconds)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Deployments::ScheduleAnchorDate)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(Deployments::ScheduleRrule).text().null())
                    .col(ColumnDef::new(Deployments::ScheduleTimezone).text().null())
                    .col(
                        ColumnDef::new(Deployments::IsScheduleActive)
                            .boolean()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Deployments::Parameters).json().not_null())
                    .col(ColumnDef::new(Deployments::Tags).json().not_null())
                    .col(ColumnDef::new(Deployments::Entrypoint).text().null())
                    .col(ColumnDef::new(Deployments::WorkQueueName).text().null())
                    .col(ColumnDef::new(Deployments::StorageBlockId).uuid().null())
                    .col(
                        ColumnDef::new(Deployments::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Deployments::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(&mut fk_workspace(
                        "fk_deployments_workspace",
                        Deployments::Table,
                        Deployments::WorkspaceId,
                    ))
                    .foreign_key(&mut fk(
                        "fk_deployments_flow",
                        Deployments::Table,
                        Deployments::FlowId,
                        Flows::Table,
                        Flows::Id,
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_deployments_storage_block",
                        Deployments::Table,
                        Deployments::StorageBlockId,
                        StorageBlocks::Table,
                        StorageBlocks::Id,
                        ForeignKeyAction::SetNull,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ux_deployments_flow_name")
                    .table(Deployments::Table)
                    .col(Deployments::FlowId)
                    .col(Deployments::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ix_deployments_workspace_created")
                    .table(Deployments::Table)
                    .col(Deployments::WorkspaceId)
                    .col(Deployments::CreatedAt)
                    .to_owned(),
            )
            .await?;
        // Helps ON DELETE SET NULL when a storage block is deleted.
        manager
            .create_index(
                index("ix_deployments_storage_block")
                    .table(Deployments::Table)
                    .col(Deployments::StorageBlockId)
                    .to_owned(),
            )
            .await?;

        // ------------------------------------------------------------ flow_runs
        manager
            .create_table(
                Table::create()
                    .table(FlowRuns::Table)
                    .col(ColumnDef::new(FlowRuns::Id).uuid().not_null().primary_key())
                    .col(workspace_id_col(FlowRuns::WorkspaceId))
                    .col(ColumnDef::new(FlowRuns::FlowId).uuid().not_null())
                    .col(ColumnDef::new(FlowRuns::DeploymentId).uuid().null())
                    .col(ColumnDef::new(FlowRuns::WorkQueueName).text().null())
                    .col(ColumnDef::new(FlowRuns::Name).text().not_null())
                    .col(ColumnDef::new(FlowRuns::Parameters).json().not_null())
                    .col(ColumnDef::new(FlowRuns::Tags).json().not_null())
                    .col(ColumnDef::new(FlowRuns::IdempotencyKey).text().null())
                    .col(ColumnDef::new(FlowRuns::AutoScheduled).boolean().not_null())
                    .col(ColumnDef::new(FlowRuns::Retries).integer().not_null())
                    .col(
                        ColumnDef::new(FlowRuns::RetryDelaySeconds)
                            .integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(FlowRuns::RunCount).integer().not_null())
                    .col(ColumnDef::new(FlowRuns::TotalRunTime).double().not_null())
                    .col(
                        ColumnDef::new(FlowRuns::ExpectedStartTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(FlowRuns::StartTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(FlowRuns::EndTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(FlowRuns::StateId).uuid().not_null())
                    .col(ColumnDef::new(FlowRuns::StateType).text().not_null())
                    .col(ColumnDef::new(FlowRuns::StateName).text().not_null())
                    .col(ColumnDef::new(FlowRuns::StateMessage).text().null())
                    .col(
                        ColumnDef::new(FlowRuns::StateTimestamp)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(FlowRuns::StateScheduledTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(FlowRuns::StateTransitionId).text().null())
                    .col(
                        ColumnDef::new(FlowRuns::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(FlowRuns::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(&mut fk_workspace(
                        "fk_flow_runs_workspace",
                        FlowRuns::Table,
                        FlowRuns::WorkspaceId,
                    ))
                    .foreign_key(&mut fk(
                        "fk_flow_runs_flow",
                        FlowRuns::Table,
                        FlowRuns::FlowId,
                        Flows::Table,
                        Flows::Id,
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_flow_runs_deployment",
                        FlowRuns::Table,
                        FlowRuns::DeploymentId,
                        Deployments::Table,
                        Deployments::Id,
                        ForeignKeyAction::SetNull,
                    ))
                    .to_owned(),
            )
            .await?;
        // NULL idempotency keys never collide (NULLs are distinct on SQLite and PostgreSQL).
        manager
            .create_index(
                index("ux_flow_runs_flow_idempotency_key")
                    .table(FlowRuns::Table)
                    .col(FlowRuns::FlowId)
                    .col(FlowRuns::IdempotencyKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ix_flow_runs_workspace_expected")
                    .table(FlowRuns::Table)
                    .col(FlowRuns::WorkspaceId)
                    .col(FlowRuns::ExpectedStartTime)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ix_flow_runs_workspace_state_expected")
                    .table(FlowRuns::Table)
                    .col(FlowRuns::WorkspaceId)
                    .col(FlowRuns::StateType)
                    .col(FlowRuns::ExpectedStartTime)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ix_flow_runs_workspace_created")
                    .table(FlowRuns::Table)
                    .col(FlowRuns::WorkspaceId)
                    .col(FlowRuns::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ix_flow_runs_deployment_expected")
                    .table(FlowRuns::Table)
                    .col(FlowRuns::DeploymentId)
                    .col(FlowRuns::ExpectedStartTime)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ix_flow_runs_workspace_queue_state_expected")
                    .table(FlowRuns::Table)
                    .col(FlowRuns::WorkspaceId)
                    .col(FlowRuns::WorkQueueName)
                    .col(FlowRuns::StateType)
                    .col(FlowRuns::ExpectedStartTime)
                    .to_owned(),
            )
            .await?;

        // ------------------------------------------------------ flow_run_states
        manager
            .create_table(
                Table::create()
                    .table(FlowRunStates::Table)
                    .col(
                        ColumnDef::new(FlowRunStates::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(workspace_id_col(FlowRunStates::WorkspaceId))
                    .col(ColumnDef::new(FlowRunStates::FlowRunId).uuid().not_null())
                    .col(ColumnDef::new(FlowRunStates::Type).text().not_null())
                    .col(ColumnDef::new(FlowRunStates::Name).text().not_null())
                    .col(ColumnDef::new(FlowRunStates::Message).text().null())
                    .col(
                        ColumnDef::new(FlowRunStates::Timestamp)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(FlowRunStates::ScheduledTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(FlowRunStates::TransitionId).text().null())
                    .foreign_key(&mut fk_workspace(
                        "fk_flow_run_states_workspace",
                        FlowRunStates::Table,
                        FlowRunStates::WorkspaceId,
                    ))
                    .foreign_key(&mut fk(
                        "fk_flow_run_states_flow_run",
                        FlowRunStates::Table,
                        FlowRunStates::FlowRunId,
                        FlowRuns::Table,
                        FlowRuns::Id,
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ix_flow_run_states_flow_run_timestamp")
                    .table(FlowRunStates::Table)
                    .col(FlowRunStates::FlowRunId)
                    .col(FlowRunStates::Timestamp)
                    .to_owned(),
            )
            .await?;

        // ------------------------------------------------------------ task_runs
        manager
            .create_table(
                Table::create()
                    .table(TaskRuns::Table)
                    .col(ColumnDef::new(TaskRuns::Id).uuid().not_null().primary_key())
                    .col(workspace_id_col(TaskRuns::WorkspaceId))
                    .col(ColumnDef::new(TaskRuns::FlowRunId).uuid().not_null())
                    .col(ColumnDef::new(TaskRuns::TaskKey).text().not_null())
                    .col(ColumnDef::new(TaskRuns::DynamicKey).text().not_null())
                    .col(ColumnDef::new(TaskRuns::Name).text().not_null())
                    .col(ColumnDef::new(TaskRuns::Tags).json().not_null())
                    .col(ColumnDef::new(TaskRuns::RunCount).integer().not_null())
                    .col(ColumnDef::new(TaskRuns::TotalRunTime).double().not_null())
                    .col(
                        ColumnDef::new(TaskRuns::StartTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(TaskRuns::EndTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(TaskRuns::StateId).uuid().not_null())
                    .col(ColumnDef::new(TaskRuns::StateType).text().not_null())
                    .col(ColumnDef::new(TaskRuns::StateName).text().not_null())
                    .col(ColumnDef::new(TaskRuns::StateMessage).text().null())
                    .col(
                        ColumnDef::new(TaskRuns::StateTimestamp)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TaskRuns::StateScheduledTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(TaskRuns::StateTransitionId).text().null())
                    .col(
                        ColumnDef::new(TaskRuns::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TaskRuns::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(&mut fk_workspace(
                        "fk_task_runs_workspace",
                        TaskRuns::Table,
                        TaskRuns::WorkspaceId,
                    ))
                    .foreign_key(&mut fk(
                        "fk_task_runs_flow_run",
                        TaskRuns::Table,
                        TaskRuns::FlowRunId,
                        FlowRuns::Table,
                        FlowRuns::Id,
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ux_task_runs_flow_run_task_key_dynamic_key")
                    .table(TaskRuns::Table)
                    .col(TaskRuns::FlowRunId)
                    .col(TaskRuns::TaskKey)
                    .col(TaskRuns::DynamicKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ix_task_runs_workspace_created")
                    .table(TaskRuns::Table)
                    .col(TaskRuns::WorkspaceId)
                    .col(TaskRuns::CreatedAt)
                    .to_owned(),
            )
            .await?;

        // ------------------------------------------------------ task_run_states
        manager
            .create_table(
                Table::create()
                    .table(TaskRunStates::Table)
                    .col(
                        ColumnDef::new(TaskRunStates::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(workspace_id_col(TaskRunStates::WorkspaceId))
                    .col(ColumnDef::new(TaskRunStates::TaskRunId).uuid().not_null())
                    .col(ColumnDef::new(TaskRunStates::Type).text().not_null())
                    .col(ColumnDef::new(TaskRunStates::Name).text().not_null())
                    .col(ColumnDef::new(TaskRunStates::Message).text().null())
                    .col(
                        ColumnDef::new(TaskRunStates::Timestamp)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TaskRunStates::ScheduledTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(TaskRunStates::TransitionId).text().null())
                    .foreign_key(&mut fk_workspace(
                        "fk_task_run_states_workspace",
                        TaskRunStates::Table,
                        TaskRunStates::WorkspaceId,
                    ))
                    .foreign_key(&mut fk(
                        "fk_task_run_states_task_run",
                        TaskRunStates::Table,
                        TaskRunStates::TaskRunId,
                        TaskRuns::Table,
                        TaskRuns::Id,
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ix_task_run_states_task_run_timestamp")
                    .table(TaskRunStates::Table)
                    .col(TaskRunStates::TaskRunId)
                    .col(TaskRunStates::Timestamp)
                    .to_owned(),
            )
            .await?;

        // ------------------------------------------------ task_run_dependencies
        manager
            .create_table(
                Table::create()
                    .table(TaskRunDependencies::Table)
                    .col(
                        ColumnDef::new(TaskRunDependencies::TaskRunId)
                            .uuid()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TaskRunDependencies::UpstreamTaskRunId)
                            .uuid()
                            .not_null(),
                    )
                    .col(workspace_id_col(TaskRunDependencies::WorkspaceId))
                    .col(
                        ColumnDef::new(TaskRunDependencies::FlowRunId)
                            .uuid()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .name("pk_task_run_dependencies")
                            .col(TaskRunDependencies::TaskRunId)
                            .col(TaskRunDependencies::UpstreamTaskRunId),
                    )
                    .foreign_key(&mut fk_workspace(
                        "fk_task_run_dependencies_workspace",
                        TaskRunDependencies::Table,
                        TaskRunDependencies::WorkspaceId,
                    ))
                    .foreign_key(&mut fk(
                        "fk_task_run_dependencies_task_run",
                        TaskRunDependencies::Table,
                        TaskRunDependencies::TaskRunId,
                        TaskRuns::Table,
                        TaskRuns::Id,
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_task_run_dependencies_upstream",
                        TaskRunDependencies::Table,
                        TaskRunDependencies::UpstreamTaskRunId,
                        TaskRuns::Table,
                        TaskRuns::Id,
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_task_run_dependencies_flow_run",
                        TaskRunDependencies::Table,
                        TaskRunDependencies::FlowRunId,
                        FlowRuns::Table,
                        FlowRuns::Id,
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ix_task_run_dependencies_flow_run")
                    .table(TaskRunDependencies::Table)
                    .col(TaskRunDependencies::FlowRunId)
                    .to_owned(),
            )
            .await?;
        // Cascading deletes of an upstream task run look rows up by this column.
        manager
            .create_index(
                index("ix_task_run_dependencies_upstream")
                    .table(TaskRunDependencies::Table)
                    .col(TaskRunDependencies::UpstreamTaskRunId)
                    .to_owned(),
            )
            .await?;

        // ----------------------------------------------------------------- logs
        manager
            .create_table(
                Table::create()
                    .table(Logs::Table)
                    .col(ColumnDef::new(Logs::Id).uuid().not_null().primary_key())
                    .col(workspace_id_col(Logs::WorkspaceId))
                    .col(ColumnDef::new(Logs::Seq).big_integer().not_null())
                    .col(ColumnDef::new(Logs::FlowRunId).uuid().not_null())
                    .col(ColumnDef::new(Logs::TaskRunId).uuid().null())
                    .col(ColumnDef::new(Logs::Level).integer().not_null())
                    .col(ColumnDef::new(Logs::Name).text().not_null())
                    .col(ColumnDef::new(Logs::Message).text().not_null())
                    .col(
                        ColumnDef::new(Logs::Timestamp)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(&mut fk_workspace(
                        "fk_logs_workspace",
                        Logs::Table,
                        Logs::WorkspaceId,
                    ))
                    .foreign_key(&mut fk(
                        "fk_logs_flow_run",
                        Logs::Table,
                        Logs::FlowRunId,
                        FlowRuns::Table,
                        FlowRuns::Id,
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_logs_task_run",
                        Logs::Table,
                        Logs::TaskRunId,
                        TaskRuns::Table,
                        TaskRuns::Id,
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ix_logs_flow_run_timestamp_id")
                    .table(Logs::Table)
                    .col(Logs::FlowRunId)
                    .col(Logs::Timestamp)
                    .col(Logs::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ix_logs_workspace_seq")
                    .table(Logs::Table)
                    .col(Logs::WorkspaceId)
                    .col(Logs::Seq)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ix_logs_workspace_timestamp")
                    .table(Logs::Table)
                    .col(Logs::WorkspaceId)
                    .col(Logs::Timestamp)
                    .to_owned(),
            )
            .await?;

        // ----------------------------------------------------------- run_alerts
        manager
            .create_table(
                Table::create()
                    .table(RunAlerts::Table)
                    .col(
                        ColumnDef::new(RunAlerts::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(workspace_id_col(RunAlerts::WorkspaceId))
                    .col(ColumnDef::new(RunAlerts::Seq).big_integer().not_null())
                    .col(ColumnDef::new(RunAlerts::FlowRunId).uuid().not_null())
                    .col(ColumnDef::new(RunAlerts::Kind).text().not_null())
                    .col(ColumnDef::new(RunAlerts::Message).text().not_null())
                    .col(
                        ColumnDef::new(RunAlerts::OccurredAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(&mut fk_workspace(
                        "fk_run_alerts_workspace",
                        RunAlerts::Table,
                        RunAlerts::WorkspaceId,
                    ))
                    .foreign_key(&mut fk(
                        "fk_run_alerts_flow_run",
                        RunAlerts::Table,
                        RunAlerts::FlowRunId,
                        FlowRuns::Table,
                        FlowRuns::Id,
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ix_run_alerts_workspace_occurred")
                    .table(RunAlerts::Table)
                    .col(RunAlerts::WorkspaceId)
                    .col(RunAlerts::OccurredAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ix_run_alerts_workspace_seq")
                    .table(RunAlerts::Table)
                    .col(RunAlerts::WorkspaceId)
                    .col(RunAlerts::Seq)
                    .to_owned(),
            )
            .await?;
        // Cascading deletes of a flow run look alerts up by this column.
        manager
            .create_index(
                index("ix_run_alerts_flow_run")
                    .table(RunAlerts::Table)
                    .col(RunAlerts::FlowRunId)
                    .to_owned(),
            )
            .await?;

        // --------------------------------------------------------------- events
        // SQLite: `integer NOT NULL PRIMARY KEY AUTOINCREMENT`; PostgreSQL: `bigserial`.
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .col(
                        ColumnDef::new(Events::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(workspace_id_col(Events::WorkspaceId))
                    .col(ColumnDef::new(Events::Seq).big_integer().not_null())
                    .col(ColumnDef::new(Events::Kind).text().not_null())
                    .col(ColumnDef::new(Events::FlowRunId).uuid().null())
                    .col(ColumnDef::new(Events::TaskRunId).uuid().null())
                    .col(ColumnDef::new(Events::Payload).json().not_null())
                    .col(
                        ColumnDef::new(Events::OccurredAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(&mut fk_workspace(
                        "fk_events_workspace",
                        Events::Table,
                        Events::WorkspaceId,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ux_events_workspace_seq")
                    .table(Events::Table)
                    .col(Events::WorkspaceId)
                    .col(Events::Seq)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ix_events_occurred")
                    .table(Events::Table)
                    .col(Events::OccurredAt)
                    .to_owned(),
            )
            .await?;

        // --------------------------------------------------------------- leases
        // Server-wide (leader election), so no workspace_id.
        manager
            .create_table(
                Table::create()
                    .table(Leases::Table)
                    .col(ColumnDef::new(Leases::Name).text().not_null().primary_key())
                    .col(ColumnDef::new(Leases::Holder).text().not_null())
                    .col(
                        ColumnDef::new(Leases::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;

        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Reverse creation order; indexes go with their tables.
        let tables: [DynIden; 13] = [
            Leases::Table.into_iden(),
            Events::Table.into_iden(),
            RunAlerts::Table.into_iden(),
            Logs::Table.into_iden(),
            TaskRunDependencies::Table.into_iden(),
            TaskRunStates::Table.into_iden(),
            TaskRuns::Table.into_iden(),
            FlowRunStates::Table.into_iden(),
            FlowRuns::Table.into_iden(),
            Deployments::Table.into_iden(),
            WorkQueues::Table.into_iden(),
            StorageBlocks::Table.into_iden(),
            Flows::Table.into_iden(),
        ];
        for table in tables {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
