//! One listener run: [`Run`], one dispatched (event, listener) pair with
//! its concurrency permit, retries and breaker bookkeeping, each try
//! through [`guard`] (`failure.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::Rng;
use tokio::sync::{mpsc, Semaphore, SemaphorePermit, TryAcquireError};
use tracing::Instrument;

use super::breaker::{Admission, Transition};
use super::control::Slot;
use super::failure::{guard, Failure};
use super::notice::Notice;
use super::recorder::Recording;
use super::settings::{retry_delay, DispatcherSettings};
use super::tapped::Finished;
use crate::event::Event;
use crate::listeners::{Context, FallbackOf, Record};
use crate::metrics::{self, DiscardReason, Outcome};
use crate::pii::Pii;
use crate::state::State;
use crate::store::{DeadLetterCause, ErrorClass, RunRecord, Stage, StoredEvent};
use crate::telemetry;

/// What every run of one event shares, built once per event: a run
/// holds it through one reference count, not one per part (each part's
/// count is shared by all runs on every thread).
pub(super) struct EventRuns {
    pub(super) slots: Arc<[Slot]>,
    pub(super) stored: Arc<StoredEvent>,
    pub(super) event_type: Arc<str>,
    pub(super) settings: Arc<DispatcherSettings>,
    pub(super) running: Arc<Semaphore>,
    pub(super) notices: Option<mpsc::Sender<Notice>>,
    pub(super) outcomes: mpsc::Sender<Recording>,
    pub(super) state: Arc<State>,
    /// The event's span: each try's is its child.
    pub(super) trace: tracing::Span,
}

/// One (event, listener) run with its retries.
#[derive(Clone)]
pub(super) struct Run {
    pub(super) event: Arc<EventRuns>,
    pub(super) index: usize,
    /// Set on a fallback's run: the failure that handed it the event.
    pub(super) fallback_of: Option<Arc<FallbackOf>>,
}

impl std::ops::Deref for Run {
    type Target = EventRuns;

    fn deref(&self) -> &EventRuns {
        &self.event
    }
}

impl Run {
    pub(super) fn slot(&self) -> &Slot {
        &self.slots[self.index]
    }

    fn notify(&self, notice: Notice) {
        if let Some(tx) = &self.notices {
            if tx.try_send(notice).is_err() {
                tracing::warn!("The notification queue is full; dropping a notification");
            }
        }
    }

    fn discarded(&self, reason: DiscardReason) {
        self.state
            .metrics
            .discards
            .count(&self.slot().name, reason, 1);
    }

    fn count(&self, outcome: Outcome) {
        self.state
            .metrics
            .events_processed
            .with_label_values(&[&self.slot().name, outcome.as_str()])
            .inc();
    }

    /// Runs the listener, retrying as the policy allows, and returns the
    /// run to record with the class of its last failure (`None` when it
    /// succeeded); `None` when shutdown came before a try could take a
    /// concurrency slot (nothing started: the event is dispatched again at
    /// the next start).
    pub(super) async fn execute_one(&self) -> Option<(RunRecord, Option<&'static str>)> {
        let slot = self.slot();
        let started = Instant::now();
        let admission = slot.breaker.admit();
        if let Admission::SkipOpen | Admission::SkipDisabled = admission {
            let class = if admission == Admission::SkipOpen {
                "circuit_open"
            } else {
                "disabled"
            };
            return Some((self.skipped(admission, started), Some(class)));
        }
        let mut attempt = 0u32;
        let mut first_failed_at = None;
        loop {
            attempt += 1;
            let (outcome, error, records) = self.try_with_slot(attempt).await?;
            slot.handles
                .record(outcome, started.elapsed().as_secs_f64());
            let Some(error) = error else {
                if slot.breaker.record(true) == Transition::Closed {
                    tracing::info!(listener = %slot.name, "The listener's trial run succeeded; circuit closed");
                }
                let replies = records
                    .iter()
                    .filter(|r| matches!(r, Record::Reply(_)))
                    .count();
                self.state
                    .held_spans
                    .hold(self.stored.inbox_id, &self.trace, replies);
                let record = self.record(true, attempt, None, records, started, None);
                return Some((self.tapped(record, None), None));
            };
            let first_failed_at = *first_failed_at.get_or_insert_with(Utc::now);
            let retryable = !error.is_permanent()
                && attempt < slot.retry.max_attempts
                && !self.settings.stop.is_cancelled()
                && admission != Admission::Trial;
            if retryable {
                self.wait_to_retry(attempt, error.retry_after()).await;
                continue;
            }
            let message = error.to_string();
            self.trip_breaker().await;
            self.count(Outcome::DeadLettered);
            self.discarded(DiscardReason::DeadLettered);
            self.notify(Notice::DeadLettered {
                listener: slot.name.to_string(),
                inbox_id: self.stored.inbox_id,
                error: message.clone(),
            });
            let class = error.class().as_str();
            let cause = error.dead_letter(first_failed_at);
            let record = self.record(
                false,
                attempt,
                Some(message),
                Vec::new(),
                started,
                Some(cause),
            );
            return Some((self.tapped(record, Some(class)), Some(class)));
        }
    }

