//! [`RateBudget`]: what Zulip says of the account's rate limit on every
//! response — `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
//! `X-RateLimit-Reset`, the last an absolute Unix time in whole seconds
//! (`zerver/middleware.py`, `RateLimitMiddleware`).
//!
//! The reset time is turned into a duration against the response's own
//! `Date` header when it has one, so a local clock that is off does not
//! make the daemon wait too long or too little; the duration is then held
//! against the monotonic clock.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, DATE};

/// Longest wait a reset time may ask for (a guard against absurd headers).
const MAX_UNTIL_RESET: Duration = Duration::from_secs(3600);

/// The rate-limit budget one response reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateBudget {
    /// Requests allowed per window (`X-RateLimit-Limit`).
    pub(crate) limit: u32,
    /// Requests left before Zulip answers 429 (`X-RateLimit-Remaining`).
    pub(crate) remaining: u32,
    /// How long after `observed` the budget is whole again (`X-RateLimit-Reset`).
    pub(crate) until_reset: Duration,
    /// When the response arrived (monotonic).
    pub(crate) observed: tokio::time::Instant,
}

impl RateBudget {
    /// The budget in `headers`, received at `observed` when the local wall
    /// clock read `local_now`; `None` when Zulip sent no (or garbled)
    /// rate-limit headers.
    pub(crate) fn from_headers(
        headers: &HeaderMap,
        local_now: SystemTime,
        observed: tokio::time::Instant,
    ) -> Option<RateBudget> {
        let number =
            |name: &str| -> Option<i64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
        let remaining = number("x-ratelimit-remaining")?.clamp(0, i64::from(u32::MAX)) as u32;
        let limit = number("x-ratelimit-limit")
            .map(|l| l.clamp(1, i64::from(u32::MAX)) as u32)
            .unwrap_or(remaining.max(1));
        let reset = number("x-ratelimit-reset")?;
        // The server's "now": its Date header (whole seconds, like the
        // reset time), else the local clock.
        let server_now = headers
            .get(DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v.trim()).ok())
            .map(|d| d.timestamp() as f64)
            .unwrap_or_else(|| unix_seconds(local_now));
        let secs = (reset as f64 - server_now).clamp(0.0, MAX_UNTIL_RESET.as_secs_f64());
        Some(RateBudget {
            limit,
            remaining: remaining.min(limit),
            until_reset: Duration::from_secs_f64(secs),
            observed,
        })
    }

    /// When the budget is whole again.
    pub(crate) fn reset_at(&self) -> tokio::time::Instant {
        self.observed + self.until_reset
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_reset_time_is_read_against_the_servers_date() {
        // The local clock is an hour fast; the server's Date says 10 s to go.
        let local = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600 + 3600);
        let now = tokio::time::Instant::now();
        let h = headers(&[
            ("x-ratelimit-limit", "200"),
            ("x-ratelimit-remaining", "17"),
            ("x-ratelimit-reset", "1767225610"),
            ("date", "Thu, 01 Jan 2026 00:00:00 GMT"),
        ]);
        let b = RateBudget::from_headers(&h, local, now).unwrap();
        assert_eq!((b.limit, b.remaining), (200, 17));
        assert_eq!(b.until_reset, Duration::from_secs(10));
        assert_eq!(b.reset_at(), now + Duration::from_secs(10));
    }

    #[test]
    fn without_a_date_the_local_clock_is_used_and_a_past_reset_is_now() {
        let local = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let now = tokio::time::Instant::now();
        let ahead = headers(&[
            ("x-ratelimit-remaining", "3"),
            ("x-ratelimit-reset", "1030"),
        ]);
        let b = RateBudget::from_headers(&ahead, local, now).unwrap();
        assert_eq!(b.until_reset, Duration::from_secs(30));
        assert_eq!(b.limit, 3, "no limit header: at least what remains");
        let past = headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "900")]);
        let b = RateBudget::from_headers(&past, local, now).unwrap();
        assert_eq!(b.until_reset, Duration::ZERO);
    }

    #[test]
    fn a_response_without_the_headers_has_no_budget() {
        let h = headers(&[("x-ratelimit-limit", "200")]);
        assert!(
            RateBudget::from_headers(&h, SystemTime::now(), tokio::time::Instant::now()).is_none()
        );
        let garbled = headers(&[
            ("x-ratelimit-remaining", "many"),
            ("x-ratelimit-reset", "1030"),
        ]);
        assert!(
            RateBudget::from_headers(&garbled, SystemTime::now(), tokio::time::Instant::now())
                .is_none()
        );
    }
}
