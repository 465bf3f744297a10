//! `/health`: the daemon's state as starting, healthy, degraded or
//! unhealthy, with the reasons, computed from [`State`] and a database ping.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::state::State;
use crate::store::Store;

/// Error rate above which the daemon reports itself degraded.
pub(crate) const ERROR_RATE_THRESHOLD: f64 = 0.5;
/// Window over which the error rate is computed.
const WINDOW: Duration = Duration::from_secs(300);
/// Sampling period of the error-rate window.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// Overall status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    /// Not polling yet: start-up waits for something (Zulip to answer the
    /// account check, a queue to be registered).
    Starting,
    /// All is well.
    Healthy,
    /// Working, but something needs attention.
    Degraded,
    /// Not doing its job (or shutting down).
    Unhealthy,
}

/// The `/health` body.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HealthReport {
    /// starting, healthy, degraded or unhealthy.
    pub status: Status,
    /// Why the status is not healthy.
    pub reasons: Vec<String>,
    /// Enabled listeners.
    pub active_handlers: usize,
    /// Listener runs in flight.
    pub runs_in_flight: i64,
    /// When the last event was stored (RFC 3339), if any.
    pub last_event_time: Option<String>,
    /// Failed share of listener runs over the last five minutes.
    pub error_rate: f64,
    /// Seconds since the last successful poll (heartbeat or events).
    pub seconds_since_last_poll: Option<f64>,
    /// The queue of this instance.
    pub queue: QueueHealth,
    /// The database.
    pub database: DatabaseHealth,
    /// Listeners that are enabled in the configuration but disabled.
    pub disabled_listeners: Vec<String>,
    /// Listeners whose circuit breaker is open.
    pub open_circuits: Vec<OpenCircuit>,
    /// Polling is paused by memory backpressure.
    pub memory_backpressure: bool,
    /// Shutdown has begun.
    pub draining: bool,
}

/// An open circuit in `/health`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(crate) struct OpenCircuit {
    /// The listener.
    pub listener: String,
    /// When one trial run will be allowed (RFC 3339).
    pub until: String,
}

/// Queue state in `/health`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct QueueHealth {
    /// The instance (organization) name.
    pub instance: String,
    /// The Zulip queue, when one is registered or resumed.
    pub queue_id: Option<String>,
    /// Failed requests in a row.
    pub consecutive_failures: u32,
    /// The long-poll timeout in seconds.
    pub longpoll_timeout_seconds: u64,
}

/// Database state in `/health`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DatabaseHealth {
    /// postgres or sqlite (none in dry-run).
    pub backend: &'static str,
    /// Whether a ping succeeded just now.
    pub reachable: bool,
    /// Whether a write is being retried.
    pub retrying: bool,
}

/// Everything `/health` reads.
pub(crate) struct Health {
    state: Arc<State>,
    store: Option<Arc<dyn Store>>,
    instance: String,
    listeners: Vec<String>,
    samples: Mutex<VecDeque<(tokio::time::Instant, u64, u64)>>,
}

impl Health {
    /// Health of the daemon described by `state`.
    pub(crate) fn new(
        state: Arc<State>,
        store: Option<Arc<dyn Store>>,
        instance: String,
        listeners: Vec<String>,
    ) -> Arc<Health> {
        Arc::new(Health {
            state,
            store,
            instance,
            listeners,
            samples: Mutex::new(VecDeque::new()),
        })
    }

