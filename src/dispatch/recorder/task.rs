//! [`Recorder`]: writes finished runs to the store in group commits, sized
//! by count and by time, together with the dispatch watermark (waking the
//! reply sender when a batch queued replies); and writes
//! the listeners the dispatcher disabled automatically, so that a disable
//! lasts over a restart whatever becomes of the operator's notification.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::commit::{RecorderReport, Writer, Written, RETRY_BASE, RETRY_CAP};
use crate::backoff::Backoff;
use crate::dispatch::progress::Progress;
use crate::state::State;
use crate::store::{RunRecord, Store};

/// Runs per transaction at most.
const MAX_BATCH: usize = 2048;
/// Recordings taken off the channel by one receive at most.
const RECEIVE_MANY: usize = 64;
/// How long a batch waits for more runs after its first one.
const LINGER: Duration = Duration::from_millis(5);
/// Tries of a whole batch the database refuses (while it answers pings)
/// before its runs are written apart: a refusal may be a connection error
/// in disguise.
const BATCH_REFUSALS: u32 = 5;

/// What the dispatcher hands the recorder.
#[derive(Debug)]
pub(crate) enum Recording {
    /// A finished run.
    Run(RunRecord),
    /// A run that failed for the last time and the fallback runs it handed
    /// its event to, in order: put in one batch, so committed together.
    Chain(Vec<RunRecord>),
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

/// Receives run outcomes and commits them.
pub(crate) struct Recorder {
    writer: Writer,
    rx: mpsc::Receiver<Recording>,
    /// Whether an automatic disable writes an audit row with it.
    audit_disables: bool,
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
            writer: Writer {
                store,
                instance,
                progress,
                state,
                watermark: true,
            },
            rx,
            audit_disables: false,
        }
    }

    /// Writes an audit row with each automatic disable (`[data_protection]
    /// audit_trail`), under the actor `auto-disable`.
    pub(crate) fn audit_disables(mut self, on: bool) -> Recorder {
        self.audit_disables = on;
        self
    }

    /// Commits runs without the `dispatched_through` watermark: the
    /// recorder of a worker, one of several sharing the instance, each
    /// with its own partitions' events (the broker's redelivery, not the
    /// watermark, brings back what was not recorded).
    pub(crate) fn without_watermark(mut self) -> Recorder {
        self.writer.watermark = false;
        self
    }

    /// Records until every sender is gone. While one batch commits, the
    /// next is gathered from the channel, so the dispatcher is not held
    /// for the database's round trip; batches still commit one at a time,
    /// in order, each with the watermark its own runs move. While the
    /// database is unavailable it retries with backoff, holding the batch
    /// (and, once the next is full, the channel), so the dispatcher and
    /// then intake slow down instead of losing anything. `give_up` ends
    /// the retries at shutdown.
    pub(crate) async fn run(mut self, give_up: CancellationToken) -> RecorderReport {
        let mut report = RecorderReport::default();
        let mut next: Vec<RunRecord> = Vec::with_capacity(MAX_BATCH);
        let mut disabled: Vec<(Arc<str>, String)> = Vec::new();
        // What one receive took off the channel: many at once, so that a
        // busy dispatcher costs the recorder a wake-up per handful of runs,
        // not one per run (and the commit in flight is not polled again for
        // each run that arrives).
        let mut taken: Vec<Recording> = Vec::with_capacity(RECEIVE_MANY);
        let mut open = true;
        loop {
            if next.is_empty() && open {
                open = receive(&mut self.rx, &mut taken, &mut next, &mut disabled).await;
            }
            if open {
                open = linger(&mut self.rx, &mut taken, &mut next, &mut disabled).await;
            }
            for (listener, reason) in disabled.drain(..) {
                self.persist_disabled(&listener, &reason, &give_up).await;
            }
            if next.is_empty() {
                if open {
                    continue;
                }
                break;
            }
            let runs = std::mem::replace(&mut next, Vec::with_capacity(MAX_BATCH));
            let commit = record_batch(&self.writer, runs, &give_up, &mut report);
            tokio::pin!(commit);
            loop {
                tokio::select! {
                    biased;
                    () = &mut commit => break,
                    more = receive(&mut self.rx, &mut taken, &mut next, &mut disabled), if open && next.len() < MAX_BATCH => open = more,
                }
            }
        }
        report
    }

    /// Writes that `listener` is disabled, retrying while the database is
    /// unavailable (until `give_up`); a disable that cannot be written is
    /// logged, and the breaker trips again after a restart.
    async fn persist_disabled(&self, listener: &str, reason: &str, give_up: &CancellationToken) {
        let mut backoff = Backoff::new(RETRY_BASE, RETRY_CAP);
        for attempt in 1u32.. {
            let result = self
                .writer
                .store
                .set_listener_enabled(
                    listener,
                    false,
                    Some(reason),
                    AUTO_DISABLE_ACTOR,
                    self.audit_disables,
                )
                .await;
            let e = match result {
                Ok(()) => return,
                Err(e) => e,
            };
            if !e.is_transient() && attempt >= 5 {
                tracing::error!(listener, error = %e, "Cannot record that the listener was disabled");
                return;
            }
            let e = self.writer.store.explain(e).await;
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
}

/// Adds to `batch` what arrives within [`LINGER`] of now, up to
/// [`MAX_BATCH`] runs; false when every sender is gone.
async fn linger(
    rx: &mut mpsc::Receiver<Recording>,
    taken: &mut Vec<Recording>,
    batch: &mut Vec<RunRecord>,
    disabled: &mut Vec<(Arc<str>, String)>,
) -> bool {
    let linger = tokio::time::sleep(LINGER);
    tokio::pin!(linger);
    while batch.len() < MAX_BATCH {
        tokio::select! {
            biased;
            open = receive(rx, taken, batch, disabled) => if !open {
                return false;
            },
            _ = &mut linger => break,
        }
    }
    true
}

/// Waits for what the dispatcher sent and adds all of it that is there
/// (up to [`RECEIVE_MANY`] at a time, and no more than fills `batch` to
/// [`MAX_BATCH`]); false when every sender is gone. Cancel-safe: what
/// was received is sorted before the future returns.
async fn receive(
    rx: &mut mpsc::Receiver<Recording>,
    taken: &mut Vec<Recording>,
    batch: &mut Vec<RunRecord>,
    disabled: &mut Vec<(Arc<str>, String)>,
) -> bool {
    let room = MAX_BATCH.saturating_sub(batch.len()).clamp(1, RECEIVE_MANY);
    if rx.recv_many(taken, room).await == 0 {
        return false;
    }
    for r in taken.drain(..) {
        sort(r, batch, disabled);
    }
    true
}

/// Commits `runs`; when the database keeps refusing them, writes them
/// apart so that only the runs it cannot store fail.
async fn record_batch(
    writer: &Writer,
    runs: Vec<RunRecord>,
    give_up: &CancellationToken,
    report: &mut RecorderReport,
) {
    match writer.commit(&runs, BATCH_REFUSALS, give_up).await {
        Written::Committed => writer.committed(&runs, report),
        Written::GaveUp => report.unrecorded += runs.len() as u64,
        Written::Refused(e) => writer.isolate(runs, e, give_up, report).await,
    }
}

/// Puts what the dispatcher sent where the recorder writes it from.
fn sort(r: Recording, batch: &mut Vec<RunRecord>, disabled: &mut Vec<(Arc<str>, String)>) {
    match r {
        Recording::Run(run) => batch.push(run),
        Recording::Chain(runs) => batch.extend(runs),
        Recording::Disabled { listener, reason } => disabled.push((listener, reason)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn run(inbox_id: i64) -> RunRecord {
        RunRecord {
            inbox_id,
            listener: Arc::from("logger"),
            event_type: Arc::from("message"),
            success: true,
            attempts: 1,
            error: None,
            duration: Duration::from_millis(1),
            finished_at: chrono::Utc::now(),
            records: Vec::new(),
            dead_letter: None,
            fallback: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_receive_takes_what_is_there_in_order_and_never_overfills_a_batch() {
        let (tx, mut rx) = mpsc::channel(4 * RECEIVE_MANY);
        for i in 0..(2 * RECEIVE_MANY as i64) {
            tx.send(Recording::Run(run(i))).await.unwrap();
        }
        tx.send(Recording::Disabled {
            listener: Arc::from("logger"),
            reason: "too many failures".into(),
        })
        .await
        .unwrap();
        let mut taken = Vec::new();
        let mut disabled = Vec::new();
        // A batch three runs short of full takes three.
        let mut batch: Vec<RunRecord> = (0..(MAX_BATCH as i64 - 3)).map(run).collect();
        assert!(receive(&mut rx, &mut taken, &mut batch, &mut disabled).await);
        assert_eq!(batch.len(), MAX_BATCH);
        assert_eq!(
            batch[MAX_BATCH - 3..]
                .iter()
                .map(|r| r.inbox_id)
                .collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        // An empty one takes up to RECEIVE_MANY at once, in order.
        let mut batch = Vec::new();
        assert!(receive(&mut rx, &mut taken, &mut batch, &mut disabled).await);
        assert_eq!(batch.len(), RECEIVE_MANY);
        assert_eq!(batch[0].inbox_id, 3);
        assert!(batch.windows(2).all(|w| w[0].inbox_id + 1 == w[1].inbox_id));
        // The rest, and the disable sorted apart; then the end.
        let mut rest = Vec::new();
        assert!(receive(&mut rx, &mut taken, &mut rest, &mut disabled).await);
        assert_eq!(rest.len(), RECEIVE_MANY - 3);
        assert_eq!(disabled.len(), 1);
        drop(tx);
        assert!(!receive(&mut rx, &mut taken, &mut rest, &mut disabled).await);
    }
}
