//! Migrations that move data keep it, both ways, on the server's live database.
use entity::event_counters;
use migration::{Migrator, MigratorTrait};
use sea_orm::sea_query::{Alias, Expr, Query};
use sea_orm::{ConnectionTrait, EntityTrait};
use serde_json::json;
use uuid::Uuid;

use crate::orchestration::world;

async fn counter(db: &sea_orm::DatabaseConnection, ws: Uuid) -> i64 {
    event_counters::Entity::find_by_id(ws)
        .one(db)
        .await
        .expect("read event_counters")
        .expect("the workspace has a counter row")
        .last_event_seq
}

async fn counter_on_workspace_row(db: &sea_orm::DatabaseConnection, ws: Uuid) -> i64 {
    let statement = db.get_database_backend().build(
        Query::select()
            .expr_as(Expr::col(Alias::new("last_event_seq")), Alias::new("n"))
            .from(Alias::new("workspaces"))
            .and_where(Expr::col(Alias::new("id")).eq(ws)),
    );
    db.query_one(statement)
        .await
        .expect("read workspaces.last_event_seq")
        .expect("the workspace row")
        .try_get::<i64>("", "n")
        .expect("an integer")
}

#[tokio::test]
async fn the_event_counter_keeps_its_value_moving_off_the_workspace_row_and_back() {
    let w = world("counter-move").await;
    let run = w.run_id(json!({})).await;
    w.set_state(run, json!({ "type": "PENDING" })).await;
    let before = counter(&w.app.db, w.ws).await;
    assert!(before >= 2, "a run and a transition wrote events: {before}");

    Migrator::down(&w.app.db, Some(1)).await.expect("down");
    assert_eq!(counter_on_workspace_row(&w.app.db, w.ws).await, before);

    Migrator::up(&w.app.db, None).await.expect("up");
    assert_eq!(counter(&w.app.db, w.ws).await, before);
    // Writers carry on from the same cursor.
    w.set_state(run, json!({ "type": "RUNNING" })).await;
    assert_eq!(counter(&w.app.db, w.ws).await, before + 1);
}
