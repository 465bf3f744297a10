//! The queue's life: resuming the stored cursor at start, registering a
//! new queue (after a loss, backfilling the messages it cannot deliver),
//! and releasing it at exit when asked.
//!
//! The message id a backfill starts from is always one the daemon saw
//! (live, backfilled, or Zulip's newest at registration), less a window:
//! Zulip delivers message events slightly out of id order, so when a
//! queue is lost a message below the newest one seen may never have
//! arrived. De-duplication by message id drops what was stored already.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::pacing::WaitReason;
use super::poller::{stopped_by, Intake, IntakeError, Waited};
use crate::backoff::Backoff;
use crate::store::{Cursor, Origin};
use crate::zulip::{ErrorAction, Registration};

/// A queue registered and ready to poll.
pub(super) struct Started {
    /// Its cursor, committed.
    pub(super) cursor: Cursor,
    /// The newest message id seen (the next backfill's anchor, less the window).
    pub(super) anchor: Option<i64>,
    /// Its long-poll timeout.
    pub(super) longpoll: Duration,
}

impl Intake<'_> {
    /// The stored cursor to resume, unless it belongs to another site.
    pub(super) async fn resume(&self, site: &str) -> Result<Option<Cursor>, IntakeError> {
        let Some(store) = self.pipeline.store() else {
            return Ok(None);
        };
        let Some(c) = store.load_cursor(self.pipeline.instance()).await? else {
            return Ok(None);
        };
        if c.site != site {
            tracing::warn!(stored_site = %c.site, site = %site, "The stored queue belongs to another Zulip site; registering a new one");
            return Ok(None);
        }
        tracing::info!(queue_id = %c.queue_id, last_event_id = c.last_event_id, "Resuming the stored event queue");
        // The last committed poll of the previous run: what a gap is
        // measured from if the queue turns out to be gone.
        if let Ok(Some(t)) = store.cursor_updated_at(self.pipeline.instance()).await {
            self.state
                .intake
                .last_activity_ms
                .store(t.timestamp_millis(), Ordering::Relaxed);
        }
        self.state.intake.set_queue_id(Some(c.queue_id.clone()));
        Ok(Some(c))
    }

    /// Registers a queue and commits its cursor; after a lost queue, or on a
    /// first start asked to reach back, fetches the messages the new queue
    /// cannot deliver (including those folded into the registration's
    /// state). `anchor` is the newest message id seen before. `None` on
    /// shutdown.
    pub(super) async fn start_queue(
        &self,
        site: &str,
        anchor: Option<i64>,
        first_registration: bool,
        token: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<Option<Started>, IntakeError> {
        let Some(reg) = self.register(token, backoff).await? else {
            return Ok(None);
        };
        // Where the backfill starts (messages after it), and the newest id
        // known for the next one. `--backfill-since` is where the operator
        // asked to start, not a message seen: above Zulip's newest message
        // it must not become the anchor, or every later backfill would
        // start above the messages it is meant to recover.
        let newest = reg.max_message_id;
        let (from, known) = match (anchor, first_registration, self.settings.backfill_since) {
            // After a lost queue: from a window below the newest id seen.
            (Some(a), _, _) => {
                let window = i64::try_from(self.settings.backfill_window).unwrap_or(i64::MAX);
                (Some(a.saturating_sub(window).max(0)), Some(a))
            }
            (None, true, Some(since)) => {
                (Some(since), Some(newest.map_or(since, |n| n.min(since))))
            }
            (None, _, _) => (None, newest),
        };
        let mut cursor = Cursor {
            site: site.to_owned(),
            queue_id: reg.queue_id.clone(),
            last_event_id: reg.last_event_id,
            last_message_id: known,
        };
        if let Err(e) = self
            .pipeline
            .accept(
                &Origin::Queue(cursor.queue_id.clone()),
                Vec::new(),
                Some(&cursor),
                token,
            )
            .await
        {
            return stopped_by(e).map_or(Ok(None), Err);
        }
        if let Some(from) = from {
            let backfilled = self.backfill(from, anchor, &cursor, token).await?;
            cursor.last_message_id = cursor.last_message_id.max(backfilled);
        }
        Ok(Some(Started {
            anchor: cursor.last_message_id,
            cursor,
            longpoll: reg.longpoll_timeout(),
        }))
    }

    /// Registers a queue, retrying transient failures. `None` on shutdown.
    async fn register(
        &self,
        token: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<Option<Registration>, IntakeError> {
        loop {
            let started = Instant::now();
            let attempt = tokio::select! {
                r = self.client.register(&self.settings.register) => r,
                _ = token.cancelled() => return Ok(None),
            };
            let delay = match attempt {
                Ok(reg) => {
                    backoff.reset();
                    self.note_registered(&reg);
                    return Ok(Some(reg));
                }
                Err(e) if e.is_auth() => return Err(IntakeError::Auth(e)),
                Err(e) => match e.action() {
                    ErrorAction::Wait(d) => {
                        self.episodes()
                            .waited(&self.state, WaitReason::RetryAfter, d, None);
                        d
                    }
                    ErrorAction::Retry | ErrorAction::Reregister => {
                        let d = backoff.next_delay();
                        self.note_failure(&e, d, started);
                        d
                    }
                    ErrorAction::Stop => return Err(IntakeError::Rejected(e)),
                },
            };
            if self.wait(delay, backoff, token).await == Waited::Cancelled {
                return Ok(None);
            }
        }
    }

    pub(super) async fn release(&self, queue_id: &str) {
        match tokio::time::timeout(Duration::from_secs(5), self.client.delete_queue(queue_id)).await
        {
            Ok(Ok(())) => tracing::info!(queue_id, "Released the event queue"),
            Ok(Err(e)) => tracing::warn!(queue_id, error = %e, "Could not release the event queue"),
            Err(_) => tracing::warn!(queue_id, "Releasing the event queue timed out"),
        }
    }
}
