//! [`Dispatcher`]: one run per (event, interested listener), bounded in
//! number by a semaphore and in time by a timeout; panics and timeouts are
//! failures like any other and never reach the daemon.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::FutureExt;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::progress::Progress;
use crate::listeners::{interested, Context, Listener, ListenerError};
use crate::metrics::{Outcome, RunHandles};
use crate::state::State;
use crate::store::{RunRecord, StoredEvent};

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
}

/// Starts listener runs and sends their outcomes to the recorder.
pub struct Dispatcher {
    listeners: Arc<[Arc<dyn Listener>]>,
    names: Arc<[Arc<str>]>,
    handles: Vec<RunHandles>,
    limit: Arc<Semaphore>,
    settings: DispatcherSettings,
    outcomes: mpsc::Sender<RunRecord>,
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
        let names = listeners.iter().map(|l| Arc::from(l.name())).collect();
        let handles = listeners
            .iter()
            .map(|l| state.metrics.run_handles(l.name()))
            .collect();
        Dispatcher {
            handles,
            limit: Arc::new(Semaphore::new(settings.max_concurrent.max(1))),
            listeners: listeners.into(),
            names,
            settings,
            outcomes,
            progress,
            tracker: TaskTracker::new(),
            state,
        }
    }

    /// Starts the runs of one committed event, skipping the listeners named
    /// in `already_done` (runs recorded before a restart). Waits while the
    /// concurrency limit is reached, which slows intake down in turn.
    pub async fn dispatch(&self, stored: StoredEvent, already_done: &[String]) {
        let targets: Vec<usize> = interested(&self.listeners, stored.event.event_type())
            .into_iter()
            .filter(|i| !already_done.iter().any(|d| **d == *self.names[*i]))
            .collect();
        if self.settings.stop.is_cancelled() {
            return;
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
            // Take the permit before spawning, so at most `max_concurrent`
            // tasks exist and a flood of events waits here, not in memory.
            let permit = tokio::select! {
                p = self.limit.clone().acquire_owned() => p,
                _ = self.settings.stop.cancelled() => return,
            };
            let Ok(permit) = permit else {
                return;
            };
            let listener = self.listeners[i].clone();
            let name = self.names[i].clone();
            let ctx = Context {
                org: self.settings.org.clone(),
                inbox_id: stored.inbox_id,
                bot_user_id: self.settings.bot_user_id,
                attempt: 1,
            };
            let stored = stored.clone();
            let event_type = event_type.clone();
            let outcomes = self.outcomes.clone();
            let timeout = self.settings.timeout;
            let state = self.state.clone();
            let handles = self.handles[i].clone();
            state.metrics.runs_in_flight.inc();
            self.tracker.spawn(async move {
                let (record, outcome) =
                    run_once(listener, name, event_type, &stored, ctx, timeout).await;
                drop(permit);
                state.metrics.runs_in_flight.dec();
                handles.record(outcome, record.duration.as_secs_f64());
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

/// Runs one listener on one event, turning errors, panics and timeouts
/// into a failed [`RunRecord`].
async fn run_once(
    listener: Arc<dyn Listener>,
    name: Arc<str>,
    event_type: Arc<str>,
    stored: &StoredEvent,
    ctx: Context,
    timeout: Duration,
) -> (RunRecord, Outcome) {
    let started = Instant::now();
    let fut = AssertUnwindSafe(listener.handle(&stored.event, &ctx)).catch_unwind();
    let (outcome, error, records) = match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(Ok(records))) => (Outcome::Success, None, records),
        Ok(Ok(Err(e))) => {
            let kind = match e {
                ListenerError::Transient(_) => "transient",
                ListenerError::Permanent(_) => "permanent",
            };
            tracing::warn!(listener = %name, inbox_id = stored.inbox_id, error = %e, kind, "Listener failed");
            (Outcome::Failure, Some(e.to_string()), Vec::new())
        }
        Ok(Err(panic)) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            tracing::error!(listener = %name, inbox_id = stored.inbox_id, error = %msg, "Listener panicked");
            (
                Outcome::Failure,
                Some(format!("panicked: {msg}")),
                Vec::new(),
            )
        }
        Err(_) => {
            tracing::warn!(listener = %name, inbox_id = stored.inbox_id, timeout_s = timeout.as_secs_f64(), "Listener timed out");
            (
                Outcome::Timeout,
                Some(format!("timed out after {:.3} s", timeout.as_secs_f64())),
                Vec::new(),
            )
        }
    };
    let record = RunRecord {
        inbox_id: stored.inbox_id,
        listener: name,
        event_type,
        success: outcome == Outcome::Success,
        attempts: ctx.attempt,
        error,
        duration: started.elapsed(),
        finished_at: Utc::now(),
        records,
        dead_letter: false,
    };
    (record, outcome)
}
