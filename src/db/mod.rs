//! Database connections. On SQLite every write goes through one writer connection, so
//! concurrent writers queue instead of failing with "database is locked"; reads run in
//! parallel under WAL. On PostgreSQL both handles share one pool.
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, FromQueryResult,
    QueryResult, SqlxPostgresConnector, SqlxSqliteConnector, Statement, TransactionTrait,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub mod postgres_reads;
pub mod sqlite_reads;
pub mod wal_checkpoint;

use postgres_reads::PostgresReads;
use sqlite_reads::SqliteReads;
use wal_checkpoint::WalCheckpointer;

/// A PostgreSQL connection idle this long is pinged before use (the server may have restarted
/// or a firewall dropped it since); one used more recently is not (see `Db::connect`).
const PING_IDLE_PG_CONNECTIONS_AFTER: Duration = Duration::from_secs(5);

/// Shared connections for PostgreSQL's hot reads (see `postgres_reads`). Two kept a 2-core
/// machine's server processes busy (four measured the same).
const PIPELINED_CONNECTIONS: usize = 2;

/// The pipelined connections' settings: the server, user, database and options exactly as
/// sqlx resolved them (from the URL, then `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`,
/// `PGOPTIONS`), so both reach the same database; the password from the URL or `PGPASSWORD`
/// (one only in `.pgpass` fails to connect, and the reads stay with sqlx).
fn pipelined_config(url: &str, options: &PgConnectOptions) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    match options.get_socket() {
        Some(directory) => config.host_path(directory),
        None => config.host(options.get_host()),
    };
    config.port(options.get_port());
    config.user(options.get_username());
    if let Some(database) = options.get_database() {
        config.dbname(database);
    }
    if let Some(settings) = options.get_options() {
        config.options(settings);
    }
    if let Some(name) = options.get_application_name() {
        config.application_name(name);
    }
    let from_url = url::Url::parse(url).ok().and_then(|u| {
        u.password()
            .map(|p| percent_encoding::percent_decode_str(p).collect::<Vec<u8>>())
    });
    if let Some(password) =
        from_url.or_else(|| std::env::var_os("PGPASSWORD").map(|p| p.into_encoded_bytes()))
    {
        config.password(password);
    }
    config
}

/// How to reach PostgreSQL at `url`. A server on this host (loopback or a Unix socket) is
/// reached without TLS unless the URL (`sslmode=…`) or `PGSSLMODE` asks for it: encrypting
/// loopback traffic protects nothing (whoever can read it can read the server's memory) and
/// cost a tenth of the machine's CPU per dashboard page.
fn postgres_options(url: &str) -> Result<PgConnectOptions, String> {
    let options = PgConnectOptions::from_str(url).map_err(|e| format!("DATABASE_URL: {e}"))?;
    let parsed = url::Url::parse(url).map_err(|e| format!("DATABASE_URL: {e}"))?;
    let mode_given = std::env::var_os("PGSSLMODE").is_some()
        || parsed
            .query_pairs()
            .any(|(key, _)| key == "sslmode" || key == "ssl-mode");
    let host = options.get_host();
    let on_this_host = options.get_socket().is_some()
        || host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback());
    Ok(match on_this_host && !mode_given {
        true => options.ssl_mode(PgSslMode::Disable),
        false => options,
    })
}

/// Changes nothing, but as a write it makes SQLite take the write lock (waiting for it).
const TAKE_SQLITE_WRITE_LOCK: &str = "DELETE FROM seaql_migrations WHERE 0";

#[derive(Clone)]
pub struct Db {
    read: DatabaseConnection,
    write: DatabaseConnection,
    backend: DbBackend,
    postgres_pool: Option<sqlx::PgPool>,
    /// Hot reads that skip sqlx on a SQLite file (not an in-memory database).
    sqlite_reads: Option<Arc<SqliteReads>>,
    /// Hot reads that skip sqlx's pool on PostgreSQL.
    postgres_reads: Option<Arc<PostgresReads>>,
    /// Copies a SQLite file's write-ahead log back into it, off the writer's path.
    wal_checkpointer: Option<Arc<WalCheckpointer>>,
    /// SQL statements run so far, for tests that prove a request costs a constant number.
    statements: Arc<AtomicU64>,
}

