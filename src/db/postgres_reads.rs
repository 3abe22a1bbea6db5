//! The hottest PostgreSQL reads (the statements of a dashboard page: workspace and role, runs,
//! their flows and deployments, nested task-run pages) run on a few connections shared by all
//! requests, through tokio-postgres, which pipelines: statements issued at once by any number
//! of requests go out together, the server answers them one after another without waiting
//! for the client in between, and the replies come back together. Through sqlx's pool each
//! statement took a connection of its own, a round trip and a wake-up of a server process,
//! plus a ping as sqlx took the connection back.
//!
//! A statement on a shared connection holds up those queued behind it, so each may run for
//! [`PIPELINED_STATEMENT_LIMIT`] at most: PostgreSQL cancels one that runs longer, and the
//! caller runs it again on a connection of its own (see `Db::read_rows`).
//!
//! Only over plain connections (a server on this host, or `sslmode=disable`): the TLS modes
//! and certificate checks of `sslmode` are sqlx's, and those reads stay with it.
//!
//! Values are bound as sea-orm binds them (the statements are built by sea-query or by hand
//! with the same value types); each connection prepares a statement once and keeps it.
use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sea_orm::{DbErr, RuntimeErr, Statement, Value};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::{Client, NoTls, Row};
use uuid::Uuid;

/// How long one statement may hold a shared connection.
pub const PIPELINED_STATEMENT_LIMIT: Duration = Duration::from_millis(250);

/// A statement on a shared connection with no reply by then gives the connection up (the
/// server's limit is [`PIPELINED_STATEMENT_LIMIT`] per statement; this allows for a queue).
const REPLY_WITHIN: Duration = Duration::from_secs(5);

/// After failing to connect, the reads go through sqlx's pool this long before the next try.
const RETRY_CONNECTING_AFTER: Duration = Duration::from_secs(5);

/// Prepared statements kept per connection, at most; past it the cache starts over (a page
/// uses a handful; the bound only stops statements that differ by an id count piling up).
const MOST_PREPARED: usize = 1_000;

pub struct PostgresReads {
    config: tokio_postgres::Config,
    connections: Vec<tokio::sync::Mutex<Option<Arc<Connection>>>>,
    next: AtomicUsize,
    /// After a failed attempt to connect, when to try again.
    retry_connecting_at: tokio::sync::Mutex<Option<Instant>>,
    /// Whether a failure to connect was logged as a warning (the later ones are not).
    warned_of_connecting: std::sync::atomic::AtomicBool,
    statements: Arc<AtomicU64>,
}

struct Connection {
    client: Client,
    prepared: Mutex<HashMap<String, tokio_postgres::Statement>>,
}

impl PostgresReads {
    /// `connections` connections to the server `config` names, without TLS, opened when first
    /// needed (and again if one is lost).
    pub fn new(
        mut config: tokio_postgres::Config,
        connections: usize,
        statements: Arc<AtomicU64>,
    ) -> Self {
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(REPLY_WITHIN);
        }
        // After the URL's own `options`, if any (a later setting wins).
        let options = format!(
            "{} -c statement_timeout={}",
            config.get_options().unwrap_or_default(),
            PIPELINED_STATEMENT_LIMIT.as_millis()
        );
        config.options(options.trim_start());
        Self {
            config,
            connections: (0..connections.max(1))
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            next: AtomicUsize::new(0),
            retry_connecting_at: tokio::sync::Mutex::new(None),
            warned_of_connecting: std::sync::atomic::AtomicBool::new(false),
            statements,
        }
    }

    /// Runs `statement` and decodes each row with `decode`. `None` when it is better run
    /// elsewhere: it was cancelled (past [`PIPELINED_STATEMENT_LIMIT`], or waiting on a lock as
    /// it was prepared), no connection could be opened, the connection was lost or gave no
    /// reply within [`REPLY_WITHIN`], or a cached statement no longer fits its table.
    pub async fn query<T>(
        &self,
        statement: &Statement,
        decode: impl Fn(&Row) -> Result<T, tokio_postgres::Error>,
    ) -> Result<Option<Vec<T>>, DbErr> {
        let Some((at, connection)) = self.connection().await else {
            return Ok(None);
        };
        let values: Vec<Param<'_>> = statement
            .values
            .iter()
            .flat_map(|values| values.0.iter().map(Param))
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        let run = async {
            let prepared = connection.prepare(&statement.sql).await?;
            connection.client.query(&prepared, &params).await
        };
        let rows = match tokio::time::timeout(REPLY_WITHIN, run).await {
            Ok(Ok(rows)) => rows,
            Err(_) => {
                // A connection that stopped answering (a firewall dropping it silently, say):
                // the next read opens another.
                self.forget(at, &connection).await;
                return Ok(None);
            }
            Ok(Err(e)) if e.is_closed() || e.code() == Some(&SqlState::ADMIN_SHUTDOWN) => {
                return Ok(None)
            }
            Ok(Err(e)) if e.code() == Some(&SqlState::QUERY_CANCELED) => return Ok(None),
            // "cached plan must not change result type": a migration changed a table.
            Ok(Err(e)) if e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) => {
                connection.forget_prepared();
                return Ok(None);
            }
            Ok(Err(e)) => return Err(query_error(e)),
        };
        self.statements.fetch_add(1, Ordering::Relaxed);
        // Sized up front: collected through a `Result`, the vector would double its way up,
        // copying the decoded rows each time.
        let mut decoded = Vec::with_capacity(rows.len());
        for row in &rows {
            decoded.push(decode(row).map_err(|e| DbErr::Type(e.to_string()))?);
        }
        Ok(Some(decoded))
    }

    /// Drops the connection in slot `at` if it is still `connection`.
    async fn forget(&self, at: usize, connection: &Arc<Connection>) {
        let mut slot = self.connections[at].lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, connection)) {
            *slot = None;
        }
    }

    /// The next connection in turn, opened (or reopened) if need be; `None` while connecting
    /// fails (the reads then go through sqlx, which may know more: `PGPASSWORD`, `.pgpass`).
    async fn connection(&self) -> Option<(usize, Arc<Connection>)> {
        let at = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        let mut slot = self.connections[at].lock().await;
        if let Some(connection) = slot.as_ref().filter(|c| !c.client.is_closed()) {
            return Some((at, connection.clone()));
        }
        let mut retry_at = self.retry_connecting_at.lock().await;
        if retry_at.is_some_and(|at| Instant::now() < at) {
            return None;
        }
        let (client, connection) = match self.config.connect(NoTls).await {
            Ok(opened) => opened,
            Err(err) if self.warned_of_connecting.swap(true, Ordering::Relaxed) => {
                tracing::debug!(error = %err, "still cannot open a pipelined PostgreSQL connection");
                *retry_at = Some(Instant::now() + RETRY_CONNECTING_AFTER);
                return None;
            }
            Err(err) => {
                tracing::warn!(
                    error = %err,
                    "cannot open a pipelined PostgreSQL connection; hot reads go through the \
                     pool until it can (retrying in {RETRY_CONNECTING_AFTER:?})"
                );
                *retry_at = Some(Instant::now() + RETRY_CONNECTING_AFTER);
                return None;
            }
        };
        *retry_at = None;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::warn!(error = %err, "a PostgreSQL read connection ended");
            }
        });
        let connection = Arc::new(Connection {
            client,
            prepared: Mutex::new(HashMap::new()),
        });
        *slot = Some(connection.clone());
        Some((at, connection))
    }
}

