//! The rows the store moves, shared by both backends: where events came
//! from ([`Origin`]), the cursor, stored and unfinished events, finished
//! runs, the operator's rows (listener states, dead letters, logged events),
//! and the decoding of inbox rows back into events.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use super::crypto::Cipher;
use super::crypto::{Aad, CryptoError};
use super::error::StoreError;
use crate::event::Event;
use crate::listeners::Record;
use crate::pii::Pii;

/// Where a batch of events came from; stored in `event_listeners_inbox.queue_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The Zulip event queue with this id.
    Queue(String),
    /// Messages fetched with `GET /messages` to fill a gap.
    Backfill,
    /// A file of recorded events (`run --events`).
    File(PathBuf),
}

impl Origin {
    /// The text stored for it: the queue id, `backfill`, or `file:` and the
    /// file's absolute path.
    pub fn as_stored(&self) -> Cow<'_, str> {
        match self {
            Origin::Queue(id) => Cow::Borrowed(id),
            Origin::Backfill => Cow::Borrowed("backfill"),
            Origin::File(path) => Cow::Owned(format!(
                "file:{}",
                std::path::absolute(path)
                    .unwrap_or_else(|_| path.clone())
                    .display()
            )),
        }
    }

    /// Whether this is the queue `queue_id`.
    pub fn is_queue(&self, queue_id: &str) -> bool {
        matches!(self, Origin::Queue(id) if id == queue_id)
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

/// A cursor row as stored: older rows may lack a site or an event id.
#[derive(sqlx::FromRow)]
pub(super) struct CursorRow {
    site: Option<String>,
    queue_id: String,
    last_event_id: Option<i64>,
    last_message_id: Option<i64>,
}

impl From<CursorRow> for Cursor {
    fn from(r: CursorRow) -> Cursor {
        Cursor {
            site: r.site.unwrap_or_default(),
            queue_id: r.queue_id,
            last_event_id: r.last_event_id.unwrap_or(-1),
            last_message_id: r.last_message_id,
        }
    }
}

/// An event with its inbox row id.
#[derive(Debug)]
pub struct StoredEvent {
    /// `event_listeners_inbox.id`.
    pub inbox_id: i64,
    /// The event.
    pub event: Event,
    /// When it was stored (`event_listeners_inbox.received_at`; on the hot
    /// path, the daemon's clock at the append, within milliseconds of it).
    pub received_at: DateTime<Utc>,
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

/// What `cleanup` deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupCounts {
    /// Rows of `event_listeners_eventlog`.
    pub eventlog: u64,
    /// Rows of `event_listeners_inbox`.
    pub inbox: u64,
    /// Sent rows of `event_listeners_replyoutbox`.
    pub replies: u64,
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
    /// Elements kept in `event_listeners_quarantine`.
    pub quarantined: i64,
    /// Inbox rows per event type.
    pub by_type: Vec<(String, i64)>,
}

/// Options common to both backends.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Pool size.
    pub max_connections: u32,
    /// Width of a listener stats bucket.
    pub stats_interval: Duration,
    /// Whether recording runs writes listener stats rows.
    pub stats_enabled: bool,
    /// How the sensitive columns are sealed and opened (none by default).
    pub cipher: Cipher,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 8,
            stats_interval: Duration::from_secs(300),
            stats_enabled: true,
            cipher: Cipher::default(),
        }
    }
}

/// Whether a listener is switched on in the database, and who switched it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ListenerState {
    /// The listener.
    #[sqlx(rename = "listener_name")]
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
    /// The organization (`instance`) of that inbox row.
    pub instance: String,
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
    /// When the event was stored.
    pub received_at: DateTime<Utc>,
}

/// A dead letter row joined with its inbox row, before the event is rebuilt.
#[derive(sqlx::FromRow)]
pub(super) struct DeadLetterRow {
    id: i64,
    inbox_id: i64,
    event_type: String,
    error: Option<String>,
    attempts: i64,
    created_at: DateTime<Utc>,
    replayed_at: Option<DateTime<Utc>>,
    replay_success: Option<bool>,
    event_id: i64,
    backfilled: bool,
    raw: String,
    received_at: DateTime<Utc>,
    instance: String,
    queue_id: String,
    key_id: Option<String>,
}

