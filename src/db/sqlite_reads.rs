//! The hottest SQLite reads (the run page, nested task-run pages) run on rusqlite connections
//! of their own instead of through sqlx. sqlx-sqlite copies every column value of every row on
//! its worker thread (`sqlite3_value_dup`, a malloc each), grows each copied text by a byte to
//! terminate it when it is read, and frees it all on another thread: for a 50-run page with
//! nested task runs that was half of the page's instructions. Here rows are decoded where they
//! lie, on a blocking-pool thread, straight into models.
//!
//! The SQL is still built by sea-query, and values are bound and decoded in the formats sqlx
//! writes (UUIDs as 16-byte blobs, times as RFC 3339 text, JSON as text, booleans as integers),
//! so both paths read the same rows the same way; the positional decoder tests compare them.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags, Row};
use sea_orm::{DbErr, Statement};
use uuid::Uuid;

/// Read-only connections to one SQLite file, opened on demand and kept for reuse.
pub struct SqliteReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// At most this many reads run at once. A read is pure CPU work; more of them than there
    /// are cores only interleave, while each extra connection compiles the same statements
    /// again and warms its own page cache.
    running: Arc<tokio::sync::Semaphore>,
    statements: Arc<AtomicU64>,
}

/// Concurrent reads per core: a few, so a long read does not hold up short ones behind it.
const READS_PER_CORE: usize = 4;

/// Reads of at most this many rows run on the calling task's thread (a 200-run page of
/// runs, five task runs each of fifty runs); longer ones on the blocking pool, so they do
/// not hold up the other tasks of an async worker.
const INLINE_ROWS: u64 = 1_000;

impl SqliteReads {
    pub fn new(path: &Path, statements: Arc<AtomicU64>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            running: Arc::new(tokio::sync::Semaphore::new(cores * READS_PER_CORE)),
            statements,
        }
    }

    /// Runs `statement`, which returns at most `most_rows` rows, and decodes each row with
    /// `decode`: a short read right here, a longer one off the async runtime.
    pub async fn query<T, F>(
        self: &Arc<Self>,
        statement: Statement,
        most_rows: u64,
        decode: F,
    ) -> Result<Vec<T>, DbErr>
    where
        T: Send + 'static,
        F: Fn(&Row<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        self.statements.fetch_add(1, Ordering::Relaxed);
        if most_rows <= INLINE_ROWS {
            // A read never waits for a lock in WAL mode, so a short one is a fraction of a
            // millisecond of CPU: less than handing it to a blocking thread and waking this
            // task again (two thread switches, which were a sixth of a page's CPU).
            let conn = self.connection()?;
            let result = run(&conn, &statement, most_rows, &decode);
            self.give_back(conn);
            return result;
        }
        // Held by the read itself, so a caller that gives up does not free its place early.
        let permit = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| DbErr::Custom(format!("SQLite reads closed: {e}")))?;
        let reads = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = reads.connection()?;
            let result = run(&conn, &statement, most_rows, &decode);
            reads.give_back(conn);
            result
        })
        .await
        .map_err(|e| DbErr::Custom(format!("SQLite read task failed: {e}")))?
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }

    fn connection(&self) -> Result<Connection, DbErr> {
        if let Some(conn) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db_err)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(db_err)?;
        // As the sqlx pools (see `Db::connect`).
        conn.execute_batch(
            "PRAGMA mmap_size = 268435456; PRAGMA cache_size = -16000; PRAGMA temp_store = memory;",
        )
        .map_err(db_err)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }
}

/// Rows kept room for up front, at most: past it the vector grows as it must.
const MOST_ROWS_RESERVED: u64 = 1_024;

