//! `buffer_used{buffer}` against `buffer_capacity{buffer}`: how full each
//! bounded queue between the components is — `intake_handoff` (committed
//! batches waiting for the dispatcher), `dispatch_admission` (runs that
//! exist: waiting for a lane or a slot, running, or handing over their
//! record), `run_slots` (runs executing, of `max_concurrent_handlers`),
//! `recorder_outcomes` (finished runs waiting for the recorder) and
//! `notices` (operator notifications waiting to be sent) — plus
//! `reply_outbox`, the open rows of the reply outbox, which is a table and
//! has no maximum (so no capacity sample).
//!
//! Nothing is counted on the hot path: each component registers a probe
//! (a weak handle to its channel or semaphore) when it starts, and the
//! probes are read when `/metrics` is gathered. A probe whose queue is gone
//! is forgotten with its samples.

use std::sync::{Arc, Mutex, Weak};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGaugeVec, Opts, Registry};
use tokio::sync::{mpsc, Semaphore};

/// Reads one queue: `(used, capacity)`, `None` once it is gone.
type Probe = Box<dyn Fn() -> Option<(usize, usize)> + Send + Sync>;

/// The buffer gauges and their probes.
#[derive(Clone)]
pub struct BufferMetrics {
    used: IntGaugeVec,
    capacity: IntGaugeVec,
    probes: Arc<Mutex<Vec<(&'static str, Probe)>>>,
}

impl BufferMetrics {
    /// Creates the families and registers them (as one collector that reads
    /// the probes first) in `registry`.
    pub(super) fn register(
        registry: &Registry,
        name: impl Fn(&str) -> String,
    ) -> prometheus::Result<Self> {
        let used = IntGaugeVec::new(
            Opts::new(
                name("buffer_used"),
                "Items in each bounded queue between components (and the reply outbox's open rows)",
            ),
            &["buffer"],
        )?;
        let capacity = IntGaugeVec::new(
            Opts::new(
                name("buffer_capacity"),
                "The most items each bounded queue holds",
            ),
            &["buffer"],
        )?;
        let m = BufferMetrics {
            used,
            capacity,
            probes: Arc::default(),
        };
        registry.register(Box::new(m.clone()))?;
        Ok(m)
    }

    /// Watches the channel `tx` sends into, as `buffer`.
    pub fn watch_channel<T: Send + 'static>(&self, buffer: &'static str, tx: &mpsc::Sender<T>) {
        let weak = tx.downgrade();
        self.watch(
            buffer,
            Box::new(move || {
                let tx = weak.upgrade()?;
                Some((tx.max_capacity() - tx.capacity(), tx.max_capacity()))
            }),
        );
    }

    /// Watches `semaphore`, of `total` permits, as `buffer`: a taken permit
    /// is a used place.
    pub fn watch_semaphore(&self, buffer: &'static str, semaphore: &Arc<Semaphore>, total: usize) {
        let weak: Weak<Semaphore> = Arc::downgrade(semaphore);
        self.watch(
            buffer,
            Box::new(move || {
                let s = weak.upgrade()?;
                Some((total.saturating_sub(s.available_permits()), total))
            }),
        );
    }

    fn watch(&self, buffer: &'static str, probe: Probe) {
        let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        probes.retain(|(b, _)| *b != buffer);
        probes.push((buffer, probe));
    }

    /// Sets the reply outbox's open rows (it has no capacity).
    pub fn set_reply_outbox(&self, open: i64) {
        self.used.with_label_values(&["reply_outbox"]).set(open);
    }

    /// Reads every probe into the gauges; forgets the gone ones.
    fn sample(&self) {
        let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        probes.retain(|(buffer, probe)| match probe() {
            Some((used, capacity)) => {
                self.used.with_label_values(&[buffer]).set(used as i64);
                self.capacity
                    .with_label_values(&[buffer])
                    .set(capacity as i64);
                true
            }
            None => {
                let _ = self.used.remove_label_values(&[buffer]);
                let _ = self.capacity.remove_label_values(&[buffer]);
                false
            }
        });
    }
}

impl Collector for BufferMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.used
            .desc()
            .into_iter()
            .chain(self.capacity.desc())
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.sample();
        self.used
            .collect()
            .into_iter()
            .chain(self.capacity.collect())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_channel_shows_its_fill_and_is_forgotten_once_closed() {
        let registry = Registry::new();
        let m = BufferMetrics::register(&registry, |n| n.to_owned()).unwrap();
        let (tx, rx) = mpsc::channel::<u8>(4);
        m.watch_channel("q", &tx);
        tx.send(1).await.unwrap();
        tx.send(2).await.unwrap();
        let text = crate::metrics::encode(&registry.gather());
        assert!(text.contains(r#"buffer_used{buffer="q"} 2"#), "{text}");
        assert!(text.contains(r#"buffer_capacity{buffer="q"} 4"#), "{text}");
        drop((tx, rx));
        let text = crate::metrics::encode(&registry.gather());
        assert!(!text.contains(r#"buffer="q""#), "{text}");
    }

    #[test]
    fn a_semaphore_counts_its_taken_permits() {
        let registry = Registry::new();
        let m = BufferMetrics::register(&registry, |n| n.to_owned()).unwrap();
        let s = Arc::new(Semaphore::new(8));
        m.watch_semaphore("slots", &s, 8);
        let _held = s.try_acquire_many(3).unwrap();
        let text = crate::metrics::encode(&registry.gather());
        assert!(text.contains(r#"buffer_used{buffer="slots"} 3"#), "{text}");
    }
}