impl DeadLetterRow {
    /// The dead letter; `None` (logged) when its inbox row is no event.
    ///
    /// # Errors
    ///
    /// [`CryptoError`] when its inbox row does not decrypt.
    pub(super) fn decode(self, cipher: &Cipher) -> Result<Option<DeadLetter>, CryptoError> {
        let raw = open_raw(
            cipher,
            &self.instance,
            &self.queue_id,
            self.event_id,
            self.key_id.as_deref(),
            self.raw,
        )?;
        let Some(event) = inbox_event(self.inbox_id, self.event_id, self.backfilled, raw) else {
            return Ok(None);
        };
        Ok(Some(DeadLetter {
            event,
            id: self.id,
            inbox_id: self.inbox_id,
            instance: self.instance,
            event_type: self.event_type,
            error: self.error,
            attempts: attempts(self.attempts),
            created_at: self.created_at,
            replayed_at: self.replayed_at,
            replay_success: self.replay_success,
            received_at: self.received_at,
        }))
    }
}

/// An inbox event that a listener has a logged run of.
#[derive(Debug)]
pub struct LoggedEvent {
    /// The event's inbox row.
    pub inbox_id: i64,
    /// The organization (`instance`) of that inbox row.
    pub instance: String,
    /// The most tries any logged run of the listener on it took.
    pub attempts: u32,
    /// The event, rebuilt from the inbox row's raw JSON.
    pub event: Event,
    /// When the event was stored.
    pub received_at: DateTime<Utc>,
}

/// A logged event row, before the event is rebuilt.
#[derive(sqlx::FromRow)]
pub(super) struct LoggedEventRow {
    inbox_id: i64,
    attempts: i64,
    event_id: i64,
    backfilled: bool,
    raw: String,
    received_at: DateTime<Utc>,
    instance: String,
    queue_id: String,
    key_id: Option<String>,
}

