//! The backfill: after a lost queue (or on a first start asked to reach
//! back), the messages the new queue cannot deliver, fetched with
//! `GET /messages` page by page and fed through the pipeline as backfilled
//! message events, de-duplicated by message id in the inbox.
//!
//! After a lost queue it starts a window below the newest message seen,
//! for a lower id whose event was still on its way. In that window only
//! messages sent within [`IN_FLIGHT`] of the newest one seen are taken:
//! an older one was delivered long before (or predates the daemon's first
//! start, which it never asked for).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::poller::{sleep_or_cancel, stopped_by, Intake, IntakeError};
use crate::backoff::Backoff;
use crate::event::Event;
use crate::pii::Pii;
use crate::store::{Cursor, Origin};
use crate::zulip::ErrorAction;

/// Messages per `GET /messages` page when backfilling (Zulip recommends ≤ 1000).
const BACKFILL_PAGE: u32 = 1000;

/// How much earlier than the newest message seen a message in the window
/// may have been sent and still be on its way (out-of-order delivery is a
/// matter of milliseconds; this is generous).
const IN_FLIGHT: Duration = Duration::from_secs(60);

impl Intake<'_> {
    /// Fetches the messages after `from` with `GET /messages` and feeds them
    /// through the pipeline as backfilled message events; those up to
    /// `seen` (the newest message seen before) only when sent within
    /// [`IN_FLIGHT`] of it. Returns the newest message id fetched.
    pub(super) async fn backfill(
        &self,
        from: i64,
        seen: Option<i64>,
        cursor: &Cursor,
        token: &CancellationToken,
    ) -> Result<Option<i64>, IntakeError> {
        let reg = &self.settings.register;
        let mut narrows = vec![reg.narrow.clone()];
        if reg.all_public_streams && reg.narrow.is_empty() {
            narrows.push(vec![("channels".to_owned(), "public".to_owned())]);
        }
        let mut newest = None;
        let mut total = 0u64;
        let mut seen_at = None;
        for narrow in &narrows {
            let mut anchor = from;
            let mut backoff = Backoff::new(self.settings.backoff_base, self.settings.backoff_cap);
            loop {
                let page = tokio::select! {
                    r = self.client.messages_after(anchor, BACKFILL_PAGE, narrow, reg.apply_markdown) => r,
                    _ = token.cancelled() => return Ok(newest),
                };
                let page = match page {
                    Ok(p) => p,
                    Err(e) if e.is_auth() => return Err(IntakeError::Auth(e)),
                    Err(e) => {
                        let d = match e.action() {
                            ErrorAction::Wait(d) => d,
                            ErrorAction::Stop => {
                                tracing::error!(error = %e, "Backfill refused by Zulip; messages in the gap are not recovered");
                                break;
                            }
                            _ => backoff.next_delay(),
                        };
                        if sleep_or_cancel(d, token).await {
                            return Ok(newest);
                        }
                        continue;
                    }
                };
                let mut events = Vec::with_capacity(page.messages.len());
                for m in &page.messages {
                    match Event::backfilled_message(m) {
                        Ok(e) => events.push(e),
                        Err(err) => {
                            tracing::warn!(error = %Pii(&err), "Skipping a malformed backfilled message")
                        }
                    }
                }
                let last = events.iter().filter_map(Event::message_id).max();
                if let Some(seen) = seen {
                    seen_at = seen_at.or_else(|| sent_at(&events, seen));
                    if let Some(at) = seen_at {
                        events.retain(|e| in_flight(e, seen, at));
                    }
                }
                let mut c = cursor.clone();
                c.last_message_id = c.last_message_id.max(last);
                let n = events.len() as u64;
                match self
                    .pipeline
                    .accept(&Origin::Backfill, events, Some(&c), token)
                    .await
                {
                    Ok(r) => total += r.stored as u64,
                    Err(e) => return stopped_by(e).map_or(Ok(newest), Err),
                }
                newest = newest.max(last);
                match last {
                    Some(l) if !page.found_newest && n > 0 => anchor = l,
                    _ => break,
                }
            }
        }
        self.state.metrics.backfilled_messages.inc_by(total);
        tracing::info!(
            after_message_id = from,
            backfilled = total,
            "Backfilled missed messages; other event types in the gap cannot be recovered"
        );
        Ok(newest)
    }
}

/// When message `id`, among `events`, was sent (Unix seconds).
fn sent_at(events: &[Event], id: i64) -> Option<i64> {
    events
        .iter()
        .filter_map(Event::message)
        .find(|m| m.id == id)
        .map(|m| m.timestamp)
}

/// Whether a backfilled message may have been on its way when message
/// `seen`, sent at `seen_at`, arrived: any message after it, and those up
/// to it sent within [`IN_FLIGHT`] before it.
fn in_flight(e: &Event, seen: i64, seen_at: i64) -> bool {
    match e.message() {
        Some(m) if m.id <= seen => m.timestamp >= seen_at - IN_FLIGHT.as_secs() as i64,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: i64, timestamp: i64) -> Event {
        let raw = format!(
            r#"{{"id":{id},"sender_id":1,"display_recipient":"general","stream_id":3,"subject":"t","timestamp":{timestamp},"content":"x"}}"#
        );
        Event::backfilled_message(&serde_json::value::RawValue::from_string(raw).unwrap()).unwrap()
    }

    #[test]
    fn the_window_keeps_what_may_have_been_in_flight_and_everything_after_the_newest_seen() {
        let events = [
            message(8, 1000),
            message(9, 995),
            message(10, 1010),
            message(11, 500),
        ];
        let seen_at = sent_at(&events, 10).unwrap();
        assert_eq!(seen_at, 1010);
        let kept: Vec<i64> = events
            .iter()
            .filter(|e| in_flight(e, 10, seen_at))
            .filter_map(Event::message_id)
            .collect();
        // 8 and 9 were sent seconds before 10; 11 is after it, whenever sent.
        assert_eq!(kept, vec![8, 9, 10, 11]);
        let old = message(7, 1010 - 61);
        assert!(!in_flight(&old, 10, seen_at), "sent over a minute before");
    }
}
