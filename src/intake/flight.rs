//! Committing a batch, and two batches in flight. [`Committer`] is what a
//! commit needs, owned: the store, the instance, the state. Its `append`
//! retries while the database is unavailable, and after a failure whose
//! outcome is unknown first asks whether an earlier attempt committed
//! (`committed.rs`).
//!
//! A backlog's chunks are committed two at a time on PostgreSQL: each
//! [`InFlight`] commit runs in a task of its own, so the next chunk is read,
//! sorted and sent while the one before commits on another connection. A
//! chunk that follows one in flight is written with `Store::append_in_line`:
//! once that one has written the cursor, its transaction waits for that
//! one's, and moves the cursor only from where that one leaves it, or rolls
//! back. Batches are landed (handed to
//! dispatch) strictly in order, one rolled back for its turn is written
//! again once the one before has landed, so nothing commits, is
//! acknowledged or dispatched out of order. See `ARCHITECTURE.md`, "Two
//! batches in flight".

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::committed::committed_before;
use super::pipeline_error::PipelineError;
use crate::backoff::Backoff;
use crate::event::{Event, Quarantined};
use crate::state::State;
use crate::store::{Cursor, Line, Origin, Store, StoreError, Turn};

/// What a commit needs, owned, so that it can run in a task of its own.
#[derive(Clone)]
pub(super) struct Committer {
    pub(super) store: Arc<dyn Store>,
    pub(super) instance: String,
    pub(super) state: Arc<State>,
}

/// What one commit writes: `events` from `origin`, `quarantined` with
/// them, and the cursor moved to `cursor`.
#[derive(Clone, Copy)]
pub(super) struct Batch<'a> {
    pub(super) origin: &'a Origin,
    pub(super) events: &'a [Event],
    pub(super) quarantined: &'a [Quarantined],
    pub(super) cursor: Option<&'a Cursor>,
}

/// A chunk of a page to send: its events, its elements in quarantine, and
/// the cursor it moves to.
pub(super) struct Outgoing {
    pub(super) events: Vec<Event>,
    pub(super) quarantined: Vec<Quarantined>,
    pub(super) next: Cursor,
}

/// One batch sent: its commit, running on its own, what it moves the
/// cursor to, and word of its cursor write, for the batch after it.
pub(super) struct InFlight {
    pub(super) next: Cursor,
    pub(super) task: JoinHandle<Sent>,
    pub(super) written: watch::Receiver<Turn>,
}

/// What an [`InFlight`] commit gives back: its outcome, and the batch (to
/// hand over, or to write again).
pub(super) struct Sent {
    pub(super) result: Result<Vec<Option<i64>>, PipelineError>,
    pub(super) events: Vec<Event>,
    pub(super) quarantined: Vec<Quarantined>,
    pub(super) received_at: chrono::DateTime<chrono::Utc>,
}

impl Committer {
    /// Commits `batch`, in its `line` of appends in flight, if any. While the database is unavailable the write is retried with
    /// backoff and nothing is acknowledged; it returns once the batch is
    /// committed, or when `token` is cancelled. `unsure`: an earlier try
    /// may have committed it, so the first attempt looks first.
    ///
    /// # Errors
    ///
    /// [`PipelineError`] on shutdown, on a database error retrying cannot
    /// fix, and on [`StoreError::OutOfTurn`] (the caller writes it again
    /// once the batch before has landed).
    pub(super) async fn append(
        &self,
        batch: Batch<'_>,
        line: Option<&Line>,
        unsure: bool,
        token: &CancellationToken,
    ) -> Result<Vec<Option<i64>>, PipelineError> {
        let events = batch.events;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let timer = self
                .state
                .metrics
                .db_write_seconds
                .with_label_values(&["append"])
                .start_timer();
            let result = self
                .append_once(batch, line, unsure || backoff.failures() > 0)
                .await;
            timer.observe_duration();
            match result {
                Ok(ids) => {
                    if backoff.failures() > 0 {
                        tracing::info!(
                            events = events.len(),
                            "Database is back; the held batch is committed"
                        );
                    }
                    self.state.database_retrying.store(false, Ordering::Relaxed);
                    return Ok(ids);
                }
                Err(e) if e.is_transient() => {
                    self.state.database_retrying.store(true, Ordering::Relaxed);
                    let e = self.store.explain(e).await;
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, events = events.len(), retry_in_ms = delay.as_millis() as u64,
                        "Cannot store events; not acknowledging them to Zulip and retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = token.cancelled() => return Err(PipelineError::Cancelled),
                    }
                }
                Err(e) => return Err(PipelineError::Store(e)),
            }
        }
    }

    /// One attempt at `append`. A retry (`retry`) of a live queue's batch
    /// that an earlier attempt committed (its cursor and quarantine rows
    /// with it) takes those rows as its own and writes nothing.
    async fn append_once(
        &self,
        batch: Batch<'_>,
        line: Option<&Line>,
        retry: bool,
    ) -> Result<Vec<Option<i64>>, StoreError> {
        let Batch {
            origin,
            events,
            quarantined,
            cursor,
        } = batch;
        let store = &self.store;
        if retry {
            if let Some(ids) =
                committed_before(store, &self.instance, origin, events, cursor).await?
            {
                tracing::info!(
                    events = events.len(),
                    "An earlier attempt had stored these events; dispatching them"
                );
                return Ok(ids.into_iter().map(Some).collect());
            }
        }
        match (cursor, line) {
            (Some(cursor), Some(line)) => {
                store
                    .append_in_line(&self.instance, origin, events, quarantined, cursor, line)
                    .await
            }
            _ => {
                store
                    .append_quarantining(&self.instance, origin, events, quarantined, cursor)
                    .await
            }
        }
    }

    /// Sends `outgoing` of `origin`'s page, after the batch in flight
    /// that leaves the cursor at `after` (with word of its cursor write),
    /// if any: its commit starts in a task of its own.
    pub(super) fn send(
        self,
        origin: Origin,
        outgoing: Outgoing,
        after: Option<(Cursor, watch::Receiver<Turn>)>,
        token: CancellationToken,
    ) -> InFlight {
        let received_at = chrono::Utc::now();
        let Outgoing {
            events,
            quarantined,
            next,
        } = outgoing;
        let cursor = next.clone();
        let (written, word) = watch::channel(Turn::Begun);
        let line = Line {
            after,
            written: Some(written),
        };
        let task = tokio::spawn(async move {
            let batch = Batch {
                origin: &origin,
                events: &events,
                quarantined: &quarantined,
                cursor: Some(&cursor),
            };
            let result = self.append(batch, Some(&line), false, &token).await;
            Sent {
                result,
                events,
                quarantined,
                received_at,
            }
        });
        InFlight {
            next,
            task,
            written: word,
        }
    }
}
