//! Per listener instance: failures by class, runs in flight, runs waiting
//! to retry, the circuit's state and pending dead letters, beside the run
//! counters and latency histogram of [`Metrics`](super::Metrics); the label
//! is the instance's name, bounded by the configuration.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

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
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(retries_waiting.clone()))?;
        registry.register(Box::new(circuit_state.clone()))?;
        registry.register(Box::new(deadletters_pending.clone()))?;
        Ok(InstanceMetrics {
            failures,
            in_flight,
            retries_waiting,
            circuit_state,
            deadletters_pending,
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
        InstanceHandles {
            failures: FailureClass::ALL
                .map(|c| self.failures.with_label_values(&[listener, c.as_str()])),
            in_flight: self.in_flight.with_label_values(&[listener]),
            retries_waiting: self.retries_waiting.with_label_values(&[listener]),
            circuit_state: self.circuit_state.with_label_values(&[listener]),
        }
    }
}

/// One instance's failure counters and in-flight gauge.
#[derive(Clone)]
pub struct InstanceHandles {
    failures: [IntCounter; 5],
    /// Its runs in flight.
    pub in_flight: IntGauge,
    /// Its runs waiting to retry.
    pub retries_waiting: IntGauge,
    /// Its circuit's state.
    pub circuit_state: IntGauge,
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
}
