//! On a SQLite file the write-ahead log is copied back into the database by a thread of its
//! own. Left to SQLite, the commit that takes the log past 1,000 pages does the copy (and its
//! fsync) itself while it still holds the write lock: under log ingestion that was a quarter
//! of the writer connection's time, with every other writer queued behind it. A passive
//! checkpoint on another connection runs beside the writer instead of in its way.
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::watch;

/// How long the thread lets writes gather after being woken, so that one checkpoint copies
/// many commits' pages (a hot index page is then written to the file once, not once per commit).
const GATHER: Duration = Duration::from_millis(200);

/// The writer connections' own automatic checkpoint, in pages: left on, far above SQLite's
/// 1,000, only so the log cannot grow without bound should this thread fall behind or fail.
pub const WRITER_AUTOCHECKPOINT_PAGES: u32 = 10_000;

pub struct WalCheckpointer {
    /// Checkpoints asked for so far (each write transaction asks for one).
    requested: Arc<AtomicU64>,
    wake: SyncSender<()>,
    /// The highest `requested` value seen before a checkpoint that has since completed.
    completed: watch::Receiver<u64>,
}

impl WalCheckpointer {
    /// Starts the thread; it ends when this value is dropped.
    pub fn start(path: &Path) -> Result<Self, String> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| format!("SQLite checkpoint connection: {e}"))?;
        // One waiting wake-up is enough: the thread checkpoints everything committed so far.
        let (wake, woken) = sync_channel(1);
        let (publish, completed) = watch::channel(0);
        let requested = Arc::new(AtomicU64::new(0));
        let requests = requested.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".to_owned())
            .spawn(move || checkpoint_when_woken(&conn, &woken, &requests, &publish))
            .map_err(|e| format!("cannot start the SQLite checkpoint thread: {e}"))?;
        Ok(Self {
            requested,
            wake,
            completed,
        })
    }

    /// Asks for a checkpoint of everything committed so far; returns the request's number for
    /// [`Self::completed`]. Cheap: an atomic add and, at most, one message.
    pub fn request(&self) -> u64 {
        let number = self.requested.fetch_add(1, Ordering::AcqRel) + 1;
        match self.wake.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) => {}
            Err(TrySendError::Disconnected(())) => {
                tracing::warn!("the SQLite checkpoint thread has stopped");
            }
        }
        number
    }

    /// Waits until a checkpoint that began after request `number` has completed.
    pub async fn completed(&self, number: u64) {
        let mut completed = self.completed.clone();
        // An error means the thread ended: nothing more will complete.
        let _ = completed.wait_for(|served| *served >= number).await;
    }
}

/// The thread's loop: each wake-up, after a short gathering pause, one passive checkpoint (it
/// copies what no reader still needs, never waits for a lock and never blocks the writer).
/// Ends when the `WalCheckpointer` is dropped.
fn checkpoint_when_woken(
    conn: &Connection,
    woken: &Receiver<()>,
    requested: &AtomicU64,
    publish: &watch::Sender<u64>,
) {
    while woken.recv().is_ok() {
        std::thread::sleep(GATHER);
        // Read before the checkpoint starts, so it covers every commit made before that request.
        let served = requested.load(Ordering::Acquire);
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        }) {
            Ok((log_pages, copied_pages)) => {
                tracing::trace!(log_pages, copied_pages, "WAL checkpoint");
            }
            Err(e) => tracing::warn!("WAL checkpoint failed: {e}"),
        }
        publish.send_replace(served);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use sea_orm::{ConnectionTrait, Statement};

    use crate::db::Db;

    /// Commits reach the database file itself (not only its write-ahead log) once the thread
    /// has run the checkpoint they asked for, though the writer no longer checkpoints them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_thread_copies_committed_writes_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flowcloud.db");
        let db = Db::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        let sql = |s: &str| Statement::from_string(sea_orm::DbBackend::Sqlite, s.to_owned());
        db.write()
            // `begin_write` takes the write lock with a no-op on the migrations table.
            .execute(sql(
                "CREATE TABLE seaql_migrations (version TEXT); CREATE TABLE lines (body BLOB)",
            ))
            .await
            .unwrap();
        let txn = db.begin_write().await.unwrap();
        for _ in 0..2_000 {
            txn.execute(sql("INSERT INTO lines VALUES (randomblob(1000))"))
                .await
                .unwrap();
        }
        txn.commit().await.unwrap();

        let request = db.request_wal_checkpoint().unwrap();
        tokio::time::timeout(
            std::time::Duration::from_secs(60),
            db.wal_checkpointer().unwrap().completed(request),
        )
        .await
        .expect("the checkpoint thread never finished the checkpoint");

        // The database file alone, without its log, as a copy would see it.
        let alone = dir.path().join("copy.db");
        std::fs::copy(&path, &alone).unwrap();
        let copy = rusqlite::Connection::open(&alone).unwrap();
        let rows: i64 = copy
            .query_row("SELECT count(*) FROM lines", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 2_000);
    }
}
