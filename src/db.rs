//! Database connections. On SQLite every write goes through one writer connection, so
//! concurrent writers queue instead of failing with "database is locked"; reads run in
//! parallel under WAL. On PostgreSQL both handles share one pool.
use std::str::FromStr;
use std::time::Duration;

use sea_orm::{DatabaseConnection, DbBackend, SqlxPostgresConnector, SqlxSqliteConnector};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

#[derive(Clone)]
pub struct Db {
    read: DatabaseConnection,
    write: DatabaseConnection,
    backend: DbBackend,
    postgres_pool: Option<sqlx::PgPool>,
}

impl Db {
    pub async fn connect(url: &str) -> Result<Self, String> {
        if url.starts_with("postgres") {
            let pool = PgPoolOptions::new()
                .max_connections(32)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .connect(url)
                .await
                .map_err(|e| format!("DATABASE_URL: cannot connect to PostgreSQL: {e}"))?;
            let conn = SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone());
            return Ok(Self {
                read: conn.clone(),
                write: conn,
                backend: DbBackend::Postgres,
                postgres_pool: Some(pool),
            });
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| format!("DATABASE_URL: {e}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(120))
            .connect_with(options.clone())
            .await
            .map_err(|e| format!("DATABASE_URL: cannot open SQLite database: {e}"))?;
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options)
                .await
                .map_err(|e| format!("DATABASE_URL: cannot open SQLite database: {e}"))?
        };
        Ok(Self {
            read: SqlxSqliteConnector::from_sqlx_sqlite_pool(reader),
            write: SqlxSqliteConnector::from_sqlx_sqlite_pool(writer),
            backend: DbBackend::Sqlite,
            postgres_pool: None,
        })
    }

    /// For queries. Never write through it (on SQLite it is read-only).
    pub fn read(&self) -> &DatabaseConnection {
        &self.read
    }

    /// For every change; open transactions on it.
    pub fn write(&self) -> &DatabaseConnection {
        &self.write
    }

    pub fn backend(&self) -> DbBackend {
        self.backend
    }

    pub fn is_postgres(&self) -> bool {
        self.backend == DbBackend::Postgres
    }

    /// The raw pool, for LISTEN/NOTIFY and advisory locks.
    pub fn postgres_pool(&self) -> Option<&sqlx::PgPool> {
        self.postgres_pool.as_ref()
    }
}