fn run<T>(
    conn: &Connection,
    statement: &Statement,
    most_rows: u64,
    decode: &dyn Fn(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, DbErr> {
    let mut prepared = conn.prepare_cached(&statement.sql).map_err(db_err)?;
    let values = match &statement.values {
        Some(values) => values.0.iter().map(to_sql).collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let mut rows = prepared
        .query(rusqlite::params_from_iter(values))
        .map_err(db_err)?;
    // Sized for the statement's limit: grown row by row, a page's rows were copied over and
    // over as the vector doubled (a page of task runs is 250 rows of a few hundred bytes).
    let mut out = Vec::with_capacity(most_rows.min(MOST_ROWS_RESERVED) as usize);
    while let Some(row) = rows.next().map_err(db_err)? {
        out.push(decode(row).map_err(db_err)?);
    }
    Ok(out)
}

fn db_err(e: rusqlite::Error) -> DbErr {
    DbErr::Custom(format!("SQLite read: {e}"))
}

/// A sea-query value as sqlx would bind it for SQLite.
fn to_sql(value: &sea_orm::Value) -> Result<SqlValue, DbErr> {
    use sea_orm::Value as V;
    fn or_null<T>(v: &Option<T>, f: impl FnOnce(&T) -> SqlValue) -> SqlValue {
        v.as_ref().map_or(SqlValue::Null, f)
    }
    Ok(match value {
        V::Bool(v) => or_null(v, |b| SqlValue::Integer(i64::from(*b))),
        V::TinyInt(v) => or_null(v, |n| SqlValue::Integer(i64::from(*n))),
        V::SmallInt(v) => or_null(v, |n| SqlValue::Integer(i64::from(*n))),
        V::Int(v) => or_null(v, |n| SqlValue::Integer(i64::from(*n))),
        V::BigInt(v) => or_null(v, |n| SqlValue::Integer(*n)),
        V::TinyUnsigned(v) => or_null(v, |n| SqlValue::Integer(i64::from(*n))),
        V::SmallUnsigned(v) => or_null(v, |n| SqlValue::Integer(i64::from(*n))),
        V::Unsigned(v) => or_null(v, |n| SqlValue::Integer(i64::from(*n))),
        V::BigUnsigned(Some(n)) => SqlValue::Integer(
            i64::try_from(*n).map_err(|_| DbErr::Custom(format!("{n} does not fit SQLite")))?,
        ),
        V::BigUnsigned(None) => SqlValue::Null,
        V::Float(v) => or_null(v, |n| SqlValue::Real(f64::from(*n))),
        V::Double(v) => or_null(v, |n| SqlValue::Real(*n)),
        V::String(v) => or_null(v, |s| SqlValue::Text(s.to_string())),
        V::Char(v) => or_null(v, |c| SqlValue::Text(c.to_string())),
        V::Bytes(v) => or_null(v, |b| SqlValue::Blob(b.to_vec())),
        V::Json(v) => or_null(v, |j| SqlValue::Text(j.to_string())),
        V::ChronoDateTimeUtc(v) => or_null(v, |t| {
            SqlValue::Text(t.to_rfc3339_opts(SecondsFormat::AutoSi, false))
        }),
        V::Uuid(v) => or_null(v, |u| SqlValue::Blob(u.as_bytes().to_vec())),
        other => {
            return Err(DbErr::Custom(format!(
                "no SQLite binding for {other:?} on the fast read path"
            )))
        }
    })
}

/// One column of a row, decoded as sqlx decodes that Rust type from SQLite.
pub trait FromSqliteColumn: Sized {
    fn from_column(value: ValueRef<'_>) -> Result<Self, String>;
}

/// Reads column `index` of `row` as `T`.
pub fn column<T: FromSqliteColumn>(row: &Row<'_>, index: usize) -> rusqlite::Result<T> {
    let value = row.get_ref(index)?;
    let kind = value.data_type();
    T::from_column(value)
        .map_err(|message| rusqlite::Error::FromSqlConversionFailure(index, kind, message.into()))
}

fn text(value: ValueRef<'_>) -> Result<&str, String> {
    match value {
        ValueRef::Text(bytes) => std::str::from_utf8(bytes).map_err(|e| e.to_string()),
        other => Err(format!("expected text, found {:?}", other.data_type())),
    }
}

impl<T: FromSqliteColumn> FromSqliteColumn for Option<T> {
    fn from_column(value: ValueRef<'_>) -> Result<Self, String> {
        match value {
            ValueRef::Null => Ok(None),
            value => T::from_column(value).map(Some),
        }
    }
}

impl FromSqliteColumn for String {
    fn from_column(value: ValueRef<'_>) -> Result<Self, String> {
        text(value).map(str::to_owned)
    }
}

impl FromSqliteColumn for Uuid {
    fn from_column(value: ValueRef<'_>) -> Result<Self, String> {
        match value {
            ValueRef::Blob(bytes) => Uuid::from_slice(bytes).map_err(|e| e.to_string()),
            value => Uuid::parse_str(text(value)?).map_err(|e| e.to_string()),
        }
    }
}

impl FromSqliteColumn for DateTime<Utc> {
    fn from_column(value: ValueRef<'_>) -> Result<Self, String> {
        let text = text(value)?;
        if let Some(at) = parse_utc_rfc3339(text.as_bytes()) {
            return Ok(at);
        }
        if let Ok(at) = DateTime::parse_from_rfc3339(text) {
            return Ok(at.with_timezone(&Utc));
        }
        // SQLite's own CURRENT_TIMESTAMP form, which sqlx also reads.
        ["%F %T%.f", "%FT%T%.f"]
            .iter()
            .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
            .map(|at| at.and_utc())
            .ok_or_else(|| format!("invalid datetime: {text}"))
    }
}

/// The one shape sqlx writes times in, `YYYY-MM-DDTHH:MM:SS[.fraction]+00:00` (or `Z`), read
/// without chrono's general parser: a page reads ~1,600 of them, and chrono's parser was a
/// twentieth of the page's instructions. Anything else returns `None` for chrono to read.
fn parse_utc_rfc3339(text: &[u8]) -> Option<DateTime<Utc>> {
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        text.get(range)?.iter().try_fold(0u32, |n, b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators.iter().any(|(i, c)| text.get(*i) != Some(c)) {
        return None;
    }
    let mut rest = text.get(19..)?;
    let mut nanos = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let len = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 || len > 9 {
            return None;
        }
        let value = fraction[..len]
            .iter()
            .fold(0u32, |n, b| n * 10 + u32::from(b - b'0'));
        nanos = value * 10u32.pow(9 - len as u32);
        rest = &fraction[len..];
    }
    if rest != b"+00:00" && rest != b"Z" {
        return None;
    }
    let date =
        chrono::NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)?;
    date.and_hms_nano_opt(digits(11..13)?, digits(14..16)?, digits(17..19)?, nanos)
        .map(|at| at.and_utc())
}

impl FromSqliteColumn for serde_json::Value {
    fn from_column(value: ValueRef<'_>) -> Result<Self, String> {
        match value {
            // Most runs and task runs carry no tags or parameters: no parser for those.
            ValueRef::Text(b"[]") => Ok(Self::Array(Vec::new())),
            ValueRef::Text(b"{}") => Ok(Self::Object(serde_json::Map::new())),
            ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
                serde_json::from_slice(bytes).map_err(|e| e.to_string())
            }
            other => Err(format!("expected JSON text, found {:?}", other.data_type())),
        }
    }
}

impl FromSqliteColumn for bool {
    fn from_column(value: ValueRef<'_>) -> Result<Self, String> {
        i64::from_column(value).map(|n| n != 0)
    }
}

impl FromSqliteColumn for i64 {
    fn from_column(value: ValueRef<'_>) -> Result<Self, String> {
        match value {
            ValueRef::Integer(n) => Ok(n),
            other => Err(format!(
                "expected an integer, found {:?}",
                other.data_type()
            )),
        }
    }
}

impl FromSqliteColumn for i32 {
    fn from_column(value: ValueRef<'_>) -> Result<Self, String> {
        let n = i64::from_column(value)?;
        i32::try_from(n).map_err(|_| format!("{n} does not fit an i32"))
    }
}

impl FromSqliteColumn for f64 {
    fn from_column(value: ValueRef<'_>) -> Result<Self, String> {
        match value {
            ValueRef::Real(n) => Ok(n),
            ValueRef::Integer(n) => Ok(n as f64),
            other => Err(format!("expected a number, found {:?}", other.data_type())),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// However many reads are asked for at once, at most the permitted number run together,
    /// so the idle list never holds more connections than that.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reads_share_a_bounded_set_of_connections() {
        use std::sync::atomic::AtomicUsize;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reads.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
            .unwrap();
        let reads = Arc::new(SqliteReads::new(&path, Arc::new(AtomicU64::new(0))));
        let limit = reads.running.available_permits();
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (reads, now, most) = (reads.clone(), now.clone(), most.clone());
                tokio::spawn(async move {
                    let statement =
                        Statement::from_string(sea_orm::DbBackend::Sqlite, "SELECT x FROM t");
                    reads
                        .query(statement, u64::MAX, move |row| {
                            most.fetch_max(
                                now.fetch_add(1, Ordering::SeqCst) + 1,
                                Ordering::SeqCst,
                            );
                            for _ in 0..100 {
                                std::thread::yield_now();
                            }
                            now.fetch_sub(1, Ordering::SeqCst);
                            column::<i64>(row, 0)
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), vec![1]);
        }
        let most = most.load(Ordering::SeqCst);
        let idle = reads.idle.lock().unwrap().len();
        assert!(
            most <= limit,
            "{most} reads ran at once; the limit is {limit}"
        );
        assert!(
            (1..=limit).contains(&idle),
            "{idle} idle connections for {limit} permits"
        );
    }

    /// Values go in and come out in sqlx's SQLite formats, NULLs as `None`.
    #[test]
    fn values_round_trip_in_the_formats_sqlx_uses() {
        let conn = Connection::open_in_memory().unwrap();
        let id = Uuid::new_v4();
        let at = Utc::now();
        let statement = Statement::from_sql_and_values(
            sea_orm::DbBackend::Sqlite,
            "SELECT ?, typeof(?), ?, ?, ?, ?, ?, CURRENT_TIMESTAMP",
            [
                id.into(),
                id.into(),
                at.into(),
                serde_json::json!({ "a": [1, 2] }).into(),
                true.into(),
                sea_orm::Value::String(None),
                7i32.into(),
            ],
        );
        type Decoded = (
            Uuid,
            String,
            DateTime<Utc>,
            serde_json::Value,
            bool,
            Option<String>,
            i32,
            DateTime<Utc>,
        );
        let rows: Vec<Decoded> = run(&conn, &statement, 8, &|row| {
            Ok((
                column(row, 0)?,
                column(row, 1)?,
                column(row, 2)?,
                column(row, 3)?,
                column(row, 4)?,
                column(row, 5)?,
                column(row, 6)?,
                column(row, 7)?,
            ))
        })
        .unwrap();
        let (uuid, kind, time, json, flag, missing, number, now) = rows[0].clone();
        assert_eq!(uuid, id);
        assert_eq!(kind, "blob");
        assert_eq!(time, at);
        assert_eq!(json, serde_json::json!({ "a": [1, 2] }));
        for empty in ["[]", "{}", " [ ] ", "{ }"] {
            let statement = Statement::from_sql_and_values(
                sea_orm::DbBackend::Sqlite,
                "SELECT ?",
                [empty.into()],
            );
            let decoded = run(&conn, &statement, 8, &|row| {
                column::<serde_json::Value>(row, 0)
            });
            let parsed: serde_json::Value = serde_json::from_str(empty).unwrap();
            assert_eq!(decoded.unwrap(), vec![parsed], "{empty}");
        }
        assert!(flag);
        assert_eq!(missing, None);
        assert_eq!(number, 7);
        assert!((Utc::now() - now).num_seconds().abs() < 60);
    }

    /// The fast path reads what chrono reads, for every fraction length sqlx writes, and leaves
    /// every other shape to chrono.
    #[test]
    fn times_in_sqlx_form_parse_as_chrono_parses_them() {
        let base = Utc::now();
        for step in 0..2_000i64 {
            let at = base + chrono::Duration::nanoseconds(step * 7_919_113 + step * step);
            for text in [
                at.to_rfc3339_opts(SecondsFormat::AutoSi, false),
                at.to_rfc3339_opts(SecondsFormat::Secs, true),
                at.to_rfc3339_opts(SecondsFormat::Millis, false),
            ] {
                let chrono = DateTime::parse_from_rfc3339(&text)
                    .unwrap()
                    .with_timezone(&Utc);
                assert_eq!(parse_utc_rfc3339(text.as_bytes()), Some(chrono), "{text}");
            }
        }
        for other in [
            "2026-11-27T05:00:00+01:00",
            "2026-11-27 05:00:00",
            "2026-11-27T05:00:00.+00:00",
            "2026-11-27T05:00:00.1234567890+00:00",
            "2026-02-30T05:00:00+00:00",
            "2026-11-27T25:00:00+00:00",
            "20x6-11-27T05:00:00+00:00",
            "2026-11-27T05:0a:00+00:00",
            "1900-02-29T00:00:00+00:00",
            "2026-04-31T00:00:00+00:00",
            "2026-11-27T05:00:00",
            "",
        ] {
            assert_eq!(parse_utc_rfc3339(other.as_bytes()), None, "{other}");
        }
        // The shapes the fast path leaves alone still decode, through chrono.
        let offset = DateTime::<Utc>::from_column(ValueRef::Text(b"2026-11-27T06:00:00+01:00"));
        assert_eq!(offset.unwrap().to_rfc3339(), "2026-11-27T05:00:00+00:00");
        let sqlite = DateTime::<Utc>::from_column(ValueRef::Text(b"2026-11-27 05:00:00"));
        assert_eq!(sqlite.unwrap().to_rfc3339(), "2026-11-27T05:00:00+00:00");
    }

    #[test]
    fn a_value_of_the_wrong_kind_is_an_error_naming_the_column() {
        let conn = Connection::open_in_memory().unwrap();
        let statement =
            Statement::from_string(sea_orm::DbBackend::Sqlite, "SELECT 1, 'not a time'");
        let err = run(&conn, &statement, 8, &|row| {
            let _: i64 = column(row, 0)?;
            column::<DateTime<Utc>>(row, 1)
        })
        .unwrap_err();
        assert!(err.to_string().contains("not a time"), "{err}");
    }
}
