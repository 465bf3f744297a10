//! Replay: re-running one listener's dead letters (or any event it has a
//! logged run of) in this process, through the dispatcher's run guard
//! (the configured timeout, panics caught), and recording each outcome like
//! a dispatched run.
//!
//! A replay is a new run: it gets its own event log row (with the attempts
//! of the run it repeats plus one) and, when it fails, a new dead letter;
//! the dead letters it repeats are marked replayed either way. So a failing
//! replay leaves exactly one pending dead letter for the event, and a
//! successful one none.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::failure::guard;
use crate::event::Event;
use crate::listeners::{Context, Listener};
use crate::store::{RunRecord, Store, StoreError};

/// One event to run again.
#[derive(Debug)]
pub struct ReplayItem {
    /// The event's inbox row.
    pub inbox_id: i64,
    /// The event.
    pub event: Event,
    /// Tries of the run being repeated (the most of its dead letters or logged runs).
    pub previous_attempts: u32,
    /// The pending dead letters this replay settles; empty for a logged
    /// event without one.
    pub dead_letters: Vec<i64>,
    /// When the event was stored.
    pub received_at: DateTime<Utc>,
    /// When the run being repeated first failed (the earliest of its dead
    /// letters); `None` for a logged event without one. A replay that fails
    /// again keeps it in its new dead letter.
    pub first_failed_at: Option<DateTime<Utc>>,
}

/// What one replay did.
#[derive(Debug, Clone)]
pub struct ReplayOutcome {
    /// The event's inbox row.
    pub inbox_id: i64,
    /// The event's type.
    pub event_type: String,
    /// The dead letters it settled.
    pub dead_letters: Vec<i64>,
    /// The attempt number recorded for it.
    pub attempts: u32,
    /// Whether the listener succeeded.
    pub success: bool,
    /// The failure, when it did not.
    pub error: Option<String>,
    /// How long the listener ran.
    pub duration: Duration,
}

/// How replayed runs are bounded and labelled.
#[derive(Debug, Clone)]
pub struct ReplaySettings {
    /// The instance (organization) the runs are recorded for.
    pub instance: String,
    /// Upper bound of one run (`performance.handler_timeout`).
    pub timeout: Duration,
}

/// The events of organization `instance` to replay through `listener`:
/// its pending dead letters (created at or after `since`, of inbox row
/// `inbox_id`, when given), one item per event, oldest first. With
/// `inbox_id` and no pending dead letter for it, the event itself when the
/// listener has a logged run of it. Another organization's events are
/// left out: their runs belong to that organization.
///
/// # Errors
///
/// [`StoreError`] when the database fails.
pub async fn select(
    store: &dyn Store,
    instance: &str,
    listener: &str,
    since: Option<DateTime<Utc>>,
    inbox_id: Option<i64>,
) -> Result<Vec<ReplayItem>, StoreError> {
    let mut letters = store.dead_letters(listener, since, inbox_id, false).await?;
    letters.retain(|d| d.instance == instance);
    if letters.is_empty() {
        let Some(id) = inbox_id else {
            return Ok(Vec::new());
        };
        return Ok(store
            .logged_events(listener, since, Some(id))
            .await?
            .into_iter()
            .filter(|l| l.instance == instance)
            .map(|l| ReplayItem {
                inbox_id: l.inbox_id,
                event: l.event,
                previous_attempts: l.attempts,
                dead_letters: Vec::new(),
                received_at: l.received_at,
                first_failed_at: None,
            })
            .collect());
    }
    // Normally one pending dead letter per event; should there be more (a
    // crash between recording a failed replay and marking the old letter),
    // the event runs once and settles them all.
    let mut by_event: BTreeMap<i64, ReplayItem> = BTreeMap::new();
    for d in letters {
        match by_event.get_mut(&d.inbox_id) {
            Some(item) => {
                item.previous_attempts = item.previous_attempts.max(d.attempts);
                item.dead_letters.push(d.id);
                item.first_failed_at = item.first_failed_at.min(Some(d.first_failed_at));
            }
            None => {
                by_event.insert(
                    d.inbox_id,
                    ReplayItem {
                        inbox_id: d.inbox_id,
                        event: d.event,
                        previous_attempts: d.attempts,
                        dead_letters: vec![d.id],
                        received_at: d.received_at,
                        first_failed_at: Some(d.first_failed_at),
                    },
                );
            }
        }
    }
    Ok(by_event.into_values().collect())
}

