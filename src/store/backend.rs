//! The [`Store`] trait, the rows it moves, and [`open`] to pick a backend
//! from a database URL.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::admin::AdminStore;
use super::statistics::StatsStore;
use crate::event::Event;
use crate::listeners::Record;

/// A database failure, split by what the caller does about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or dropped the connection: retry later.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A PostgreSQL database has migrations that `migrate` must apply first.
    #[error("the database has {count} pending migration(s) ({names}); run `zulip-event-listeners migrate` first")]
    PendingMigrations {
        /// How many.
        count: usize,
        /// Their descriptions.
        names: String,
    },
    /// Any other database error (a bug or a schema mismatch).
    #[error("database error: {0}")]
    Query(#[source] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The URL names no supported backend.
    #[error("unsupported database URL `{0}` (use sqlite://PATH or postgres://…)")]
    UnsupportedUrl(String),
}

impl StoreError {
    /// Whether waiting and retrying may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e),
            sqlx::Error::Database(db) => {
                // PostgreSQL class 08 (connection), 57P01-03 (shutdown), 53 (resources);
                // SQLite BUSY/LOCKED.
                let code = db.code().unwrap_or_default();
                if code.starts_with("08")
                    || code.starts_with("57P")
                    || code.starts_with("53")
                    || code == "5"
                    || code == "6"
                {
                    StoreError::Unavailable(e)
                } else {
                    StoreError::Query(e)
                }
            }
            _ => StoreError::Query(e),
        }
    }
}

/// Where the daemon is in its Zulip queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The Zulip site the queue lives on.
    pub site: String,
    /// The queue.
    pub queue_id: String,
    /// The last event id committed; sent as `last_event_id` to acknowledge.
    pub last_event_id: i64,
    /// The newest message id stored, the anchor of a backfill.
    pub last_message_id: Option<i64>,
}

/// An event with its inbox row id.
#[derive(Debug)]
pub struct StoredEvent {
    /// `event_listeners_inbox.id`.
    pub inbox_id: i64,
    /// The event.
    pub event: Event,
}

/// An inbox event whose runs were not all recorded, with the listeners
/// that already have a logged run.
#[derive(Debug)]
pub struct Unfinished {
    /// The event.
    pub stored: StoredEvent,
    /// Listener names with a row in the event log for it.
    pub done: Vec<String>,
}

/// One finished listener run, with what it asked to store.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// The event's inbox row.
    pub inbox_id: i64,
    /// The listener.
    pub listener: Arc<str>,
    /// The event's type.
    pub event_type: Arc<str>,
    /// Whether it succeeded.
    pub success: bool,
    /// Tries it took.
    pub attempts: u32,
    /// The error of a failed run.
    pub error: Option<String>,
    /// How long it ran.
    pub duration: Duration,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// Rows to commit with it.
    pub records: Vec<Record>,
    /// The run failed for the last time: also write it to
    /// `event_listeners_deadletter` for `replay`.
    pub dead_letter: bool,
}

/// [`Summary`] counts; the same SQL on both backends.
pub(super) const SUMMARY_COUNTS: &str = "SELECT (SELECT count(*) FROM event_listeners_inbox),
                (SELECT count(*) FROM event_listeners_eventlog),
                (SELECT count(*) FROM event_listeners_eventlog WHERE NOT success),
                (SELECT count(*) FROM event_listeners_messagelog),
                (SELECT count(*) FROM event_listeners_useractivity)";
/// [`Summary::by_type`]; the same SQL on both backends.
pub(super) const SUMMARY_BY_TYPE: &str =
    "SELECT event_type, count(*) FROM event_listeners_inbox GROUP BY event_type ORDER BY 2 DESC, 1";

/// What `cleanup` deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupCounts {
    /// Rows of `event_listeners_eventlog`.
    pub eventlog: u64,
    /// Rows of `event_listeners_inbox`.
    pub inbox: u64,
}

