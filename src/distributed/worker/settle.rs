//! How a [`Worker`]'s deliveries end: acked once their inbox id
//! completes, rejected to the DLX, requeued in order when a partition is
//! given up (its channel closed once its in-flight deliveries are acked),
//! and the shutdown (runs drained while completions are acked, then the
//! connection closed); and the logged-runs read a batch waits for.

use std::collections::HashMap;
use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicRejectOptions};
use tokio_util::sync::CancellationToken;

use super::{bounded, Incoming, Worker};
use crate::backoff::Backoff;
use crate::dispatch::Dispatcher;

impl Worker {
    /// The logged runs of `ids`, retried while the database is away
    /// (`None` at shutdown).
    pub(super) async fn logged(
        &self,
        ids: &[i64],
        token: &CancellationToken,
    ) -> Option<HashMap<i64, Vec<String>>> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            match self.store.logged_runs(&self.settings.org, ids).await {
                Ok(done) => return Some(done),
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "Cannot read which runs are recorded; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = token.cancelled() => return None,
                    }
                }
            }
        }
    }

    pub(super) async fn reject(&self, d: &Delivery, why: &str) {
        tracing::error!(delivery_tag = d.delivery_tag, reason = why, "A delivery that is not this organization's event; rejected to the dead-letter exchange");
        self.metrics.nacks.inc();
        let _ = bounded(d.acker.reject(BasicRejectOptions { requeue: false })).await;
    }

    /// Acks every delivery of inbox id `id`, whose runs are all committed.
    pub(crate) async fn complete(&mut self, id: i64) {
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        for acker in pending.ackers {
            // Bounded: an ack on a connection that died may never answer.
            match bounded(acker.ack(BasicAckOptions::default())).await {
                Ok(_) => self.metrics.acks.inc(),
                Err(e) => {
                    // Every acker pending is of the current connection
                    // (`lost` drops the others): it is gone.
                    tracing::warn!(inbox_id = id, error = %e, "An ack failed; reconnecting (the redelivery will be skipped as recorded)");
                    self.lost();
                    return;
                }
            }
        }
    }

    /// Closes the partitions being given up whose in-flight deliveries are
    /// all acked: closing requeues the held ones, in order, for the next
    /// consumer.
    pub(super) async fn finish_leaving(&mut self) {
        let leaving: Vec<u32> = self
            .subs
            .iter()
            .filter(|(p, s)| s.leaving && !self.pending.values().any(|x| x.partition == **p))
            .map(|(p, _)| *p)
            .collect();
        for p in leaving {
            if let Some(sub) = self.subs.remove(&p) {
                self.metrics.nacks.inc_by(sub.held.len() as u64);
                if bounded(sub.channel.close(200, "handed over".into()))
                    .await
                    .is_err()
                {
                    // Closing the connection requeues them just the same.
                    self.lost();
                    return;
                }
                tracing::info!(
                    partition = p,
                    requeued = sub.held.len(),
                    "Gave up the partition"
                );
            }
        }
        self.publish_consumed();
    }

    /// Shutdown: `finish` drains the dispatcher (and the recorder) while
    /// the loop acks each event as it completes and holds new deliveries;
    /// then the connection is closed, which requeues everything unacked.
    pub(crate) async fn stop<F: std::future::Future>(
        mut self,
        finish: impl FnOnce(Dispatcher) -> F,
    ) -> Option<F::Output> {
        let dispatcher = self.dispatcher.take()?;
        let finish = finish(dispatcher);
        tokio::pin!(finish);
        let out = loop {
            tokio::select! {
                biased;
                out = &mut finish => break out,
                Some(id) = self.completions.recv() => self.complete(id).await,
                Some(incoming) = self.rx.recv() => {
                    if let Incoming::Delivery(p, _, d) = incoming {
                        if let Some(sub) = self.subs.get_mut(&p) {
                            sub.held.push(*d);
                        }
                    }
                }
            }
        };
        self.close().await;
        Some(out)
    }

    /// Acks what completed, and closes the connection, which requeues
    /// everything else.
    async fn close(mut self) {
        while let Ok(id) = self.completions.try_recv() {
            self.complete(id).await;
        }
        let unacked: usize = self.pending.values().map(|p| p.ackers.len()).sum();
        let held: usize = self.subs.values().map(|s| s.held.len()).sum();
        self.metrics.nacks.inc_by((unacked + held) as u64);
        if let Some(conn) = self.conn.take() {
            let _ = bounded(conn.close(200, "shutdown".into())).await;
        }
        self.subs.clear();
        self.publish_consumed();
        tracing::info!(
            requeued = unacked + held,
            "Worker stopped; unfinished deliveries requeued"
        );
    }
}
