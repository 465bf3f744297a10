//! [`Writer`]: one group of runs committed with the watermark they move:
//! retried with backoff while the database is unavailable, tagged so that a
//! retry after an unknown outcome never writes the group twice, and given
//! back as [`Written::Refused`] when the database answers but will not
//! store it; and [`RecorderReport`], what was committed.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::dispatch::progress::Progress;
use crate::listeners::Record;
use crate::state::State;
use crate::store::{RunRecord, Store, StoreError};

/// First and largest delay between tries of a database write.
pub(super) const RETRY_BASE: std::time::Duration = std::time::Duration::from_millis(100);
pub(super) const RETRY_CAP: std::time::Duration = std::time::Duration::from_secs(5);

/// How writing a group of runs ended.
#[derive(Debug)]
pub(super) enum Written {
    /// Committed, with the watermark.
    Committed,
    /// The database refused it (not a connection error, and it answers
    /// pings): it will not store these rows as they are.
    Refused(StoreError),
    /// Shutdown came first: the runs are dispatched again at next start.
    GaveUp,
}

/// What the recorder did before it stopped.
#[derive(Debug, Default, Clone, Copy)]
pub struct RecorderReport {
    /// Runs committed.
    pub recorded: u64,
    /// Failed runs among them.
    pub failures: u64,
    /// Runs the database refused to store as they were, recorded as failed
    /// and dead-lettered instead (counted in `recorded` and `failures`).
    pub unrecordable: u64,
    /// Runs that could not be written: the database refused even their
    /// failure row, or was still failing when shutdown gave up (dispatched
    /// again at next start).
    pub unrecorded: u64,
}

/// The recorder's side of the store: commits groups of runs for one
/// instance and moves its [`Progress`].
pub(super) struct Writer {
    pub(super) store: Arc<dyn Store>,
    pub(super) instance: String,
    pub(super) progress: Arc<Progress>,
    pub(super) state: Arc<State>,
    /// Whether commits write the `dispatched_through` watermark (and the
    /// batch tag with it): not for workers, which share the instance and
    /// each see only their partitions' events.
    pub(super) watermark: bool,
}

impl Writer {
    /// Counts the committed `runs`, and wakes the reply sender when they
    /// put replies in the outbox.
    pub(super) fn committed(&self, runs: &[RunRecord], report: &mut RecorderReport) {
        if has_replies(runs) {
            self.state.replies_queued.notify_one();
        }
        report.recorded += runs.len() as u64;
        report.failures += runs.iter().filter(|r| !r.success).count() as u64;
    }

    /// Commits `runs` with the watermark they move. Transient errors are
    /// retried without limit (until `give_up`); a refusal is given back
    /// after `refusals` tries.
    pub(super) async fn commit(
        &self,
        runs: &[RunRecord],
        refusals: u32,
        give_up: &CancellationToken,
    ) -> Written {
        // A fallback's run is not one the dispatcher counted for its event.
        let dispatched = runs.iter().filter(|r| r.fallback.handed_from.is_none());
        let (watermark, counts) = self.progress.preview(dispatched.map(|r| r.inbox_id));
        let mut backoff = Backoff::new(RETRY_BASE, RETRY_CAP);
        let mut attempt = 0u32;
        // Tags the transaction: if an attempt fails in a way that leaves the
        // commit's fate unknown, the next one first asks whether it landed,
        // so a batch is never written twice.
        let tag = batch_tag();
        loop {
            attempt += 1;
            if attempt > 1 && self.landed(runs, tag).await {
                self.progress.commit(&counts);
                tracing::info!(
                    runs = runs.len(),
                    "The batch had been committed before the connection failed"
                );
                self.set_retrying(false);
                return Written::Committed;
            }
            let e = match self.write(runs, watermark, tag).await {
                Ok(()) => {
                    self.progress.commit(&counts);
                    self.state
                        .metrics
                        .inbox_backlog
                        .set(self.progress.outstanding() as i64);
                    self.set_retrying(false);
                    if attempt > 1 {
                        tracing::info!(
                            attempts = attempt,
                            "Database is back; recorded the held runs"
                        );
                    }
                    return Written::Committed;
                }
                Err(e) => e,
            };
            // A connection error can come back in other shapes: only call
            // it a refusal while the database answers pings.
            if !e.is_transient() && attempt >= refusals && self.store.ping().await.is_ok() {
                self.set_retrying(false);
                return Written::Refused(e);
            }
            let e = self.store.explain(e).await;
            let delay = backoff.next_delay();
            tracing::warn!(error = %e, runs = runs.len(), retry_in_ms = delay.as_millis() as u64, "Recording listener runs failed; retrying");
            self.set_retrying(true);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = give_up.cancelled() => {
                    tracing::error!(runs = runs.len(), "Gave up recording listener runs at shutdown; their events are dispatched again at next start");
                    return Written::GaveUp;
                }
            }
        }
    }

    /// Whether an attempt at committing `runs` (tagged `tag`) whose outcome
    /// is unknown landed: the tag, or without the watermark (which carries
    /// it), the first run in the event log (a batch is all or nothing).
    async fn landed(&self, runs: &[RunRecord], tag: i64) -> bool {
        if self.watermark {
            return self.store.last_record_batch(&self.instance).await.ok() == Some(tag);
        }
        let Some(first) = runs.first() else {
            return false;
        };
        self.store
            .logged_runs(&self.instance, &[first.inbox_id])
            .await
            .is_ok_and(|done| {
                done.get(&first.inbox_id)
                    .is_some_and(|names| names.iter().any(|n| **n == *first.listener))
            })
    }

    /// One attempt at committing `runs` with the watermark, timed.
    async fn write(&self, runs: &[RunRecord], watermark: i64, tag: i64) -> Result<(), StoreError> {
        let timer = self
            .state
            .metrics
            .db_write_seconds
            .with_label_values(&["record"])
            .start_timer();
        let result = self
            .store
            .record_batch(
                &self.instance,
                runs,
                self.watermark.then_some(watermark),
                tag,
            )
            .await;
        timer.observe_duration();
        result
    }

    /// Tells `/health` whether a database write is being retried.
    fn set_retrying(&self, retrying: bool) {
        self.state
            .database_retrying
            .store(retrying, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A random non-zero tag for one batch's transaction.
fn batch_tag() -> i64 {
    loop {
        let t: i64 = rand::random::<i64>() & i64::MAX;
        if t != 0 {
            return t;
        }
    }
}

/// Whether a committed batch put replies in the outbox (the reply sender
/// is woken for them).
fn has_replies(batch: &[RunRecord]) -> bool {
    batch
        .iter()
        .any(|r| r.records.iter().any(|rec| matches!(rec, Record::Reply(_))))
}