/// Runs `item` through `listener` once, records the run (a dead letter
/// again if it fails), and marks the dead letters it repeats replayed.
///
/// # Errors
///
/// [`StoreError`] when the outcome cannot be recorded; the dead letters
/// stay pending then.
pub async fn replay_one(
    store: &dyn Store,
    listener: &Arc<dyn Listener>,
    item: &ReplayItem,
    settings: &ReplaySettings,
) -> Result<ReplayOutcome, StoreError> {
    let attempt = item.previous_attempts.saturating_add(1);
    let ctx = Context {
        org: Arc::from(settings.instance.as_str()),
        inbox_id: item.inbox_id,
        // Replay does not ask Zulip who the bot is.
        bot_user_id: None,
        attempt,
        bot: None,
        received_at: Some(item.received_at),
        fallback_of: None,
    };
    let started = Instant::now();
    let result = guard(listener.as_ref(), &item.event, &ctx, settings.timeout).await;
    let duration = started.elapsed();
    let finished_at = Utc::now();
    let (success, error, records, dead_letter) = match result {
        Ok(records) => (true, None, records, None),
        Err(e) => {
            let cause = e.dead_letter(item.first_failed_at.unwrap_or(finished_at));
            (false, Some(e.to_string()), Vec::new(), Some(cause))
        }
    };
    let run = RunRecord {
        inbox_id: item.inbox_id,
        listener: Arc::from(listener.name()),
        event_type: Arc::from(item.event.event_type()),
        success,
        attempts: attempt,
        error: error.clone(),
        duration,
        finished_at,
        records,
        dead_letter,
        fallback: Default::default(),
    };
    store.record(&settings.instance, &[run], None).await?;
    store.mark_replayed(&item.dead_letters, success).await?;
    Ok(ReplayOutcome {
        inbox_id: item.inbox_id,
        event_type: item.event.event_type().to_owned(),
        dead_letters: item.dead_letters.clone(),
        attempts: attempt,
        success,
        error,
        duration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listeners::test_identity;
    use crate::listeners::{ListenerError, Record};
    use async_trait::async_trait;

    struct Slow;
    struct Panics;

    #[async_trait]
    impl Listener for Slow {
        test_identity!("slow", "sleeps", ["*"]);
        async fn handle(&self, _: &Event, _: &Context) -> Result<Vec<Record>, ListenerError> {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(Vec::new())
        }
    }

    #[async_trait]
    impl Listener for Panics {
        test_identity!("panics", "panics", ["*"]);
        async fn handle(&self, _: &Event, _: &Context) -> Result<Vec<Record>, ListenerError> {
            panic!("listener bug")
        }
    }

    fn ctx() -> Context {
        Context {
            org: Arc::from("default"),
            inbox_id: 1,
            bot_user_id: None,
            attempt: 2,
            bot: None,
            received_at: None,
            fallback_of: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_replay_that_hangs_times_out_as_an_error() {
        let event = Event::parse(r#"{"type":"typing","id":1}"#).unwrap();
        let err = guard(&Slow, &event, &ctx(), Duration::from_secs(30))
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(err, "timed out after 30.000 s");
    }

    #[tokio::test]
    async fn a_replay_that_panics_is_an_error_with_the_panic_message() {
        let event = Event::parse(r#"{"type":"typing","id":1}"#).unwrap();
        let err = guard(&Panics, &event, &ctx(), Duration::from_secs(30))
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(err, "panicked: listener bug");
    }
}