    /// The record of a run the breaker skips (open circuit, disabled).
    fn skipped(&self, admission: Admission, started: Instant) -> RunRecord {
        let why = if admission == Admission::SkipOpen {
            self.discarded(DiscardReason::CircuitOpen);
            "skipped: the listener's circuit is open".to_owned()
        } else {
            self.discarded(DiscardReason::Disabled);
            format!(
                "skipped: the listener is disabled ({})",
                self.slot().breaker.disabled().unwrap_or_default()
            )
        };
        self.count(Outcome::Skipped);
        let class = match admission {
            Admission::SkipOpen => "circuit",
            _ => "disabled",
        };
        let cause = DeadLetterCause {
            stage: Stage::Run,
            class: ErrorClass::Circuit,
            first_failed_at: Utc::now(),
        };
        let record = self.record(false, 0, Some(why), Vec::new(), started, Some(cause));
        self.tapped(record, Some(class))
    }

    /// Publishes `record`'s outcome to the tap (nothing while nobody taps).
    fn tapped(&self, record: RunRecord, class: Option<&'static str>) -> RunRecord {
        let dropped = &self.state.metrics.tap_lines_dropped;
        self.state.tap.publish(
            || {
                Arc::new(Finished {
                    org: self.settings.org.clone(),
                    stored: self.stored.clone(),
                    listener: record.listener.clone(),
                    success: record.success,
                    attempts: record.attempts,
                    class,
                    duration: record.duration,
                    error: record.error.clone(),
                })
            },
            dropped,
        );
        record
    }

    /// One try under a concurrency slot; `None`, without trying, once
    /// `stop` is cancelled. A slot is held only while the listener runs,
    /// not while waiting to retry; and no try starts during the drain, with
    /// or without a slot: the drain waits only for runs already running.
    async fn try_with_slot(&self, attempt: u32) -> Option<(Outcome, Option<Failure>, Vec<Record>)> {
        if self.settings.stop.is_cancelled() {
            return None;
        }
        // The instance's own bound first, so a busy instance waits without
        // holding one of the daemon's slots others could use.
        let _own = match &self.slot().limit {
            Some(limit) => {
                let own = self.slot_of(limit).await?;
                // It may have waited, and shutdown come meanwhile.
                if self.settings.stop.is_cancelled() {
                    return None;
                }
                Some(own)
            }
            None => None,
        };
        let _permit = self.slot_of(&self.running).await?;
        Some(self.try_once(attempt).await)
    }

