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
//! committed; so a crash anywhere loses nothing Zulip still holds. Failed
//! polls back off with full jitter and keep the queue; 429s wait exactly
//! the `Retry-After` Zulip gave; 401/403 stop the daemon.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::inbox::{Pipeline, PipelineError};
use crate::event::Event;
use crate::state::{now_ms, State};
use crate::store::{Cursor, Origin, StoreError};
use crate::zulip::{Client, ErrorAction, RegisterParams, Registration, ZulipError};

/// Margin added to the long-poll timeout before a poll is abandoned.
const POLL_MARGIN: Duration = Duration::from_secs(5);
/// Events per intake transaction when a poll returns a large page.
const INTAKE_CHUNK: usize = 1000;
/// Messages per `GET /messages` page when backfilling (Zulip recommends ≤ 1000).
const BACKFILL_PAGE: u32 = 1000;

/// How the poll loop behaves.
#[derive(Debug, Clone)]
pub struct IntakeSettings {
    /// What to register for.
    pub register: RegisterParams,
    /// First backoff delay.
    pub backoff_base: Duration,
    /// Largest backoff delay.
    pub backoff_cap: Duration,
    /// Consecutive failures after which the daemon reports itself degraded.
    pub max_retries: u32,
    /// Delete the queue on exit (dry-run, `--release-queue`).
    pub release_queue: bool,
    /// On the very first start, backfill messages after this id.
    pub backfill_since: Option<i64>,
    /// Resident memory, in bytes, above which polling pauses.
    pub memory_threshold: Option<u64>,
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
pub struct Intake<'a> {
    client: Client,
    pipeline: &'a Pipeline,
    settings: IntakeSettings,
    state: Arc<State>,
}

