//! The rows the store moves, shared by both backends: where events came
//! from ([`Origin`]), the cursor, stored and unfinished events, finished
//! runs and the operator's rows (listener states, the listener overview).
//! The rows read back as events (dead letters, logged events, unfinished
//! rows) are `inbox_rows.rs`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::crypto::Cipher;
use super::triage_model::DeadLetterCause;
use crate::event::Event;
use crate::listeners::Record;

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

/// A batch's place in a line of appends in flight
/// (`Store::append_in_line`; see `ARCHITECTURE.md`, "Two batches in
/// flight").
#[derive(Debug, Default)]
pub struct Line {
    /// The batch before, still in flight: where it leaves the cursor, and
    /// how far it has come ([`Line::written`]). This batch takes its inbox
    /// ids only once that one has taken all of its own (so that they
    /// follow them), and writes the cursor only once that one has written
    /// it (or has given up), and only from there.
    pub after: Option<(Cursor, tokio::sync::watch::Receiver<Turn>)>,
    /// This batch's progress, for the batch after: its inbox ids taken,
    /// then its cursor write run (its transaction holding the cursor's
    /// row until it ends).
    pub written: Option<tokio::sync::watch::Sender<Turn>>,
}

/// How far a batch in a line of appends has come, as the batch after it
/// sees it. A batch whose side of the channel is dropped has given up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Turn {
    /// Sent, nothing written yet.
    #[default]
    Begun,
    /// Every inbox id of the batch is taken: one after it may take its own.
    IdsTaken,
    /// The cursor write has run, holding the cursor's row.
    CursorWritten,
}

impl Line {
    /// Waits for the batch before to have taken its inbox ids (or to have
    /// given up).
    pub async fn wait_ids(&self) {
        self.wait_for(Turn::IdsTaken).await;
    }

    /// Waits for the batch before to have written its rows and the
    /// cursor, or to have given up (its end of the channel dropped).
    pub async fn wait_turn(&self) {
        self.wait_for(Turn::CursorWritten).await;
    }

    async fn wait_for(&self, turn: Turn) {
        if let Some((_, written)) = &self.after {
            let _ = written.clone().wait_for(|t| *t >= turn).await;
        }
    }

    /// Tells the batch after that this one has taken its inbox ids.
    pub fn pass_ids(&self) {
        if let Some(w) = &self.written {
            w.send_if_modified(|t| {
                let moved = *t < Turn::IdsTaken;
                if moved {
                    *t = Turn::IdsTaken;
                }
                moved
            });
        }
    }

    /// Whether this batch has told the batch after that its ids are taken.
    pub fn ids_passed(&self) -> bool {
        self.written
            .as_ref()
            .is_some_and(|w| *w.borrow() >= Turn::IdsTaken)
    }

    /// Tells the batch after that this one has written the cursor.
    pub fn pass_turn(&self) {
        if let Some(w) = &self.written {
            w.send_replace(Turn::CursorWritten);
        }
    }
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
    /// The run failed for the last time: also write it, with where and
    /// how it failed, to `event_listeners_deadletter` for `replay` and
    /// `deadletters retry`.
    pub dead_letter: Option<DeadLetterCause>,
    /// How the run is tied to fallback listeners (`[listeners.NAME]
    /// fallback`): none for most runs.
    pub fallback: FallbackLink,
}

/// A run's place in a fallback chain. The runs of one chain (a primary's
/// last failure and the fallback runs it handed the event to) are committed
/// in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FallbackLink {
    /// On a fallback's run: the listener whose failure handed it the event.
    /// Such a run is not one the dispatcher started for the event, so it
    /// does not count towards the event's outstanding runs.
    pub handed_from: Option<Arc<str>>,
    /// On a dead-lettered run: the fallback it handed the event to, and how
    /// that run ended (`fallback_listener`, `fallback_outcome` of its dead
    /// letter).
    pub handed_to: Option<(Arc<str>, FallbackOutcome)>,
}

/// A dead letter's `fallback_listener` and `fallback_outcome` columns.
pub(crate) fn fallback_columns(run: &RunRecord) -> (Option<&str>, Option<&'static str>) {
    match &run.fallback.handed_to {
        Some((name, outcome)) => (Some(&**name), Some(outcome.as_str())),
        None => (None, None),
    }
}

/// How a fallback's run ended, as its primary's dead letter records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackOutcome {
    /// The fallback ran and succeeded.
    RanOk,
    /// The fallback failed too (and was dead-lettered itself).
    Failed,
}

impl FallbackOutcome {
    /// `ran_ok` or `failed`, the `fallback_outcome` column.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackOutcome::RanOk => "ran_ok",
            FallbackOutcome::Failed => "failed",
        }
    }
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
    use super::super::inbox_rows::{attempts, inbox_event};
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
