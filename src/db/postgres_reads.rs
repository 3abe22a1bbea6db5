//! The hottest PostgreSQL reads (the statements of a dashboard page: the session's account, the
//! runs, their flows and deployments, nested task-run pages) run on connections of their own
//! instead of through sqlx's pool. sqlx 0.8 pings every connection as it goes back to its pool:
//! one more round trip to the server after each statement, and a ninth of a page's machine CPU.
//! These connections are reused as they are, checked with a ping only after a while unused;
//! a read cut short (its future dropped mid-statement) retires its connection rather than
//! hand on one with a reply still in flight.
//!
//! The most recently used connection is handed out first, so the busy few keep their plans
//! and caches warm (PostgreSQL plans each prepared statement afresh on its first five runs
//! per connection).
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{Manager, Metrics, Pool, QueueMode, RecycleError, RecycleResult};
use deadpool::Runtime;
use sea_orm::{DbErr, RuntimeErr, Statement};
use sea_query_binder::SqlxValues;
use sqlx::postgres::{PgConnectOptions, PgRow};
use sqlx::{Connection, PgConnection};

/// How long a read waits for a connection, or for a new one to open, before failing.
const WAIT: Duration = Duration::from_secs(30);

pub struct PostgresReads {
    pool: Pool<Connections>,
    statements: Arc<AtomicU64>,
}

struct Connections {
    options: PgConnectOptions,
    /// A connection unused this long is pinged before reuse (the server may have restarted or
    /// a firewall dropped it since).
    ping_after: Duration,
}

struct ReadConnection {
    connection: PgConnection,
    /// Set while a statement runs: still set when the connection comes back, the read was cut
    /// short or failed, and the connection is not reused.
    reading: bool,
}

impl Manager for Connections {
    type Type = ReadConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<ReadConnection, sqlx::Error> {
        Ok(ReadConnection {
            connection: PgConnection::connect_with(&self.options).await?,
            reading: false,
        })
    }

    async fn recycle(
        &self,
        read: &mut ReadConnection,
        metrics: &Metrics,
    ) -> RecycleResult<sqlx::Error> {
        if read.reading {
            return Err(RecycleError::message("its last read did not finish"));
        }
        if metrics.last_used() >= self.ping_after {
            read.connection.ping().await?;
        }
        Ok(())
    }
}

impl PostgresReads {
    pub fn new(
        options: PgConnectOptions,
        ping_after: Duration,
        statements: Arc<AtomicU64>,
    ) -> Result<Self, String> {
        let pool = Pool::builder(Connections {
            options,
            ping_after,
        })
        .max_size(super::hot_reads_at_once())
        .queue_mode(QueueMode::Lifo)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(WAIT))
        .create_timeout(Some(WAIT))
        .build()
        .map_err(|e| format!("DATABASE_URL: cannot set up PostgreSQL reads: {e}"))?;
        Ok(Self { pool, statements })
    }

    /// Runs `statement` and decodes each row with `decode`.
    pub async fn query<T>(
        &self,
        statement: Statement,
        decode: impl Fn(&PgRow) -> Result<T, sqlx::Error>,
    ) -> Result<Vec<T>, DbErr> {
        let mut read = self.pool.get().await.map_err(|e| {
            DbErr::Conn(RuntimeErr::Internal(format!(
                "no PostgreSQL connection for a read: {e}"
            )))
        })?;
        self.statements.fetch_add(1, Ordering::Relaxed);
        read.reading = true;
        let values = statement.values.unwrap_or(sea_orm::Values(Vec::new()));
        let rows = sqlx::query_with(&statement.sql, SqlxValues(values))
            .fetch_all(&mut read.connection)
            .await
            .map_err(|e| DbErr::Query(RuntimeErr::SqlxError(e)))?;
        read.reading = false;
        drop(read);
        rows.iter()
            .map(|row| decode(row).map_err(|e| DbErr::Type(e.to_string())))
            .collect()
    }
}
