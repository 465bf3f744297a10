//! [`Worker`]: one worker's consumer loop. It subscribes to the partitions
//! its share names (`membership`), one channel each with prefetch = the
//! worker's concurrency, and hands every delivery, in arrival order, to
//! the [`Dispatcher`] (whose lanes keep per-conversation order across its
//! concurrency). A delivery is acked only once its inbox id completes:
//! all its runs committed by the recorder in the usual exactly-once
//! transaction. Before dispatching a batch of deliveries it reads which
//! listeners already have a logged run for them, and skips those (a
//! redelivery or a republished event whose runs are all recorded is acked
//! without running). A copy of an event still in flight here is attached
//! to it and acked with it. A delivery that does not open, or is another
//! organization's, is rejected without requeue (to the DLX).
//!
//! A partition it must give up: its new deliveries are held, not started;
//! once its in-flight ones are committed and acked, its channel is closed,
//! which requeues the held ones in order for the next consumer. A lost
//! connection: in-flight runs finish and are recorded (their acks are
//! lost; the redelivery is then skipped as recorded); it reconnects with
//! backoff, declares the topology and resubscribes. Shutdown: new
//! deliveries are held, in-flight runs drain, what committed is acked,
//! the connection is closed (the rest is requeued). Acking, giving up a
//! partition and the shutdown are in `settle.rs`; every broker call is
//! bounded (`bounded.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Acker, Channel, Connection, ConnectionProperties};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

mod bounded;
mod settle;

use bounded::{bounded, within};

use super::{Envelope, Topology};
use crate::backoff::Backoff;
use crate::dispatch::Dispatcher;
use crate::metrics::WorkerMetrics;
use crate::store::Store;

/// Deliveries looked up in the event log at once.
const BATCH: usize = 256;
/// How often the connection's status is checked.
const LIVENESS_CHECK: Duration = Duration::from_secs(1);
/// Capacity of the channel from the partitions' consumers to the loop.
const INCOMING: usize = 1024;

/// What the worker needs to know.
pub(crate) struct WorkerSettings {
    /// The broker's URL (with its password) and, for logs, without.
    pub(crate) url: String,
    pub(crate) shown_url: String,
    pub(crate) topology: Topology,
    /// The organization (its rows' instance).
    pub(crate) org: String,
    pub(crate) prefetch: u16,
}

/// A delivery, or the end of a partition's consumer, tagged with the
/// connection it came on.
enum Incoming {
    Delivery(u32, u64, Box<Delivery>),
    Ended(u32, u64),
}

/// One subscribed partition.
struct Sub {
    channel: Channel,
    /// Being given up: deliveries are held until the in-flight ones are acked.
    leaving: bool,
    held: Vec<Delivery>,
}

/// An event in flight: its partition and every delivery of it to ack.
struct Pending {
    partition: u32,
    ackers: Vec<Acker>,
}

/// One worker's consumer loop and what it holds.
pub(crate) struct Worker {
    settings: WorkerSettings,
    store: Arc<dyn Store>,
    /// Taken by [`Worker::stop`] to drain.
    dispatcher: Option<Dispatcher>,
    completions: mpsc::UnboundedReceiver<i64>,
    share: watch::Receiver<Vec<u32>>,
    metrics: WorkerMetrics,
    /// The partitions consumed, for `/health`.
    consumed: Arc<std::sync::Mutex<Vec<u32>>>,
    conn: Option<Connection>,
    generation: u64,
    subs: BTreeMap<u32, Sub>,
    pending: HashMap<i64, Pending>,
    tx: mpsc::Sender<Incoming>,
    rx: mpsc::Receiver<Incoming>,
}

impl Worker {
    /// A worker, not connected yet.
    pub(crate) fn new(
        settings: WorkerSettings,
        store: Arc<dyn Store>,
        dispatcher: Dispatcher,
        completions: mpsc::UnboundedReceiver<i64>,
        share: watch::Receiver<Vec<u32>>,
        metrics: WorkerMetrics,
        consumed: Arc<std::sync::Mutex<Vec<u32>>>,
    ) -> Worker {
        let (tx, rx) = mpsc::channel(INCOMING);
        Worker {
            settings,
            store,
            dispatcher: Some(dispatcher),
            completions,
            share,
            metrics,
            consumed,
            conn: None,
            generation: 0,
            subs: BTreeMap::new(),
            pending: HashMap::new(),
            tx,
            rx,
        }
    }

