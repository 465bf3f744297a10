//! `/health`: the daemon's state as starting, healthy, degraded or
//! unhealthy, with the reasons, computed from each organization's
//! [`State`] (`organization.rs`) and a database ping. With several
//! organizations, one that stopped (a refused key) is unhealthy in its own
//! section and makes the whole degraded; the whole is unhealthy only when
//! every organization is, or what they share (the database, the drain)
//! fails. `/ready` (`ready.rs`) reads the same state, without the ping:
//! 200 or 503 naming what fails.

mod ingest;
mod organization;
mod ready;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use organization::{judge, rfc3339, Judged, OrganizationHealth};
pub(crate) use ready::Readiness;
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
    /// The queue of this instance (the first organization's).
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
    /// Each organization (one unless `[[zulip]]` lists several).
    pub organizations: Vec<OrganizationHealth>,
    /// The last configuration reload (SIGHUP), if there was one: a failed
    /// one leaves the status as it is (the running configuration is kept).
    pub reload: Option<crate::state::ReloadStatus>,
    /// A distributed ingest's leadership and outbox (`run --role ingest`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distributed: Option<ingest::IngestHealth>,
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
    /// The daemon's state: the drain flag, its own metrics.
    daemon: Arc<State>,
    /// Each organization's name and state (the daemon's, for one).
    orgs: Vec<(String, Arc<State>)>,
    store: Option<Arc<dyn Store>>,
    listeners: Vec<String>,
    samples: Mutex<VecDeque<(tokio::time::Instant, u64, u64)>>,
}

impl Health {
    /// Health of the daemon described by `daemon` and the organizations'
    /// states `orgs` (for one organization, `daemon` itself).
    pub(crate) fn new(
        daemon: Arc<State>,
        orgs: Vec<(String, Arc<State>)>,
        store: Option<Arc<dyn Store>>,
        listeners: Vec<String>,
    ) -> Arc<Health> {
        Arc::new(Health {
            daemon,
            orgs,
            store,
            listeners,
            samples: Mutex::new(VecDeque::new()),
        })
    }