impl LoggedEventRow {
    /// The logged event; `None` (logged) when its inbox row is no event.
    ///
    /// # Errors
    ///
    /// [`CryptoError`] when its inbox row does not decrypt.
    pub(super) fn decode(self, cipher: &Cipher) -> Result<Option<LoggedEvent>, CryptoError> {
        let raw = open_raw(
            cipher,
            &self.instance,
            &self.queue_id,
            self.event_id,
            self.key_id.as_deref(),
            self.raw,
        )?;
        Ok(
            inbox_event(self.inbox_id, self.event_id, self.backfilled, raw).map(|event| {
                LoggedEvent {
                    event,
                    inbox_id: self.inbox_id,
                    instance: self.instance,
                    attempts: attempts(self.attempts),
                    received_at: self.received_at,
                }
            }),
        )
    }
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

/// The plain raw JSON of the inbox row of (`instance`, `queue_id`,
/// `event_id`) stored as `raw` under `key_id`.
///
/// # Errors
///
/// [`CryptoError`] when its key is not held or it does not decrypt.
pub(super) fn open_raw(
    cipher: &Cipher,
    instance: &str,
    queue_id: &str,
    event_id: i64,
    key_id: Option<&str>,
    raw: String,
) -> Result<String, CryptoError> {
    let row = Aad::Inbox {
        instance,
        queue_id,
        event_id,
    };
    cipher.open(key_id, &row, raw)
}

/// Rebuilds an inbox row's event; an unreadable row is logged and gives `None`.
pub(super) fn inbox_event(
    inbox_id: i64,
    event_id: i64,
    backfilled: bool,
    raw: String,
) -> Option<Event> {
    let event = RawValue::from_string(raw)
        .map_err(|e| e.to_string())
        .and_then(|raw| Event::from_stored(raw, event_id, backfilled).map_err(|e| e.to_string()));
    match event {
        Ok(event) => Some(event),
        Err(error) => {
            tracing::warn!(inbox_id, error = %Pii(&error), "Skipping an unreadable inbox row");
            None
        }
    }
}

/// An inbox row read by `InboxDialect::UNFINISHED`: id, event id,
/// backfilled, raw JSON, received at, queue id, key id.
pub(super) type UnfinishedRow = (
    i64,
    i64,
    bool,
    String,
    DateTime<Utc>,
    String,
    Option<String>,
);

/// A non-negative attempt count read from the database.
pub(super) fn attempts(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// Builds [`Unfinished`] values from `(inbox id, event id, backfilled, raw,
/// received at, …)` rows of `instance` and the listeners that already ran
/// each inbox id. A row that does not decrypt or is not JSON fails the
/// read; one that is JSON but no event is logged and skipped (one stored
/// as `malformed` is `malformed` again).
pub(super) fn rows_to_unfinished(
    rows: Vec<UnfinishedRow>,
    mut done: HashMap<i64, Vec<String>>,
    cipher: &Cipher,
    instance: &str,
) -> Result<Vec<Unfinished>, StoreError> {
    let mut out = Vec::new();
    for (inbox_id, event_id, backfilled, raw, received_at, queue_id, key_id) in rows {
        let raw = open_raw(
            cipher,
            instance,
            &queue_id,
            event_id,
            key_id.as_deref(),
            raw,
        )?;
        let raw = RawValue::from_string(raw)
            .map_err(|e| StoreError::Query(sqlx::Error::Decode(Box::new(e))))?;
        match Event::from_stored(raw, event_id, backfilled) {
            Ok(event) => out.push(Unfinished {
                stored: StoredEvent {
                    inbox_id,
                    event,
                    received_at,
                },
                done: done.remove(&inbox_id).unwrap_or_default(),
            }),
            Err(e) => {
                tracing::warn!(inbox_id, error = %Pii(&e), "Skipping an unreadable inbox row")
            }
        }
    }
    Ok(out)
}

/// Merges the overview rows: `(listener, failures, newest success)` from
/// the event log window and `(listener, last success)` from elsewhere.
pub(super) fn merge_overview(
    window: Vec<(String, i64, Option<DateTime<Utc>>)>,
    older: Vec<(String, Option<DateTime<Utc>>)>,
) -> Vec<ListenerOverview> {
    let mut map: BTreeMap<String, ListenerOverview> = BTreeMap::new();
    let older = older
        .into_iter()
        .map(|(listener, last)| (listener, 0, last));
    for (listener, failures, last) in window.into_iter().chain(older) {
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
    map.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inbox_row_is_rebuilt_with_its_stored_id_and_an_unreadable_one_is_skipped_a_malformed_one_kept(
    ) {
        let e = inbox_event(7, 42, true, r#"{"type":"typing","op":"start"}"#.into()).unwrap();
        assert_eq!(
            (e.id(), e.event_type(), e.op()),
            (42, "typing", Some("start"))
        );
        assert!(e.is_backfilled());
        assert!(inbox_event(8, 1, false, "not json".into()).is_none());
        // A row stored as malformed is malformed again, as it was dispatched.
        let malformed = inbox_event(9, 1, false, r#"{"id":1,"type":5}"#.into()).unwrap();
        assert_eq!(malformed.event_type(), "malformed");
        assert!(inbox_event(10, 1, false, "[1]".into()).is_none());
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

    #[test]
    fn each_origin_is_stored_as_before() {
        assert_eq!(Origin::Queue("1700-42".into()).as_stored(), "1700-42");
        assert_eq!(Origin::Backfill.as_stored(), "backfill");
        assert_eq!(
            Origin::File("/var/events.jsonl".into()).as_stored(),
            "file:/var/events.jsonl"
        );
        let relative = Origin::File("events.jsonl".into()).as_stored().into_owned();
        let absolute = std::path::absolute("events.jsonl").unwrap();
        assert_eq!(relative, format!("file:{}", absolute.display()));
        assert!(Origin::Queue("q".into()).is_queue("q"));
        assert!(!Origin::Backfill.is_queue("backfill"));
    }
}
