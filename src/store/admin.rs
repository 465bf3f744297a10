//! [`AdminStore`]: what operators change and read besides the hot path —
//! listeners disabled in the database and why, dead letters kept for
//! `replay` (and the newest pending ones, for the admin API), the
//! per-listener overview that `list` prints, and how much is in
//! quarantine. The audit trail is `audit.rs`.
//!
//! Dead letters themselves are written by recording runs
//! (`Store::record`), in the same transaction
//! as the failed run's event log row, so a run is never dead-lettered
//! without being logged (or the other way round).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::error::StoreError;
use super::inbox_rows::{DeadLetter, LoggedEvent};
use super::model::{ListenerOverview, ListenerState};

/// Operator state and history; every `Store` implements it.
#[async_trait]
pub trait AdminStore: Send + Sync {
    /// Every listener with a row in `event_listeners_listenerstate`, by name.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    async fn listener_states(&self) -> Result<Vec<ListenerState>, StoreError>;

    /// Enables or disables `name`, recording `reason` and `actor`, and,
    /// when `audited`, writes the matching audit row in the same transaction.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails; nothing is written then.
    async fn set_listener_enabled(
        &self,
        name: &str,
        enabled: bool,
        reason: Option<&str>,
        actor: &str,
        audited: bool,
    ) -> Result<(), StoreError>;

    /// Dead letters of `listener`'s runs, oldest first: those created at or
    /// after `since`, of inbox row `inbox_id`, when given; only those not yet
    /// replayed unless `include_replayed`. A dead letter whose inbox row is
    /// unreadable is logged and left out, and so is a refused reply's
    /// (stage `reply`): running the listener again would not send it, the
    /// reply sender does (`DeadLetterStore::requeue_failed_replies`).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    async fn dead_letters(
        &self,
        listener: &str,
        since: Option<DateTime<Utc>>,
        inbox_id: Option<i64>,
        include_replayed: bool,
    ) -> Result<Vec<DeadLetter>, StoreError>;

    /// Inbox events with a run of `listener` in the event log (logged at or
    /// after `since`, and only inbox row `inbox_id`, when given), oldest
    /// first: what `replay --event` re-runs when there is no dead letter.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    async fn logged_events(
        &self,
        listener: &str,
        since: Option<DateTime<Utc>>,
        inbox_id: Option<i64>,
    ) -> Result<Vec<LoggedEvent>, StoreError>;

    /// Marks dead letters `ids` replayed now, successfully or not; returns
    /// how many rows changed.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    async fn mark_replayed(&self, ids: &[i64], success: bool) -> Result<u64, StoreError>;

    /// The newest `limit` pending dead letters (of `listener` only, when
    /// given), newest first, without their events.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    async fn pending_dead_letters(
        &self,
        listener: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PendingDeadLetter>, StoreError>;

    /// Per listener with logged runs or statistics, sorted by name: failed
    /// runs since `since` and the last success. The last success comes from
    /// the statistics buckets (which outlive `cleanup`) and the event log
    /// since `since`; only when there are no buckets at all (statistics
    /// disabled) is the whole event log searched.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    async fn listener_overview(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<ListenerOverview>, StoreError>;

    /// Rows in `event_listeners_quarantine`: what Zulip sent that is no
    /// event as it came (`stats` shows it).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    async fn quarantined_count(&self) -> Result<i64, StoreError>;
}

/// A pending dead letter without its event, as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct PendingDeadLetter {
    /// The dead letter's id.
    pub id: i64,
    /// The listener whose run failed.
    #[sqlx(rename = "listener_name")]
    pub listener: String,
    /// The event's inbox row.
    pub inbox_id: i64,
    /// The event's type.
    pub event_type: String,
    /// The last failure.
    pub error: Option<String>,
    /// Tries made.
    pub attempts: i64,
    /// When the run failed for the last time.
    pub created_at: DateTime<Utc>,
    /// The fallback listener the event was handed to, if one ran.
    pub fallback_listener: Option<String>,
    /// How that fallback's run ended: `ran_ok` or `failed`.
    pub fallback_outcome: Option<String>,
}
