//! [`OutboxGate`]: between a distributed ingest's pipeline and its
//! publisher. The pipeline tells it the highest inbox id committed (which
//! wakes the publisher); the publisher tells it the highest id confirmed
//! by the broker. Their difference is the outbox's depth (an upper bound:
//! ids may have gaps), and while it is at `[distributed] outbox_limit` the
//! poll loop does not ask Zulip for more ([`OutboxGate::wait_for_room`],
//! called where memory backpressure is): events wait in Zulip's queue,
//! unacknowledged, and `/health` says degraded with the reason.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::state::State;

/// How often a full outbox is looked at again.
const RECHECK_EVERY: Duration = Duration::from_millis(200);

/// The outbox's two ends and its limit.
#[derive(Debug)]
pub(crate) struct OutboxGate {
    committed: AtomicI64,
    published: AtomicI64,
    limit: i64,
    /// Wakes the publisher after a commit.
    commits: Notify,
    /// Wakes the poll loop after a publish.
    publishes: Notify,
}

impl OutboxGate {
    /// A gate with `published` as the broker's end, `committed` as the
    /// inbox's, and `limit` rows at most between them.
    pub(crate) fn new(committed: i64, published: i64, limit: u64) -> OutboxGate {
        OutboxGate {
            committed: AtomicI64::new(committed.max(published)),
            published: AtomicI64::new(published),
            limit: i64::try_from(limit).unwrap_or(i64::MAX).max(1),
            commits: Notify::new(),
            publishes: Notify::new(),
        }
    }

    /// Inbox rows `ids` (a batch) are committed.
    pub(crate) fn committed(&self, ids: impl Iterator<Item = i64>) {
        if let Some(last) = ids.max() {
            self.committed.fetch_max(last, Ordering::SeqCst);
            self.commits.notify_one();
        }
    }

    /// Rows up to `id` are confirmed by the broker.
    pub(crate) fn published(&self, id: i64) {
        self.published.fetch_max(id, Ordering::SeqCst);
        self.publishes.notify_waiters();
    }

    /// Rows committed and not yet confirmed (at most).
    pub(crate) fn depth(&self) -> i64 {
        (self.committed.load(Ordering::SeqCst) - self.published.load(Ordering::SeqCst)).max(0)
    }

    /// Waits for the next commit (or `timeout`).
    pub(crate) async fn next_commit(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.commits.notified()).await;
    }

    /// Waits while the outbox is full, until it drains below the limit or
    /// `token` is cancelled; sets `outbox_full` in `state` meanwhile.
    pub(crate) async fn wait_for_room(&self, state: &State, token: &CancellationToken) {
        if self.depth() < self.limit {
            return;
        }
        state.ingest.outbox_full.store(true, Ordering::Relaxed);
        tracing::warn!(depth = self.depth(), limit = self.limit,
            "The outbox is full (the broker confirms slower than Zulip sends, or is down); pausing polling (events stay in Zulip's queue)");
        while self.depth() >= self.limit {
            tokio::select! {
                _ = token.cancelled() => break,
                _ = self.publishes.notified() => {}
                _ = tokio::time::sleep(RECHECK_EVERY) => {}
            }
        }
        state.ingest.outbox_full.store(false, Ordering::Relaxed);
        tracing::info!(
            depth = self.depth(),
            "The outbox drained below its limit; polling again"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn polling_waits_while_the_outbox_is_full_and_goes_on_once_it_drains() {
        let gate = std::sync::Arc::new(OutboxGate::new(10, 0, 5));
        let state = std::sync::Arc::new(State::default());
        let token = CancellationToken::new();
        let waiting = {
            let (gate, state, token) = (gate.clone(), state.clone(), token.clone());
            tokio::spawn(async move { gate.wait_for_room(&state, &token).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "depth 10 ≥ limit 5: polling waits");
        assert!(state.ingest.outbox_full.load(Ordering::Relaxed));
        gate.published(6);
        waiting.await.expect("the wait ends once the outbox drains");
        assert_eq!(gate.depth(), 4);
        assert!(!state.ingest.outbox_full.load(Ordering::Relaxed));
    }
}
