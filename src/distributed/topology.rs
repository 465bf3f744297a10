//! [`Topology`]: the names and shapes of everything the distributed mode
//! keeps on RabbitMQ, and their declaration (idempotent: every role
//! declares all of it on every connection, with the same arguments).
//!
//! - `{prefix}.events`, a durable direct exchange: the ingest publishes
//!   each committed event to it with the routing key of its partition
//!   (`"0"` … `"N-1"`).
//! - `{prefix}.partition.K`, one durable **quorum** queue per partition,
//!   bound with key `"K"`, with `x-single-active-consumer` (one worker
//!   consumes a partition at a time, in order; another takes over when its
//!   channel dies), `x-delivery-limit` (a delivery that keeps killing its
//!   worker stops being redelivered) and `x-dead-letter-exchange` (RabbitMQ
//!   drops messages past the limit when no DLX is set).
//! - `{prefix}.dlx`, a durable fanout exchange, and `{prefix}.dead`, the
//!   durable quorum queue bound to it: what the broker gave up on, kept
//!   for an operator (the database's dead letters are the daemon's own).

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

/// Redeliveries of one message before the broker dead-letters it.
pub(crate) const DELIVERY_LIMIT: i64 = 20;

/// The names of one deployment's exchanges and queues.
#[derive(Debug, Clone)]
pub(crate) struct Topology {
    prefix: String,
    partitions: u32,
}

impl Topology {
    /// The topology of `prefix` with `partitions` partitions.
    pub(crate) fn new(prefix: &str, partitions: u32) -> Topology {
        Topology {
            prefix: prefix.to_owned(),
            partitions: partitions.max(1),
        }
    }

    /// How many partitions.
    pub(crate) fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The exchange events are published to.
    pub(crate) fn exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// The queue of partition `k`.
    pub(crate) fn queue(&self, k: u32) -> String {
        format!("{}.partition.{k}", self.prefix)
    }

    /// The routing key of partition `k`.
    pub(crate) fn routing_key(k: u32) -> String {
        k.to_string()
    }

    /// The dead-letter exchange.
    pub(crate) fn dlx(&self) -> String {
        format!("{}.dlx", self.prefix)
    }

    /// The queue of what the broker dead-lettered.
    pub(crate) fn dead_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// Every queue, the partitions first.
    #[cfg(test)]
    pub(crate) fn queues(&self) -> Vec<String> {
        let mut all: Vec<String> = (0..self.partitions).map(|k| self.queue(k)).collect();
        all.push(self.dead_queue());
        all
    }

    /// Declares the exchanges, the queues and their bindings on `channel`.
    ///
    /// # Errors
    ///
    /// What the broker said, e.g. a queue declared before with other
    /// arguments (`PRECONDITION_FAILED`).
    pub(crate) async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                self.dlx().into(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                self.exchange().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(
                self.dead_queue().into(),
                QueueDeclareOptions::durable(),
                quorum(),
            )
            .await?;
        channel
            .queue_bind(
                self.dead_queue().into(),
                self.dlx().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        for k in 0..self.partitions {
            channel
                .queue_declare(
                    self.queue(k).into(),
                    QueueDeclareOptions::durable(),
                    self.partition_arguments(),
                )
                .await?;
            channel
                .queue_bind(
                    self.queue(k).into(),
                    self.exchange().into(),
                    Self::routing_key(k).into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    fn partition_arguments(&self) -> FieldTable {
        let mut args = quorum();
        args.insert(
            ShortString::from("x-single-active-consumer"),
            AMQPValue::Boolean(true),
        );
        args.insert(
            ShortString::from("x-delivery-limit"),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
        args.insert(
            ShortString::from("x-dead-letter-exchange"),
            AMQPValue::LongString(LongString::from(self.dlx())),
        );
        args
    }
}

/// `x-queue-type: quorum`: replicated, durable, with delivery limits.
fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix() {
        let t = Topology::new("zel", 3);
        assert_eq!(t.exchange(), "zel.events");
        assert_eq!(t.queue(2), "zel.partition.2");
        assert_eq!(t.dlx(), "zel.dlx");
        assert_eq!(
            t.queues(),
            [
                "zel.partition.0",
                "zel.partition.1",
                "zel.partition.2",
                "zel.dead"
            ]
        );
    }
}
