//! Retention markers: the newest cursor deleted from the event log and from the logs, per
//! workspace, so a subscriber resuming from an older cursor is told instead of silently
//! missing events.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Workspaces {
    Table,
    EventsPrunedSeq,
    LogsPrunedSeq,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite cannot add several in one ALTER TABLE.
        for column in [Workspaces::EventsPrunedSeq, Workspaces::LogsPrunedSeq] {
            m.alter_table(
                Table::alter()
                    .table(Workspaces::Table)
                    .add_column(ColumnDef::new(column).big_integer().not_null().default(0))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in [Workspaces::EventsPrunedSeq, Workspaces::LogsPrunedSeq] {
            m.alter_table(
                Table::alter()
                    .table(Workspaces::Table)
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
