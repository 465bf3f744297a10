//! One POST of one reply: the row is marked `sending` (with the queue id
//! and one attempt more) and that is committed *before* the request, so a
//! crash at any later point leaves a row that says a POST may have reached
//! Zulip; then `POST /messages` with the queue id and the row's
//! `local_id`, and the row's new status from Zulip's answer.

use std::time::Duration;

use tracing::Instrument;

use super::notes::{note_dead_lettered, note_retried, note_sent};
use super::sender::{ReplySender, Step};
use crate::listeners::ReplyTo;
use crate::store::{local_id, OutboxReply};
use crate::telemetry;
use crate::zulip::{Destination, OutgoingMessage, SendError, ZulipError};

impl ReplySender {
    /// Posts `row` to `to` on the queue `queue_id`.
    pub(super) async fn post(&mut self, row: &OutboxReply, to: &ReplyTo, queue_id: &str) -> Step {
        if let Err(e) = self.store.mark_reply_sending(row.id, queue_id).await {
            return self.store_failed(&e);
        }
        let local = local_id(row.id);
        let to = match to {
            ReplyTo::Channel { channel, topic } => Destination::Channel { channel, topic },
            ReplyTo::Direct { user_ids } => Destination::Direct { user_ids },
        };
        let message = OutgoingMessage {
            to,
            content: &row.content,
            queue_id: Some(queue_id),
            local_id: Some(&local),
        };
        // A child of the event's span while the event's trace is held
        // (tracing on, the reply written in this process), else a root.
        let parent = self.state.held_spans.get(row.inbox_id);
        let span = tracing::info_span!(target: telemetry::TARGET, parent: parent.as_ref().and_then(|p| p.id()),
            "reply send", listener = %row.listener, reply_id = row.id, inbox_id = row.inbox_id,
            attempt = row.attempts + 1, outcome = tracing::field::Empty);
        let sent = self
            .client
            .send_message(&message)
            .instrument(span.clone())
            .await;
        span.record("outcome", if sent.is_ok() { "sent" } else { "failed" });
        match sent {
            Ok(message_id) => {
                self.backoff.reset();
                self.state.held_spans.release(row.inbox_id);
                note_sent(&self.state.metrics, row, message_id);
                match self.store.mark_reply_sent(row.id, message_id).await {
                    Ok(()) => Step::Done,
                    // Sent, but not recorded: the row stays `sending`, and
                    // its echo confirms it once the database is back.
                    Err(e) => self.store_failed(&e),
                }
            }
            Err(e) => self.failed(row, e).await,
        }
    }

    /// What a failed POST of `row` leaves.
    async fn failed(&mut self, row: &OutboxReply, e: SendError) -> Step {
        let reason = e.error.to_string();
        if e.maybe_sent {
            // Zulip may have it: the echo, or its absence, decides.
            note_retried(&self.state.metrics, row, &reason);
            return match self.store.mark_reply_unknown(row.id, &reason).await {
                Ok(()) => Step::Waiting,
                Err(e) => self.store_failed(&e),
            };
        }
        match refusal(&e.error) {
            Refusal::Permanent => {
                self.state.held_spans.release(row.inbox_id);
                note_dead_lettered(&self.state.metrics, row, &reason);
                match self.store.mark_reply_failed(row.id, &reason).await {
                    Ok(()) => Step::Done,
                    Err(e) => self.store_failed(&e),
                }
            }
            Refusal::Wait(delay) => {
                note_retried(&self.state.metrics, row, &reason);
                let delay = delay.unwrap_or_else(|| self.backoff.next_delay());
                match self.store.mark_reply_pending(row.id, &reason).await {
                    Ok(()) => Step::Backoff(delay),
                    Err(e) => self.store_failed(&e),
                }
            }
        }
    }
}

/// What a POST that Zulip certainly did not process means.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// Retrying cannot help: the reply fails, with the reason.
    Permanent,
    /// Try again after this delay (`None`: the sender's backoff).
    Wait(Option<Duration>),
}

fn refusal(e: &ZulipError) -> Refusal {
    match e {
        ZulipError::RateLimited { retry_after } => Refusal::Wait(Some(*retry_after)),
        // The credentials or the queue: the poll loop handles both (it
        // stops, or registers a new queue); the reply waits meanwhile.
        ZulipError::Unauthorized { .. }
        | ZulipError::Forbidden { .. }
        | ZulipError::QueueGone { .. } => Refusal::Wait(None),
        // Zulip read the request and refused it (the channel does not
        // exist, the recipients are invalid, the content is too long).
        ZulipError::Client { .. } | ZulipError::NonJson { .. } | ZulipError::ErrorResult { .. } => {
            Refusal::Permanent
        }
        ZulipError::Server { .. } | ZulipError::Timeout | ZulipError::Transport(_) => {
            Refusal::Wait(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_reply_fails_for_good_and_a_rate_limited_one_waits_as_asked() {
        let missing = ZulipError::Client {
            status: 400,
            code: "STREAM_DOES_NOT_EXIST".into(),
            msg: "Channel 'gone' does not exist".into(),
        };
        assert_eq!(refusal(&missing), Refusal::Permanent);
        let limited = ZulipError::RateLimited {
            retry_after: Duration::from_millis(300),
        };
        assert_eq!(
            refusal(&limited),
            Refusal::Wait(Some(Duration::from_millis(300)))
        );
        assert_eq!(
            refusal(&ZulipError::Transport("connection refused".into())),
            Refusal::Wait(None)
        );
    }
}
