//! One organization's part of `/health`: its queue, its last poll, whether
//! its intake stopped for good (a refused key), its listeners' switches and
//! circuits, each judged from that organization's [`State`]. `mod.rs`
//! combines them with what the organizations share (the database, the
//! drain, the error rate).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::Serialize;

use super::{OpenCircuit, QueueHealth, Status};
use crate::state::State;

/// An organization in the `/health` body.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OrganizationHealth {
    /// Its name (its rows' `instance`, its metrics' `org`).
    pub name: String,
    /// starting, healthy, degraded or unhealthy.
    pub status: Status,
    /// Why it is not healthy.
    pub reasons: Vec<String>,
    /// Its queue.
    pub queue: QueueHealth,
    /// Seconds since its last successful poll.
    pub seconds_since_last_poll: Option<f64>,
    /// When its last event was stored (RFC 3339), if any.
    pub last_event_time: Option<String>,
    /// A distributed worker's part (`run --role worker`): absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerHealth>,
}

/// What `/health` says of a distributed worker.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WorkerHealth {
    /// Always `worker`.
    pub role: &'static str,
    /// The partitions this worker consumes now.
    pub partitions: Vec<u32>,
}

/// The worker part of `state`, if it runs as a worker.
fn worker(state: &State) -> Option<WorkerHealth> {
    let held = state
        .worker_partitions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()?;
    let partitions = held.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Some(WorkerHealth {
        role: "worker",
        partitions,
    })
}

/// One organization's state, judged.
pub(super) struct Judged {
    pub(super) report: OrganizationHealth,
    /// Its reasons that make it unhealthy, then those that degrade it.
    pub(super) unhealthy: Vec<String>,
    pub(super) degraded: Vec<String>,
    /// What its start-up waits for, while it starts.
    pub(super) starting: Option<String>,
    pub(super) disabled: Vec<(String, String)>,
    pub(super) open: Vec<OpenCircuit>,
    pub(super) last_event_ms: i64,
}

/// Judges organization `name` from its `state`; `age` is the seconds since
/// its last successful poll.
pub(super) fn judge(name: &str, state: &Arc<State>, age: Option<f64>) -> Judged {
    let i = &state.intake;
    let polling = i.polling.load(Ordering::Relaxed);
    let longpoll = i.longpoll_secs.load(Ordering::Relaxed).max(1);
    let mut unhealthy = Vec::new();
    let mut degraded = Vec::new();
    if let Some(why) = state.stopped() {
        unhealthy.push(format!("intake stopped: {why}"));
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
    if state.database_retrying.load(Ordering::Relaxed) {
        degraded.push("retrying database writes".to_owned());
    }
    if state.backpressure.load(Ordering::Relaxed) {
        degraded.push("polling paused by memory backpressure".to_owned());
    }
    degraded.extend(super::ingest::degraded(state));
    let (disabled, open) = match state.listeners.get() {
        Some(c) => (c.disabled(), c.open_circuits()),
        None => (Vec::new(), Vec::new()),
    };
    for (listener, why) in &disabled {
        degraded.push(format!("listener {listener} is disabled: {why}"));
    }
    for (listener, until) in &open {
        degraded.push(format!(
            "listener {listener}'s circuit is open until {}",
            until.to_rfc3339()
        ));
    }
    // A stopped organization no longer starts.
    let starting = state.starting().filter(|_| unhealthy.is_empty());
    let status = if !unhealthy.is_empty() {
        Status::Unhealthy
    } else if starting.is_some() {
        Status::Starting
    } else if !degraded.is_empty() {
        Status::Degraded
    } else {
        Status::Healthy
    };
    let mut reasons: Vec<String> = unhealthy.iter().chain(&degraded).cloned().collect();
    if let Some(what) = &starting {
        reasons = vec![format!("starting: {what}")];
    }
    let last_event_ms = i.last_event_ms.load(Ordering::Relaxed);
    Judged {
        report: OrganizationHealth {
            name: name.to_owned(),
            status,
            reasons,
            queue: QueueHealth {
                instance: name.to_owned(),
                queue_id: i.queue_id(),
                consecutive_failures: i.consecutive_failures.load(Ordering::Relaxed),
                longpoll_timeout_seconds: longpoll,
            },
            seconds_since_last_poll: age,
            last_event_time: rfc3339(last_event_ms),
            worker: worker(state),
        },
        unhealthy,
        degraded,
        starting,
        disabled,
        open: open
            .into_iter()
            .map(|(listener, until)| OpenCircuit {
                listener,
                until: until.to_rfc3339(),
            })
            .collect(),
        last_event_ms,
    }
}

/// Unix milliseconds as RFC 3339; `None` for 0 (never).
pub(super) fn rfc3339(ms: i64) -> Option<String> {
    (ms > 0)
        .then(|| chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms))
        .flatten()
        .map(|t| t.to_rfc3339())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_organization_is_unhealthy_and_no_longer_starting() {
        let state = Arc::new(State::default());
        state.set_starting(Some("connecting".to_owned()));
        state.set_stopped("Zulip refused the API key".to_owned());
        let judged = judge("acme", &state, None);
        assert_eq!(judged.report.status, Status::Unhealthy);
        assert_eq!(
            judged.report.reasons,
            ["intake stopped: Zulip refused the API key"]
        );
        assert!(judged.starting.is_none());
    }

    #[test]
    fn a_starting_organization_says_only_what_it_waits_for() {
        let state = Arc::new(State::default());
        state.set_starting(Some("connecting".to_owned()));
        state.database_retrying.store(true, Ordering::Relaxed);
        let judged = judge("acme", &state, None);
        assert_eq!(judged.report.status, Status::Starting);
        assert_eq!(judged.report.reasons, ["starting: connecting"]);
    }
}