fn counted(mut conn: DatabaseConnection, counter: &Arc<AtomicU64>) -> DatabaseConnection {
    let counter = counter.clone();
    conn.set_metric_callback(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    conn
}

impl Db {
    pub async fn connect(url: &str) -> Result<Self, String> {
        if url.starts_with("postgres") {
            let options = postgres_options(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(32)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                // sqlx pings a connection (a round trip to the server) as it goes back to the
                // pool, and by default again as it is taken out: two round trips more per
                // statement (without the second, a page took ~15 % less machine CPU). A
                // connection idle for less than `PING_IDLE_PG_CONNECTIONS_AFTER` passed its
                // release ping just now.
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= PING_IDLE_PG_CONNECTIONS_AFTER {
                            sqlx::Connection::ping(conn).await?;
                        }
                        Ok(true)
                    })
                })
                .connect_with(options.clone())
                .await
                .map_err(|e| format!("DATABASE_URL: cannot connect to PostgreSQL: {e}"))?;
            let statements = Arc::new(AtomicU64::new(0));
            // Over TLS the hot reads stay with sqlx (see `postgres_reads`).
            let postgres_reads = match options.get_ssl_mode() {
                PgSslMode::Disable => Some(Arc::new(PostgresReads::new(
                    pipelined_config(url, &options),
                    PIPELINED_CONNECTIONS,
                    statements.clone(),
                ))),
                _ => None,
            };
            let conn = counted(
                SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone()),
                &statements,
            );
            return Ok(Self {
                read: conn.clone(),
                write: conn,
                backend: DbBackend::Postgres,
                postgres_pool: Some(pool),
                sqlite_reads: None,
                postgres_reads,
                wal_checkpointer: None,
                statements,
            });
        }
        disable_sqlite_memory_statistics();
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| format!("DATABASE_URL: {e}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30))
            // Reads straight from the mapped file instead of a read() per page, a larger page
            // cache per connection, and sort/temp B-trees in memory.
            .pragma("mmap_size", "268435456")
            .pragma("cache_size", "-16000")
            .pragma("temp_store", "memory")
            .pragma(
                "wal_autocheckpoint",
                wal_checkpoint::WRITER_AUTOCHECKPOINT_PAGES.to_string(),
            )
            // A page of runs comes back in one go instead of stalling the worker thread at 50.
            .row_buffer_size(256);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let options_filename = &options.get_filename().to_path_buf();
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(120))
            .connect_with(options.clone())
            .await
            .map_err(|e| format!("DATABASE_URL: cannot open SQLite database: {e}"))?;
        let reader = if in_memory {
            writer.clone()
        } else {
            // Each SQLite connection has a worker thread of its own; many more of them than the
            // machine has cores only adds switching (pages/s fell as clients grew past 4 on 2 cores).
            let readers = std::thread::available_parallelism()
                .map_or(4, |n| n.get() * 2)
                .clamp(2, 8) as u32;
            SqlitePoolOptions::new()
                .max_connections(readers)
                // An in-process connection has no far end to lose; pinging it before every
                // query was a round trip to its worker thread per statement.
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options)
                .await
                .map_err(|e| format!("DATABASE_URL: cannot open SQLite database: {e}"))?
        };
        let statements = Arc::new(AtomicU64::new(0));
        let sqlite_reads =
            (!in_memory).then(|| Arc::new(SqliteReads::new(options_filename, statements.clone())));
        let wal_checkpointer = match in_memory {
            true => None,
            false => Some(Arc::new(WalCheckpointer::start(options_filename)?)),
        };
        Ok(Self {
            sqlite_reads,
            postgres_reads: None,
            wal_checkpointer,
            read: counted(
                SqlxSqliteConnector::from_sqlx_sqlite_pool(reader),
                &statements,
            ),
            write: counted(
                SqlxSqliteConnector::from_sqlx_sqlite_pool(writer),
                &statements,
            ),
            backend: DbBackend::Sqlite,
            postgres_pool: None,
            statements,
        })
    }

    /// For queries. Never write through it (on SQLite it is read-only).
    pub fn read(&self) -> &DatabaseConnection {
        &self.read
    }

    /// For single statements that change something; open transactions with `begin_write`.
    pub fn write(&self) -> &DatabaseConnection {
        self.request_wal_checkpoint();
        &self.write
    }

    /// Opens the transaction of one change. On SQLite it takes the database's write lock
    /// first: when a transaction that has already read tries to write while another process
    /// (a server still draining on restart, an admin command) holds the lock, SQLite fails it
    /// at once with "database is locked" instead of waiting the busy timeout.
    pub async fn begin_write(&self) -> Result<DatabaseTransaction, DbErr> {
        let txn = self.write.begin().await?;
        self.request_wal_checkpoint();
        if self.backend == DbBackend::Sqlite {
            // As a prepared statement, so the connection's statement cache keeps it compiled.
            txn.execute(Statement::from_string(
                DbBackend::Sqlite,
                TAKE_SQLITE_WRITE_LOCK,
            ))
            .await?;
        }
        Ok(txn)
    }

    /// On a SQLite file, asks the checkpoint thread to copy what is committed by now back into
    /// the database file; returns the request's number (see `wal_checkpointer`).
    pub fn request_wal_checkpoint(&self) -> Option<u64> {
        self.wal_checkpointer.as_ref().map(|c| c.request())
    }

    /// The SQLite file's checkpoint thread, if any: tests await its checkpoints.
    pub fn wal_checkpointer(&self) -> Option<&WalCheckpointer> {
        self.wal_checkpointer.as_deref()
    }

    pub fn backend(&self) -> DbBackend {
        self.backend
    }

    pub fn is_postgres(&self) -> bool {
        self.backend == DbBackend::Postgres
    }

    /// How many SQL statements this process has run through these connections.
    pub fn statement_count(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Runs a select whose columns come in `T`'s field order (see `positional_decoders!`) and
    /// which returns at most `most_rows` rows: on a SQLite file through `sqlite_reads`,
    /// elsewhere through sea-orm's connection (sqlx's rows, read by position as well).
    pub async fn read_by_position<T: ByPosition>(
        &self,
        statement: Statement,
        most_rows: u64,
    ) -> Result<Vec<T>, DbErr> {
        self.read_rows(
            statement,
            most_rows,
            |row| T::from_row(row),
            |row| T::from_row(row),
            |row| from_sqlx_row(row, T::from_row, T::from_row),
        )
        .await
    }

    /// `read_by_position`, decoding only `columns` of each row (the select should have `NULL`
    /// in place of the others, see `column_set!`): the rest get values nothing reads.
    pub async fn read_columns<T: ReadsColumns>(
        &self,
        statement: Statement,
        most_rows: u64,
        columns: T::Columns,
    ) -> Result<Vec<T>, DbErr> {
        self.read_rows(
            statement,
            most_rows,
            move |row| T::from_row_reading(row, columns),
            move |row| T::from_row_reading(row, columns),
            move |row| {
                from_sqlx_row(
                    row,
                    |row| T::from_row_reading(row, columns),
                    |row| T::from_row_reading(row, columns),
                )
            },
        )
        .await
    }

    /// Runs a hot read on the connections kept for it: rusqlite's on a SQLite file, the read
    /// pool's on PostgreSQL, sqlx's for an in-memory SQLite database.
    async fn read_rows<T: Send + 'static>(
        &self,
        statement: Statement,
        most_rows: u64,
        decode_rusqlite: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T> + Send + 'static,
        decode_postgres: impl Fn(&tokio_postgres::Row) -> Result<T, tokio_postgres::Error>,
        decode_sqlx: impl Fn(&QueryResult) -> Result<T, DbErr>,
    ) -> Result<Vec<T>, DbErr> {
        if let Some(reads) = &self.sqlite_reads {
            return reads.query(statement, most_rows, decode_rusqlite).await;
        }
        if let Some(reads) = &self.postgres_reads {
            if let Some(rows) = reads.query(&statement, decode_postgres).await? {
                return Ok(rows);
            }
            // Too long for a shared connection: on one of sqlx's, without the limit.
        }
        self.read
            .query_all(statement)
            .await?
            .iter()
            .map(decode_sqlx)
            .collect()
    }

    /// The raw pool, for LISTEN/NOTIFY and advisory locks.
    pub fn postgres_pool(&self) -> Option<&sqlx::PgPool> {
        self.postgres_pool.as_ref()
    }
}

