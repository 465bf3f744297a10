//! [`Dispatcher`]: one run per (event, interested listener).
//!
//! - **Ordering**: runs of one listener that share an ordering key (the
//!   channel and topic, the direct-message group, the user, or the event
//!   type) run in dispatch order, so an edit never overtakes its message;
//!   other keys run in parallel.
//! - **Selection**: an event another instance owns (`[scaling]`) gets no
//!   run here; filters (`[filters]`, `[security]`, `[listeners.NAME]`)
//!   skip runs, counted as `skipped` and logged at debug.
//! - **Bounds**: at most `max_concurrent` runs execute at once; at most
//!   [`ADMISSION_FACTOR`] × that many runs exist (waiting for their lane or
//!   a slot), taken before spawning, so a flood of events waits in the
//!   caller — and, through it, in Zulip's queue — not in memory.
//! - **Failures**: a run that errors, panics or times out is retried up to
//!   `max_retries` times `retry_delay` apart (with jitter), holding only its
//!   own lane; a permanent error is not retried; the last failure is
//!   dead-lettered. A listener's [`Breaker`] skips runs while its circuit is
//!   open or it is disabled; skipped runs are dead-lettered for `replay`.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::FutureExt;
use rand::Rng;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::breaker::{Admission, Breaker, BreakerSettings, Transition};
use super::lanes::Lanes;
use super::progress::Progress;
use crate::dispatch::filters::Filters;
use crate::dispatch::routing::{event_seq, ordering_key, OrderingKey, Partitioner};
use crate::event::Event;
use crate::listeners::{interested, Context, Listener, ListenerError, Record};
use crate::metrics::{Outcome, RunHandles};
use crate::state::State;
use crate::store::{RunRecord, StoredEvent};

/// Runs that may exist (waiting or running) per allowed concurrent run.
pub const ADMISSION_FACTOR: usize = 16;

/// Retry policy of failed runs.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub max_retries: u32,
    /// Delay between tries (jittered ±50%).
    pub delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 0,
            delay: Duration::from_secs(5),
        }
    }
}

/// How runs are bounded.
#[derive(Debug, Clone)]
pub struct DispatcherSettings {
    /// Runs in flight at once, over all listeners.
    pub max_concurrent: usize,
    /// Upper bound of one run.
    pub timeout: Duration,
    /// The organization, for idempotency keys.
    pub org: Arc<str>,
    /// The bot's own user id.
    pub bot_user_id: Option<i64>,
    /// Once cancelled (shutdown), no new run starts; events not fully
    /// started are dispatched again at the next start.
    pub stop: CancellationToken,
    /// Retries of failed runs.
    pub retry: RetryPolicy,
    /// Circuit breaker and auto-disable.
    pub breaker: BreakerSettings,
    /// Which events this instance handles.
    pub partitioner: Partitioner,
    /// Event and listener filters.
    pub filters: Arc<Filters>,
}

/// Something an operator should hear about (sent to the webhook, and the
/// disabled state is written to the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A listener's circuit opened.
    CircuitOpened {
        /// Listener.
        listener: String,
        /// Consecutive failures.
        failures: u32,
    },
    /// A listener was disabled automatically.
    Disabled {
        /// Listener.
        listener: String,
        /// Why.
        reason: String,
    },
    /// A run failed for the last time.
    DeadLettered {
        /// Listener.
        listener: String,
        /// Inbox id of the event.
        inbox_id: i64,
        /// The last error.
        error: String,
    },
}

struct Slot {
    listener: Arc<dyn Listener>,
    name: Arc<str>,
    handles: RunHandles,
    breaker: Breaker,
}

/// Starts listener runs and sends their outcomes to the recorder.
pub struct Dispatcher {
    slots: Arc<[Slot]>,
    listeners: Vec<Arc<dyn Listener>>,
    admission: Arc<Semaphore>,
    running: Arc<Semaphore>,
    lanes: Arc<Lanes<(usize, OrderingKey)>>,
    settings: Arc<DispatcherSettings>,
    outcomes: mpsc::Sender<RunRecord>,
    notices: Option<mpsc::Sender<Notice>>,
    progress: Arc<Progress>,
    tracker: TaskTracker,
    state: Arc<State>,
}

