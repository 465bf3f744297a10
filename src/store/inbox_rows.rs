//! Inbox rows read back as events: dead letters and logged events joined
//! with their inbox row, the unfinished rows recovery dispatches again, and
//! the one function that rebuilds (and, when sealed, decrypts) an inbox
//! row's raw JSON.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use super::crypto::{Aad, Cipher, CryptoError};
use super::error::StoreError;
use super::model::{StoredEvent, Unfinished};
use crate::event::Event;
use crate::pii::Pii;

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
    /// When the run was dead-lettered (its last failure).
    pub created_at: DateTime<Utc>,
    /// When its first try failed.
    pub first_failed_at: DateTime<Utc>,
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
    first_failed_at: DateTime<Utc>,
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
            first_failed_at: self.first_failed_at,
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