/// `SELECT` every column of `E` (in `Column` order, as `positional_decoders!` reads them)
/// `WHERE "id" IN (ids…)`, for the by-id loaders a page runs. Written out here: sea-query spent
/// ~57,000 instructions building each such statement. (No entity here has a column sea-orm
/// would select through a cast.)
pub fn select_by_ids<E: sea_orm::EntityTrait>(backend: DbBackend, ids: &[uuid::Uuid]) -> Statement {
    use sea_orm::{IdenStatic, Iterable};
    let mut sql = String::with_capacity(256 + ids.len() * 5);
    sql.push_str("SELECT ");
    for (i, column) in E::Column::iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('"');
        sql.push_str(column.as_str());
        sql.push('"');
    }
    sql.push_str(" FROM \"");
    sql.push_str(E::default().table_name());
    sql.push_str("\" WHERE \"id\" IN (");
    for i in 0..ids.len() {
        if i > 0 {
            sql.push_str(", ");
        }
        match backend {
            DbBackend::Postgres => {
                sql.push('$');
                sql.push_str(&(i + 1).to_string());
            }
            _ => sql.push('?'),
        }
    }
    sql.push(')');
    let values = ids.iter().map(|id| sea_orm::Value::from(*id));
    Statement::from_sql_and_values(backend, sql, values)
}