impl Dispatcher {
    /// A dispatcher over `listeners` whose outcomes go to `outcomes`.
    pub fn new(
        listeners: Vec<Arc<dyn Listener>>,
        settings: DispatcherSettings,
        outcomes: mpsc::Sender<RunRecord>,
        progress: Arc<Progress>,
        state: Arc<State>,
    ) -> Dispatcher {
        let slots: Arc<[Slot]> = listeners
            .iter()
            .map(|l| Slot {
                listener: l.clone(),
                name: Arc::from(l.name()),
                handles: state.metrics.run_handles(l.name()),
                breaker: Breaker::new(settings.breaker),
            })
            .collect();
        let max = settings.max_concurrent.max(1);
        Dispatcher {
            slots,
            listeners,
            admission: Arc::new(Semaphore::new(max * ADMISSION_FACTOR)),
            running: Arc::new(Semaphore::new(max)),
            lanes: Arc::default(),
            settings: Arc::new(settings),
            outcomes,
            notices: None,
            progress,
            tracker: TaskTracker::new(),
            state,
        }
    }

    /// Sends [`Notice`]s to `tx` (dropped when full: never blocks dispatch).
    pub fn with_notices(mut self, tx: mpsc::Sender<Notice>) -> Dispatcher {
        self.notices = Some(tx);
        self
    }

    /// A handle to disable, enable and inspect listeners while running.
    pub fn control(&self) -> Control {
        Control(self.slots.clone())
    }

    /// Starts the runs of one committed event, skipping the listeners named
    /// in `already_done` (runs recorded before a restart). Waits while the
    /// admission limit is reached, which slows intake down in turn.
    pub async fn dispatch(&self, stored: StoredEvent, already_done: &[String]) {
        if self.settings.stop.is_cancelled() {
            return;
        }
        let event = &stored.event;
        let key = ordering_key(event);
        let owned = self.settings.partitioner.owns(&key, event_seq(event));
        let mut targets: Vec<usize> = Vec::new();
        if owned {
            let event_skip = self.settings.filters.check_event(event, Utc::now());
            for i in interested(&self.listeners, event.event_type()) {
                let slot = &self.slots[i];
                if already_done.iter().any(|d| **d == *slot.name) {
                    continue;
                }
                match event_skip.or_else(|| self.settings.filters.check_listener(event, &slot.name))
                {
                    Some(reason) => {
                        self.state
                            .metrics
                            .events_processed
                            .with_label_values(&[&slot.name, Outcome::Skipped.as_str()])
                            .inc();
                        tracing::debug!(listener = %slot.name, inbox_id = stored.inbox_id, reason = reason.as_str(), "Skipping a run");
                    }
                    None => targets.push(i),
                }
            }
        }
        self.progress.begin(stored.inbox_id, targets.len());
        if targets.is_empty() {
            tracing::debug!(
                inbox_id = stored.inbox_id,
                event_type = stored.event.event_type(),
                "No listener wants this event"
            );
            return;
        }
        let event_type: Arc<str> = Arc::from(stored.event.event_type());
        let stored = Arc::new(stored);
        for i in targets {
            let permit = tokio::select! {
                p = self.admission.clone().acquire_owned() => p,
                _ = self.settings.stop.cancelled() => return,
            };
            let Ok(permit) = permit else {
                return;
            };
            // Taken here, in dispatch order, so the lane keeps event order.
            let mut turn = self.lanes.enter((i, key.clone()));
            let run = Run {
                slots: self.slots.clone(),
                index: i,
                stored: stored.clone(),
                event_type: event_type.clone(),
                settings: self.settings.clone(),
                running: self.running.clone(),
                notices: self.notices.clone(),
                state: self.state.clone(),
            };
            let outcomes = self.outcomes.clone();
            let lanes = self.lanes.clone();
            self.state.metrics.runs_in_flight.inc();
            self.tracker.spawn(async move {
                turn.wait().await;
                let record = run.execute().await;
                lanes.leave(turn);
                drop(permit);
                run.state.metrics.runs_in_flight.dec();
                // The recorder outlives every run; if it is gone the daemon
                // is stopping and the event is re-dispatched at next start.
                let _ = outcomes.send(record).await;
            });
        }
    }