    /// Consumes until `token`.
    pub(crate) async fn run(&mut self, token: &CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        // A dead connection does not always end its consumers' streams
        // (seen with a cut TCP connection): its status is checked too.
        let mut check = tokio::time::interval(LIVENESS_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !token.is_cancelled() {
            if self.conn.is_none() {
                let connected = within(
                    super::CONNECT_TIMEOUT,
                    "no connection within the connect timeout",
                    self.connect(),
                )
                .await;
                match connected {
                    Ok(()) => backoff.reset(),
                    Err(e) => {
                        // Whatever a cut-short connect left half set up.
                        self.lost();
                        let delay = backoff.next_delay();
                        tracing::warn!(url = %self.settings.shown_url, error = %e, retry_in_ms = delay.as_millis() as u64, "Cannot reach RabbitMQ; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = token.cancelled() => break,
                        }
                        continue;
                    }
                }
            }
            tokio::select! {
                biased;
                _ = token.cancelled() => break,
                Some(id) = self.completions.recv() => self.complete(id).await,
                Ok(()) = self.share.changed() => self.reconcile().await,
                _ = check.tick() => self.check_alive(),
                Some(first) = self.rx.recv() => {
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match self.rx.try_recv() {
                            Ok(i) => batch.push(i),
                            Err(_) => break,
                        }
                    }
                    self.handle(batch, token).await;
                }
            }
            self.finish_leaving().await;
        }
    }

    /// Connects, declares the topology and subscribes to this worker's share.
    async fn connect(&mut self) -> Result<(), lapin::Error> {
        let conn = Connection::connect(&self.settings.url, ConnectionProperties::default()).await?;
        let channel = conn.create_channel().await?;
        self.settings.topology.declare(&channel).await?;
        let _ = channel.close(200, "declared".into()).await;
        self.generation += 1;
        self.conn = Some(conn);
        self.subs.clear();
        tracing::info!(url = %self.settings.shown_url, "Connected to RabbitMQ");
        self.reconcile().await;
        Ok(())
    }

    /// Subscribes to the partitions of the share not consumed yet, and
    /// starts giving up those no longer in it.
    async fn reconcile(&mut self) {
        let share = self.share.borrow_and_update().clone();
        for (p, sub) in self.subs.iter_mut() {
            if !share.contains(p) && !sub.leaving {
                tracing::info!(partition = p, "Giving up the partition");
                sub.leaving = true;
            } else if share.contains(p) && sub.leaving {
                sub.leaving = false;
                let held = std::mem::take(&mut sub.held);
                for d in held {
                    let _ = self
                        .tx
                        .try_send(Incoming::Delivery(*p, self.generation, Box::new(d)));
                }
            }
        }
        for p in share {
            if self.subs.contains_key(&p) {
                continue;
            }
            if let Err(e) = bounded(self.subscribe(p)).await {
                tracing::warn!(partition = p, error = %e, "Cannot subscribe to the partition; reconnecting");
                self.lost();
                return;
            }
        }
        self.publish_consumed();
    }

    async fn subscribe(&mut self, p: u32) -> Result<(), lapin::Error> {
        let Some(conn) = &self.conn else {
            return Ok(());
        };
        let channel = conn.create_channel().await?;
        channel
            .basic_qos(self.settings.prefetch.max(1), BasicQosOptions::default())
            .await?;
        let queue = self.settings.topology.queue(p);
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let (tx, generation) = (self.tx.clone(), self.generation);
        tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                if tx
                    .send(Incoming::Delivery(p, generation, Box::new(d)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let _ = tx.send(Incoming::Ended(p, generation)).await;
        });
        tracing::info!(partition = p, queue, "Subscribed to the partition");
        self.subs.insert(
            p,
            Sub {
                channel,
                leaving: false,
                held: Vec::new(),
            },
        );
        Ok(())
    }

