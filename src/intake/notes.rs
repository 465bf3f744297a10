//! One function per notable happening of the poll loop, each writing its
//! log line and its metric together (a poll that worked, a lost queue, a
//! failed request, a registered queue, a wake-up). Rate-limit waits are
//! noted by `pacing`'s episodes.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::poller::Intake;
use super::wakeup::Jump;
use crate::backoff::Backoff;
use crate::state::now_ms;
use crate::store::Cursor;
use crate::zulip::{Registration, ZulipError};

impl Intake<'_> {
    pub(super) fn note_poll_success(&self) {
        self.state.metrics.polls.inc();
        self.state
            .intake
            .last_activity_ms
            .store(now_ms(), Ordering::Relaxed);
        if self.state.intake.clear_failures() {
            tracing::info!("Polling Zulip works again");
        }
    }

    pub(super) fn note_queue_lost(&self, lost: &Cursor, e: &ZulipError) {
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

    /// A request begun at `started` failed and is retried after `delay`.
    /// Degraded once requests have been failing for `degraded_after`: time,
    /// not a count, so a Tornado restart of a few seconds logs no error.
    pub(super) fn note_failure(&self, e: &ZulipError, delay: Duration, started: Instant) {
        self.state
            .metrics
            .poll_errors
            .with_label_values(&[e.reason()])
            .inc();
        let (n, failing_for) = self.state.intake.note_failure(started);
        if failing_for >= self.settings.degraded_after {
            if !self.state.intake.degraded.swap(true, Ordering::Relaxed) {
                tracing::error!(failures = n, failing_for_s = failing_for.as_secs(), error = %e,
                    "Zulip requests keep failing; reporting degraded and still retrying");
            }
        } else {
            tracing::warn!(failures = n, error = %e, retry_in_ms = delay.as_millis() as u64, "A request to Zulip failed; retrying");
        }
    }

    /// A suspend or clock jump: the poll or wait in flight was abandoned;
    /// the backoff, the failure streak and the rate-limit budget (all from
    /// before the jump) are forgotten.
    pub(super) fn note_wake_up(&self, jump: Jump, backoff: &mut Backoff) {
        self.state.metrics.clock_jumps.inc();
        backoff.reset();
        self.client.forget_poll_budget();
        self.state.intake.clear_failures();
        match jump {
            Jump::Wall(drift) => tracing::warn!(wall_clock_drift_s = drift,
                "The wall clock jumped (suspend and resume, or the clock was set); polling again at once with the backoff reset"),
            Jump::LateTick(gap) => tracing::warn!(stalled_s = gap.as_secs_f64(),
                "The process stood still (suspend, or a paused virtual machine); polling again at once with the backoff reset"),
        }
    }

    pub(super) fn note_registered(&self, reg: &Registration) {
        self.state.metrics.registrations.inc();
        if self.state.intake.clear_failures() {
            tracing::info!("Zulip answers again");
        }
        self.state
            .intake
            .last_activity_ms
            .store(now_ms(), Ordering::Relaxed);
        self.state
            .intake
            .longpoll_secs
            .store(reg.longpoll_timeout().as_secs(), Ordering::Relaxed);
        self.state.intake.set_queue_id(Some(reg.queue_id.clone()));
        let lifetime = reg.granted_lifetime_secs();
        self.state
            .metrics
            .queue_lifetime_seconds
            .set(i64::try_from(lifetime).unwrap_or(i64::MAX));
        tracing::info!(queue_id = %reg.queue_id, last_event_id = reg.last_event_id,
            zulip_version = %reg.zulip_version, feature_level = reg.zulip_feature_level,
            longpoll_timeout_s = reg.longpoll_timeout().as_secs(), lifetime_s = lifetime,
            "Registered an event queue");
        if let Some((asked, granted)) = reg.shortened_lifetime() {
            tracing::warn!(asked_s = asked, granted_s = granted, "Zulip keeps the event queue for less time than asked (queue_lifespan_secs): an outage longer than that loses the queue, and the events other than messages with it");
        }
    }
}