/// SQLite counts every allocation it makes under one process-wide mutex unless told not to;
/// decoding a 50-run page takes that mutex ~9,500 times, and the readers on both cores contend
/// for it. The statistics are only read by `sqlite3_memory_used`, which nothing here calls.
fn disable_sqlite_memory_statistics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config must run before SQLite initialises and not concurrently with
        // any other SQLite call. Every connection in this process is opened by `Db::connect`
        // after this `Once` has completed; if SQLite was somehow initialised already the call
        // returns SQLITE_MISUSE and changes nothing.
        let code = unsafe {
            libsqlite3_sys::sqlite3_config(
                libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS,
                0 as std::os::raw::c_int,
            )
        };
        if code != libsqlite3_sys::SQLITE_OK {
            tracing::debug!(code, "SQLite memory statistics stay on");
        }
    });
}

/// A query row whose columns are read by position: rusqlite's on a SQLite file's read path,
/// sqlx's elsewhere. Each row type has one decoder, generic over this, for all of them.
pub trait PositionalRow {
    type Error: std::fmt::Display;

    fn column<T: ColumnValue>(&self, at: usize) -> Result<T, Self::Error>;

    /// Column `at` if `read`, else `otherwise()`: a value the caller will not read.
    fn column_if<T: ColumnValue>(
        &self,
        read: bool,
        at: usize,
        otherwise: impl FnOnce() -> T,
    ) -> Result<T, Self::Error> {
        match read {
            true => self.column(at),
            false => Ok(otherwise()),
        }
    }
}

/// A column type that every read path decodes.
pub trait ColumnValue:
    sqlite_reads::FromSqliteColumn
    + for<'r> tokio_postgres::types::FromSql<'r>
    + for<'r> sqlx::Decode<'r, sqlx::Postgres>
    + sqlx::Type<sqlx::Postgres>
    + for<'r> sqlx::Decode<'r, sqlx::Sqlite>
    + sqlx::Type<sqlx::Sqlite>
{
}

