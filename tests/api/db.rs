//! The database layer's own connections for hot reads.
use sea_orm::Statement;

use crate::helpers::{spawn_app, TestApp};

/// A row of one integer column.
#[derive(Debug)]
struct Number(i32);

impl sea_orm::FromQueryResult for Number {
    fn from_query_result(row: &sea_orm::QueryResult, _: &str) -> Result<Self, sea_orm::DbErr> {
        Ok(Self(row.try_get_by_index(0)?))
    }
}

impl flowcloud::db::ByPosition for Number {
    fn from_row<R: flowcloud::db::PositionalRow>(row: &R) -> Result<Self, R::Error> {
        Ok(Self(row.column(0)?))
    }
}

/// A server on a fresh PostgreSQL database; `None` (the test is skipped) on SQLite, whose
/// reads share no connections.
async fn app_on_postgres() -> Option<TestApp> {
    let app = spawn_app().await;
    if !app.is_postgres() {
        println!("skipped: SQLite reads do not share connections");
        return None;
    }
    Some(app)
}

/// `sql`'s rows through the hot-read path.
async fn read_numbers(db: flowcloud::db::Db, sql: String) -> Result<Vec<Number>, sea_orm::DbErr> {
    db.read_by_position::<Number>(Statement::from_string(sea_orm::DbBackend::Postgres, sql), 1)
        .await
}

/// PostgreSQL hot reads share a few pipelined connections, where one statement holds up those
/// behind it: one that runs past the limit is cancelled there and answered from a connection
/// of its own, so it still succeeds.
#[tokio::test]
async fn a_hot_read_too_long_for_a_shared_connection_is_answered_from_another() {
    let Some(app) = app_on_postgres().await else {
        return;
    };
    let limit = flowcloud::db::postgres_reads::PIPELINED_STATEMENT_LIMIT;
    let sql = format!("SELECT 42 FROM pg_sleep({})", (limit * 2).as_secs_f64());
    let before = app.statement_count();
    let rows = read_numbers(app.state.db.clone(), sql).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, 42);
    assert_eq!(
        app.statement_count() - before,
        1,
        "counted once, where it ran to the end"
    );
}

/// Reads abandoned while their statements run leave the shared connections in order: the
/// reads after them get their own rows.
#[tokio::test]
async fn reads_cut_short_leave_the_next_reads_their_own_rows() {
    let Some(app) = app_on_postgres().await else {
        return;
    };
    let read = |sql: String| read_numbers(app.state.db.clone(), sql);
    let abandoned: Vec<_> = (0..4)
        .map(|i| tokio::spawn(read(format!("SELECT {i} FROM pg_sleep(0.1)"))))
        .collect();
    // Until the server runs one of them (or they are done), then drop them all.
    while !abandoned.iter().all(|task| task.is_finished())
        && app
            .count_rows("pg_stat_activity", "query LIKE '%FROM pg_sleep(0.1)'")
            .await
            == 0
    {
        tokio::task::yield_now().await;
    }
    for task in &abandoned {
        task.abort();
    }
    for n in 100..110 {
        let rows = read(format!("SELECT {n}")).await.unwrap();
        assert_eq!(rows[0].0, n);
    }
}

/// A `DATABASE_URL` setting that only sqlx takes (tokio-postgres would refuse the URL) does
/// not stop the pipelined reads: their connections take the server, user and database sqlx
/// resolved, and pages are served all the same.
#[tokio::test]
async fn a_url_with_a_setting_only_sqlx_takes_still_serves_pages() {
    let app = crate::helpers::spawn_app_with(|config| {
        if config.database_url.starts_with("postgres") {
            let separator = if config.database_url.contains('?') {
                '&'
            } else {
                '?'
            };
            config.database_url = format!(
                "{}{separator}statement-cache-capacity=50",
                config.database_url
            );
        }
    })
    .await;
    let ada = app.sign_up("ada").await;
    let workspace = app.create_workspace(&ada, "ada-ws").await;
    let response = app
        .gql_as(
            &ada.token,
            "query($ws: UUID!) { workspace(id: $ws) { handle flowRuns(first: 5) { totalCount nodes { id } } } }",
            serde_json::json!({ "ws": workspace }),
        )
        .await;
    let workspace = &crate::helpers::data(&response)["workspace"];
    assert_eq!(workspace["handle"], "ada-ws");
    assert_eq!(workspace["flowRuns"]["totalCount"], 0);
}
