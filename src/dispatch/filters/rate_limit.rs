//! [`RateLimiter`]: `[security] rate_limit_per_user` — per-user fixed
//! one-minute windows; users idle for a window are forgotten, and each
//! window over the limit is logged once when it starts dropping and once
//! when it ends.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};

/// A fixed one-minute window of one user's events.
#[derive(Debug)]
pub(super) struct Window {
    started: DateTime<Utc>,
    counted: u32,
    dropped: u64,
}

/// Per-user fixed windows; users idle for a window are forgotten.
#[derive(Debug)]
pub(super) struct RateLimiter {
    limit: u32,
    pub(super) windows: HashMap<i64, Window>,
    last_sweep: Option<DateTime<Utc>>,
}

/// The rate limit's window.
const RATE_WINDOW: TimeDelta = TimeDelta::seconds(60);

impl RateLimiter {
    /// A limiter that admits `limit` events per user per minute.
    pub(super) fn new(limit: u32) -> RateLimiter {
        RateLimiter {
            limit,
            windows: HashMap::new(),
            last_sweep: None,
        }
    }

    /// Counts one event of `user` at `now`; false when it is over the limit.
    pub(super) fn admit(&mut self, user: i64, now: DateTime<Utc>) -> bool {
        self.sweep(now);
        let w = self.windows.entry(user).or_insert(Window {
            started: now,
            counted: 0,
            dropped: 0,
        });
        if now - w.started >= RATE_WINDOW || now < w.started {
            report_dropped(user, w);
            *w = Window {
                started: now,
                counted: 0,
                dropped: 0,
            };
        }
        if w.counted < self.limit {
            w.counted += 1;
            return true;
        }
        if w.dropped == 0 {
            tracing::warn!(
                user_id = user,
                limit_per_minute = self.limit,
                "A user exceeded security.rate_limit_per_user; skipping their events until the minute is over"
            );
        }
        w.dropped += 1;
        false
    }

    /// Forgets, at most once a minute, the windows that are over.
    fn sweep(&mut self, now: DateTime<Utc>) {
        if self
            .last_sweep
            .is_some_and(|t| now - t < RATE_WINDOW && now >= t)
        {
            return;
        }
        self.last_sweep = Some(now);
        self.windows.retain(|user, w| {
            let live = now - w.started < RATE_WINDOW && now >= w.started;
            if !live {
                report_dropped(*user, w);
            }
            live
        });
    }
}

fn report_dropped(user: i64, w: &Window) {
    if w.dropped > 0 {
        tracing::info!(
            user_id = user,
            skipped = w.dropped,
            "Rate limit window over; events from this user skipped in it"
        );
    }
}