    /// Stops accepting runs and waits up to `deadline` for those in flight.
    /// Returns how many were still running when the deadline passed.
    pub async fn drain(self, deadline: Duration) -> usize {
        self.tracker.close();
        if tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            let left = self.tracker.len();
            tracing::warn!(
                still_running = left,
                "Listener runs did not finish before the shutdown deadline; their events are dispatched again at next start"
            );
            return left;
        }
        0
    }
}

/// Disables, enables and inspects the dispatcher's listeners at run time.
#[derive(Clone)]
pub struct Control(Arc<[Slot]>);

impl Control {
    /// Disables (with a reason) or re-enables a listener.
    pub fn set_disabled(&self, listener: &str, reason: Option<String>) {
        if let Some(slot) = self.0.iter().find(|s| &*s.name == listener) {
            if slot.breaker.disabled() != reason {
                match &reason {
                    Some(r) => tracing::warn!(listener, reason = %r, "Listener disabled"),
                    None => tracing::info!(listener, "Listener enabled"),
                }
            }
            slot.breaker.set_disabled(reason);
        }
    }

    /// Listeners currently disabled, with the reason.
    pub fn disabled(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter_map(|s| s.breaker.disabled().map(|r| (s.name.to_string(), r)))
            .collect()
    }

    /// Listeners whose circuit is open, with when it half-opens.
    pub fn open_circuits(&self) -> Vec<(String, chrono::DateTime<Utc>)> {
        let now = tokio::time::Instant::now();
        self.0
            .iter()
            .filter_map(|s| {
                let until = s.breaker.open_until()?;
                let left = chrono::Duration::from_std(until.saturating_duration_since(now)).ok()?;
                Some((s.name.to_string(), Utc::now() + left))
            })
            .collect()
    }
}

/// One (event, listener) run with its retries.
struct Run {
    slots: Arc<[Slot]>,
    index: usize,
    stored: Arc<StoredEvent>,
    event_type: Arc<str>,
    settings: Arc<DispatcherSettings>,
    running: Arc<Semaphore>,
    notices: Option<mpsc::Sender<Notice>>,
    state: Arc<State>,
}

impl Run {
    fn slot(&self) -> &Slot {
        &self.slots[self.index]
    }

    fn notify(&self, notice: Notice) {
        if let Some(tx) = &self.notices {
            if tx.try_send(notice).is_err() {
                tracing::warn!("The notification queue is full; dropping a notification");
            }
        }
    }