impl<'a> Intake<'a> {
    /// A poll loop feeding `pipeline`.
    pub fn new(
        client: Client,
        pipeline: &'a Pipeline,
        settings: IntakeSettings,
        state: Arc<State>,
    ) -> Intake<'a> {
        Intake {
            client,
            pipeline,
            settings,
            state,
        }
    }

    /// Polls until `token` is cancelled. `on_polling` is called once, when
    /// the first poll of a registered or resumed queue is under way (the
    /// moment systemd is told the daemon is ready).
    ///
    /// # Errors
    ///
    /// [`IntakeError`] when Zulip refuses the credentials or a request, or
    /// the database fails for good.
    pub async fn run(
        self,
        token: CancellationToken,
        on_polling: impl FnOnce(),
    ) -> Result<(), IntakeError> {
        let mut on_polling = Some(on_polling);
        let site = self.client.base_url().to_owned();
        let mut cursor = match self.pipeline.store() {
            Some(store) => store.load_cursor(self.pipeline.instance()).await?,
            None => None,
        };
        let mut anchor = cursor.as_ref().and_then(|c| c.last_message_id);
        if let Some(c) = &cursor {
            if c.site != site {
                tracing::warn!(stored_site = %c.site, site = %site, "The stored queue belongs to another Zulip site; registering a new one");
                cursor = None;
            } else {
                tracing::info!(queue_id = %c.queue_id, last_event_id = c.last_event_id, "Resuming the stored event queue");
                // The last committed poll of the previous run: what a gap
                // is measured from if the queue turns out to be gone.
                if let Some(store) = self.pipeline.store() {
                    if let Ok(Some(t)) = store.cursor_updated_at(self.pipeline.instance()).await {
                        self.state
                            .intake
                            .last_activity_ms
                            .store(t.timestamp_millis(), Ordering::Relaxed);
                    }
                }
                self.state.intake.set_queue_id(Some(c.queue_id.clone()));
            }
        }
        self.state.intake.polling.store(true, Ordering::Relaxed);
        let mut longpoll = crate::zulip::DEFAULT_LONGPOLL_TIMEOUT;
        let mut backoff = Backoff::new(self.settings.backoff_base, self.settings.backoff_cap);
        let mut first_registration = true;
        let result = loop {
            if token.is_cancelled() {
                break Ok(());
            }
            let Some(current) = cursor.clone() else {
                let reg = match self.register(&token, &mut backoff).await {
                    Ok(Some(reg)) => reg,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                };
                longpoll = reg.longpoll_timeout();
                // After a lost queue, or on a first start asked to reach
                // back, fetch the messages the new queue cannot deliver
                // (including those folded into the registration's state).
                let start_anchor = match (anchor, first_registration) {
                    (Some(a), _) => Some(a),
                    (None, true) => self.settings.backfill_since,
                    (None, false) => None,
                };
                first_registration = false;
                let c = Cursor {
                    site: site.clone(),
                    queue_id: reg.queue_id.clone(),
                    last_event_id: reg.last_event_id,
                    last_message_id: start_anchor.or(reg.max_message_id),
                };
                match self
                    .pipeline
                    .accept(
                        &Origin::Queue(c.queue_id.clone()),
                        Vec::new(),
                        Some(&c),
                        &token,
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(PipelineError::Cancelled) => break Ok(()),
                    Err(PipelineError::Store(e)) => break Err(e.into()),
                    Err(e @ PipelineError::DispatchStopped) => break Err(IntakeError::Dispatch(e)),
                }
                if let Some(from) = start_anchor {
                    match self.backfill(from, &c, &token).await {
                        Ok(newest) => anchor = newest.max(Some(from)),
                        Err(e) => break Err(e),
                    }
                }
                cursor = Some(c);
                continue;
            };
            if let Some(ready) = on_polling.take() {
                ready();
            }
            if let Some(threshold) = self.settings.memory_threshold {
                crate::intake::backpressure::wait_below(threshold, &self.state, &token).await;
            }
            let polled = tokio::select! {
                r = self.client.get_events(&current.queue_id, current.last_event_id, longpoll + POLL_MARGIN) => r,
                _ = wall_clock_jump() => {
                    tracing::warn!("The wall clock jumped (suspend/resume?); abandoning the poll and polling again");
                    continue;
                }
                _ = token.cancelled() => break Ok(()),
            };
            let items = match polled {
                Ok(items) => items,
                Err(e) => match e.action() {
                    ErrorAction::Reregister => {
                        self.note_queue_lost(&current, &e);
                        cursor = None;
                        continue;
                    }
                    ErrorAction::Wait(d) => {
                        self.note_rate_limit(d);
                        if sleep_or_cancel(d, &token).await {
                            break Ok(());
                        }
                        continue;
                    }
                    ErrorAction::Stop if e.is_auth() => break Err(IntakeError::Auth(e)),
                    ErrorAction::Stop => break Err(IntakeError::Rejected(e)),
                    ErrorAction::Retry => {
                        // A poll that outlived the long-poll timeout means a
                        // wedged connection, not a busy server: retry at once.
                        let delay = match e {
                            ZulipError::Timeout => Duration::ZERO,
                            _ => backoff.next_delay(),
                        };
                        self.note_failure(&e, delay);
                        if sleep_or_cancel(delay, &token).await {
                            break Ok(());
                        }
                        continue;
                    }
                },
            };
            self.note_poll_success();
            backoff.reset();
            // Commit a large page in chunks, acknowledging each as it is
            // committed: memory stays bounded by the page's bytes plus a few
            // chunks (the one committing, the next one, parsed meanwhile, and
            // the pipeline's hand-off to dispatch), and listener runs start
            // while later chunks are written.
            // An empty page is one empty chunk: its cursor may still move.
            let mut ranges: Vec<std::ops::Range<usize>> = (0..items.len())
                .step_by(INTAKE_CHUNK)
                .map(|s| s..(s + INTAKE_CHUNK).min(items.len()))
                .collect();
            if ranges.is_empty() {
                ranges.push(0..0);
            }
            let mut committed = current.clone();
            let mut stop = None;
            let mut following = ranges.iter().skip(1).cloned();
            let origin = Origin::Queue(current.queue_id.clone());
            let mut prepared = Some(prepare(
                &items,
                ranges[0].clone(),
                &committed,
                &current.queue_id,
            ));
            while let Some((events, next)) = prepared.take() {
                let range = following.next();
                if next == committed {
                    prepared = range.map(|r| prepare(&items, r, &committed, &current.queue_id));
                    continue;
                }
                let (result, after) = tokio::join!(
                    self.pipeline.accept(&origin, events, Some(&next), &token),
                    async { range.map(|r| prepare(&items, r, &next, &current.queue_id)) }
                );
                prepared = after;
                match result {
                    Ok(r) if r.stored > 0 => {
                        self.state
                            .intake
                            .last_event_ms
                            .store(now_ms(), Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(PipelineError::Cancelled) => {
                        stop = Some(Ok(()));
                        break;
                    }
                    Err(PipelineError::Store(e)) => {
                        stop = Some(Err(e.into()));
                        break;
                    }
                    Err(e @ PipelineError::DispatchStopped) => {
                        stop = Some(Err(IntakeError::Dispatch(e)));
                        break;
                    }
                }
                committed = next;
            }
            anchor = committed.last_message_id;
            cursor = Some(committed);
            if let Some(result) = stop {
                break result;
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

    async fn release(&self, queue_id: &str) {
        match tokio::time::timeout(Duration::from_secs(5), self.client.delete_queue(queue_id)).await
        {
            Ok(Ok(())) => tracing::info!(queue_id, "Released the event queue"),
            Ok(Err(e)) => tracing::warn!(queue_id, error = %e, "Could not release the event queue"),
            Err(_) => tracing::warn!(queue_id, "Releasing the event queue timed out"),
        }
    }

    fn note_poll_success(&self) {
        self.state.metrics.polls.inc();
        self.state
            .intake
            .last_activity_ms
            .store(now_ms(), Ordering::Relaxed);
        self.state
            .intake
            .consecutive_failures
            .store(0, Ordering::Relaxed);
        if self.state.intake.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!("Polling Zulip works again");
        }
    }

    fn note_queue_lost(&self, lost: &Cursor, e: &ZulipError) {
        let gap = self.state.last_poll_age().unwrap_or(0.0);
        self.state
            .metrics
            .poll_errors
            .with_label_values(&[e.reason()])
            .inc();
        self.state.metrics.queue_gaps.inc();
        self.state.metrics.last_gap_seconds.set(gap);
        self.state.intake.set_queue_id(None);
        tracing::warn!(queue_id = %lost.queue_id, last_event_id = lost.last_event_id, gap_seconds = gap, error = %e,
            "The event queue is gone: events other than messages since the last poll are lost; registering a new queue and backfilling missed messages");
    }

    fn note_rate_limit(&self, d: Duration) {
        self.state
            .metrics
            .poll_errors
            .with_label_values(&["rate_limited"])
            .inc();
        self.state.metrics.rate_limit_waits.inc();
        self.state
            .metrics
            .rate_limit_wait_seconds
            .inc_by(d.as_secs_f64());
        tracing::info!(
            wait_ms = d.as_millis() as u64,
            "Zulip rate limit hit; waiting exactly as asked"
        );
    }

    fn note_failure(&self, e: &ZulipError, delay: Duration) {
        self.state
            .metrics
            .poll_errors
            .with_label_values(&[e.reason()])
            .inc();
        let n = self
            .state
            .intake
            .consecutive_failures
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        if n >= self.settings.max_retries {
            if !self.state.intake.degraded.swap(true, Ordering::Relaxed) {
                tracing::error!(failures = n, error = %e, "Zulip requests keep failing; reporting degraded and still retrying");
            }
        } else {
            tracing::warn!(failures = n, error = %e, retry_in_ms = delay.as_millis() as u64, "A request to Zulip failed; retrying");
        }
    }

    fn note_registered(&self, reg: &Registration) {
        self.state.metrics.registrations.inc();
        self.state
            .intake
            .last_activity_ms
            .store(now_ms(), Ordering::Relaxed);
        self.state
            .intake
            .longpoll_secs
            .store(reg.longpoll_timeout().as_secs(), Ordering::Relaxed);
        self.state.intake.set_queue_id(Some(reg.queue_id.clone()));
        tracing::info!(queue_id = %reg.queue_id, last_event_id = reg.last_event_id,
            zulip_version = %reg.zulip_version, feature_level = reg.zulip_feature_level,
            longpoll_timeout_s = reg.longpoll_timeout().as_secs(), "Registered an event queue");
    }

    /// Registers a queue, retrying transient failures. `None` on shutdown.
    async fn register(
        &self,
        token: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<Option<Registration>, IntakeError> {
        loop {
            let attempt = tokio::select! {
                r = self.client.register(&self.settings.register) => r,
                _ = token.cancelled() => return Ok(None),
            };
            let delay = match attempt {
                Ok(reg) => {
                    backoff.reset();
                    self.note_registered(&reg);
                    return Ok(Some(reg));
                }
                Err(e) if e.is_auth() => return Err(IntakeError::Auth(e)),
                Err(e) => match e.action() {
                    ErrorAction::Wait(d) => {
                        self.note_rate_limit(d);
                        d
                    }
                    ErrorAction::Retry | ErrorAction::Reregister => {
                        let d = backoff.next_delay();
                        self.note_failure(&e, d);
                        d
                    }
                    ErrorAction::Stop => return Err(IntakeError::Rejected(e)),
                },
            };
            if sleep_or_cancel(delay, token).await {
                return Ok(None);
            }
        }
    }

    /// Fetches the messages after `from` with `GET /messages` and feeds them
    /// through the pipeline as backfilled message events. Returns the newest
    /// message id seen.
    async fn backfill(
        &self,
        from: i64,
        cursor: &Cursor,
        token: &CancellationToken,
    ) -> Result<Option<i64>, IntakeError> {
        let reg = &self.settings.register;
        let mut narrows = vec![reg.narrow.clone()];
        if reg.all_public_streams && reg.narrow.is_empty() {
            narrows.push(vec![("channels".to_owned(), "public".to_owned())]);
        }
        let mut newest = None;
        let mut total = 0u64;
        for narrow in &narrows {
            let mut anchor = from;
            let mut backoff = Backoff::new(self.settings.backoff_base, self.settings.backoff_cap);
            loop {
                let page = tokio::select! {
                    r = self.client.messages_after(anchor, BACKFILL_PAGE, narrow, reg.apply_markdown) => r,
                    _ = token.cancelled() => return Ok(newest),
                };
                let page = match page {
                    Ok(p) => p,
                    Err(e) if e.is_auth() => return Err(IntakeError::Auth(e)),
                    Err(e) => {
                        let d = match e.action() {
                            ErrorAction::Wait(d) => d,
                            ErrorAction::Stop => {
                                tracing::error!(error = %e, "Backfill refused by Zulip; messages in the gap are not recovered");
                                break;
                            }
                            _ => backoff.next_delay(),
                        };
                        if sleep_or_cancel(d, token).await {
                            return Ok(newest);
                        }
                        continue;
                    }
                };
                let mut events = Vec::with_capacity(page.messages.len());
                for m in &page.messages {
                    match Event::backfilled_message(m) {
                        Ok(e) => events.push(e),
                        Err(err) => {
                            tracing::warn!(error = %err, "Skipping a malformed backfilled message")
                        }
                    }
                }
                let last = events.iter().filter_map(Event::message_id).max();
                let mut c = cursor.clone();
                c.last_message_id = c.last_message_id.max(last);
                let n = events.len() as u64;
                match self
                    .pipeline
                    .accept(&Origin::Backfill, events, Some(&c), token)
                    .await
                {
                    Ok(r) => total += r.stored as u64,
                    Err(PipelineError::Cancelled) => return Ok(newest),
                    Err(PipelineError::Store(e)) => return Err(e.into()),
                    Err(e @ PipelineError::DispatchStopped) => {
                        return Err(IntakeError::Dispatch(e))
                    }
                }
                newest = newest.max(last);
                match last {
                    Some(l) if !page.found_newest && n > 0 => anchor = l,
                    _ => break,
                }
            }
        }
        self.state.metrics.backfilled_messages.inc_by(total);
        tracing::info!(
            after_message_id = from,
            backfilled = total,
            "Backfilled missed messages; other event types in the gap cannot be recovered"
        );
        Ok(newest)
    }
}

/// Parses the events of `range` of a page and the cursor that committing
/// them moves to (from `base`). Events without an id are reported and left
/// out: they cannot be acknowledged or stored.
fn prepare(
    items: &crate::zulip::EventsPage,
    range: std::ops::Range<usize>,
    base: &Cursor,
    queue_id: &str,
) -> (Vec<Event>, Cursor) {
    let mut next = base.clone();
    let mut events = Vec::with_capacity(range.len());
    for item in items.chunk(range) {
        match item {
            Ok(e) => {
                next.last_event_id = next.last_event_id.max(e.id());
                if let Some(m) = e.message_id() {
                    next.last_message_id = next.last_message_id.max(Some(m));
                }
                events.push(e);
            }
            Err(raw) => tracing::error!(queue_id, event = %raw,
                "Zulip sent an event without an id; it cannot be stored"),
        }
    }
    (events, next)
}

/// Resolves when the wall clock moves more than 10 s away from the
/// monotonic clock, as after a suspend and resume: the monotonic clock (and
/// with it every tokio timer) stood still while the machine slept, and the
/// poll's TCP connection is most likely dead.
async fn wall_clock_jump() {
    let check = Duration::from_secs(5);
    let mut wall = std::time::SystemTime::now();
    let mut mono = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(check).await;
        let wall_now = std::time::SystemTime::now();
        let mono_now = tokio::time::Instant::now();
        let wall_elapsed = wall_now
            .duration_since(wall)
            .unwrap_or_default()
            .as_secs_f64();
        let mono_elapsed = mono_now.duration_since(mono).as_secs_f64();
        if (wall_elapsed - mono_elapsed).abs() > 10.0 {
            return;
        }
        wall = wall_now;
        mono = mono_now;
    }
}

/// Sleeps for `d`; true when `token` was cancelled first.
async fn sleep_or_cancel(d: Duration, token: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = token.cancelled() => true,
    }
}
