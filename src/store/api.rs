//! The [`Store`] trait: the database behind the daemon, as intake, the
//! recorder and the subcommands use it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::admin::AdminStore;
use super::audit::AuditStore;
use super::cursor_control::CursorStore;
use super::error::StoreError;
use super::leader::LeaderStore;
use super::lock::InstanceLock;
use super::model::{CleanupCounts, Cursor, Line, Origin, RunRecord, Summary, Unfinished};
use super::outbox::OutboxStore;
use super::rotation::RotationStore;
use super::statistics::StatsStore;
use super::triage::DeadLetterStore;
use super::workers::WorkerStore;
use crate::event::{Event, Quarantined};

/// The database behind the daemon.
///
/// Every method that writes does so in one transaction; the hot-path
/// methods ([`Store::append`], [`Store::record`]) write whole batches with
/// multi-row statements.
#[async_trait]
pub trait Store:
    StatsStore
    + AdminStore
    + AuditStore
    + CursorStore
    + DeadLetterStore
    + OutboxStore
    + RotationStore
    + WorkerStore
    + LeaderStore
    + Send
    + Sync
{
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
    /// `e` with its cause, for the log, when it says only that the pool
    /// waited in vain for a connection: on PostgreSQL the error of one
    /// connection attempt made directly ("connection refused", "too many
    /// clients"). Any other error as it is.
    async fn explain(&self, e: StoreError) -> StoreError;
    /// Takes the exclusive lock of `instance` for this process's lifetime
    /// (see `lock.rs`); `run` holds it to the end.
    async fn lock_instance(&self, instance: &str) -> Result<InstanceLock, StoreError>;
    /// [`Store::lock_instance`] for each of `instances` (the organizations
    /// of one process); on SQLite, whose lock covers the whole file, the
    /// one lock serves them all.
    async fn lock_instances(&self, instances: &[String]) -> Result<Vec<InstanceLock>, StoreError>;
    /// The stored queue position of `instance`.
    async fn load_cursor(&self, instance: &str) -> Result<Option<Cursor>, StoreError>;
    /// Stores `events` from `origin` and, in the same transaction, moves
    /// the cursor to `cursor`. Returns the inbox id of each event, `None`
    /// for one already stored (and for a later copy of an event id the
    /// batch repeats: only the first is stored, so only it is dispatched).
    async fn append(
        &self,
        instance: &str,
        origin: &Origin,
        events: &[Event],
        cursor: Option<&Cursor>,
    ) -> Result<Vec<Option<i64>>, StoreError> {
        self.append_quarantining(instance, origin, events, &[], cursor)
            .await
    }
    /// [`Store::append`], also writing `quarantined` to
    /// `event_listeners_quarantine` in the same transaction.
    async fn append_quarantining(
        &self,
        instance: &str,
        origin: &Origin,
        events: &[Event],
        quarantined: &[Quarantined],
        cursor: Option<&Cursor>,
    ) -> Result<Vec<Option<i64>>, StoreError>;
    /// How many appends of one queue may be in flight at once: 2 on
    /// PostgreSQL (with [`Store::append_in_line`]), 1 on SQLite, whose
    /// one writer would only make the second wait on the file.
    fn appends_in_flight(&self) -> usize;
    /// [`Store::append_quarantining`] of a batch in a line of appends in
    /// flight (`line`). With a batch before it still in flight, it writes
    /// the cursor only once that one has (or has given up), then waits for
    /// that one's transaction, and moves the cursor only from where that
    /// one leaves it; found anywhere else (that batch rolled back, or never
    /// wrote it), the batch is rolled back with [`StoreError::OutOfTurn`].
    /// Once its own cursor write has run, it tells the batch after. So
    /// whatever crashes when, the cursor is always the end of batches all
    /// committed, in order. See `ARCHITECTURE.md`, "Two batches in flight".
    async fn append_in_line(
        &self,
        instance: &str,
        origin: &Origin,
        events: &[Event],
        quarantined: &[Quarantined],
        cursor: &Cursor,
        line: &Line,
    ) -> Result<Vec<Option<i64>>, StoreError>;
    /// The raw JSON stored for event `event_id` of `origin`, if any.
    async fn inbox_raw(
        &self,
        instance: &str,
        origin: &Origin,
        event_id: i64,
    ) -> Result<Option<String>, StoreError>;
    /// Writes finished runs (event log, stats, listener records, a dead
    /// letter for each run marked [`RunRecord::dead_letter`]) and, in the
    /// same transaction, records that every inbox id up to `dispatched_through`
    /// has all its runs recorded: [`Store::record_batch`] untagged.
    async fn record(
        &self,
        instance: &str,
        runs: &[RunRecord],
        dispatched_through: Option<i64>,
    ) -> Result<(), StoreError> {
        self.record_batch(instance, runs, dispatched_through, 0)
            .await
    }
    /// [`Store::record`] tagged with a nonzero random `batch` id, written in
    /// the same transaction, so that after an error whose cause is unknown
    /// (the answer to COMMIT lost with the connection) [`Store::last_record_batch`]
    /// tells whether it was committed. A `batch` of 0 leaves the last tag as
    /// it was.
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
    /// The inbox ids of events of `origin` already stored, by event id.
    async fn inbox_ids(
        &self,
        instance: &str,
        origin: &Origin,
        event_ids: &[i64],
    ) -> Result<Vec<(i64, i64)>, StoreError>;
    /// Inbox events after the recorded `dispatched_through`, with the
    /// listeners that already ran them. On PostgreSQL it first waits for
    /// the last statements of a killed predecessor on this host to end
    /// (`postgres/predecessor.rs`), so none commits after it has read.
    async fn unfinished(&self, instance: &str) -> Result<Vec<Unfinished>, StoreError>;
    /// Deletes event log and inbox rows older than `before`, and replies
    /// sent before it.
    async fn cleanup(&self, before: DateTime<Utc>) -> Result<CleanupCounts, StoreError>;
    /// Row counts.
    async fn summary(&self) -> Result<Summary, StoreError>;
}