    async fn execute(&self) -> RunRecord {
        let slot = self.slot();
        let started = Instant::now();
        let admission = slot.breaker.admit();
        if let Admission::SkipOpen | Admission::SkipDisabled = admission {
            let why = if admission == Admission::SkipOpen {
                "skipped: the listener's circuit is open".to_owned()
            } else {
                format!(
                    "skipped: the listener is disabled ({})",
                    slot.breaker.disabled().unwrap_or_default()
                )
            };
            self.state
                .metrics
                .events_processed
                .with_label_values(&[&slot.name, Outcome::Skipped.as_str()])
                .inc();
            return self.record(false, 0, Some(why), Vec::new(), started, true);
        }
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (outcome, error, records) = {
                // A slot is held only while the listener runs, not while
                // waiting to retry.
                let _slot = tokio::select! {
                    p = self.running.acquire() => p.ok(),
                    _ = self.settings.stop.cancelled() => None,
                };
                self.try_once(attempt).await
            };
            slot.handles
                .record(outcome, started.elapsed().as_secs_f64());
            let Some(error) = error else {
                if slot.breaker.record(true) == Transition::Closed {
                    tracing::info!(listener = %slot.name, "The listener's trial run succeeded; circuit closed");
                }
                return self.record(true, attempt, None, records, started, false);
            };
            let retryable = !matches!(error, RunError::Permanent(_))
                && attempt <= self.settings.retry.max_retries
                && !self.settings.stop.is_cancelled()
                && admission != Admission::Trial;
            if retryable {
                self.state
                    .metrics
                    .events_processed
                    .with_label_values(&[&slot.name, Outcome::Retried.as_str()])
                    .inc();
                let delay = jittered(self.settings.retry.delay);
                tracing::info!(listener = %slot.name, inbox_id = self.stored.inbox_id, attempt, retry_in_ms = delay.as_millis() as u64, "Retrying a failed listener run");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = self.settings.stop.cancelled() => {}
                }
                continue;
            }
            let message = error.to_string();
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
                    self.notify(Notice::Disabled {
                        listener: slot.name.to_string(),
                        reason,
                    });
                }
                Transition::Closed | Transition::None => {}
            }
            self.state
                .metrics
                .events_processed
                .with_label_values(&[&slot.name, Outcome::DeadLettered.as_str()])
                .inc();
            self.notify(Notice::DeadLettered {
                listener: slot.name.to_string(),
                inbox_id: self.stored.inbox_id,
                error: message.clone(),
            });
            return self.record(false, attempt, Some(message), Vec::new(), started, true);
        }
    }

    async fn try_once(&self, attempt: u32) -> (Outcome, Option<RunError>, Vec<Record>) {
        let slot = self.slot();
        let ctx = Context {
            org: self.settings.org.clone(),
            inbox_id: self.stored.inbox_id,
            bot_user_id: self.settings.bot_user_id,
            attempt,
        };
        let event: &Event = &self.stored.event;
        let fut = AssertUnwindSafe(slot.listener.handle(event, &ctx)).catch_unwind();
        match tokio::time::timeout(self.settings.timeout, fut).await {
            Ok(Ok(Ok(records))) => (Outcome::Success, None, records),
            Ok(Ok(Err(e))) => {
                tracing::warn!(listener = %slot.name, inbox_id = ctx.inbox_id, attempt, error = %e, "Listener failed");
                let err = match e {
                    ListenerError::Permanent(m) => RunError::Permanent(m),
                    ListenerError::Transient(m) => RunError::Transient(m),
                };
                (Outcome::Failure, Some(err), Vec::new())
            }
            Ok(Err(panic)) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                tracing::error!(listener = %slot.name, inbox_id = ctx.inbox_id, error = %msg, "Listener panicked");
                (
                    Outcome::Failure,
                    Some(RunError::Transient(format!("panicked: {msg}"))),
                    Vec::new(),
                )
            }
            Err(_) => {
                let t = self.settings.timeout.as_secs_f64();
                tracing::warn!(listener = %slot.name, inbox_id = ctx.inbox_id, timeout_s = t, "Listener timed out");
                (
                    Outcome::Timeout,
                    Some(RunError::Transient(format!("timed out after {t:.3} s"))),
                    Vec::new(),
                )
            }
        }
    }

    fn record(
        &self,
        success: bool,
        attempts: u32,
        error: Option<String>,
        records: Vec<Record>,
        started: Instant,
        dead_letter: bool,
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
        }
    }
}

#[derive(Debug)]
enum RunError {
    Transient(String),
    Permanent(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Transient(m) | RunError::Permanent(m) => f.write_str(m),
        }
    }
}

