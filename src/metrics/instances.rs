//! Per listener instance: failures by class, runs in flight (waiting or
//! running), tries executing now and when the last try finished — so a
//! dashboard shows a stalled listener, one executing with no completion —
//! runs waiting to retry, the circuit's state and pending dead letters,
//! beside the run counters and latency histogram of
//! [`Metrics`](super::Metrics); the label is the instance's name, bounded
//! by the configuration.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{
    Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// A listener's circuit as `listener_circuit_state` says it: one number
/// per state, so a dashboard maps values to names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CircuitState {
    /// Runs go through (0).
    Closed,
    /// One trial run decides (1).
    HalfOpen,
    /// Runs are skipped until the cool-down has passed and a run comes (2).
    Open,
    /// The listener is disabled (3).
    Disabled,
}

impl CircuitState {
    /// The gauge's value.
    pub(crate) fn value(self) -> i64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
            CircuitState::Disabled => 3,
        }
    }

    /// The state a gauge value stands for (`None` for an unknown one).
    pub(crate) fn from_value(v: i64) -> Option<CircuitState> {
        match v {
            0 => Some(CircuitState::Closed),
            1 => Some(CircuitState::HalfOpen),
            2 => Some(CircuitState::Open),
            3 => Some(CircuitState::Disabled),
            _ => None,
        }
    }

    /// Its name, as `top` shows it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::HalfOpen => "half-open",
            CircuitState::Open => "open",
            CircuitState::Disabled => "disabled",
        }
    }
}

/// Why a listener run failed, as the `class` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The listener said retrying may help (a 503, exit 75).
    Transient,
    /// The listener said retrying cannot help (a 400, exit 1).
    Permanent,
    /// The run exceeded its timeout.
    Timeout,
    /// The listener panicked.
    Panic,
    /// The database refused to store the run's rows: recorded as failed,
    /// without them, and dead-lettered (counted by the recorder).
    Unrecordable,
}

impl FailureClass {
    const ALL: [FailureClass; 5] = [
        FailureClass::Transient,
        FailureClass::Permanent,
        FailureClass::Timeout,
        FailureClass::Panic,
        FailureClass::Unrecordable,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Transient => "transient",
            FailureClass::Permanent => "permanent",
            FailureClass::Timeout => "timeout",
            FailureClass::Panic => "panic",
            FailureClass::Unrecordable => "unrecordable",
        }
    }
}

/// The per-instance families.
#[derive(Clone)]
pub struct InstanceMetrics {
    /// Failed tries, by listener and class.
    pub failures: IntCounterVec,
    /// Runs of each listener in flight (waiting for their turn or running).
    pub in_flight: IntGaugeVec,
    /// Runs of each listener waiting out a retry delay.
    pub retries_waiting: IntGaugeVec,
    /// Each listener's circuit ([`CircuitState::value`]).
    pub circuit_state: IntGaugeVec,
    /// Pending dead letters of each listener, as last read from the store
    /// (`app::dead_letter_gauge` refreshes it).
    pub deadletters_pending: IntGaugeVec,
    /// Tries of each listener executing now (holding a concurrency slot).
    pub executing: IntGaugeVec,
    /// Unix time at which each listener's last try finished (its start
    /// until the first).
    pub last_completion: GaugeVec,
}

