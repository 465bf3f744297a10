//! Pacing under Zulip's rate limit. Every `GET /events` answer says how
//! many requests the account has left and when its budget is whole again
//! (`X-RateLimit-Remaining`, `X-RateLimit-Reset`). While plenty remain the
//! loop polls again at once; once fewer than [`low_water`] remain it waits
//! before each poll, spreading what is left evenly until the reset, so
//! events pile up in Zulip's queue and arrive in larger batches instead of
//! the loop running into 429s. No poll waits longer than the reset (plus
//! a second when nothing at all is left: the reset time is whole seconds).
//!
//! Waiting is logged as an episode: one line when it starts, one when it
//! ends with how many waits (paced, or a 429's `Retry-After`) it took;
//! each wait is counted in `rate_limit_waits_total{reason}`.

use std::time::Duration;

use tokio::time::Instant;

use crate::state::State;
use crate::zulip::RateBudget;

/// The smallest low-water mark, whatever the limit.
const LOW_WATER_MIN: u32 = 5;
/// An episode ends once polls went out this long without waiting (Zulip's
/// default window is a minute).
const QUIET: Duration = Duration::from_secs(60);
/// Added to the reset when nothing is left: the reset time is whole seconds.
const RESET_MARGIN: Duration = Duration::from_secs(1);

/// Below this many remaining requests, polls are spread until the reset:
/// a tenth of the limit, at least [`LOW_WATER_MIN`] (20 of Zulip's default
/// 200 a minute).
pub(crate) fn low_water(limit: u32) -> u32 {
    limit.div_ceil(10).max(LOW_WATER_MIN).min(limit)
}

/// How long to wait, from `now`, before the next poll, given the budget
/// the last answer reported; `None` to poll at once.
pub(crate) fn delay(budget: &RateBudget, now: Instant) -> Option<Duration> {
    if budget.remaining >= low_water(budget.limit) {
        return None;
    }
    let spacing = match budget.remaining {
        0 => budget.until_reset + RESET_MARGIN,
        r => budget.until_reset / (r + 1),
    };
    let due = budget.observed + spacing;
    due.checked_duration_since(now).filter(|d| !d.is_zero())
}

/// Why the loop waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitReason {
    /// The budget ran low: a poll was spread out.
    Paced,
    /// Zulip answered 429 and asked for this wait (`Retry-After`).
    RetryAfter,
}

impl WaitReason {
    fn label(self) -> &'static str {
        match self {
            WaitReason::Paced => "paced",
            WaitReason::RetryAfter => "retry_after",
        }
    }
}

/// One run of waits, from the first to [`QUIET`] after the last.
#[derive(Debug)]
struct Episode {
    started: Instant,
    last_wait: Instant,
    waits: u64,
    rate_limited: u64,
    waited: Duration,
}

/// The current rate-limit episode, if any: what writes the log lines and
/// the metrics of each wait.
#[derive(Debug, Default)]
pub(crate) struct RateLimitEpisodes {
    current: Option<Episode>,
}

impl RateLimitEpisodes {
    /// Counts a wait of `d` for `reason`; logs the episode's start when it
    /// is the first wait of one.
    pub(crate) fn waited(
        &mut self,
        state: &State,
        reason: WaitReason,
        d: Duration,
        budget: Option<&RateBudget>,
    ) {
        let m = &state.metrics;
        let label = [reason.label()];
        m.rate_limit_waits.with_label_values(&label).inc();
        m.rate_limit_wait_seconds
            .with_label_values(&label)
            .inc_by(d.as_secs_f64());
        if reason == WaitReason::RetryAfter {
            m.poll_errors.with_label_values(&["rate_limited"]).inc();
        }
        let now = Instant::now();
        let episode = self.current.get_or_insert_with(|| {
            let (remaining, limit, reset_s) = budget.map_or((None, None, None), |b| {
                let reset = b.reset_at().saturating_duration_since(now).as_secs_f64();
                (Some(b.remaining), Some(b.limit), Some(reset))
            });
            match reason {
                WaitReason::Paced => tracing::info!(
                    remaining, limit, reset_in_s = reset_s, wait_ms = d.as_millis() as u64,
                    "Zulip's rate-limit budget is low; spacing polls out until it resets (events arrive in larger batches)"
                ),
                WaitReason::RetryAfter => tracing::warn!(
                    wait_ms = d.as_millis() as u64,
                    "Zulip's rate limit was hit (HTTP 429); waiting as asked, then spacing polls out"
                ),
            }
            Episode {
                started: now,
                last_wait: now,
                waits: 0,
                rate_limited: 0,
                waited: Duration::ZERO,
            }
        });
        episode.last_wait = now;
        episode.waits += 1;
        episode.waited += d;
        if reason == WaitReason::RetryAfter {
            episode.rate_limited += 1;
        }
    }

