//! A workspace's event cursor counter moves off the `workspaces` row into a table of its own.
//!
//! Every insert into a table with a foreign key to `workspaces` (events, logs, alerts, states…)
//! takes a KEY SHARE lock on the workspace row, and every writing transaction bumped the counter
//! on that same row. On PostgreSQL each bump then records its updater and the concurrent
//! key-share lockers together as a MultiXact, and every later read of the row's version chain
//! resolves those members: under 16 concurrent writers that was ~18 % of all CPU on the machine
//! (perf: `GetMultiXactIdMembers` under `heap_hot_search_buffer`). Nothing points at the counter
//! row, so its updates stay plain.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum EventCounters {
    Table,
    WorkspaceId,
    LastEventSeq,
}

#[derive(DeriveIden)]
enum Workspaces {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(EventCounters::Table)
                .col(
                    ColumnDef::new(EventCounters::WorkspaceId)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(EventCounters::LastEventSeq)
                        .big_integer()
                        .not_null()
                        .default(0),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_event_counters_workspace")
                        .from(EventCounters::Table, EventCounters::WorkspaceId)
                        .to(Workspaces::Table, Workspaces::Id)
                        .on_delete(ForeignKeyAction::Cascade)
                        .on_update(ForeignKeyAction::NoAction),
                )
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        if m.get_database_backend() == sea_orm_migration::sea_orm::DbBackend::Postgres {
            // Another process still running the old code may bump a counter between the copy
            // and the drop; that bump would be lost and its cursor handed out twice. Hold such
            // writers off until this migration commits (their UPDATE then fails and rolls back).
            db.execute_unprepared(r#"LOCK TABLE "workspaces" IN EXCLUSIVE MODE"#)
                .await?;
        }
        db.execute_unprepared(
            r#"INSERT INTO "event_counters" ("workspace_id", "last_event_seq") SELECT "id", "last_event_seq" FROM "workspaces""#,
        )
        .await?;
        // SQLite has dropped columns since 3.35 (the bundled one is newer).
        db.execute_unprepared(r#"ALTER TABLE "workspaces" DROP COLUMN "last_event_seq""#)
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        db.execute_unprepared(
            r#"ALTER TABLE "workspaces" ADD COLUMN "last_event_seq" bigint NOT NULL DEFAULT 0"#,
        )
        .await?;
        db.execute_unprepared(
            r#"UPDATE "workspaces" SET "last_event_seq" = COALESCE((SELECT "last_event_seq" FROM "event_counters" WHERE "workspace_id" = "workspaces"."id"), 0)"#,
        )
        .await?;
        m.drop_table(Table::drop().table(EventCounters::Table).to_owned())
            .await
    }
}