impl<T> ColumnValue for T where
    T: sqlite_reads::FromSqliteColumn
        + for<'r> tokio_postgres::types::FromSql<'r>
        + for<'r> sqlx::Decode<'r, sqlx::Postgres>
        + sqlx::Type<sqlx::Postgres>
        + for<'r> sqlx::Decode<'r, sqlx::Sqlite>
        + sqlx::Type<sqlx::Sqlite>
{
}

impl PositionalRow for rusqlite::Row<'_> {
    type Error = rusqlite::Error;

    fn column<T: ColumnValue>(&self, at: usize) -> rusqlite::Result<T> {
        sqlite_reads::column(self, at)
    }
}

impl PositionalRow for sqlx::postgres::PgRow {
    type Error = sqlx::Error;

    fn column<T: ColumnValue>(&self, at: usize) -> Result<T, sqlx::Error> {
        sqlx::Row::try_get(self, at)
    }
}

impl PositionalRow for tokio_postgres::Row {
    type Error = tokio_postgres::Error;

    fn column<T: ColumnValue>(&self, at: usize) -> Result<T, tokio_postgres::Error> {
        self.try_get(at)
    }
}

impl PositionalRow for sqlx::sqlite::SqliteRow {
    type Error = sqlx::Error;

    fn column<T: ColumnValue>(&self, at: usize) -> Result<T, sqlx::Error> {
        sqlx::Row::try_get(self, at)
    }
}

/// Decodes sea-orm's row with whichever of the two decoders fits the sqlx row inside it.
pub fn from_sqlx_row<T>(
    row: &QueryResult,
    decode_postgres: impl FnOnce(&sqlx::postgres::PgRow) -> Result<T, sqlx::Error>,
    decode_sqlite: impl FnOnce(&sqlx::sqlite::SqliteRow) -> Result<T, sqlx::Error>,
) -> Result<T, DbErr> {
    let decoded = if let Some(row) = row.try_as_pg_row() {
        decode_postgres(row)
    } else if let Some(row) = row.try_as_sqlite_row() {
        decode_sqlite(row)
    } else {
        // Only sqlx's SQLite and PostgreSQL rows exist in this build.
        return Err(DbErr::Type(
            "a row from neither SQLite nor PostgreSQL".to_owned(),
        ));
    };
    decoded.map_err(|e| DbErr::Type(e.to_string()))
}

/// A row type decoded by column position on every read path (see `positional_decoders!`).
pub trait ByPosition: FromQueryResult + Send + 'static {
    fn from_row<R: PositionalRow>(row: &R) -> Result<Self, R::Error>;
}

/// A row type that may decode only some of its columns (a `column_set!`), for pages that read
/// a few fields of many rows.
pub trait ReadsColumns: Sized + Send + 'static {
    type Columns: Copy + Send + 'static;

    fn from_row_reading<R: PositionalRow>(
        row: &R,
        columns: Self::Columns,
    ) -> Result<Self, R::Error>;
}

