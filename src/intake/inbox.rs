//! [`Pipeline`]: where every source (the Zulip queue, a backfill, a file)
//! hands its events. In the normal mode a batch is committed to the inbox
//! (with the queue cursor, in one transaction) and then dispatched; in
//! dry-run mode it is only described; in a distributed ingest it is
//! committed and the publisher told (the inbox is the outbox).
//!
//! Dispatch runs in a task of its own, fed committed batches through a
//! channel of `HANDOFF_BATCHES` (`handoff.rs`) batches: the source commits batch k+1
//! while batch k's runs are being started, instead of the two taking turns.
//! The channel is the only buffer between them, so memory stays bounded,
//! and a batch is handed over only after its commit, so nothing is
//! dispatched that a crash could lose (committed events not yet dispatched
//! are found again at the next start).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::dry_run::describe;
use super::flight::{Batch, Committer, InFlight, Outgoing};
use super::handoff::Handoff;
use super::outbox_gate::OutboxGate;
pub(crate) use super::pipeline_error::PipelineError;
use super::quarantine::note_quarantined;
use super::received::note_received;
use crate::dispatch::Dispatcher;
use crate::event::{Event, Quarantined};
use crate::listeners::Listener;
use crate::state::State;
use crate::store::{Cursor, Origin, Store, StoreError, StoredEvent};

/// What the pipeline does with events.
pub(crate) enum PipelineMode {
    /// Store, then dispatch.
    Store {
        /// The database.
        store: Arc<dyn Store>,
        /// The listeners' dispatcher.
        dispatcher: Box<Dispatcher>,
    },
    /// Store, and wake the distributed ingest's publisher (`gate`): the
    /// inbox is the outbox, nothing is dispatched here.
    Publish {
        /// The database.
        store: Arc<dyn Store>,
        /// Told of each commit; holds intake back while the outbox is full.
        gate: Arc<OutboxGate>,
    },
    /// Print which listeners would run; write nothing, run nothing.
    DryRun {
        /// The listeners that would run.
        listeners: Vec<Arc<dyn Listener>>,
    },
}

/// Counts of one accepted batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AcceptReport {
    /// Events newly stored (or, in dry-run, described).
    pub stored: usize,
    /// Events already in the inbox (a message seen live and in a backfill).
    pub duplicates: usize,
    /// Heartbeats (acknowledged, never stored).
    pub heartbeats: usize,
}

/// Where accepted events go.
enum Sink {
    Store {
        store: Arc<dyn Store>,
        handoff: Handoff,
    },
    Publish {
        store: Arc<dyn Store>,
        gate: Arc<OutboxGate>,
    },
    DryRun {
        listeners: Vec<Arc<dyn Listener>>,
    },
}

/// The shared entry point of all sources.
pub(crate) struct Pipeline {
    sink: Sink,
    instance: String,
    stored: AtomicU64,
    duplicates: AtomicU64,
    state: Arc<State>,
}

impl Pipeline {
    /// A pipeline for `instance` in `mode`. Starts the dispatch task, so
    /// it must be called within the runtime.
    pub(crate) fn new(instance: String, mode: PipelineMode, state: Arc<State>) -> Pipeline {
        let sink = match mode {
            PipelineMode::Store { store, dispatcher } => Sink::Store {
                store,
                handoff: Handoff::start(*dispatcher, &state),
            },
            PipelineMode::Publish { store, gate } => Sink::Publish { store, gate },
            PipelineMode::DryRun { listeners } => Sink::DryRun { listeners },
        };
        Pipeline {
            sink,
            instance,
            stored: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            state,
        }
    }

    /// The instance name.
    pub(crate) fn instance(&self) -> &str {
        &self.instance
    }

    /// The store, unless in dry-run mode.
    pub(crate) fn store(&self) -> Option<&Arc<dyn Store>> {
        match &self.sink {
            Sink::Store { store, .. } | Sink::Publish { store, .. } => Some(store),
            Sink::DryRun { .. } => None,
        }
    }

    /// The outbox gate of a distributed ingest's pipeline.
    pub(crate) fn outbox_gate(&self) -> Option<&Arc<OutboxGate>> {
        match &self.sink {
            Sink::Publish { gate, .. } => Some(gate),
            _ => None,
        }
    }