    /// Whether the organizations' metrics are apart from the daemon's.
    fn several(&self) -> bool {
        !(self.orgs.len() == 1 && Arc::ptr_eq(&self.orgs[0].1, &self.daemon))
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
    /// (the age of the last poll), per organization. Cheap and never
    /// touches the database, so a `/metrics` scrape calls it and never
    /// waits on the store.
    pub(crate) fn refresh_gauges(&self) -> Vec<Option<f64>> {
        self.orgs
            .iter()
            .map(|(_, state)| {
                let age = state.last_poll_age();
                state.metrics.last_poll_age_seconds.set(age.unwrap_or(0.0));
                age
            })
            .collect()
    }

    /// Runs and failed runs of every organization.
    fn run_totals(&self) -> (u64, u64) {
        self.orgs.iter().fold((0, 0), |(r, f), (_, state)| {
            let (runs, failed) = state.metrics.run_totals();
            (r + runs, f + failed)
        })
    }

    fn sample(&self) {
        let (runs, failed) = self.run_totals();
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
        let (runs, failed) = self.run_totals();
        let s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let (r0, f0) = s.front().map(|(_, r, f)| (*r, *f)).unwrap_or((0, 0));
        let dr = runs.saturating_sub(r0);
        if dr == 0 {
            0.0
        } else {
            failed.saturating_sub(f0) as f64 / dr as f64
        }
    }

    /// The Prometheus text of the daemon's metrics (and, with several
    /// organizations, of each one's, labelled `org`).
    pub(crate) fn metrics_text(&self) -> String {
        if !self.several() {
            return self.daemon.metrics.render();
        }
        let orgs: Vec<_> = self.orgs.iter().map(|(_, s)| &s.metrics).collect();
        crate::metrics::render_organizations(&self.daemon.metrics, &orgs)
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
        let ages = self.refresh_gauges();
        let judged: Vec<Judged> = self
            .orgs
            .iter()
            .zip(&ages)
            .map(|((name, state), age)| judge(name, state, *age))
            .collect();
        let error_rate = self.error_rate();
        let draining = self.daemon.draining.load(Ordering::Relaxed);
        let several = self.several();
        // With several organizations, each reason names its organization.
        let named = |j: &Judged, reason: &String| match several {
            true => format!("organization {}: {reason}", j.report.name),
            false => reason.clone(),
        };

        let mut unhealthy = Vec::new();
        let mut degraded = Vec::new();
        if draining {
            unhealthy.push("shutting down".to_owned());
        }
        if !reachable {
            unhealthy.push("the database does not answer".to_owned());
        }
        // Every organization unhealthy makes the daemon so; some only, degraded.
        let all_down = judged.iter().all(|j| !j.unhealthy.is_empty());
        for j in &judged {
            let reasons = j.unhealthy.iter().map(|r| named(j, r));
            match all_down {
                true => unhealthy.extend(reasons),
                false => degraded.extend(reasons),
            }
        }
        for j in &judged {
            degraded.extend(j.degraded.iter().map(|r| named(j, r)));
        }
        if error_rate > ERROR_RATE_THRESHOLD {
            degraded.push(format!("listener error rate {:.0}%", error_rate * 100.0));
        }
        let starting: Vec<String> = judged
            .iter()
            .filter_map(|j| {
                let what = j.starting.as_ref()?;
                Some(named(j, &format!("starting: {what}")))
            })
            .collect();
        let status = if !unhealthy.is_empty() {
            Status::Unhealthy
        } else if !starting.is_empty() {
            // What start-up waits for is the one reason that matters.
            degraded = starting;
            Status::Starting
        } else if !degraded.is_empty() {
            Status::Degraded
        } else {
            Status::Healthy
        };
        let retrying = self
            .orgs
            .iter()
            .any(|(_, s)| s.database_retrying.load(Ordering::Relaxed));
        let backpressure = self
            .orgs
            .iter()
            .any(|(_, s)| s.backpressure.load(Ordering::Relaxed));
        let runs_in_flight = self
            .orgs
            .iter()
            .map(|(_, s)| s.metrics.runs_in_flight.get())
            .sum();
        let last_event_ms = judged.iter().map(|j| j.last_event_ms).max().unwrap_or(0);
        // The oldest last poll among the organizations still polling.
        let age = judged
            .iter()
            .filter(|j| j.unhealthy.is_empty() || all_down)
            .filter_map(|j| j.report.seconds_since_last_poll)
            .reduce(f64::max);
        let queue = judged
            .first()
            .map(|j| j.report.queue.clone())
            .unwrap_or_else(|| QueueHealth {
                instance: String::new(),
                queue_id: None,
                consecutive_failures: 0,
                longpoll_timeout_seconds: 1,
            });
        let mut disabled_listeners = Vec::new();
        let mut open_circuits = Vec::new();
        for j in &judged {
            for (name, _) in &j.disabled {
                if !disabled_listeners.contains(name) {
                    disabled_listeners.push(name.clone());
                }
            }
            open_circuits.extend(j.open.iter().cloned());
        }
        HealthReport {
            status,
            reasons: unhealthy.into_iter().chain(degraded).collect(),
            active_handlers: self.listeners.len(),
            runs_in_flight,
            last_event_time: rfc3339(last_event_ms),
            error_rate,
            seconds_since_last_poll: age,
            queue,
            database: DatabaseHealth {
                backend: self.store.as_ref().map(|s| s.backend()).unwrap_or("none"),
                reachable,
                retrying,
            },
            disabled_listeners,
            open_circuits,
            memory_backpressure: backpressure,
            draining,
            organizations: judged.into_iter().map(|j| j.report).collect(),
            reload: self.daemon.reload(),
            distributed: ingest::report(&self.daemon),
        }
    }
}
