//! `[error_handling]`: the circuit breaker, when a failing listener is
//! disabled, where notifications about it are sent, and how long requests
//! to Zulip may fail before `/health` reports the daemon degraded.

use std::time::Duration;

use toml::{Table, Value};

use super::reader::Reader;

/// The section's name.
pub(super) const SECTION: &str = "error_handling";

/// The keys of `[error_handling]`.
pub(super) const KNOWN: &[&str] = &[
    "max_failures_per_hour",
    "auto_disable_threshold",
    "circuit_breaker_threshold",
    "circuit_breaker_cooldown",
    "notification_webhook",
    "degraded_after",
    "deadletter_retention_days",
];

/// Longest dead-letter retention, in days (a typo guard).
const MAX_RETENTION_DAYS: i64 = 36_500;

/// Highest failure count a threshold may name (a typo guard).
const MAX_COUNT: i64 = 1_000_000;

/// `[error_handling]`.
#[derive(Debug, Clone)]
pub struct ErrorHandlingConfig {
    /// Failures of one listener within an hour that disable it (0: never).
    pub max_failures_per_hour: u32,
    /// Consecutive failures that disable a listener (0: never).
    pub auto_disable_threshold: u32,
    /// Consecutive failures that open a listener's circuit (0: no breaker).
    pub circuit_breaker_threshold: u32,
    /// How long an open circuit skips runs before a trial run.
    pub circuit_breaker_cooldown: Duration,
    /// Where JSON notifications are POSTed (circuit opened, listener disabled, dead letter).
    pub notification_webhook: Option<String>,
    /// How long requests to Zulip may keep failing, without one succeeding,
    /// before the daemon reports itself degraded (and logs an error).
    pub degraded_after: Duration,
    /// Days a dead letter is kept after its last failure, whatever its
    /// status, by `cleanup` and the daemon's daily retention (0: until
    /// `deadletters delete`, or until its inbox row is cleaned up).
    pub deadletter_retention_days: u32,
}

impl Default for ErrorHandlingConfig {
    fn default() -> Self {
        ErrorHandlingConfig {
            max_failures_per_hour: 0,
            auto_disable_threshold: 0,
            circuit_breaker_threshold: 5,
            circuit_breaker_cooldown: Duration::from_secs(300),
            notification_webhook: None,
            degraded_after: Duration::from_secs(30),
            deadletter_retention_days: 0,
        }
    }
}

/// Reads `[error_handling]` into `out`.
pub(super) fn read(r: &mut Reader, t: &Table, out: &mut ErrorHandlingConfig) {
    for (k, v) in t {
        let key = r.key(k);
        let count = match k.as_str() {
            "max_failures_per_hour" => &mut out.max_failures_per_hour,
            "auto_disable_threshold" => &mut out.auto_disable_threshold,
            "circuit_breaker_threshold" => &mut out.circuit_breaker_threshold,
            "circuit_breaker_cooldown" => {
                if let Some(d) = r.seconds(&key, v) {
                    out.circuit_breaker_cooldown = d;
                }
                continue;
            }
            "degraded_after" => {
                if let Some(d) = r.seconds(&key, v) {
                    out.degraded_after = d;
                }
                continue;
            }
            "notification_webhook" => {
                read_webhook(r, &key, v, out);
                continue;
            }
            "deadletter_retention_days" => {
                match v {
                    Value::Integer(i) if (0..=MAX_RETENTION_DAYS).contains(i) => {
                        out.deadletter_retention_days = *i as u32
                    }
                    _ => r.problem(format!(
                        "`{key}` must be a number of days from 0 (keep) to {MAX_RETENTION_DAYS}, got `{v}`"
                    )),
                }
                continue;
            }
            _ => {
                r.unknown_key(k);
                continue;
            }
        };
        match v {
            Value::Integer(i) if (0..=MAX_COUNT).contains(i) => *count = *i as u32,
            _ => r.problem(format!(
                "`{key}` must be an integer from 0 (off) to 1000000, got `{v}`"
            )),
        }
    }
}

fn read_webhook(r: &mut Reader, key: &str, v: &Value, out: &mut ErrorHandlingConfig) {
    match r.string(key, v) {
        Some(u) if u.is_empty() => out.notification_webhook = None,
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
            out.notification_webhook = Some(u)
        }
        Some(u) => r.problem(format!(
            "`{key}` must be an http:// or https:// URL, got `{u}`"
        )),
        None => {}
    }
}
