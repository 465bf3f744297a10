//! [`IngestMetrics`]: the distributed ingest's publishing and leadership
//! (issue 16): publishes, broker confirms by result, the outbox's depth,
//! whether it leads, its epoch and how often leadership changed.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// The ingest's metrics.
#[derive(Clone)]
pub(crate) struct IngestMetrics {
    /// Events published to the exchange (confirmed or not).
    pub(crate) published: IntCounter,
    /// Broker confirms, by `result` (`ack` | `nack`).
    pub(crate) confirms: IntCounterVec,
    /// Committed inbox rows not yet confirmed.
    pub(crate) outbox_depth: IntGauge,
    /// 1 while this process leads, 0 while it stands by.
    pub(crate) leader: IntGauge,
    /// The epoch it leads with.
    pub(crate) epoch: IntGauge,
    /// Times this process took or lost the lead.
    pub(crate) leadership_changes: IntCounter,
}

impl IngestMetrics {
    pub(super) fn register(
        registry: &Registry,
        name: impl Fn(&str) -> String,
    ) -> Result<IngestMetrics, prometheus::Error> {
        let m = IngestMetrics {
            published: IntCounter::new(
                name("distributed_published_total"),
                "Events published to the partitions' exchange",
            )?,
            confirms: IntCounterVec::new(
                Opts::new(
                    name("distributed_confirms_total"),
                    "Broker confirms of published events, by result",
                ),
                &["result"],
            )?,
            outbox_depth: IntGauge::new(
                name("distributed_outbox_depth"),
                "Committed inbox events not yet confirmed by the broker",
            )?,
            leader: IntGauge::new(
                name("distributed_leader"),
                "1 while this ingest leads, 0 while it stands by",
            )?,
            epoch: IntGauge::new(
                name("distributed_epoch"),
                "The epoch (fencing token) this ingest leads with",
            )?,
            leadership_changes: IntCounter::new(
                name("distributed_leadership_changes_total"),
                "Times this ingest took or lost the lead",
            )?,
        };
        registry.register(Box::new(m.published.clone()))?;
        registry.register(Box::new(m.confirms.clone()))?;
        registry.register(Box::new(m.outbox_depth.clone()))?;
        registry.register(Box::new(m.leader.clone()))?;
        registry.register(Box::new(m.epoch.clone()))?;
        registry.register(Box::new(m.leadership_changes.clone()))?;
        Ok(m)
    }
}
