//! [`SqliteStore`]: opening the embedded database, one file in WAL mode,
//! and its migrations. `synchronous = FULL` keeps every commit on disk
//! before the daemon acknowledges the events to Zulip.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

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
}

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
            .connect_with(connect)
            .await?;
        Ok(SqliteStore {
            pool,
            location,
            opts: opts.clone(),
            lock: Arc::default(),
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

    /// The options it was opened with.
    pub(super) fn opts(&self) -> &StoreOptions {
        &self.opts
    }
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

    fn lock_state(&self) -> &Arc<LockState> {
        &self.lock
    }
}
