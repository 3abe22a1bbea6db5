//! Run pages are ordered by a key plus `id` as the tie-break (stable cursors). Indexes that stop
//! at the key leave the database sorting each page's tail in a temporary B-tree; these end in
//! `id`, so a page is read straight off the index. They replace the shorter ones.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum FlowRuns {
    Table,
    Id,
    WorkspaceId,
    DeploymentId,
    StateType,
    ExpectedStartTime,
    CreatedAt,
    Name,
}

#[derive(DeriveIden)]
enum TaskRuns {
    Table,
    Id,
    FlowRunId,
    CreatedAt,
}

/// (new index, its columns, the index it replaces)
fn flow_run_indexes() -> Vec<(&'static str, Vec<FlowRuns>, Option<&'static str>)> {
    use FlowRuns::*;
    vec![
        (
            "ix_flow_runs_workspace_expected_id",
            vec![WorkspaceId, ExpectedStartTime, Id],
            Some("ix_flow_runs_workspace_expected"),
        ),
        (
            "ix_flow_runs_workspace_state_expected_id",
            vec![WorkspaceId, StateType, ExpectedStartTime, Id],
            Some("ix_flow_runs_workspace_state_expected"),
        ),
        (
            "ix_flow_runs_workspace_created_id",
            vec![WorkspaceId, CreatedAt, Id],
            Some("ix_flow_runs_workspace_created"),
        ),
        (
            "ix_flow_runs_deployment_expected_id",
            vec![DeploymentId, ExpectedStartTime, Id],
            Some("ix_flow_runs_deployment_expected"),
        ),
        (
            "ix_flow_runs_workspace_name_id",
            vec![WorkspaceId, Name, Id],
            None,
        ),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (name, columns, replaces) in flow_run_indexes() {
            let mut create = Index::create();
            create.name(name).table(FlowRuns::Table);
            for column in columns {
                create.col(column);
            }
            m.create_index(create.to_owned()).await?;
            if let Some(old) = replaces {
                m.drop_index(Index::drop().name(old).table(FlowRuns::Table).to_owned())
                    .await?;
            }
        }
        // A flow run's task runs, oldest first: the nested `taskRuns` page of every run.
        m.create_index(
            Index::create()
                .name("ix_task_runs_flow_run_created_id")
                .table(TaskRuns::Table)
                .col(TaskRuns::FlowRunId)
                .col(TaskRuns::CreatedAt)
                .col(TaskRuns::Id)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("ix_task_runs_flow_run_created_id")
                .table(TaskRuns::Table)
                .to_owned(),
        )
        .await?;
        for (name, mut columns, replaces) in flow_run_indexes() {
            if let Some(old) = replaces {
                // The replaced index is the new one without its trailing `id`.
                columns.pop();
                let mut create = Index::create();
                create.name(old).table(FlowRuns::Table);
                for column in columns {
                    create.col(column);
                }
                m.create_index(create.to_owned()).await?;
            }
            m.drop_index(Index::drop().name(name).table(FlowRuns::Table).to_owned())
                .await?;
        }
        Ok(())
    }
}
