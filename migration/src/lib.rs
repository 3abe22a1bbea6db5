//! Database migrations: one file per migration, never edited once landed.
pub use sea_orm_migration::prelude::*;

mod m20261126_000001_foundation;
mod m20261126_000002_orchestration;
mod m20261126_000003_event_retention;
mod m20261126_000004_late_run_index;
mod m20261127_000005_page_order_indexes;
mod m20261127_000006_event_counters;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_foundation::Migration),
            Box::new(m20261126_000002_orchestration::Migration),
            Box::new(m20261126_000003_event_retention::Migration),
            Box::new(m20261126_000004_late_run_index::Migration),
            Box::new(m20261127_000005_page_order_indexes::Migration),
            Box::new(m20261127_000006_event_counters::Migration),
        ]
    }
}