/// `d` scaled by a random factor in [0.5, 1.5).
fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.5..1.5))
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;

    use super::*;

    /// Fails its first two tries.
    struct FlakyTwice;

    #[async_trait]
    impl Listener for FlakyTwice {
        fn name(&self) -> &str {
            "flaky"
        }
        fn description(&self) -> &str {
            "fails twice"
        }
        fn event_types(&self) -> &[&str] {
            &["message"]
        }
        async fn handle(&self, _: &Event, ctx: &Context) -> Result<Vec<Record>, ListenerError> {
            if ctx.attempt <= 2 {
                Err(ListenerError::transient("not yet"))
            } else {
                Ok(Vec::new())
            }
        }
    }

    /// Always fails permanently.
    struct Broken;

    #[async_trait]
    impl Listener for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        fn description(&self) -> &str {
            "fails for good"
        }
        fn event_types(&self) -> &[&str] {
            &["message"]
        }
        async fn handle(&self, _: &Event, _: &Context) -> Result<Vec<Record>, ListenerError> {
            Err(ListenerError::permanent("cannot handle this"))
        }
    }

    fn dispatcher(
        listener: Arc<dyn Listener>,
        retries: u32,
    ) -> (Dispatcher, mpsc::Receiver<RunRecord>) {
        let (tx, rx) = mpsc::channel(16);
        let settings = DispatcherSettings {
            max_concurrent: 2,
            timeout: Duration::from_secs(5),
            org: "o".into(),
            bot_user_id: None,
            stop: CancellationToken::new(),
            retry: RetryPolicy {
                max_retries: retries,
                delay: Duration::from_secs(10),
            },
            breaker: BreakerSettings {
                failure_threshold: 0,
                ..BreakerSettings::default()
            },
            partitioner: Partitioner::single(),
            filters: Arc::new(Filters::new(&crate::config::Config::default())),
        };
        let d = Dispatcher::new(vec![listener], settings, tx, Arc::default(), Arc::default());
        (d, rx)
    }

    fn message(id: i64) -> StoredEvent {
        let event = Event::parse(&format!(
            r#"{{"type":"message","id":{id},"message":{{"id":{id},"sender_id":1,"display_recipient":"g","subject":"t","timestamp":1,"content":"x"}}}}"#
        ))
        .unwrap();
        StoredEvent {
            inbox_id: id,
            event,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_failure_is_retried_after_the_jittered_delay() {
        let (d, mut rx) = dispatcher(Arc::new(FlakyTwice), 3);
        let start = tokio::time::Instant::now();
        d.dispatch(message(1), &[]).await;
        let record = rx.recv().await.unwrap();
        let waited = start.elapsed();
        assert!(record.success);
        assert_eq!(record.attempts, 3);
        assert!(!record.dead_letter);
        // Two waits of 10 s each, jittered to [5 s, 15 s).
        assert!(
            waited >= Duration::from_secs(10) && waited < Duration::from_secs(30),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_failure_is_dead_lettered_with_its_attempt_count() {
        let (d, mut rx) = dispatcher(Arc::new(FlakyTwice), 1);
        d.dispatch(message(1), &[]).await;
        let record = rx.recv().await.unwrap();
        assert!(!record.success);
        assert_eq!(record.attempts, 2);
        assert!(record.dead_letter);
        assert_eq!(record.error.as_deref(), Some("not yet"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_failure_is_not_retried() {
        let (d, mut rx) = dispatcher(Arc::new(Broken), 5);
        let start = tokio::time::Instant::now();
        d.dispatch(message(1), &[]).await;
        let record = rx.recv().await.unwrap();
        assert_eq!(record.attempts, 1);
        assert!(record.dead_letter);
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_disabled_listener_skips_runs_and_keeps_them_for_replay() {
        let (d, mut rx) = dispatcher(Arc::new(FlakyTwice), 0);
        d.control().set_disabled("flaky", Some("by test".into()));
        d.dispatch(message(1), &[]).await;
        let record = rx.recv().await.unwrap();
        assert_eq!(record.attempts, 0);
        assert!(record.dead_letter);
        assert!(record.error.unwrap().contains("disabled (by test)"));
        d.control().set_disabled("flaky", None);
        assert!(d.control().disabled().is_empty());
    }
}
