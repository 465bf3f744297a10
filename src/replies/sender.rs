//! [`ReplySender`]: the task that posts the reply outbox. It wakes when
//! the recorder has committed replies, on a tick (replies written by
//! another process, such as `replay`, and rows waiting for a poll), and
//! after a rate limit's wait; each pass reads the instance's open rows in
//! id order and posts them one at a time with the queue id of the stored
//! cursor, stopping at the first row that must wait, so replies keep their
//! order.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::confirm::{settled_at, verdict, Verdict};
use super::notes::{note_dead_lettered, note_deduplicated, note_retried};
use crate::backoff::Backoff;
use crate::config::Config;
use crate::state::State;
use crate::store::{OpenStatus, OutboxReply, Store, StoreError};
use crate::zulip::Client;

/// Open rows read per pass.
const BATCH: i64 = 100;
/// Time between passes when nothing wakes the sender.
const IDLE_TICK: Duration = Duration::from_secs(5);
/// Time between passes while a row waits for a committed poll.
const WAITING_TICK: Duration = Duration::from_millis(500);

/// Posts the reply outbox of one instance.
pub(crate) struct ReplySender {
    pub(super) store: Arc<dyn Store>,
    pub(super) client: Client,
    instance: String,
    pub(super) state: Arc<State>,
    pub(super) backoff: Backoff,
    /// The longest a POST runs (the client's request timeout).
    post_timeout: Duration,
}

/// How a row's turn ended.
#[derive(Debug)]
pub(super) enum Step {
    /// Sent, confirmed or failed: on to the next row.
    Done,
    /// Its outcome is not known yet: the pass stops here.
    Waiting,
    /// Nothing can be sent for this long (a rate limit, an outage).
    Backoff(Duration),
}

/// How a pass ended.
enum Pass {
    /// Everything open was handled (or nothing can be sent yet).
    Idle,
    /// More open rows than one pass reads: go on at once.
    More,
    /// A row waits for a committed poll.
    Waiting,
    /// Wait this long before the next pass.
    Backoff(Duration),
}