/// Defines `$name`, a set of `$column`s (a bit per column, in the entity's column order) that
/// a read decodes: hot pages read a few fields of many rows, and decoding every text, time and
/// JSON column of each was a large share of their CPU. `KEYS` are the columns every row needs.
macro_rules! column_set {
    ($(#[$meta:meta])* $name:ident, $column:path, $(#[$keys_meta:meta])* KEYS = [$($key:expr),+ $(,)?]) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(u32);

        impl $name {
            pub const ALL: Self = Self(u32::MAX);

            $(#[$keys_meta])*
            pub const KEYS: Self = Self::of(&[$($key),+]);

            pub const fn of(columns: &[$column]) -> Self {
                let mut bits = 0;
                let mut i = 0;
                while i < columns.len() {
                    bits |= 1 << columns[i] as u32;
                    i += 1;
                }
                Self(bits)
            }

            pub const fn with(self, other: Self) -> Self {
                Self(self.0 | other.0)
            }

            pub fn reads(self, column: $column) -> bool {
                self.0 & (1 << column as u32) != 0
            }

            /// The select list of every column in order, `NULL` in place of those not read
            /// (so rows still decode by position, and SQLite fetches only what is read).
            pub fn select_list(self, qualifier: &str) -> String {
                <$column as sea_orm::Iterable>::iter()
                    .map(|c| match self.reads(c) {
                        true => format!("{qualifier}\"{}\"", sea_orm::IdenStatic::as_str(&c)),
                        false => "NULL".to_owned(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        }
    };
}
pub(crate) use column_set;

/// Implements `FromQueryResult` and `ByPosition` for `$wrapper($model)` from one field list, in
/// the order the query selects the columns. sea-orm's derived decoder looks each column up by a
/// freshly formatted name and formats an error for every NULL it meets; hot reads decode by
/// position instead, each with a test that both decoders read the same rows.
macro_rules! positional_decoders {
    ($wrapper:ident, $model:path { $($field:ident),+ $(,)? }) => {
        impl sea_orm::FromQueryResult for $wrapper {
            fn from_query_result(
                row: &sea_orm::QueryResult,
                _prefix: &str,
            ) -> Result<Self, sea_orm::DbErr> {
                $crate::db::from_sqlx_row(
                    row,
                    <Self as $crate::db::ByPosition>::from_row,
                    <Self as $crate::db::ByPosition>::from_row,
                )
            }
        }

        impl $crate::db::ByPosition for $wrapper {
            fn from_row<R: $crate::db::PositionalRow>(row: &R) -> Result<Self, R::Error> {
                let mut column = 0..;
                let mut next = || column.next().unwrap_or(usize::MAX);
                type Model = $model;
                Ok(Self(Model {
                    $($field: row.column(next())?,)+
                }))
            }
        }
    };
}
pub(crate) use positional_decoders;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_pipelined_connections_reach_the_database_sqlx_resolved() {
        let config = |url: &str| {
            let options = postgres_options(url).unwrap();
            pipelined_config(url, &options)
        };
        let tcp =
            config("postgres://app:p%40ss%2Fw@127.0.0.1:5433/flow?options=-c%20search_path%3Dfc");
        assert_eq!(
            tcp.get_hosts(),
            [tokio_postgres::config::Host::Tcp("127.0.0.1".into())]
        );
        assert_eq!(tcp.get_ports(), [5433]);
        assert_eq!(tcp.get_user(), Some("app"));
        assert_eq!(tcp.get_dbname(), Some("flow"));
        assert_eq!(tcp.get_password(), Some(&b"p@ss/w"[..]));
        assert_eq!(tcp.get_options(), Some("-c search_path=fc"));
        let socket = config("postgres://app@localhost/flow?host=/var/run/postgresql");
        assert_eq!(
            socket.get_hosts(),
            [tokio_postgres::config::Host::Unix(
                "/var/run/postgresql".into()
            )]
        );
    }

    #[test]
    fn a_server_on_this_host_is_reached_without_tls_unless_the_url_asks() {
        let mode = |url: &str| postgres_options(url).map(|o| o.get_ssl_mode());
        for local in [
            "postgres://u@127.0.0.1/db",
            "postgres://u@localhost:5432/db",
            "postgres://u@[::1]/db",
            "postgres://u@127.0.0.2/db?application_name=x",
        ] {
            assert!(matches!(mode(local), Ok(PgSslMode::Disable)), "{local}");
        }
        assert!(matches!(
            mode("postgres://u@127.0.0.1/db?sslmode=require"),
            Ok(PgSslMode::Require)
        ));
        assert!(matches!(
            mode("postgres://u@db.example.com/db"),
            Ok(PgSslMode::Prefer)
        ));
        assert!(matches!(
            mode("postgres://u@10.0.0.5/db?sslmode=verify-full"),
            Ok(PgSslMode::VerifyFull)
        ));
    }
}
