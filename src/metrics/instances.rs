//! Per listener instance: failures by class, runs in flight (waiting or
//! running), tries executing now and when the last try finished — so a
//! dashboard shows a stalled listener, one executing with no completion —
//! beside the run counters and latency histogram of
//! [`Metrics`](super::Metrics); the label is the instance's name, bounded
//! by the configuration.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{
    Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

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
        registry.register(Box::new(executing.clone()))?;
        registry.register(Box::new(last_completion.clone()))?;
        Ok(InstanceMetrics {
            failures,
            in_flight,
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

    /// Notes that a try begins; the guard notes its end, also when the try
    /// is dropped unfinished.
    pub fn executing(&self) -> Executing {
        self.executing.inc();
        Executing(self.clone())
    }
}

/// One try executing (see [`InstanceHandles::executing`]).
pub struct Executing(InstanceHandles);

impl Drop for Executing {
    fn drop(&mut self) {
        self.0.executing.dec();
        self.0.last_completion.set(unix_now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
