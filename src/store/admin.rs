//! [`AdminStore`]: what operators change and read besides the hot path —
//! listeners disabled in the database and why, dead letters kept for
//! `replay`, the audit trail of who did what, and the per-listener overview
//! that `list` prints; with the pieces both backends share.
//!
//! Dead letters themselves are written by [`super::Store::record`], in the
//! same transaction as the failed run's event log row, so a run is never
//! dead-lettered without being logged (or the other way round).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use super::backend::StoreError;
use crate::event::Event;

/// Whether a listener is switched on in the database, and who switched it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerState {
    /// The listener.
    pub name: String,
    /// `false` after `disable`, `true` after `enable`.
    pub enabled: bool,
    /// Why, as given to `disable --reason`.
    pub reason: Option<String>,
    /// Who changed it (`user@host`).
    pub changed_by: String,
    /// When.
    pub changed_at: DateTime<Utc>,
}

/// A run that failed for the last time, with the event it failed on.
#[derive(Debug)]
pub struct DeadLetter {
    /// `event_listeners_deadletter.id`.
    pub id: i64,
    /// The event's inbox row.
    pub inbox_id: i64,
    /// The event's type.
    pub event_type: String,
    /// The run's error.
    pub error: Option<String>,
    /// Tries the run took.
    pub attempts: u32,
    /// When the run was dead-lettered.
    pub created_at: DateTime<Utc>,
    /// When it was replayed, if it was.
    pub replayed_at: Option<DateTime<Utc>>,
    /// Whether that replay succeeded.
    pub replay_success: Option<bool>,
    /// The event, rebuilt from the inbox row's raw JSON.
    pub event: Event,
}

/// An inbox event that a listener has a logged run of.
#[derive(Debug)]
pub struct LoggedEvent {
    /// The event's inbox row.
    pub inbox_id: i64,
    /// The most tries any logged run of the listener on it took.
    pub attempts: u32,
    /// The event, rebuilt from the inbox row's raw JSON.
    pub event: Event,
}

/// One listener's recent health, for `list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerOverview {
    /// The listener.
    pub listener: String,
    /// Failed runs logged since the start of the window.
    pub failures: i64,
    /// When a run of it last succeeded.
    pub last_success: Option<DateTime<Utc>>,
}

/// What an audit row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    /// A listener was enabled.
    Enable,
    /// A listener was disabled.
    Disable,
    /// Dead letters or logged events were replayed.
    Replay,
    /// Old rows were deleted.
    Cleanup,
}

impl AuditAction {
    /// The text stored in `event_listeners_audit.action`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Enable => "enable",
            AuditAction::Disable => "disable",
            AuditAction::Replay => "replay",
            AuditAction::Cleanup => "cleanup",
        }
    }
}

/// Operator state and history; every [`super::Store`] implements it.
#[async_trait]
pub trait AdminStore: Send + Sync {
    /// Every listener with a row in `event_listeners_listenerstate`, by name.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    async fn listener_states(&self) -> Result<Vec<ListenerState>, StoreError>;

    /// Enables or disables `name`, recording `reason` and `actor`, and
    /// writes the matching audit row in the same transaction.
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
    ) -> Result<(), StoreError>;

    /// Dead letters of `listener`, oldest first: those created at or after
    /// `since`, of inbox row `inbox_id`, when given; only those not yet
    /// replayed unless `include_replayed`. A dead letter whose inbox row is
    /// unreadable is logged and left out.
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

    /// Appends a row to `event_listeners_audit`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    async fn audit(
        &self,
        actor: &str,
        action: AuditAction,
        listener: Option<&str>,
        detail: &str,
    ) -> Result<(), StoreError>;

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
}

/// Rebuilds an inbox row's event as [`super::Store::unfinished`] does; an
/// unreadable row is logged and gives `None`.
pub(super) fn inbox_event(
    inbox_id: i64,
    event_id: i64,
    backfilled: bool,
    raw: String,
) -> Option<Event> {
    let event = RawValue::from_string(raw)
        .map_err(|e| e.to_string())
        .and_then(|raw| {
            Event::from_raw_parts(raw, Some(event_id), backfilled).map_err(|e| e.to_string())
        });
    match event {
        Ok(event) => Some(event),
        Err(error) => {
            tracing::warn!(inbox_id, error = %error, "Skipping an unreadable inbox row");
            None
        }
    }
}

/// A non-negative attempt count read from the database.
pub(super) fn attempts(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// Merges the overview rows: `(listener, failures, newest success)` from
/// the event log window and `(listener, last success)` from elsewhere.
pub(super) fn merge_overview(
    window: Vec<(String, i64, Option<DateTime<Utc>>)>,
    older: Vec<(String, Option<DateTime<Utc>>)>,
) -> Vec<ListenerOverview> {
    let mut map: std::collections::BTreeMap<String, ListenerOverview> = Default::default();
    for (listener, failures, last) in window {
        let o = map
            .entry(listener.clone())
            .or_insert_with(|| ListenerOverview {
                listener,
                failures: 0,
                last_success: None,
            });
        o.failures += failures;
        o.last_success = o.last_success.max(last);
    }
    for (listener, last) in older {
        let o = map
            .entry(listener.clone())
            .or_insert_with(|| ListenerOverview {
                listener,
                failures: 0,
                last_success: None,
            });
        o.last_success = o.last_success.max(last);
    }
    map.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inbox_row_is_rebuilt_with_its_stored_id_and_an_unreadable_one_is_skipped() {
        let e = inbox_event(7, 42, true, r#"{"type":"typing","op":"start"}"#.into()).unwrap();
        assert_eq!(
            (e.id(), e.event_type(), e.op()),
            (42, "typing", Some("start"))
        );
        assert!(e.is_backfilled());
        assert!(inbox_event(8, 1, false, "not json".into()).is_none());
        assert!(inbox_event(9, 1, false, r#"{"id":1}"#.into()).is_none());
    }

    #[test]
    fn the_overview_keeps_the_newest_success_from_either_source() {
        let t = |s| DateTime::<Utc>::from_timestamp(s, 0).unwrap();
        let o = merge_overview(
            vec![("b".into(), 2, Some(t(100))), ("a".into(), 0, None)],
            vec![("a".into(), Some(t(50))), ("b".into(), Some(t(90)))],
        );
        assert_eq!(
            o,
            vec![
                ListenerOverview {
                    listener: "a".into(),
                    failures: 0,
                    last_success: Some(t(50))
                },
                ListenerOverview {
                    listener: "b".into(),
                    failures: 2,
                    last_success: Some(t(100))
                },
            ]
        );
    }

    #[test]
    fn negative_attempts_read_as_zero() {
        assert_eq!(attempts(-1), 0);
        assert_eq!(attempts(3), 3);
    }
}
