//! The database layer's own connections for hot reads.
use sea_orm::Statement;

use crate::helpers::spawn_app;

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

/// PostgreSQL hot reads keep their connections between statements (no ping on the way back).
/// A read abandoned mid-statement must not hand its connection, reply still to come, to the
/// next read: that one runs on a fresh connection, not behind the abandoned statement.
#[tokio::test]
async fn a_read_cut_short_retires_its_connection() {
    let app = spawn_app().await;
    if !app.is_postgres() {
        println!("skipped: SQLite reads run to the end on a thread of their own");
        return;
    }
    let db = app.state.db.clone();
    let read = |sql: &str| {
        let db = db.clone();
        let statement = Statement::from_string(sea_orm::DbBackend::Postgres, sql.to_owned());
        async move { db.read_by_position::<Number>(statement, 1).await }
    };
    // Warm the pool: the next read reuses this connection (most recently used first).
    let Number(first_backend) = read("SELECT pg_backend_pid()").await.unwrap().remove(0);

    let abandoned = tokio::spawn(read("SELECT pg_backend_pid() FROM pg_sleep(60)"));
    // Wait until the statement runs on the server, then drop the read.
    loop {
        let running = app
            .count_rows(
                "pg_stat_activity",
                &format!("pid = {first_backend} AND query LIKE '%pg_sleep(60)%'"),
            )
            .await;
        if running == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    abandoned.abort();
    assert!(abandoned.await.unwrap_err().is_cancelled());

    let Number(next_backend) = read("SELECT pg_backend_pid()").await.unwrap().remove(0);
    assert_ne!(
        next_backend, first_backend,
        "the next read waited on the abandoned statement's connection"
    );
    // The abandoned backend is still sleeping; end it rather than wait out the minute.
    app.execute_sql(&format!("SELECT pg_terminate_backend({first_backend})"))
        .await;
}
