//! Per listener instance: failures by class, runs in flight and pending
//! dead letters, beside the
//! run counters and latency histogram of [`Metrics`](super::Metrics); the
//! label is the instance's name, bounded by the configuration.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

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
        let deadletters_pending = IntGaugeVec::new(
            Opts::new(
                name("deadletters_pending"),
                "Dead letters of each listener not yet retried or replayed, read from the database every 15 s",
            ),
            &["listener"],
        )?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(deadletters_pending.clone()))?;
        Ok(InstanceMetrics {
            failures,
            in_flight,
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
        }
    }
}

/// One instance's failure counters and in-flight gauge.
#[derive(Clone)]
pub struct InstanceHandles {
    failures: [IntCounter; 5],
    /// Its runs in flight.
    pub in_flight: IntGauge,
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
}
