//! [`PgStore`]: connecting to PostgreSQL, its migrations, and [`Insert`],
//! how its batch inserts treat rows stored already.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Connection;

use crate::store::crypto::Cipher;
use crate::store::dialect::Dialect;
use crate::store::error::StoreError;
use crate::store::lock::LockState;
use crate::store::model::StoreOptions;
use crate::store::sql::Pool;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// The PostgreSQL store.
pub struct PgStore {
    pool: PgPool,
    /// What the pool connects with, for a direct attempt when it times out.
    connect: PgConnectOptions,
    location: String,
    opts: StoreOptions,
    lock: Arc<LockState>,
    /// The epoch its appends are fenced with (0: none; see `leader.rs`).
    fence: AtomicI64,
}

impl PgStore {
    /// Connects with `connect`; `location` is its credential-free form.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the server is unreachable, saying why ("connection
    /// refused", "too many clients") rather than that the pool timed out.
    pub(crate) async fn open(
        connect: PgConnectOptions,
        location: String,
        opts: &StoreOptions,
    ) -> Result<PgStore, StoreError> {
        let connect = connect.application_name(&super::predecessor::client_name());
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(std::time::Duration::from_secs(5))
            // No ping before each transaction: it is a round trip per batch
            // on the hot path, and a connection that died is found by the
            // statement itself, whose error every caller retries.
            .test_before_acquire(false)
            // A connection keeps its socket buffers at the size of the
            // largest statement it carried (a 1,000-event append is a
            // megabyte or two); idle in the pool, each would hold that
            // for good. Handed back at release; the next large statement
            // grows them again.
            .after_release(|conn, _| {
                Box::pin(async move {
                    conn.shrink_buffers();
                    Ok(true)
                })
            })
            .connect_with(connect.clone())
            .await;
        let pool = match pool {
            Ok(pool) => pool,
            Err(e @ sqlx::Error::PoolTimedOut) => {
                return Err(StoreError::Unavailable(
                    super::unreachable::explain(e, &connect).await,
                ))
            }
            Err(e) => return Err(e.into()),
        };
        Ok(PgStore {
            pool,
            connect,
            location,
            opts: opts.clone(),
            lock: Arc::default(),
            fence: AtomicI64::new(0),
        })
    }

    /// The connection pool, for tests and the benchmark.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// What its connections connect with (for the leader's own).
    pub(super) fn connect_options(&self) -> &PgConnectOptions {
        &self.connect
    }

    /// The fence's cell.
    pub(super) fn fence_cell(&self) -> &AtomicI64 {
        &self.fence
    }

    /// The epoch appends are fenced with, if any.
    pub(super) fn fence_epoch(&self) -> Option<i64> {
        Some(self.fence.load(Ordering::SeqCst)).filter(|e| *e > 0)
    }

    /// The options it was opened with.
    pub(super) fn opts(&self) -> &StoreOptions {
        &self.opts
    }
}

#[async_trait]
impl Dialect for PgStore {
    const NAME: &'static str = "postgres";
    const MIGRATIONS_TABLE: &'static str = "SELECT to_regclass('_sqlx_migrations')::text";

    fn migrator(&self) -> &'static Migrator {
        &MIGRATOR
    }

    fn pool(&self) -> Pool<'_> {
        Pool::Postgres(&self.pool)
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

    async fn explain(&self, e: sqlx::Error) -> sqlx::Error {
        super::unreachable::explain(e, &self.connect).await
    }
}

/// How a batch insert (inbox, message log) treats rows stored already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Insert {
    /// Assumes there are none: the fast path. A row stored already fails the
    /// whole statement with a unique violation, and the batch is retried
    /// with [`Insert::SkipExisting`]. `ON CONFLICT` is not free: measured,
    /// 100,000 1 KB inbox rows in batches of 1,000 take 8.8 µs/row of
    /// server CPU without it and 14.8 µs/row with it (a speculative
    /// insertion per row, and a second WAL record to confirm it).
    Plain,
    /// `ON CONFLICT DO NOTHING`.
    SkipExisting,
}

impl Insert {
    /// Runs `write` in the fast form, and again skipping existing rows when
    /// that fails with a unique violation (SQLSTATE 23505).
    pub(super) async fn plain_then_skipping<F, Fut, T>(write: F) -> Result<T, StoreError>
    where
        F: Fn(Insert) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        match write(Insert::Plain).await {
            Err(StoreError::Query(sqlx::Error::Database(d)))
                if d.code().as_deref() == Some("23505") =>
            {
                write(Insert::SkipExisting).await
            }
            other => other,
        }
    }
}
