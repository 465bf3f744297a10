//! What a backend supplies so that `Store` and `AdminStore` are
//! implemented once for both (in `shared`): [`Dialect`] (its pool and
//! migrations), and by concern, the few statements whose text differs and
//! the operations whose SQL and Rust really differ: [`InboxDialect`] (the
//! hot-path append, set-based lookups), [`RecordDialect`] (the recorder's
//! write) and [`AdminDialect`] (casts, `now()`, id lists). `StatsStore` is
//! implemented per backend, as its statistics differ most.

use async_trait::async_trait;
use sqlx::migrate::Migrator;

use std::sync::Arc;

use super::crypto::Cipher;
use super::error::StoreError;
use super::lock::{InstanceLock, LockState};
use super::model::{Cursor, Line, RunRecord};
use super::sql::Pool;
use crate::event::{Event, Quarantined};

/// A backend's connection and migrations.
#[async_trait]
pub(crate) trait Dialect: Send + Sync {
    /// `"postgres"` or `"sqlite"`.
    const NAME: &'static str;
    /// One row whose text column is non-NULL when `_sqlx_migrations` exists.
    const MIGRATIONS_TABLE: &'static str;

    /// The backend's migrations.
    fn migrator(&self) -> &'static Migrator;
    /// The connection pool.
    fn pool(&self) -> Pool<'_>;
    /// Where the data lives, without credentials.
    fn location(&self) -> &str;
    /// How the sensitive columns are sealed and opened.
    fn cipher(&self) -> &Cipher;
    /// Whether appends may go on (the instance lock, once taken, is held).
    fn lock_state(&self) -> &Arc<LockState>;
    /// `e`, with its cause when it says only that no connection came in
    /// time (`Store::explain`).
    async fn explain(&self, e: sqlx::Error) -> sqlx::Error {
        e
    }
}

/// A backend's inbox: its hot-path append and its lookups.
#[async_trait]
pub(crate) trait InboxDialect: Dialect + super::leader::LeaderStore {
    /// `(id, event id, backfilled, raw, received_at, queue id, key id)` of
    /// instance `$1`'s inbox rows after its `dispatched_through`, by id.
    const UNFINISHED: &'static str;
    /// `(inbox id, listener)` of instance `$2`'s logged runs from inbox id
    /// `$1` on, minus the rewound ones ([`sql::DONE_RUNS`](super::sql::DONE_RUNS)).
    const DONE_RUNS: &'static str;

    /// `Store::appends_in_flight`.
    const APPENDS_IN_FLIGHT: usize;

    /// `Store::append_quarantining` with the origin as stored; with
    /// `line`, `Store::append_in_line`.
    async fn insert_events(
        &self,
        instance: &str,
        origin: &str,
        events: &[Event],
        quarantined: &[Quarantined],
        cursor: Option<&Cursor>,
        line: Option<&Line>,
    ) -> Result<Vec<Option<i64>>, StoreError>;

    /// `Store::inbox_ids` with the origin as stored.
    async fn find_inbox_ids(
        &self,
        instance: &str,
        origin: &str,
        event_ids: &[i64],
    ) -> Result<Vec<(i64, i64)>, StoreError>;

    /// Waits, before recovery reads what is unfinished, until nothing a
    /// stopped predecessor sent can still commit. Nothing to wait for by
    /// default (SQLite's writes die with their process).
    async fn settle(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether one lock covers every instance (SQLite's, on the file).
    const LOCK_COVERS_EVERY_INSTANCE: bool = false;

    /// `Store::lock_instance`.
    async fn take_lock(&self, instance: &str) -> Result<InstanceLock, StoreError>;
}

/// A backend's recorder write.
#[async_trait]
pub(crate) trait RecordDialect: Dialect {
    /// `Store::record_batch`.
    async fn insert_runs(
        &self,
        instance: &str,
        runs: &[RunRecord],
        dispatched_through: Option<i64>,
        batch: i64,
    ) -> Result<(), StoreError>;
}

/// A backend's operator writes and the reads whose casts differ.
#[async_trait]
pub(crate) trait AdminDialect: Dialect {
    /// A `DeadLetterRow` per dead letter of listener `$1`'s runs (not its
    /// refused replies), created at or after `$2` and of inbox row `$3`
    /// unless NULL, replayed ones only if `$4`.
    const DEAD_LETTERS: &'static str;
    /// A `LoggedEventRow` per inbox row with a run of listener `$1` logged
    /// at or after `$2` and of inbox row `$3` unless NULL.
    const LOGGED_EVENTS: &'static str;
    /// Whether [`AdminDialect::UPSERT_LISTENER_STATE`] and
    /// [`AdminDialect::INSERT_AUDIT`] take the current time as one more
    /// parameter, after the others (SQLite, whose times are bound from Rust
    /// so that they compare as text with the recorder's), rather than
    /// reading the server's `now()` (PostgreSQL).
    const BINDS_NOW: bool;
    /// Upserts listener `$1`'s state: enabled `$2`, reason `$3`, changed by
    /// `$4`, now.
    const UPSERT_LISTENER_STATE: &'static str;
    /// An audit row of actor `$1`, action `$2`, target `$3`, detail `$4`,
    /// outcome `$5`, now.
    const INSERT_AUDIT: &'static str;

    /// `AdminStore::mark_replayed` for a non-empty `ids`.
    async fn set_replayed(&self, ids: &[i64], success: bool) -> Result<u64, StoreError>;
}