    /// Samples run totals every few seconds for the error-rate window and
    /// refreshes the computed gauges, until `token` is cancelled.
    pub(crate) async fn sample_until(self: Arc<Self>, token: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.sample();
                    self.refresh_gauges();
                }
                _ = token.cancelled() => return,
            }
        }
    }

    /// Sets the gauges computed from the live state rather than counted
    /// (the age of the last poll). Cheap and never touches the database, so
    /// a `/metrics` scrape calls it and never waits on the store.
    pub(crate) fn refresh_gauges(&self) -> Option<f64> {
        let age = self.state.last_poll_age();
        self.state
            .metrics
            .last_poll_age_seconds
            .set(age.unwrap_or(0.0));
        age
    }

    fn sample(&self) {
        let (runs, failed) = self.state.metrics.run_totals();
        let now = tokio::time::Instant::now();
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        s.push_back((now, runs, failed));
        while s
            .front()
            .is_some_and(|(t, _, _)| now.duration_since(*t) > WINDOW)
        {
            s.pop_front();
        }
    }

    /// Failed share of runs over the window (since start when younger).
    pub(crate) fn error_rate(&self) -> f64 {
        let (runs, failed) = self.state.metrics.run_totals();
        let s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let (r0, f0) = s.front().map(|(_, r, f)| (*r, *f)).unwrap_or((0, 0));
        let dr = runs.saturating_sub(r0);
        if dr == 0 {
            0.0
        } else {
            failed.saturating_sub(f0) as f64 / dr as f64
        }
    }

    /// The Prometheus text of the daemon's metrics.
    pub(crate) fn metrics_text(&self) -> String {
        self.state.metrics.render()
    }

    /// The current report; pings the database (at most 2 s).
    pub(crate) async fn report(&self) -> HealthReport {
        let reachable = match &self.store {
            Some(store) => matches!(
                tokio::time::timeout(Duration::from_secs(2), store.ping()).await,
                Ok(Ok(()))
            ),
            None => true,
        };
        let s = &self.state;
        let i = &s.intake;
        let polling = i.polling.load(Ordering::Relaxed);
        let longpoll = i.longpoll_secs.load(Ordering::Relaxed).max(1);
        let age = self.refresh_gauges();
        let error_rate = self.error_rate();
        let draining = s.draining.load(Ordering::Relaxed);
        let retrying = s.database_retrying.load(Ordering::Relaxed);
        let backpressure = s.backpressure.load(Ordering::Relaxed);

        let mut unhealthy = Vec::new();
        let mut degraded = Vec::new();
        if draining {
            unhealthy.push("shutting down".to_owned());
        }
        if !reachable {
            unhealthy.push("the database does not answer".to_owned());
        }
        if polling {
            match age {
                Some(a) if a > 600.0 => unhealthy.push(format!(
                    "no successful poll for {a:.0} s: the queue is probably lost"
                )),
                Some(a) if a > 2.0 * longpoll as f64 => degraded.push(format!(
                    "no heartbeat or event for {a:.0} s (over twice the {longpoll} s long-poll timeout)"
                )),
                _ => {}
            }
        }
        if i.degraded.load(Ordering::Relaxed) {
            degraded.push(format!(
                "requests to Zulip have failed for {:.0} s ({} in a row; still retrying)",
                i.failing_for().unwrap_or_default().as_secs_f64(),
                i.consecutive_failures.load(Ordering::Relaxed)
            ));
        }
        if error_rate > ERROR_RATE_THRESHOLD {
            degraded.push(format!("listener error rate {:.0}%", error_rate * 100.0));
        }
        if retrying {
            degraded.push("retrying database writes".to_owned());
        }
        if backpressure {
            degraded.push("polling paused by memory backpressure".to_owned());
        }
        let (disabled, open) = match s.listeners.get() {
            Some(c) => (c.disabled(), c.open_circuits()),
            None => (Vec::new(), Vec::new()),
        };
        for (name, why) in &disabled {
            degraded.push(format!("listener {name} is disabled: {why}"));
        }
        for (name, until) in &open {
            degraded.push(format!(
                "listener {name}'s circuit is open until {}",
                until.to_rfc3339()
            ));
        }
        let starting = s.starting();
        let status = if !unhealthy.is_empty() {
            Status::Unhealthy
        } else if let Some(what) = &starting {
            // What start-up waits for is the one reason that matters.
            degraded = vec![format!("starting: {what}")];
            Status::Starting
        } else if !degraded.is_empty() {
            Status::Degraded
        } else {
            Status::Healthy
        };
        let last_event_ms = i.last_event_ms.load(Ordering::Relaxed);
        HealthReport {
            status,
            reasons: unhealthy.into_iter().chain(degraded).collect(),
            active_handlers: self.listeners.len(),
            runs_in_flight: s.metrics.runs_in_flight.get(),
            last_event_time: (last_event_ms > 0)
                .then(|| chrono::DateTime::<chrono::Utc>::from_timestamp_millis(last_event_ms))
                .flatten()
                .map(|t| t.to_rfc3339()),
            error_rate,
            seconds_since_last_poll: age,
            queue: QueueHealth {
                instance: self.instance.clone(),
                queue_id: i.queue_id(),
                consecutive_failures: i.consecutive_failures.load(Ordering::Relaxed),
                longpoll_timeout_seconds: longpoll,
            },
            database: DatabaseHealth {
                backend: self.store.as_ref().map(|s| s.backend()).unwrap_or("none"),
                reachable,
                retrying,
            },
            disabled_listeners: disabled.into_iter().map(|(n, _)| n).collect(),
            open_circuits: open
                .into_iter()
                .map(|(listener, until)| OpenCircuit {
                    listener,
                    until: until.to_rfc3339(),
                })
                .collect(),
            memory_backpressure: backpressure,
            draining,
        }
    }
}