    /// Events stored so far.
    pub(crate) fn stored_total(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }

    /// Duplicates skipped so far.
    pub(crate) fn duplicates_total(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// Gives back the dispatcher, to drain it at shutdown, once every
    /// batch handed over has been dispatched (at once, after a stop).
    pub(crate) async fn into_dispatcher(self) -> Option<Dispatcher> {
        match self.sink {
            Sink::Store { handoff, .. } => {
                drop(handoff.tx);
                match handoff.task.await {
                    Ok(d) => Some(d),
                    Err(e) => {
                        tracing::error!(error = %e, "The dispatch task failed; undispatched events are dispatched at next start");
                        None
                    }
                }
            }
            Sink::Publish { .. } | Sink::DryRun { .. } => None,
        }
    }

    /// Commits `events` from `origin` with `cursor`, then dispatches them.
    ///
    /// While the database is unavailable the write is retried with backoff
    /// and nothing is acknowledged; it returns only once the batch is
    /// committed, or when `token` is cancelled.
    ///
    /// # Errors
    ///
    /// [`PipelineError`] on shutdown or on a database error retrying cannot fix.
    pub(crate) async fn accept(
        &self,
        origin: &Origin,
        events: Vec<Event>,
        cursor: Option<&Cursor>,
        token: &CancellationToken,
    ) -> Result<AcceptReport, PipelineError> {
        self.accept_page(origin, events, &[], cursor, token).await
    }

    /// [`Pipeline::accept`], with `quarantined` committed in the same
    /// transaction (and noted once it is).
    ///
    /// # Errors
    ///
    /// As [`Pipeline::accept`].
    pub(crate) async fn accept_page(
        &self,
        origin: &Origin,
        events: Vec<Event>,
        quarantined: &[Quarantined],
        cursor: Option<&Cursor>,
        token: &CancellationToken,
    ) -> Result<AcceptReport, PipelineError> {
        let mut report = AcceptReport::default();
        let (heartbeats, events): (Vec<Event>, Vec<Event>) =
            events.into_iter().partition(Event::is_heartbeat);
        report.heartbeats = heartbeats.len();
        let Some(committer) = self.committer() else {
            note_received(&self.state, &events);
            if let Sink::DryRun { listeners } = &self.sink {
                describe(listeners, &events);
            }
            note_quarantined(&self.state, origin, quarantined);
            report.stored = events.len();
            return Ok(self.count(report));
        };
        if events.is_empty() && quarantined.is_empty() && cursor.is_none() {
            return Ok(report);
        }
        // Counting and parsing the messages' views (for the lag metric,
        // and kept for the listeners) runs while the database commits.
        let received_at = chrono::Utc::now();
        let batch = Batch {
            origin,
            events: &events,
            quarantined,
            cursor,
        };
        let append = committer.append(batch, None, false, token);
        let (ids, ()) = tokio::join!(append, async { note_received(&self.state, &events) });
        let ids = ids?;
        let handed = self
            .hand_over(origin, events, quarantined, ids, received_at)
            .await?;
        report.stored = handed.stored;
        report.duplicates = handed.duplicates;
        Ok(self.count(report))
    }

    /// The committer of a page's batches and how many may be in flight at
    /// once, when that is more than one: in the normal mode on a store
    /// that allows it (a distributed ingest's publisher is told of commits
    /// in order, a dry run writes nothing).
    pub(super) fn flight(&self) -> Option<(usize, Committer)> {
        match &self.sink {
            Sink::Store { store, .. } if store.appends_in_flight() > 1 => {
                Some((store.appends_in_flight(), self.committer()?))
            }
            _ => None,
        }
    }

    /// Sends a batch of a page with `committer` (see `flight.rs`), after
    /// the batch in flight that leaves the cursor at `after` (with word of
    /// its cursor write), if any: its commit runs on its own until
    /// [`Pipeline::land`].
    pub(super) fn send(
        &self,
        committer: Committer,
        origin: &Origin,
        mut outgoing: Outgoing,
        after: Option<(Cursor, tokio::sync::watch::Receiver<crate::store::Turn>)>,
        token: &CancellationToken,
    ) -> InFlight {
        outgoing.events.retain(|e| !e.is_heartbeat());
        note_received(&self.state, &outgoing.events);
        committer.send(origin.clone(), outgoing, after, token.clone())
    }

    /// Waits for a sent batch's commit and hands it over, as
    /// [`Pipeline::accept_page`] does. Batches are landed in the order
    /// sent; one rolled back for its turn (the one before had not
    /// committed when it came to move the cursor) is written again here,
    /// now that the one before has landed.
    ///
    /// # Errors
    ///
    /// As [`Pipeline::accept`].
    pub(super) async fn land(
        &self,
        origin: &Origin,
        flight: InFlight,
        token: &CancellationToken,
    ) -> Result<AcceptReport, PipelineError> {
        let sent = flight
            .task
            .await
            .map_err(|e| PipelineError::CommitTask(e.to_string()))?;
        let ids = match sent.result {
            Err(PipelineError::Store(StoreError::OutOfTurn { expected })) => {
                tracing::debug!(
                    expected,
                    events = sent.events.len(),
                    "A batch came to move the cursor before the one before it had; writing it again"
                );
                let Some(committer) = self.committer() else {
                    return Err(PipelineError::DispatchStopped);
                };
                // Unsure: an attempt before the one rolled back may have
                // committed, late.
                let batch = Batch {
                    origin,
                    events: &sent.events,
                    quarantined: &sent.quarantined,
                    cursor: Some(&flight.next),
                };
                committer.append(batch, None, true, token).await?
            }
            result => result?,
        };
        let report = self
            .hand_over(
                origin,
                sent.events,
                &sent.quarantined,
                ids,
                sent.received_at,
            )
            .await?;
        Ok(self.count(report))
    }

    /// The committer of a mode with a store.
    fn committer(&self) -> Option<Committer> {
        match &self.sink {
            Sink::Store { store, .. } | Sink::Publish { store, .. } => Some(Committer {
                store: Arc::clone(store),
                instance: self.instance.clone(),
                state: Arc::clone(&self.state),
            }),
            Sink::DryRun { .. } => None,
        }
    }

    /// After a commit: notes the quarantined elements and hands the newly
    /// stored events (each of `ids` that is `Some`) to dispatch or to the
    /// publisher.
    async fn hand_over(
        &self,
        origin: &Origin,
        events: Vec<Event>,
        quarantined: &[Quarantined],
        ids: Vec<Option<i64>>,
        received_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<AcceptReport, PipelineError> {
        let mut report = AcceptReport::default();
        note_quarantined(&self.state, origin, quarantined);
        let mut batch = Vec::with_capacity(events.len());
        for (event, id) in events.into_iter().zip(ids) {
            match id {
                Some(inbox_id) => batch.push(StoredEvent {
                    inbox_id,
                    event,
                    received_at,
                }),
                None => {
                    report.duplicates += 1;
                    tracing::debug!(event_id = event.id(), message_id = ?event.message_id(), "Skipping an event already in the inbox");
                }
            }
        }
        report.stored = batch.len();
        // Waits while the dispatch task is HANDOFF_BATCHES behind, which in
        // turn holds back the next poll. Closed only if the task died: the
        // batch is committed, so it is dispatched at the next start, and
        // the daemon stops to get there.
        match &self.sink {
            Sink::Store { handoff, .. } => {
                if !batch.is_empty() && handoff.tx.send(batch).await.is_err() {
                    return Err(PipelineError::DispatchStopped);
                }
            }
            Sink::Publish { gate, .. } => gate.committed(batch.iter().map(|s| s.inbox_id)),
            Sink::DryRun { .. } => {}
        }
        Ok(report)
    }

    /// Adds `report` to the totals, and gives it back.
    fn count(&self, report: AcceptReport) -> AcceptReport {
        self.stored
            .fetch_add(report.stored as u64, Ordering::Relaxed);
        self.duplicates
            .fetch_add(report.duplicates as u64, Ordering::Relaxed);
        self.state
            .metrics
            .duplicates
            .inc_by(report.duplicates as u64);
        report
    }
}
