//! [`Publisher`]: the leader's outbox drain. It reads committed inbox rows
//! above `published_through` in id order, a batch at a time, publishes each
//! to the partitions' exchange (routing key: the event's partition,
//! mandatory, persistent) on a confirm-select channel, awaits the batch's
//! confirms, and only then moves `published_through` (fenced by the
//! leader's epoch). A nack, a returned message or a lost connection: it
//! reconnects with backoff, declares the topology again and republishes
//! from `published_through` — a message may then reach a partition twice,
//! which workers absorb (a recorded run is not run again); none is lost.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;

use super::envelope::Envelope;
use super::route::partition_of;
use super::topology::Topology;
use crate::backoff::Backoff;
use crate::config::AmqpUrl;
use crate::intake::OutboxGate;
use crate::state::State;
use crate::store::{Store, StoreError};

/// Rows read and published per batch.
const BATCH: i64 = 500;
/// How long a batch's confirms may take before the connection counts as lost.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the publisher sleeps with nothing to publish when no commit wakes it.
const IDLE_RECHECK: Duration = Duration::from_secs(1);

/// Why a connection's publishing stopped.
#[derive(Debug)]
enum Stop {
    /// Asked to stop.
    Stopped,
    /// The broker failed or refused: reconnect.
    Broker(String),
    /// The database failed.
    Store(StoreError),
}

impl From<lapin::Error> for Stop {
    fn from(e: lapin::Error) -> Stop {
        Stop::Broker(e.to_string())
    }
}

/// One leader's publisher (one epoch).
pub(crate) struct Publisher {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) instance: String,
    pub(crate) epoch: i64,
    pub(crate) topology: Topology,
    pub(crate) url: AmqpUrl,
    pub(crate) gate: Arc<OutboxGate>,
    pub(crate) state: Arc<State>,
    /// Where the outbox's confirmed end is (the lease row's at the start).
    pub(crate) published_through: i64,
}

impl Publisher {
    /// Publishes until `stop`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fenced`] when another leader took over: the caller
    /// demotes. Other errors are retried.
    pub(crate) async fn run(mut self, stop: CancellationToken) -> Result<(), StoreError> {
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
        loop {
            // Bounded: a connection that dies in its handshake may never
            // answer (seen with lapin when the socket closed mid-way).
            let connected = match tokio::time::timeout(super::CONNECT_TIMEOUT, self.connect()).await
            {
                Ok(c) => c.map_err(Stop::from),
                Err(_) => Err(Stop::Broker(format!(
                    "no connection within {} s",
                    super::CONNECT_TIMEOUT.as_secs()
                ))),
            };
            let outcome =
                match connected {
                    Ok((conn, channel)) => {
                        if backoff.failures() > 0 {
                            tracing::info!(published_through = self.published_through,
                            "The broker is back; republishing the outbox from its confirmed end");
                        }
                        self.state
                            .ingest
                            .broker_down
                            .store(false, Ordering::Relaxed);
                        backoff.reset();
                        let outcome = self.drain(&channel, &stop).await;
                        let _ = conn.close(200, "publisher stopping".into()).await;
                        outcome
                    }
                    Err(stop) => stop,
                };
            match outcome {
                Stop::Stopped => return Ok(()),
                Stop::Store(e @ StoreError::Fenced { .. }) => return Err(e),
                Stop::Store(e) => {
                    tracing::warn!(error = %e, "Cannot read or advance the outbox; retrying");
                }
                Stop::Broker(e) => {
                    self.state.ingest.broker_down.store(true, Ordering::Relaxed);
                    tracing::warn!(broker = %self.url, error = %e, depth = self.gate.depth(),
                        "Cannot publish to RabbitMQ; intake goes on into the outbox, and publishing resumes from its confirmed end");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    async fn connect(&self) -> Result<(Connection, Channel), lapin::Error> {
        let conn = Connection::connect(self.url.expose(), ConnectionProperties::default()).await?;
        let channel = conn.create_channel().await?;
        self.topology.declare(&channel).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok((conn, channel))
    }

    /// Publishes batch after batch on `channel` until `stop` or a failure.
    async fn drain(&mut self, channel: &Channel, stop: &CancellationToken) -> Stop {
        loop {
            if stop.is_cancelled() {
                return Stop::Stopped;
            }
            let batch = match self
                .store
                .outbox_after(&self.instance, self.published_through, BATCH)
                .await
            {
                Ok(b) => b,
                Err(e) => return Stop::Store(e),
            };
            self.note_depth();
            if batch.through == 0 {
                tokio::select! {
                    _ = stop.cancelled() => return Stop::Stopped,
                    _ = self.gate.next_commit(IDLE_RECHECK) => {}
                }
                continue;
            }
            let published = tokio::select! {
                _ = stop.cancelled() => return Stop::Stopped,
                p = tokio::time::timeout(CONFIRM_TIMEOUT, self.publish(channel, &batch.events)) => {
                    p.unwrap_or_else(|_| Err(Stop::Broker(format!(
                        "the batch was not published and confirmed within {} s",
                        CONFIRM_TIMEOUT.as_secs()
                    ))))
                }
            };
            if let Err(stop) = published {
                return stop;
            }
            if let Err(e) = self
                .store
                .mark_published(&self.instance, self.epoch, batch.through)
                .await
            {
                return Stop::Store(e);
            }
            self.published_through = batch.through;
            self.gate.published(batch.through);
            self.note_depth();
        }
    }

    /// Publishes `events`, then awaits every confirm: all acked, or the
    /// reason it failed.
    async fn publish(
        &self,
        channel: &Channel,
        events: &[crate::store::StoredEvent],
    ) -> Result<(), Stop> {
        let metrics = &self.state.metrics.ingest;
        let exchange = self.topology.exchange();
        let mandatory = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let mut confirms = Vec::with_capacity(events.len());
        for stored in events {
            let envelope = Envelope::seal(stored, &self.instance, self.epoch);
            let key =
                Topology::routing_key(partition_of(&stored.event, self.topology.partitions()));
            let confirm = channel
                .basic_publish(
                    exchange.as_str().into(),
                    key.as_str().into(),
                    mandatory,
                    &envelope.body,
                    envelope.properties,
                )
                .await?;
            metrics.published.inc();
            confirms.push((stored.inbox_id, confirm));
        }
        let all = async {
            for (inbox_id, confirm) in confirms {
                let confirmation = confirm.await?;
                if confirmation.is_nack() {
                    metrics.confirms.with_label_values(&["nack"]).inc();
                    return Err(Stop::Broker(format!(
                        "the broker nacked inbox row {inbox_id}"
                    )));
                }
                metrics.confirms.with_label_values(&["ack"]).inc();
                if confirmation.take_message().is_some() {
                    return Err(Stop::Broker(format!(
                        "inbox row {inbox_id} was returned unroutable (its partition's queue is missing)"
                    )));
                }
            }
            Ok(())
        };
        match tokio::time::timeout(CONFIRM_TIMEOUT, all).await {
            Ok(result) => result,
            Err(_) => Err(Stop::Broker(format!(
                "no confirm within {} s",
                CONFIRM_TIMEOUT.as_secs()
            ))),
        }
    }

    fn note_depth(&self) {
        let depth = self.gate.depth();
        self.state
            .ingest
            .outbox_depth
            .store(depth, Ordering::Relaxed);
        self.state.metrics.ingest.outbox_depth.set(depth);
    }
}
