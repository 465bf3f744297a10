//! One function per outcome of a reply, each writing its log line and its
//! `replies_total{listener, outcome}` count together.

use crate::metrics::Metrics;
use crate::pii::Pii;
use crate::store::OutboxReply;

/// The `outcome` label values of `replies_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReplyOutcome {
    /// Posted; Zulip answered with its message id.
    Sent,
    /// A POST whose answer was lost was found sent by its echo: not resent.
    Deduplicated,
    /// Zulip refused it for good; the row is `failed` with the reason.
    DeadLettered,
    /// A try failed (rate limit, server error, lost answer): tried again.
    Retried,
}

impl ReplyOutcome {
    fn as_str(self) -> &'static str {
        match self {
            ReplyOutcome::Sent => "sent",
            ReplyOutcome::Deduplicated => "deduplicated",
            ReplyOutcome::DeadLettered => "dead_lettered",
            ReplyOutcome::Retried => "retried",
        }
    }
}

fn count(metrics: &Metrics, row: &OutboxReply, outcome: ReplyOutcome) {
    metrics
        .replies
        .with_label_values(&[row.listener.as_str(), outcome.as_str()])
        .inc();
}

pub(super) fn note_sent(metrics: &Metrics, row: &OutboxReply, message_id: i64) {
    count(metrics, row, ReplyOutcome::Sent);
    tracing::info!(listener = %row.listener, reply = row.id, inbox_id = row.inbox_id, message_id,
        "Sent a reply");
}

pub(super) fn note_deduplicated(metrics: &Metrics, row: &OutboxReply, message_id: i64) {
    count(metrics, row, ReplyOutcome::Deduplicated);
    tracing::info!(listener = %row.listener, reply = row.id, inbox_id = row.inbox_id, message_id,
        "A reply whose answer was lost is in the inbox as sent (its echo came back); not sending it again");
}

pub(super) fn note_dead_lettered(metrics: &Metrics, row: &OutboxReply, reason: &str) {
    count(metrics, row, ReplyOutcome::DeadLettered);
    // Zulip's refusal may name the channel or topic.
    tracing::error!(listener = %row.listener, reply = row.id, inbox_id = row.inbox_id, error = %Pii(reason),
        "Zulip refused a reply for good; it is marked failed in event_listeners_replyoutbox");
}

pub(super) fn note_retried(metrics: &Metrics, row: &OutboxReply, reason: &str) {
    count(metrics, row, ReplyOutcome::Retried);
    tracing::warn!(listener = %row.listener, reply = row.id, inbox_id = row.inbox_id, error = %reason,
        "A reply was not sent this time; trying again");
}