impl InstanceMetrics {
    /// Creates the families and registers them in `registry`.
    pub(super) fn register(
        registry: &Registry,
        name: impl Fn(&str) -> String,
    ) -> prometheus::Result<Self> {
        let failures = IntCounterVec::new(
            Opts::new(
                name("listener_failures_total"),
                "Failed listener tries, by listener and class (transient, permanent, timeout, panic, unrecordable)",
            ),
            &["listener", "class"],
        )?;
        let in_flight = IntGaugeVec::new(
            Opts::new(
                name("listener_runs_in_flight"),
                "Runs of each listener waiting for their turn or running",
            ),
            &["listener"],
        )?;
        let retries_waiting = IntGaugeVec::new(
            Opts::new(
                name("listener_retries_waiting"),
                "Runs of each listener waiting out the delay before their next try",
            ),
            &["listener"],
        )?;
        let circuit_state = IntGaugeVec::new(
            Opts::new(
                name("listener_circuit_state"),
                "Each listener's circuit: 0 closed, 1 half-open (a trial run), 2 open, 3 disabled",
            ),
            &["listener"],
        )?;
        let deadletters_pending = IntGaugeVec::new(
            Opts::new(
                name("deadletters_pending"),
                "Dead letters of each listener not yet retried or replayed, read from the database every 15 s",
            ),
            &["listener"],
        )?;
        let executing = IntGaugeVec::new(
            Opts::new(
                name("listener_in_flight"),
                "Tries of each listener executing now (inside the listener, holding a concurrency slot)",
            ),
            &["listener"],
        )?;
        let last_completion = GaugeVec::new(
            Opts::new(
                name("listener_last_completion_timestamp_seconds"),
                "Unix time at which each listener's last try finished, whatever its outcome (the daemon's start until the first)",
            ),
            &["listener"],
        )?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(retries_waiting.clone()))?;
        registry.register(Box::new(circuit_state.clone()))?;
        registry.register(Box::new(deadletters_pending.clone()))?;
        registry.register(Box::new(executing.clone()))?;
        registry.register(Box::new(last_completion.clone()))?;
        Ok(InstanceMetrics {
            failures,
            in_flight,
            retries_waiting,
            circuit_state,
            deadletters_pending,
            executing,
            last_completion,
        })
    }

    /// Counts one failure of `listener` off the hot path (the recorder's).
    pub fn failed(&self, listener: &str, class: FailureClass) {
        self.failures
            .with_label_values(&[listener, class.as_str()])
            .inc();
    }

    /// The handles of one instance, resolved once.
    pub fn handles(&self, listener: &str) -> InstanceHandles {
        let last_completion = self.last_completion.with_label_values(&[listener]);
        if last_completion.get() == 0.0 {
            last_completion.set(unix_now());
        }
        InstanceHandles {
            failures: FailureClass::ALL
                .map(|c| self.failures.with_label_values(&[listener, c.as_str()])),
            in_flight: self.in_flight.with_label_values(&[listener]),
            retries_waiting: self.retries_waiting.with_label_values(&[listener]),
            circuit_state: self.circuit_state.with_label_values(&[listener]),
            executing: self.executing.with_label_values(&[listener]),
            last_completion,
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One instance's failure counters and in-flight gauges.
#[derive(Clone)]
pub struct InstanceHandles {
    failures: [IntCounter; 5],
    /// Its runs in flight.
    pub in_flight: IntGauge,
    /// Its runs waiting to retry.
    pub retries_waiting: IntGauge,
    /// Its circuit's state.
    pub circuit_state: IntGauge,
    executing: IntGauge,
    last_completion: Gauge,
}

impl InstanceHandles {
    /// Counts one failed try.
    pub fn failed(&self, class: FailureClass) {
        let i = FailureClass::ALL
            .iter()
            .position(|c| *c == class)
            .unwrap_or(0);
        self.failures[i].inc();
    }

    /// Counts one run waiting to retry until the returned guard drops
    /// (also when the run's future is dropped mid-wait, at a timeout or
    /// the drain).
    pub fn waiting_to_retry(&self) -> RetryWait {
        self.retries_waiting.inc();
        RetryWait(self.retries_waiting.clone())
    }

    /// Notes that a try begins; the guard notes its end, also when the try
    /// is dropped unfinished.
    pub fn executing(&self) -> Executing<'_> {
        self.executing.inc();
        Executing(self)
    }
}

/// One try executing (see [`InstanceHandles::executing`]). It borrows the
/// handles: a clone would be ten reference counts, shared by every run of
/// the instance on every thread, taken and dropped per try.
pub struct Executing<'a>(&'a InstanceHandles);

impl Drop for Executing<'_> {
    fn drop(&mut self) {
        self.0.executing.dec();
        self.0.last_completion.set(unix_now());
    }
}

/// One run counted in `listener_retries_waiting` while it lives.
#[must_use = "the wait is counted only while the guard lives"]
pub struct RetryWait(IntGauge);

impl Drop for RetryWait {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> InstanceMetrics {
        InstanceMetrics::register(&Registry::new(), |n| format!("t_{n}"))
            .expect("valid, unique metric definitions")
    }

    #[test]
    fn a_retry_wait_is_counted_while_its_guard_lives() {
        let m = metrics();
        let h = m.handles("hook");
        let first = h.waiting_to_retry();
        let second = h.waiting_to_retry();
        assert_eq!(h.retries_waiting.get(), 2);
        drop(first);
        assert_eq!(h.retries_waiting.get(), 1);
        drop(second);
        assert_eq!(h.retries_waiting.get(), 0);
    }

    #[test]
    fn circuit_states_round_trip_through_their_gauge_values() {
        for s in [
            CircuitState::Closed,
            CircuitState::HalfOpen,
            CircuitState::Open,
            CircuitState::Disabled,
        ] {
            assert_eq!(CircuitState::from_value(s.value()), Some(s));
        }
        assert_eq!(CircuitState::from_value(7), None);
    }

    #[test]
    fn a_try_is_executing_until_its_guard_drops_which_stamps_the_completion() {
        let registry = Registry::new();
        let m = InstanceMetrics::register(&registry, |n| n.to_owned()).unwrap();
        let h = m.handles("a");
        h.last_completion.set(1.0);
        let guard = h.executing();
        assert_eq!(m.executing.with_label_values(&["a"]).get(), 1);
        drop(guard);
        assert_eq!(m.executing.with_label_values(&["a"]).get(), 0);
        assert!(m.last_completion.with_label_values(&["a"]).get() > 1.0);
    }
}