impl Connection {
    async fn prepare(&self, sql: &str) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
        if let Some(statement) = self.prepared().get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        let mut prepared = self.prepared();
        if prepared.len() >= MOST_PREPARED {
            prepared.clear();
        }
        prepared.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    fn forget_prepared(&self) {
        self.prepared().clear();
    }

    fn prepared(&self) -> std::sync::MutexGuard<'_, HashMap<String, tokio_postgres::Statement>> {
        // The map is only read and written whole under the lock: a panic elsewhere cannot
        // leave it half-changed.
        self.prepared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn query_error(e: tokio_postgres::Error) -> DbErr {
    DbErr::Query(RuntimeErr::Internal(e.to_string()))
}

/// A sea-orm value bound as tokio-postgres binds the matching Rust type.
#[derive(Debug)]
struct Param<'a>(&'a Value);

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        self.to_sql_checked(ty, out)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        fn bind<T: ToSql>(
            value: &Option<T>,
            ty: &Type,
            out: &mut BytesMut,
        ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
            value.to_sql_checked(ty, out)
        }
        fn unboxed<T>(value: &Option<Box<T>>) -> Option<&T> {
            value.as_deref()
        }
        match self.0 {
            Value::Bool(v) => bind(v, ty, out),
            Value::TinyInt(v) => bind(&v.map(i16::from), ty, out),
            Value::SmallInt(v) => bind(v, ty, out),
            Value::Int(v) => bind(v, ty, out),
            Value::BigInt(v) => bind(v, ty, out),
            Value::TinyUnsigned(v) => bind(&v.map(i16::from), ty, out),
            Value::SmallUnsigned(v) => bind(&v.map(i32::from), ty, out),
            Value::Unsigned(v) => bind(&v.map(i64::from), ty, out),
            Value::BigUnsigned(v) => bind(&v.map(i64::try_from).transpose()?, ty, out),
            Value::Float(v) => bind(v, ty, out),
            Value::Double(v) => bind(v, ty, out),
            Value::String(v) => bind(&unboxed(v), ty, out),
            Value::Char(v) => bind(&v.map(String::from), ty, out),
            Value::Bytes(v) => bind(&unboxed(v), ty, out),
            Value::Json(v) => bind(&unboxed(v), ty, out),
            Value::ChronoDate(v) => bind::<&NaiveDate>(&unboxed(v), ty, out),
            Value::ChronoTime(v) => bind::<&NaiveTime>(&unboxed(v), ty, out),
            Value::ChronoDateTime(v) => bind::<&NaiveDateTime>(&unboxed(v), ty, out),
            Value::ChronoDateTimeUtc(v) => bind::<&DateTime<Utc>>(&unboxed(v), ty, out),
            Value::ChronoDateTimeLocal(v) => {
                bind(&v.as_deref().map(|t| t.with_timezone(&Utc)), ty, out)
            }
            Value::ChronoDateTimeWithTimeZone(v) => {
                bind::<&DateTime<FixedOffset>>(&unboxed(v), ty, out)
            }
            Value::Uuid(v) => bind::<&Uuid>(&unboxed(v), ty, out),
            other => Err(format!("cannot bind {other:?} for a PostgreSQL read").into()),
        }
    }
}
