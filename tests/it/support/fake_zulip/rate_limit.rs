//! The bot's rate limit, as Zulip's: a budget of `requests` per `window`
//! (Zulip's default is 200 a minute), charged for every authenticated
//! request and reported on every answer in `X-RateLimit-Limit`,
//! `X-RateLimit-Remaining` and `X-RateLimit-Reset` (an absolute Unix time
//! in whole seconds); once it is spent, 429 `RATE_LIMIT_HIT` with a float
//! `Retry-After` header and body field (`zerver/lib/rate_limiter.py`,
//! `zerver/middleware.py`). Faulted requests are not charged.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue};

/// How the budget refills: Zulip has two back ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateLimitModel {
    /// Tornado's in-memory limiter, which serves `GET /events`: a leaky
    /// bucket draining `requests / window` per second; the reset is when it
    /// is empty.
    LeakyBucket,
    /// Django's Redis limiter: the requests of the last `window`; the reset
    /// is a window after the newest one.
    SlidingWindow,
}

/// A per-user rate limit.
#[derive(Clone, Copy, Debug)]
pub struct RateLimit {
    /// Requests per window.
    pub requests: u32,
    /// The window.
    pub window: Duration,
    /// How the budget refills.
    pub model: RateLimitModel,
}

impl Default for RateLimit {
    /// Zulip's default: 200 requests a minute, as Tornado counts polls.
    fn default() -> Self {
        RateLimit {
            requests: 200,
            window: Duration::from_secs(60),
            model: RateLimitModel::LeakyBucket,
        }
    }
}

/// What charging one request found.
#[derive(Clone, Copy, Debug)]
pub(super) struct Charge {
    /// Over the limit: answer 429 after this many seconds.
    pub(super) retry_after: Option<f64>,
    /// The headers' values.
    pub(super) limit: u32,
    pub(super) remaining: u32,
    pub(super) reset: f64,
}

impl Charge {
    /// Adds the `X-RateLimit-*` headers.
    pub(super) fn write(&self, headers: &mut HeaderMap) {
        let mut set = |name: &'static str, v: String| {
            if let Ok(v) = HeaderValue::from_str(&v) {
                headers.insert(name, v);
            }
        };
        set("x-ratelimit-limit", self.limit.to_string());
        set("x-ratelimit-remaining", self.remaining.to_string());
        set("x-ratelimit-reset", (self.reset as i64).to_string());
    }
}

/// The bot's spent budget.
#[derive(Debug, Default)]
pub(super) struct Budget {
    /// Leaky bucket: when it is empty again (Unix seconds).
    empty_at: f64,
    /// Sliding window: the times of the requests in the window.
    calls: VecDeque<f64>,
}

impl Budget {
    /// Charges one request arriving now under `limit`.
    pub(super) fn charge(&mut self, limit: &RateLimit) -> Charge {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let (max, window) = (f64::from(limit.requests.max(1)), limit.window.as_secs_f64());
        let charge = |retry_after, remaining: f64, reset| Charge {
            retry_after,
            limit: limit.requests,
            remaining: remaining.max(0.0) as u32,
            reset,
        };
        match limit.model {
            RateLimitModel::LeakyBucket => {
                // Tornado's `need_to_limit` and `get_api_calls_left`.
                let new_empty = self.empty_at.max(now) + window / max;
                if new_empty > now + window {
                    let free = new_empty - window - now;
                    return charge(Some(free), 0.0, now + free);
                }
                self.empty_at = new_empty;
                let remaining = ((now + window - new_empty) * max / window).floor();
                charge(None, remaining, new_empty)
            }
            RateLimitModel::SlidingWindow => {
                // Redis's `is_ratelimited`, `incr_ratelimit`, `get_api_calls_left`.
                while self.calls.front().is_some_and(|t| *t <= now - window) {
                    self.calls.pop_front();
                }
                if self.calls.len() as f64 >= max {
                    let oldest = self.calls[self.calls.len() - max as usize];
                    let free = (oldest + window - now).max(0.0);
                    return charge(Some(free), 0.0, now + free);
                }
                self.calls.push_back(now);
                let remaining = max - self.calls.len() as f64;
                charge(None, remaining, now + window)
            }
        }
    }
}