    /// A permit of `slots`, at once when one is free (no waiter, no
    /// cancellation future: the common case of a run that finds a slot),
    /// else when one frees; `None` once `stop` is cancelled or `slots` is
    /// closed.
    async fn slot_of<'a>(&self, slots: &'a Semaphore) -> Option<SemaphorePermit<'a>> {
        match slots.try_acquire() {
            Ok(p) => Some(p),
            Err(TryAcquireError::Closed) => None,
            Err(TryAcquireError::NoPermits) => tokio::select! {
                biased;
                _ = self.settings.stop.cancelled() => None,
                p = slots.acquire() => p.ok(),
            },
        }
    }

    /// Waits the jittered retry delay (at least what a `Retry-After`
    /// asked), or until `stop` is cancelled.
    async fn wait_to_retry(&self, attempt: u32, at_least: Option<Duration>) {
        self.count(Outcome::Retried);
        let mut delay = jittered(retry_delay(&self.slot().retry, attempt));
        if let Some(after) = at_least {
            delay = delay.max(after);
        }
        tracing::info!(listener = %self.slot().name, inbox_id = self.stored.inbox_id, attempt, retry_in_ms = delay.as_millis() as u64, "Retrying a failed listener run");
        let _waiting = self.slot().handles.instance.waiting_to_retry();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.settings.stop.cancelled() => {}
        }
    }

    /// Counts a final failure in the breaker and acts on what it changed.
    /// An automatic disable goes to the recorder, which writes it to the
    /// store, so it lasts over a restart whatever becomes of the notice.
    async fn trip_breaker(&self) {
        let slot = self.slot();
        match slot.breaker.record(false) {
            Transition::Opened { failures } => {
                tracing::error!(listener = %slot.name, failures, cooldown_s = self.settings.breaker.cooldown.as_secs(), "Circuit opened: skipping this listener's runs for the cool-down");
                self.notify(Notice::CircuitOpened {
                    listener: slot.name.to_string(),
                    failures,
                });
            }
            Transition::Disabled(reason) => {
                tracing::error!(listener = %slot.name, reason = %reason, "Listener disabled until `enable` is run");
                // The recorder outlives every run; if it is gone the daemon
                // is stopping, and the breaker trips again after a restart.
                let _ = self
                    .outcomes
                    .send(Recording::Disabled {
                        listener: slot.name.clone(),
                        reason: reason.clone(),
                    })
                    .await;
                self.notify(Notice::Disabled {
                    listener: slot.name.to_string(),
                    reason,
                });
            }
            Transition::Closed | Transition::None => {}
        }
    }

    async fn try_once(&self, attempt: u32) -> (Outcome, Option<Failure>, Vec<Record>) {
        let slot = self.slot();
        let ctx = Context {
            org: self.settings.org.clone(),
            inbox_id: self.stored.inbox_id,
            bot_user_id: self.settings.bot_user_id,
            attempt,
            bot: self.settings.bot.clone(),
            received_at: Some(self.stored.received_at),
            fallback_of: self.fallback_of.clone(),
        };
        let event: &Event = &self.stored.event;
        let span = tracing::info_span!(target: telemetry::TARGET, parent: &self.trace,
            "listener attempt", listener = %slot.name, attempt, outcome = tracing::field::Empty);
        let executing = slot.handles.instance.executing();
        let tried = guard(slot.listener.as_ref(), event, &ctx, slot.timeout);
        let tried = metrics::scoped(slot.handles.own_message.clone(), tried)
            .instrument(span.clone())
            .await;
        drop(executing);
        let failure = match tried {
            Ok(records) => {
                span.record("outcome", Outcome::Success.as_str());
                return (Outcome::Success, None, records);
            }
            Err(f) => f,
        };
        span.record("outcome", failure.outcome().as_str());
        slot.handles.instance.failed(failure.class());
        match &failure {
            Failure::Listener(e) => {
                // The error's text may quote a receiver's answer or a
                // command's stderr; the event log row keeps it whole.
                tracing::warn!(listener = %slot.name, inbox_id = ctx.inbox_id, attempt, class = e.class(), error = %Pii(e), "Listener failed");
            }
            Failure::Panicked(msg) => {
                tracing::error!(listener = %slot.name, inbox_id = ctx.inbox_id, error = %Pii(msg), "Listener panicked");
            }
            Failure::TimedOut(t) => {
                tracing::warn!(listener = %slot.name, inbox_id = ctx.inbox_id, timeout_s = t.as_secs_f64(), "Listener timed out");
            }
        }
        (failure.outcome(), Some(failure), Vec::new())
    }

    fn record(
        &self,
        success: bool,
        attempts: u32,
        error: Option<String>,
        records: Vec<Record>,
        started: Instant,
        dead_letter: Option<DeadLetterCause>,
    ) -> RunRecord {
        RunRecord {
            inbox_id: self.stored.inbox_id,
            listener: self.slot().name.clone(),
            event_type: self.event_type.clone(),
            success,
            attempts,
            error,
            duration: started.elapsed(),
            finished_at: Utc::now(),
            records,
            dead_letter,
            fallback: Default::default(),
        }
    }
}

/// `d` scaled by a random factor in [0.5, 1.5).
fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.5..1.5))
}
