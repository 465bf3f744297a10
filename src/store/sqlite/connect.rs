//! [`SqliteStore`]: opening the embedded database, one file in WAL mode,
//! and its migrations. `synchronous = FULL` keeps every commit on disk
//! before the daemon acknowledges the events to Zulip; once the file was
//! deleted or replaced (`identity.rs`), [`SqliteStore::abandon`] lets it go.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Sqlite, SqliteConnection, TransactionManager};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::identity::{OpenFiles, Watched};
use crate::store::crypto::Cipher;
use crate::store::dialect::Dialect;
use crate::store::error::StoreError;
use crate::store::lock::LockState;
use crate::store::model::StoreOptions;
use crate::store::sql::Pool;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Rows (or ids) per multi-row statement, far below SQLite's limit of
/// 32766 parameters.
pub(super) const CHUNK: usize = 200;

/// The SQLite store.
pub struct SqliteStore {
    pool: SqlitePool,
    location: String,
    opts: StoreOptions,
    lock: Arc<LockState>,
    files: OpenFiles,
    /// This process's turn to write (see [`SqliteStore::write_turn`]).
    writer: Semaphore,
}

/// The distributed mode needs PostgreSQL: every method says so.
impl crate::store::leader::LeaderStore for SqliteStore {}

impl SqliteStore {
    /// Opens (creating if missing) the database file of `connect`;
    /// `location` is its absolute path.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the file cannot be created or opened.
    pub(crate) async fn open(
        connect: SqliteConnectOptions,
        location: String,
        opts: &StoreOptions,
    ) -> Result<SqliteStore, StoreError> {
        let connect = connect
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .statement_cache_capacity(512);
        if let Some(dir) = connect
            .get_filename()
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(opts.max_connections.clamp(1, 4))
            .after_release(|conn, _| Box::pin(settled(conn)))
            .connect_with(connect.clone())
            .await?;
        // The pool has opened the file (an in-memory database has none).
        let database = Watched::at(connect.get_filename()).ok();
        Ok(SqliteStore {
            pool,
            location,
            opts: opts.clone(),
            lock: Arc::default(),
            files: OpenFiles::new(database),
            writer: Semaphore::new(1),
        })
    }

    /// The file behind the store.
    pub fn path(&self) -> &Path {
        Path::new(&self.location)
    }

    /// The connection pool, for tests.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The database file and lock file, as opened.
    pub(super) fn files(&self) -> &OpenFiles {
        &self.files
    }

    /// Gives up the file after [`OpenFiles::check`] failed: empties the
    /// write-ahead log into the file that was opened, wherever it is now
    /// (unlinked, or moved aside by an operator), so that the log left
    /// beside the path is never paired with whatever file the path names
    /// next; then closes the pool, so nothing more is written to it. `conn`
    /// is the connection that committed last: a new one would open the
    /// path, that is, the other file.
    pub(super) async fn abandon(&self, mut conn: PoolConnection<Sqlite>) {
        let emptied = sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut *conn)
            .await;
        match emptied {
            Ok((0, _, _)) => {}
            Ok((_, log, done)) => tracing::warn!(
                frames = log,
                checkpointed = done,
                "Cannot empty the write-ahead log of the SQLite database that was deleted or replaced"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                "Cannot empty the write-ahead log of the SQLite database that was deleted or replaced"
            ),
        }
        drop(conn);
        self.pool.close().await;
    }

    /// The options it was opened with.
    pub(super) fn opts(&self) -> &StoreOptions {
        &self.opts
    }

    /// Waits for this process's turn to write, held until the write
    /// transaction ends. SQLite has one writer per file, and a writer that
    /// finds the file locked polls it (`busy_timeout`) with sleeps of 1 to
    /// 100 ms, waking well after the lock is free: intake's appends and the
    /// recorder's batches, alternating on one file, spent more time asleep
    /// than writing. Queued here, each starts the moment the one before
    /// ends. Other processes (`replay`, `cleanup`) and the rare writes that
    /// take no turn still meet `busy_timeout`, as before.
    pub(super) async fn write_turn(&self) -> Option<SemaphorePermit<'_>> {
        // Never closed: `None` would only mean writing without a turn.
        self.writer.acquire().await.ok()
    }
}

/// Whether a connection handed back to the pool may be used again. On a
/// full disk or an I/O error SQLite may roll a transaction back by itself;
/// sqlx's own ROLLBACK then fails and it still counts the transaction as
/// open, so the connection's next BEGIN would be a SAVEPOINT and its COMMIT
/// a RELEASE inside a transaction that never ends: writes that look
/// committed (and would be acknowledged) but are not, and a write lock held
/// for ever. Such a connection is closed instead.
async fn settled(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    // Runs after the ROLLBACK a dropped transaction queued.
    conn.ping().await?;
    Ok(<Sqlite as sqlx::Database>::TransactionManager::get_transaction_depth(conn) == 0)
}

#[async_trait::async_trait]
impl Dialect for SqliteStore {
    const NAME: &'static str = "sqlite";
    const MIGRATIONS_TABLE: &'static str =
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'";

    fn migrator(&self) -> &'static Migrator {
        &MIGRATOR
    }

    fn pool(&self) -> Pool<'_> {
        Pool::Sqlite(&self.pool)
    }

    fn location(&self) -> &str {
        &self.location
    }

    fn cipher(&self) -> &Cipher {
        &self.opts.cipher
    }

    fn lock_state(&self) -> &Arc<LockState> {
        &self.lock
    }
}
