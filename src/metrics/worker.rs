//! The metrics of a distributed worker (`run --role worker`): deliveries
//! taken from the partitions (and how many of them were redeliveries),
//! acks after commit, nacks (requeued at a hand-over or shutdown, or
//! rejected to the dead-letter exchange), and the partitions it consumes.

use prometheus::{IntCounter, IntGauge, Registry};

/// A worker's counters and gauge (zero in the other roles).
#[derive(Clone)]
pub struct WorkerMetrics {
    /// Deliveries received.
    pub deliveries: IntCounter,
    /// Deliveries the broker marked redelivered.
    pub redeliveries: IntCounter,
    /// Deliveries acked once their runs were committed.
    pub acks: IntCounter,
    /// Deliveries nacked (requeued, or rejected to the DLX).
    pub nacks: IntCounter,
    /// Partitions this worker consumes.
    pub partitions_consumed: IntGauge,
}

impl WorkerMetrics {
    pub(super) fn register(
        registry: &Registry,
        name: impl Fn(&str) -> String,
    ) -> prometheus::Result<Self> {
        let counter = |n: &str, help: &str| -> prometheus::Result<IntCounter> {
            let c = IntCounter::new(name(n), help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let m = WorkerMetrics {
            deliveries: counter(
                "distributed_deliveries_total",
                "Deliveries a worker received from its partitions",
            )?,
            redeliveries: counter(
                "distributed_redeliveries_total",
                "Deliveries the broker marked redelivered",
            )?,
            acks: counter(
                "distributed_acks_total",
                "Deliveries acked after their runs were committed",
            )?,
            nacks: counter(
                "distributed_nacks_total",
                "Deliveries requeued (hand-over, shutdown) or rejected to the dead-letter exchange",
            )?,
            partitions_consumed: IntGauge::new(
                name("distributed_partitions_consumed"),
                "Partitions this worker consumes",
            )?,
        };
        registry.register(Box::new(m.partitions_consumed.clone()))?;
        Ok(m)
    }
}
