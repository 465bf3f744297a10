//! [`Recorder`]: writes finished runs to the store in group commits, sized
//! by count and by time, together with the dispatch watermark (waking the
//! reply sender when a batch queued replies); and writes
//! the listeners the dispatcher disabled automatically, so that a disable
//! lasts over a restart whatever becomes of the operator's notification.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::progress::Progress;
use crate::backoff::Backoff;
use crate::listeners::Record;
use crate::state::State;
use crate::store::{RunRecord, Store, StoreError};

/// Runs per transaction at most.
const MAX_BATCH: usize = 2048;
/// How long a batch waits for more runs after its first one.
const LINGER: Duration = Duration::from_millis(5);

/// What the dispatcher hands the recorder.
#[derive(Debug)]
pub(crate) enum Recording {
    /// A finished run.
    Run(RunRecord),
    /// A listener the breaker disabled (`auto_disable_threshold`,
    /// `max_failures_per_hour`): written to the listener state table.
    Disabled {
        /// The listener.
        listener: Arc<str>,
        /// Why it was disabled.
        reason: String,
    },
}

/// The operator name an automatic disable is recorded under.
const AUTO_DISABLE_ACTOR: &str = "auto-disable";
/// First and largest delay between tries of a database write.
const RETRY_BASE: Duration = Duration::from_millis(100);
const RETRY_CAP: Duration = Duration::from_secs(5);

/// What the recorder did before it stopped.
#[derive(Debug, Default, Clone, Copy)]
pub struct RecorderReport {
    /// Runs committed.
    pub recorded: u64,
    /// Failed runs among them.
    pub failures: u64,
    /// Runs that could not be written: the database refused them, or was
    /// still failing when shutdown gave up (dispatched again at next start).
    pub unrecorded: u64,
}

/// Receives run outcomes and commits them.
pub(crate) struct Recorder {
    store: Arc<dyn Store>,
    instance: String,
    progress: Arc<Progress>,
    rx: mpsc::Receiver<Recording>,
    state: Arc<State>,
}

impl Recorder {
    /// A recorder for `instance` that reads outcomes from `rx`.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        instance: String,
        progress: Arc<Progress>,
        rx: mpsc::Receiver<Recording>,
        state: Arc<State>,
    ) -> Recorder {
        Recorder {
            store,
            instance,
            progress,
            rx,
            state,
        }
    }

    /// Records until every sender is gone. While the database is
    /// unavailable it retries with backoff, holding the batch, so the
    /// dispatcher and then intake slow down instead of losing anything.
    /// `give_up` ends the retries at shutdown.
    pub(crate) async fn run(
        mut self,
        give_up: tokio_util::sync::CancellationToken,
    ) -> RecorderReport {
        let mut report = RecorderReport::default();
        let mut batch: Vec<RunRecord> = Vec::with_capacity(MAX_BATCH);
        let mut disabled: Vec<(Arc<str>, String)> = Vec::new();
        loop {
            let Some(first) = self.rx.recv().await else {
                break;
            };
            sort(first, &mut batch, &mut disabled);
            let linger = tokio::time::sleep(LINGER);
            tokio::pin!(linger);
            while batch.len() < MAX_BATCH {
                tokio::select! {
                    biased;
                    r = self.rx.recv() => match r {
                        Some(r) => sort(r, &mut batch, &mut disabled),
                        None => break,
                    },
                    _ = &mut linger => break,
                }
            }
            for (listener, reason) in disabled.drain(..) {
                self.persist_disabled(&listener, &reason, &give_up).await;
            }
            if batch.is_empty() {
                continue;
            }
            if self.commit(&batch, &give_up).await {
                if has_replies(&batch) {
                    self.state.replies_queued.notify_one();
                }
                report.recorded += batch.len() as u64;
                report.failures += batch.iter().filter(|r| !r.success).count() as u64;
            } else {
                report.unrecorded += batch.len() as u64;
            }
            batch.clear();
        }
        report
    }

    /// Writes that `listener` is disabled, retrying while the database is
    /// unavailable (until `give_up`); a disable that cannot be written is
    /// logged, and the breaker trips again after a restart.
    async fn persist_disabled(
        &self,
        listener: &str,
        reason: &str,
        give_up: &tokio_util::sync::CancellationToken,
    ) {
        let mut backoff = Backoff::new(RETRY_BASE, RETRY_CAP);
        for attempt in 1u32.. {
            let result = self
                .store
                .set_listener_enabled(listener, false, Some(reason), AUTO_DISABLE_ACTOR)
                .await;
            let e = match result {
                Ok(()) => return,
                Err(e) => e,
            };
            if !e.is_transient() && attempt >= 5 {
                tracing::error!(listener, error = %e, "Cannot record that the listener was disabled");
                return;
            }
            let delay = backoff.next_delay();
            tracing::warn!(listener, error = %e, retry_in_ms = delay.as_millis() as u64, "Recording that the listener was disabled failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = give_up.cancelled() => {
                    tracing::error!(listener, "Gave up recording that the listener was disabled at shutdown");
                    return;
                }
            }
        }
    }

    async fn commit(
        &self,
        batch: &[RunRecord],
        give_up: &tokio_util::sync::CancellationToken,
    ) -> bool {
        let (watermark, counts) = self.progress.preview(batch.iter().map(|r| r.inbox_id));
        let mut backoff = Backoff::new(RETRY_BASE, RETRY_CAP);
        let mut attempt = 0u32;
        // Tags the transaction: if an attempt fails in a way that leaves the
        // commit's fate unknown, the next one first asks whether it landed,
        // so a batch is never written twice.
        let tag = batch_tag();
        loop {
            attempt += 1;
            if attempt > 1 && self.store.last_record_batch(&self.instance).await.ok() == Some(tag) {
                self.progress.commit(&counts);
                tracing::info!(
                    runs = batch.len(),
                    "The batch had been committed before the connection failed"
                );
                self.set_retrying(false);
                return true;
            }
            let delay = match self.write_batch(batch, watermark, tag).await {
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
                    return true;
                }
                Err(e) => {
                    // Transient errors are retried without limit; others a few
                    // times, in case they are a connection error in disguise.
                    // A connection error can come back in other shapes: only
                    // give up on a batch the database refuses while it
                    // answers pings (a bug, not an outage).
                    if !e.is_transient() && attempt >= 5 && self.store.ping().await.is_ok() {
                        tracing::error!(error = %e, runs = batch.len(), "Cannot record listener runs; their events are dispatched again at next start");
                        return false;
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, runs = batch.len(), retry_in_ms = delay.as_millis() as u64, "Recording listener runs failed; retrying");
                    self.set_retrying(true);
                    delay
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = give_up.cancelled() => {
                    tracing::error!(runs = batch.len(), "Gave up recording listener runs at shutdown; their events are dispatched again at next start");
                    return false;
                }
            }
        }
    }

    /// One attempt at committing `batch` with the watermark, timed.
    async fn write_batch(
        &self,
        batch: &[RunRecord],
        watermark: i64,
        tag: i64,
    ) -> Result<(), StoreError> {
        let timer = self
            .state
            .metrics
            .db_write_seconds
            .with_label_values(&["record"])
            .start_timer();
        let result = self
            .store
            .record_batch(&self.instance, batch, Some(watermark), tag)
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

/// Puts what the dispatcher sent where the recorder writes it from.
fn sort(r: Recording, batch: &mut Vec<RunRecord>, disabled: &mut Vec<(Arc<str>, String)>) {
    match r {
        Recording::Run(run) => batch.push(run),
        Recording::Disabled { listener, reason } => disabled.push((listener, reason)),
    }
}