    /// A request goes out without waiting: ends the episode, with its
    /// summary, once [`QUIET`] has passed since its last wait.
    pub(crate) fn clear(&mut self) {
        let now = Instant::now();
        let Some(e) = &self.current else { return };
        if now.duration_since(e.last_wait) < QUIET {
            return;
        }
        tracing::info!(
            waits = e.waits,
            rate_limited = e.rate_limited,
            waited_s = e.waited.as_secs_f64(),
            lasted_s = e.last_wait.duration_since(e.started).as_secs_f64(),
            "Zulip's rate limit no longer slows polling"
        );
        self.current = None;
    }

    /// Whether an episode is under way.
    #[cfg(test)]
    pub(crate) fn active(&self) -> bool {
        self.current.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: u32, remaining: u32, until_reset_s: u64, observed: Instant) -> RateBudget {
        RateBudget {
            limit,
            remaining,
            until_reset: Duration::from_secs(until_reset_s),
            observed,
        }
    }

    #[test]
    fn the_low_water_mark_is_a_tenth_of_the_limit_and_at_least_five() {
        assert_eq!(low_water(200), 20);
        assert_eq!(low_water(1000), 100);
        assert_eq!(low_water(20), 5);
        assert_eq!(low_water(3), 3);
    }

    #[test]
    fn plenty_left_means_no_wait() {
        let now = Instant::now();
        assert_eq!(delay(&budget(200, 20, 50, now), now), None);
        assert_eq!(delay(&budget(200, 199, 1, now), now), None);
    }

    #[test]
    fn a_low_budget_spreads_what_is_left_until_the_reset() {
        let now = Instant::now();
        // 9 left, 50 s to the reset: one poll every 5 s.
        assert_eq!(
            delay(&budget(200, 9, 50, now), now),
            Some(Duration::from_secs(5))
        );
        // Time spent committing since the answer counts.
        assert_eq!(
            delay(&budget(200, 9, 50, now), now + Duration::from_secs(2)),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            delay(&budget(200, 9, 50, now), now + Duration::from_secs(6)),
            None
        );
    }

    #[test]
    fn nothing_left_waits_for_the_reset_and_a_second() {
        let now = Instant::now();
        assert_eq!(
            delay(&budget(200, 0, 30, now), now),
            Some(Duration::from_secs(31))
        );
        assert_eq!(
            delay(&budget(200, 0, 0, now), now),
            Some(Duration::from_secs(1))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_episode_is_counted_per_wait_and_ends_after_a_quiet_minute() {
        let state = State::default();
        let mut episodes = RateLimitEpisodes::default();
        let b = budget(200, 3, 40, Instant::now());
        episodes.waited(&state, WaitReason::Paced, Duration::from_secs(10), Some(&b));
        episodes.waited(
            &state,
            WaitReason::RetryAfter,
            Duration::from_millis(500),
            None,
        );
        episodes.waited(&state, WaitReason::Paced, Duration::from_secs(10), Some(&b));
        let m = &state.metrics;
        assert_eq!(m.rate_limit_waits.with_label_values(&["paced"]).get(), 2);
        assert_eq!(
            m.rate_limit_waits.with_label_values(&["retry_after"]).get(),
            1
        );
        assert_eq!(m.poll_errors.with_label_values(&["rate_limited"]).get(), 1);
        assert!(
            (m.rate_limit_wait_seconds
                .with_label_values(&["paced"])
                .get()
                - 20.0)
                .abs()
                < 1e-9
        );

        tokio::time::advance(Duration::from_secs(30)).await;
        episodes.clear();
        assert!(
            episodes.active(),
            "30 s without a wait: still the same episode"
        );
        tokio::time::advance(Duration::from_secs(31)).await;
        episodes.clear();
        assert!(!episodes.active(), "a quiet minute ends it");
    }
}