impl ReplySender {
    /// A sender of `instance`'s replies through `client`, whose requests
    /// time out after `post_timeout`.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        client: Client,
        instance: String,
        state: Arc<State>,
        post_timeout: Duration,
    ) -> ReplySender {
        ReplySender {
            store,
            client,
            instance,
            state,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(30)),
            post_timeout,
        }
    }

    /// Posts replies until `stop` is cancelled. A POST under way when it is
    /// is left to finish or be abandoned with the process: its row is
    /// `sending`, and the next start confirms or resends it.
    pub(crate) async fn run(mut self, stop: CancellationToken) {
        loop {
            let pass = tokio::select! {
                p = self.pass(&stop) => p,
                _ = stop.cancelled() => return,
            };
            let wait = match pass {
                Pass::More => continue,
                Pass::Backoff(d) => {
                    // A rate limit's wait is not cut short by new replies.
                    tokio::select! {
                        _ = tokio::time::sleep(d) => continue,
                        _ = stop.cancelled() => return,
                    }
                }
                Pass::Idle => IDLE_TICK,
                Pass::Waiting => WAITING_TICK,
            };
            tokio::select! {
                _ = self.state.replies_queued.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    /// One pass over the open rows.
    async fn pass(&mut self, stop: &CancellationToken) -> Pass {
        let cursor = match self.store.load_cursor(&self.instance).await {
            Ok(Some(c)) => c,
            // No queue yet: a reply posted now could not be confirmed.
            Ok(None) => return Pass::Idle,
            Err(e) => return self.pass_failed(&e),
        };
        let rows = match self.store.open_replies(&self.instance, BATCH).await {
            Ok(rows) => rows,
            Err(e) => return self.pass_failed(&e),
        };
        self.count_open(rows.len()).await;
        if rows.is_empty() {
            return Pass::Idle;
        }
        let full = rows.len() as i64 == BATCH;
        for row in rows {
            if stop.is_cancelled() {
                return Pass::Idle;
            }
            match self.turn(&row, &cursor.queue_id).await {
                Step::Done => {}
                Step::Waiting => return Pass::Waiting,
                Step::Backoff(d) => return Pass::Backoff(d),
            }
        }
        if full {
            Pass::More
        } else {
            Pass::Idle
        }
    }

    /// One row's turn: confirmed, resent, posted, failed or waiting.
    async fn turn(&mut self, row: &OutboxReply, queue_id: &str) -> Step {
        let to = match &row.to {
            Ok(to) => to.clone(),
            Err(why) => {
                note_dead_lettered(&self.state.metrics, row, why);
                return match self.store.mark_reply_failed(row.id, why).await {
                    Ok(()) => Step::Done,
                    Err(e) => self.store_failed(&e),
                };
            }
        };
        if row.status == OpenStatus::Sending {
            match self.confirm(row, queue_id).await {
                Ok(Confirmed::Sent(message_id)) => {
                    note_deduplicated(&self.state.metrics, row, message_id);
                    return match self.store.mark_reply_sent(row.id, message_id).await {
                        Ok(()) => Step::Done,
                        Err(e) => self.store_failed(&e),
                    };
                }
                Ok(Confirmed::Wait) => return Step::Waiting,
                Ok(Confirmed::Resend(why)) => note_retried(&self.state.metrics, row, &why),
                Err(e) => return self.store_failed(&e),
            }
        }
        self.post(row, &to, queue_id).await
    }

    /// Whether a `sending` row was sent (see `confirm`).
    async fn confirm(&self, row: &OutboxReply, queue_id: &str) -> Result<Confirmed, StoreError> {
        let after = row.echo_after.unwrap_or(0);
        if let Some(id) = self.echo(row, after).await? {
            return Ok(Confirmed::Sent(id));
        }
        let polled = self
            .state
            .intake
            .committed_poll_began_ms
            .load(Ordering::Acquire);
        let settled = settled_at(row.updated_at, row.error.is_some(), self.post_timeout);
        match verdict(row.queue_id.as_deref(), queue_id, settled, polled) {
            Verdict::Wait => Ok(Confirmed::Wait),
            Verdict::Resend(why) => {
                // The poll was read after the first look: an echo that poll
                // committed in between is seen now.
                match self.echo(row, after).await? {
                    Some(id) => Ok(Confirmed::Sent(id)),
                    None => Ok(Confirmed::Resend(why)),
                }
            }
        }
    }

    async fn echo(&self, row: &OutboxReply, after: i64) -> Result<Option<i64>, StoreError> {
        self.store
            .find_reply_echo(&self.instance, row.id, after)
            .await
    }

    /// Sets the open-rows gauge: `read` rows were read by a pass of at most
    /// [`BATCH`]; only a full one needs counting.
    async fn count_open(&self, read: usize) {
        let open = if (read as i64) < BATCH {
            read as i64
        } else {
            match self.store.open_reply_count(&self.instance).await {
                Ok(n) => n,
                Err(_) => read as i64,
            }
        };
        self.state.metrics.reply_outbox_open.set(open);
        self.state.metrics.buffers.set_reply_outbox(open);
    }

    /// A database failure during a pass: wait and try the pass again.
    fn pass_failed(&mut self, e: &StoreError) -> Pass {
        match self.store_failed(e) {
            Step::Backoff(d) => Pass::Backoff(d),
            _ => Pass::Idle,
        }
    }

    /// A database failure during a row's turn: the row keeps its status
    /// (a `sending` row is confirmed or resent later, never lost).
    pub(super) fn store_failed(&mut self, e: &StoreError) -> Step {
        let delay = self.backoff.next_delay();
        tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64,
            "The reply outbox cannot be read or updated; trying again");
        Step::Backoff(delay)
    }
}

/// What the inbox says of a `sending` row.
enum Confirmed {
    /// Its echo is there: sent, as this message.
    Sent(i64),
    /// Post it again, for this reason.
    Resend(String),
    /// Not known yet.
    Wait,
}

/// When the configured queue cannot receive the echo of every reply
/// (`[zulip] event_types` without `message`, or a `narrow`), a reply whose
/// POST answer is lost may be sent twice: says so once at start.
pub(crate) fn echo_caveat(config: &Config) -> Option<String> {
    let z = &config.zulip;
    let no_messages = z
        .event_types
        .as_ref()
        .is_some_and(|t| !t.iter().any(|t| t == "message"));
    if no_messages {
        Some("[zulip] event_types leaves out `message`".to_owned())
    } else if !z.narrow.is_empty() {
        Some("[zulip] narrow limits the messages the queue receives".to_owned())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_that_cannot_receive_every_echo_is_named_at_start() {
        let names = ["message_logger", "user_activity_tracker"];
        assert_eq!(echo_caveat(&Config::default()), None);
        let no_messages = Config::parse("[zulip]\nevent_types = [\"reaction\"]\n", &names).unwrap();
        assert!(echo_caveat(&no_messages).is_some_and(|w| w.contains("event_types")));
        let narrowed =
            Config::parse("[zulip]\nnarrow = [[\"channel\", \"ops\"]]\n", &names).unwrap();
        assert!(echo_caveat(&narrowed).is_some_and(|w| w.contains("narrow")));
    }
}