    /// Treats a connection or a partition channel that is no longer
    /// connected as lost (reconnecting at the next turn).
    fn check_alive(&mut self) {
        let alive = self.conn.as_ref().is_some_and(|c| c.status().connected())
            && self.subs.values().all(|s| s.channel.status().connected());
        if self.conn.is_some() && !alive {
            self.lost();
        }
    }

    /// The connection is gone: its deliveries come back from the broker,
    /// so their ackers are dropped (acking on a dead connection may never
    /// answer); an event still in flight stays pending, and its
    /// redelivery is attached to it and acked when it completes.
    fn lost(&mut self) {
        for pending in self.pending.values_mut() {
            pending.ackers.clear();
        }
        if let Some(conn) = self.conn.take() {
            tracing::warn!(url = %self.settings.shown_url, in_flight = self.pending.len(), "Lost the RabbitMQ connection; in-flight runs go on and are recorded, their redeliveries are skipped as recorded");
            // Closed for sure, so the broker requeues its unacked deliveries.
            // Bounded too: closing a dead connection may never answer.
            tokio::spawn(async move {
                let _ = bounded(conn.close(320, "reconnecting".into())).await;
            });
        }
        self.subs.clear();
        self.publish_consumed();
    }

    fn publish_consumed(&self) {
        let mine: Vec<u32> = self.subs.keys().copied().collect();
        self.metrics.partitions_consumed.set(mine.len() as i64);
        if let Ok(mut c) = self.consumed.lock() {
            *c = mine;
        }
    }

    /// Dispatches a batch of deliveries in order.
    async fn handle(&mut self, batch: Vec<Incoming>, token: &CancellationToken) {
        let mut todo = Vec::new();
        for incoming in batch {
            let (p, generation, d) = match incoming {
                Incoming::Ended(p, generation) => {
                    let ours = generation == self.generation && self.subs.contains_key(&p);
                    if ours {
                        self.lost();
                    }
                    continue;
                }
                Incoming::Delivery(p, g, d) => (p, g, *d),
            };
            if generation != self.generation {
                continue; // Its channel is gone: the broker redelivers it.
            }
            self.metrics.deliveries.inc();
            if d.redelivered {
                self.metrics.redeliveries.inc();
            }
            match self.subs.get_mut(&p) {
                Some(sub) if sub.leaving || token.is_cancelled() => {
                    sub.held.push(d);
                    continue;
                }
                Some(_) => {}
                None => continue,
            }
            let opened = match Envelope::open(&d.data, &d.properties) {
                Ok(o) if o.org == self.settings.org => o,
                Ok(o) => {
                    self.reject(&d, &format!("of organization {:?}", o.org))
                        .await;
                    continue;
                }
                Err(e) => {
                    self.reject(&d, &e.to_string()).await;
                    continue;
                }
            };
            tracing::trace!(
                inbox_id = opened.stored.inbox_id,
                epoch = opened.epoch,
                partition = p,
                "Delivery"
            );
            todo.push((p, d, opened.stored));
        }
        if todo.is_empty() {
            return;
        }
        let ids: Vec<i64> = todo.iter().map(|(_, _, s)| s.inbox_id).collect();
        let Some(done) = self.logged(&ids, token).await else {
            for (p, d, _) in todo {
                if let Some(sub) = self.subs.get_mut(&p) {
                    sub.held.push(d);
                }
            }
            return;
        };
        let none = Vec::new();
        for (p, d, stored) in todo {
            let id = stored.inbox_id;
            if let Some(pending) = self.pending.get_mut(&id) {
                pending.ackers.push(d.acker);
                continue;
            }
            self.pending.insert(
                id,
                Pending {
                    partition: p,
                    ackers: vec![d.acker],
                },
            );
            let already = done.get(&id).unwrap_or(&none);
            if let Some(dispatcher) = &self.dispatcher {
                dispatcher.dispatch(stored, already).await;
            }
        }
    }
}
