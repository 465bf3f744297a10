//! [`Intake`]: the poll loop and queue state machine.
//!
//! ```text
//!   start ──► stored cursor? ──yes──► poll(queue, last_event_id) ◄──────────┐
//!                 │ no                   │ events: commit + cursor, dispatch ─┘
//!                 ▼                      │ queue gone: ─► register ─► backfill ─┐
//!             register ─► backfill ──────┴─────────────────────────────────────┘
//! ```
//!
//! Zulip deletes an event only when a later poll sends a `last_event_id` at
//! or above it, and this loop sends an id only after the batch holding it is
//! committed; so a crash anywhere loses nothing Zulip still holds. A
//! response is committed chunk by chunk as it arrives (`page`); one that
//! fails half-way is a failed poll after the chunks it gave. Failed polls
//! back off with full jitter and keep the queue; 429s wait exactly the
//! `Retry-After` Zulip gave, and a rate-limit budget running low spaces
//! polls out (`pacing`); 401/403 stop the daemon. A suspend or a clock jump
//! (`wakeup`) aborts the poll in flight, or the wait, and resets the backoff.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::inbox::{Pipeline, PipelineError};
use super::pacing::{self, RateLimitEpisodes, WaitReason};
use super::wakeup::WakeUps;
use crate::backoff::Backoff;
use crate::clock::Clock;
use crate::state::State;
use crate::store::{Cursor, StoreError};
use crate::zulip::{Client, ErrorAction, EventsStream, RegisterParams, ZulipError};

/// Margin added to the long-poll timeout before a poll is abandoned.
const POLL_MARGIN: Duration = Duration::from_secs(5);

/// How the poll loop behaves.
#[derive(Debug, Clone)]
pub(crate) struct IntakeSettings {
    /// What to register for.
    pub register: RegisterParams,
    /// First backoff delay.
    pub backoff_base: Duration,
    /// Largest backoff delay.
    pub backoff_cap: Duration,
    /// How long requests may fail, none succeeding, before the daemon
    /// reports itself degraded.
    pub degraded_after: Duration,
    /// Delete the queue on exit (dry-run, `--release-queue`).
    pub release_queue: bool,
    /// On the very first start, backfill messages after this id.
    pub backfill_since: Option<i64>,
    /// After a lost queue, backfill from this many message ids below the
    /// newest one seen (Zulip delivers ids slightly out of order).
    pub backfill_window: u64,
    /// Resident memory, in bytes, above which polling pauses.
    pub memory_threshold: Option<u64>,
    /// The clocks compared to notice a suspend or a clock jump.
    pub clock: Arc<dyn Clock>,
}

/// Why intake stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// Zulip refused the credentials.
    #[error("{0}")]
    Auth(ZulipError),
    /// Zulip refused a request that retrying cannot fix (a bad narrow).
    #[error("{0}")]
    Rejected(ZulipError),
    /// The database failed in a way retrying cannot fix.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The pipeline cannot dispatch any more (see
    /// [`PipelineError::DispatchStopped`]).
    #[error("{0}")]
    Dispatch(PipelineError),
}

/// The Zulip poll loop.
pub(crate) struct Intake<'a> {
    pub(super) client: Client,
    pub(super) pipeline: &'a Pipeline,
    pub(super) settings: IntakeSettings,
    pub(super) state: Arc<State>,
    /// The rate-limit episode under way (locked only between awaits).
    pub(super) episodes: Mutex<RateLimitEpisodes>,
    /// Suspends and clock jumps, seen by a task comparing the clocks.
    pub(super) wake_ups: WakeUps,
}