/// Row counts for the end-of-run summary.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Inbox rows.
    pub inbox: i64,
    /// Event log rows.
    pub eventlog: i64,
    /// Failed runs.
    pub failures: i64,
    /// `message_logger` rows.
    pub messages: i64,
    /// Users tracked.
    pub users: i64,
    /// Inbox rows per event type.
    pub by_type: Vec<(String, i64)>,
}

/// The database behind the daemon.
///
/// Every method that writes does so in one transaction; the hot-path
/// methods ([`Store::append`], [`Store::record`]) write whole batches with
/// multi-row statements.
#[async_trait]
pub trait Store: StatsStore + AdminStore + Send + Sync {
    /// `"postgres"` or `"sqlite"`.
    fn backend(&self) -> &'static str;
    /// Where the data lives, without credentials.
    fn location(&self) -> String;
    /// Descriptions of migrations not yet applied.
    async fn pending_migrations(&self) -> Result<Vec<String>, StoreError>;
    /// Applies pending migrations and returns their descriptions.
    async fn migrate(&self) -> Result<Vec<String>, StoreError>;
    /// A cheap round trip.
    async fn ping(&self) -> Result<(), StoreError>;
    /// The stored queue position of `instance`.
    async fn load_cursor(&self, instance: &str) -> Result<Option<Cursor>, StoreError>;
    /// Stores `events` from `source` (a queue id, `file:…` or `backfill`) and,
    /// in the same transaction, moves the cursor to `cursor`. Returns the
    /// inbox id of each event, `None` for one already stored.
    async fn append(
        &self,
        instance: &str,
        source: &str,
        events: &[Event],
        cursor: Option<&Cursor>,
    ) -> Result<Vec<Option<i64>>, StoreError>;
    /// Writes finished runs (event log, stats, listener records, a dead
    /// letter for each run marked [`RunRecord::dead_letter`]) and, in the
    /// same transaction, records that every inbox id up to `dispatched_through`
    /// has all its runs recorded.
    async fn record(
        &self,
        instance: &str,
        runs: &[RunRecord],
        dispatched_through: Option<i64>,
    ) -> Result<(), StoreError>;
    /// [`Store::record`] tagged with a nonzero random `batch` id, written in
    /// the same transaction, so that after an error whose cause is unknown
    /// (the answer to COMMIT lost with the connection) [`Store::last_record_batch`]
    /// tells whether it was committed.
    async fn record_batch(
        &self,
        instance: &str,
        runs: &[RunRecord],
        dispatched_through: Option<i64>,
        batch: i64,
    ) -> Result<(), StoreError>;
    /// When the cursor of `instance` last moved (the last committed poll).
    async fn cursor_updated_at(&self, instance: &str) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// The id of the last tagged batch committed for `instance` (0 if none).
    async fn last_record_batch(&self, instance: &str) -> Result<i64, StoreError>;
    /// The inbox ids of events of `source` already stored, by event id.
    async fn inbox_ids(
        &self,
        instance: &str,
        source: &str,
        event_ids: &[i64],
    ) -> Result<Vec<(i64, i64)>, StoreError>;
    /// Inbox events after the recorded `dispatched_through`, with the
    /// listeners that already ran them.
    async fn unfinished(&self, instance: &str) -> Result<Vec<Unfinished>, StoreError>;
    /// Deletes event log and inbox rows older than `before`.
    async fn cleanup(&self, before: DateTime<Utc>) -> Result<CleanupCounts, StoreError>;
    /// Row counts.
    async fn summary(&self) -> Result<Summary, StoreError>;
}

/// Options common to both backends.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Pool size.
    pub max_connections: u32,
    /// Width of a listener stats bucket.
    pub stats_interval: Duration,
    /// Whether [`Store::record`] writes listener stats rows.
    pub stats_enabled: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 8,
            stats_interval: Duration::from_secs(300),
            stats_enabled: true,
        }
    }
}

/// Opens the store named by `url`.
///
/// # Errors
///
/// [`StoreError`] when the URL is unsupported or the database unreachable.
pub async fn open(url: &str, opts: &StoreOptions) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(super::SqliteStore::open(url, opts).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(super::PgStore::open(url, opts).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}
