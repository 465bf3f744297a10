//! [`RunHandles`]: one listener's run counters, latency histogram and
//! instance gauges resolved once, for the hot path; and the run totals
//! `/health` computes its error rate from.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus::{Histogram, IntCounter};

use super::{DiscardReason, InstanceHandles, Metrics, Outcome};

impl Metrics {
    /// Counts one listener run (runs count through [`RunHandles`]; this is
    /// the tests' shortcut).
    #[cfg(test)]
    pub fn record_run(&self, listener: &str, outcome: Outcome, seconds: f64) {
        self.events_processed
            .with_label_values(&[listener, outcome.as_str()])
            .inc();
        if matches!(
            outcome,
            Outcome::Success | Outcome::Failure | Outcome::Timeout
        ) {
            self.run_counts.0.fetch_add(1, Ordering::Relaxed);
        }
        if matches!(outcome, Outcome::Failure | Outcome::Timeout) {
            self.run_counts.1.fetch_add(1, Ordering::Relaxed);
        }
        if outcome != Outcome::Skipped {
            self.run_duration
                .with_label_values(&[listener])
                .observe(seconds);
        }
    }

    /// Pre-resolved counters of one listener, for the hot path.
    pub fn run_handles(&self, listener: &str) -> RunHandles {
        let c = |o: Outcome| {
            self.events_processed
                .with_label_values(&[listener, o.as_str()])
        };
        RunHandles {
            success: c(Outcome::Success),
            failure: c(Outcome::Failure),
            timeout: c(Outcome::Timeout),
            duration: self.run_duration.with_label_values(&[listener]),
            counts: self.run_counts.clone(),
            instance: self.instances.handles(listener),
            own_message: self.discards.counter(listener, DiscardReason::OwnMessage),
        }
    }

    /// Total runs and failed runs (failure + timeout) so far.
    pub fn run_totals(&self) -> (u64, u64) {
        (
            self.run_counts.0.load(Ordering::Relaxed),
            self.run_counts.1.load(Ordering::Relaxed),
        )
    }
}

/// One listener's run counters, resolved once.
#[derive(Clone)]
pub struct RunHandles {
    success: IntCounter,
    failure: IntCounter,
    timeout: IntCounter,
    duration: Histogram,
    counts: Arc<(AtomicU64, AtomicU64)>,
    /// Failures by class and runs in flight.
    pub instance: InstanceHandles,
    /// Its `events_discarded_total{reason="own_message"}`.
    pub own_message: IntCounter,
}

impl RunHandles {
    /// Counts one finished run (success, failure or timeout).
    pub fn record(&self, outcome: Outcome, seconds: f64) {
        let counter = match outcome {
            Outcome::Success => &self.success,
            Outcome::Timeout => &self.timeout,
            _ => &self.failure,
        };
        counter.inc();
        self.duration.observe(seconds);
        self.counts.0.fetch_add(1, Ordering::Relaxed);
        if outcome != Outcome::Success {
            self.counts.1.fetch_add(1, Ordering::Relaxed);
        }
    }
}