impl<'a> Intake<'a> {
    /// A poll loop feeding `pipeline`. Starts the task that watches the
    /// clocks, so it must be called within the runtime.
    pub(crate) fn new(
        client: Client,
        pipeline: &'a Pipeline,
        settings: IntakeSettings,
        state: Arc<State>,
    ) -> Intake<'a> {
        Intake {
            client,
            pipeline,
            wake_ups: WakeUps::start(settings.clock.clone()),
            settings,
            state,
            episodes: Mutex::default(),
        }
    }

    /// The rate-limit episode (never held across an `.await`).
    pub(super) fn episodes(&self) -> MutexGuard<'_, RateLimitEpisodes> {
        self.episodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Polls until `token` is cancelled. `on_polling` is called once, when
    /// the first poll of a registered or resumed queue is under way (the
    /// moment systemd is told the daemon is ready).
    ///
    /// # Errors
    ///
    /// [`IntakeError`] when Zulip refuses the credentials or a request, or
    /// the database fails for good.
    pub(crate) async fn run(
        self,
        token: CancellationToken,
        on_polling: impl FnOnce(),
    ) -> Result<(), IntakeError> {
        let mut on_polling = Some(on_polling);
        let site = self.client.base_url().to_owned();
        let mut cursor = self.resume(&site).await?;
        let mut anchor = cursor.as_ref().and_then(|c| c.last_message_id);
        self.state.intake.polling.store(true, Ordering::Relaxed);
        let mut longpoll = crate::zulip::DEFAULT_LONGPOLL_TIMEOUT;
        let mut backoff = Backoff::new(self.settings.backoff_base, self.settings.backoff_cap);
        let mut first_registration = true;
        let result = loop {
            if token.is_cancelled() {
                break Ok(());
            }
            let Some(current) = cursor.clone() else {
                let started = self
                    .start_queue(&site, anchor, first_registration, &token, &mut backoff)
                    .await;
                match started {
                    Ok(Some(started)) => {
                        first_registration = false;
                        longpoll = started.longpoll;
                        anchor = started.anchor;
                        cursor = Some(started.cursor);
                        continue;
                    }
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            };
            if let Some(ready) = on_polling.take() {
                ready();
            }
            if let Some(gate) = self.pipeline.outbox_gate() {
                gate.wait_for_room(&self.state, &token).await;
            }
            if let Some(threshold) = self.settings.memory_threshold {
                crate::intake::backpressure::wait_below(threshold, &self.state, &token).await;
            }
            match self.pace(&mut backoff, &token).await {
                Waited::Cancelled => break Ok(()),
                Waited::Elapsed | Waited::WokeUp => {}
            }
            let began = crate::state::now_ms();
            let mut page = match self.poll(&current, longpoll, &mut backoff, &token).await {
                Polled::Page(page) => page,
                Polled::Again => continue,
                Polled::QueueGone => {
                    cursor = None;
                    continue;
                }
                Polled::Stop(result) => break result,
            };
            let (committed, end) = self.commit_page(&mut page, &current, &token).await;
            drop(page);
            anchor = committed.last_message_id;
            cursor = Some(committed.clone());
            let e = match end {
                PageEnd::Complete => {
                    // Everything this poll returned is committed: what Zulip
                    // held when it answered is in the inbox (the reply
                    // sender's proof that an echo did not come).
                    self.state
                        .intake
                        .committed_poll_began_ms
                        .store(began, Ordering::Release);
                    continue;
                }
                PageEnd::Stop(result) => break result,
                PageEnd::Failed(e) => e,
            };
            // The body failed half-way: a failed poll, from the cursor its
            // committed chunks moved to.
            match self
                .on_failure(&committed, e, Instant::now(), &mut backoff, &token)
                .await
            {
                Polled::QueueGone => cursor = None,
                Polled::Stop(result) => break result,
                Polled::Page(_) | Polled::Again => {}
            }
        };
        self.state.intake.polling.store(false, Ordering::Relaxed);
        if self.settings.release_queue {
            if let Some(c) = &cursor {
                self.release(&c.queue_id).await;
            }
        }
        result
    }

    /// One long poll of `current`, with what its failure means for the loop.
    async fn poll(
        &self,
        current: &Cursor,
        longpoll: Duration,
        backoff: &mut Backoff,
        token: &CancellationToken,
    ) -> Polled {
        let started = Instant::now();
        let polled = tokio::select! {
            r = self.client.get_events(&current.queue_id, current.last_event_id, longpoll + POLL_MARGIN) => r,
            jump = self.wake_ups.next() => {
                self.note_wake_up(jump, backoff);
                return Polled::Again;
            }
            _ = token.cancelled() => return Polled::Stop(Ok(())),
        };
        if let Some(b) = self.client.poll_budget() {
            let metrics = &self.state.metrics;
            metrics.rate_limit_remaining.set(i64::from(b.remaining));
            metrics.rate_limit_limit.set(i64::from(b.limit));
        }
        match polled {
            Ok(page) => {
                self.note_poll_success();
                backoff.reset();
                Polled::Page(page)
            }
            Err(e) => self.on_failure(current, e, started, backoff, token).await,
        }
    }

    /// What a failed request on `current`'s queue means for the loop: a
    /// failed poll, or a response whose body failed half-way (`current` is
    /// then the cursor its committed chunks moved to). Waits out the
    /// backoff or `Retry-After` before returning [`Polled::Again`].
    async fn on_failure(
        &self,
        current: &Cursor,
        e: ZulipError,
        started: Instant,
        backoff: &mut Backoff,
        token: &CancellationToken,
    ) -> Polled {
        let delay = match e.action() {
            ErrorAction::Reregister => {
                self.note_queue_lost(current, &e);
                return Polled::QueueGone;
            }
            ErrorAction::Wait(d) => {
                let budget = self.client.poll_budget();
                self.episodes()
                    .waited(&self.state, WaitReason::RetryAfter, d, budget.as_ref());
                d
            }
            ErrorAction::Stop if e.is_auth() => return Polled::Stop(Err(IntakeError::Auth(e))),
            ErrorAction::Stop => return Polled::Stop(Err(IntakeError::Rejected(e))),
            ErrorAction::Retry => {
                // A poll that outlived the long-poll timeout means a wedged
                // connection, not a busy server: retry at once.
                let delay = match e {
                    ZulipError::Timeout => Duration::ZERO,
                    _ => backoff.next_delay(),
                };
                self.note_failure(&e, delay, started);
                delay
            }
        };
        match self.wait(delay, backoff, token).await {
            Waited::Cancelled => Polled::Stop(Ok(())),
            Waited::Elapsed | Waited::WokeUp => Polled::Again,
        }
    }

    /// Before a poll: while the rate-limit budget the last answer reported
    /// runs low, waits to spread what is left until it resets.
    async fn pace(&self, backoff: &mut Backoff, token: &CancellationToken) -> Waited {
        let budget = self.client.poll_budget();
        let Some(d) = budget.and_then(|b| pacing::delay(&b, Instant::now())) else {
            self.episodes().clear();
            return Waited::Elapsed;
        };
        self.episodes()
            .waited(&self.state, WaitReason::Paced, d, budget.as_ref());
        self.wait(d, backoff, token).await
    }

    /// Waits `d`, unless shutdown begins or the machine wakes up (which
    /// resets `backoff`: what failed before the suspend says nothing of now).
    pub(super) async fn wait(
        &self,
        d: Duration,
        backoff: &mut Backoff,
        token: &CancellationToken,
    ) -> Waited {
        if d.is_zero() {
            return Waited::Elapsed;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => Waited::Elapsed,
            _ = token.cancelled() => Waited::Cancelled,
            jump = self.wake_ups.next() => {
                self.note_wake_up(jump, backoff);
                Waited::WokeUp
            }
        }
    }
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waited {
    /// It took its time.
    Elapsed,
    /// Shutdown began.
    Cancelled,
    /// A suspend or clock jump cut it short (the backoff is reset).
    WokeUp,
}

/// What one poll tells the loop to do.
enum Polled {
    /// A response whose events (or heartbeat) are to be read and committed.
    Page(EventsStream),
    /// Poll again (after a wait already taken).
    Again,
    /// The queue is gone: register a new one.
    QueueGone,
    /// Stop, with this result.
    Stop(Result<(), IntakeError>),
}

/// How committing a response ended (`page`).
#[derive(Debug)]
pub(super) enum PageEnd {
    /// The body was read to its end and every chunk committed.
    Complete,
    /// The body failed after the chunks committed so far (the connection
    /// cut, no bytes in time, JSON broken off): poll again from the cursor.
    Failed(ZulipError),
    /// The loop must stop, with this result.
    Stop(Result<(), IntakeError>),
}

/// What a pipeline error means for the poll loop: `None` on shutdown.
pub(super) fn stopped_by(e: PipelineError) -> Option<IntakeError> {
    match e {
        PipelineError::Cancelled => None,
        PipelineError::Store(e) => Some(e.into()),
        e @ (PipelineError::DispatchStopped | PipelineError::CommitTask(_)) => {
            Some(IntakeError::Dispatch(e))
        }
    }
}

/// Sleeps for `d`; true when `token` was cancelled first.
pub(super) async fn sleep_or_cancel(d: Duration, token: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = token.cancelled() => true,
    }
}
