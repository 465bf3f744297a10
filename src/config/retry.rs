//! `[listeners.NAME.retry]`: one listener instance's retry policy
//! (`max_attempts`, `initial_delay`, `backoff_coefficient`, `max_delay`),
//! each key defaulting to what `[queue]` says.

use std::time::Duration;

use toml::{Table, Value};

use super::queue::QueueConfig;
use super::reader::Reader;

/// The keys of a `retry` table.
pub(super) const KNOWN: &[&str] = &[
    "max_attempts",
    "initial_delay",
    "backoff_coefficient",
    "max_delay",
];

/// Default growth of the delay between tries.
pub(crate) const DEFAULT_BACKOFF_COEFFICIENT: f64 = 2.0;

/// Default upper bound of the delay between tries.
pub(crate) const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(600);

/// How often, and how far apart, a failed run is tried again. The delay
/// before try `n + 1` is `initial_delay × backoff_coefficient^(n - 1)`,
/// capped at `max_delay`, then jittered ±50%.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryConfig {
    /// Tries in all, the first included (1: no retry).
    pub max_attempts: u32,
    /// Delay before the second try.
    pub initial_delay: Duration,
    /// Factor from one delay to the next (1: constant).
    pub backoff_coefficient: f64,
    /// Longest delay between two tries.
    pub max_delay: Duration,
}

impl RetryConfig {
    /// The policy `[queue]` gives every instance that sets none.
    pub fn from_queue(q: &QueueConfig) -> RetryConfig {
        RetryConfig {
            max_attempts: q.max_retries + 1,
            initial_delay: q.retry_delay,
            backoff_coefficient: DEFAULT_BACKOFF_COEFFICIENT,
            max_delay: DEFAULT_MAX_DELAY.max(q.retry_delay),
        }
    }
}

/// Reads `[listeners.NAME.retry]` over `defaults`; `None` when no key is
/// set (the instance follows `[queue]`).
pub(super) fn read(r: &mut Reader, name: &str, v: &Value) -> Option<PartialRetry> {
    let Some(t) = v.as_table() else {
        return r.wrong(&format!("listeners.{name}.retry"), v, "a table");
    };
    Some(read_table(r, name, t))
}

/// The keys a `retry` table sets; the others follow `[queue]`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PartialRetry {
    /// `max_attempts`.
    pub max_attempts: Option<u32>,
    /// `initial_delay`.
    pub initial_delay: Option<Duration>,
    /// `backoff_coefficient`.
    pub backoff_coefficient: Option<f64>,
    /// `max_delay`.
    pub max_delay: Option<Duration>,
}

impl PartialRetry {
    /// The policy: these keys over `defaults`.
    pub fn over(&self, defaults: RetryConfig) -> RetryConfig {
        RetryConfig {
            max_attempts: self.max_attempts.unwrap_or(defaults.max_attempts),
            initial_delay: self.initial_delay.unwrap_or(defaults.initial_delay),
            backoff_coefficient: self
                .backoff_coefficient
                .unwrap_or(defaults.backoff_coefficient),
            max_delay: self.max_delay.unwrap_or(defaults.max_delay),
        }
    }
}

fn read_table(r: &mut Reader, name: &str, t: &Table) -> PartialRetry {
    let mut out = PartialRetry::default();
    for (k, v) in t {
        let key = format!("listeners.{name}.retry.{k}");
        match k.as_str() {
            "max_attempts" => match v {
                Value::Integer(i) if (1..=101).contains(i) => out.max_attempts = Some(*i as u32),
                _ => r.problem(format!(
                    "`{key}` must be an integer from 1 to 101 (tries in all, the first included), got `{v}`"
                )),
            },
            "initial_delay" => out.initial_delay = r.seconds(&key, v),
            "max_delay" => out.max_delay = r.seconds(&key, v),
            "backoff_coefficient" => {
                let f = match v {
                    Value::Integer(i) => Some(*i as f64),
                    Value::Float(f) => Some(*f),
                    _ => None,
                };
                match f {
                    Some(f) if (1.0..=10.0).contains(&f) => out.backoff_coefficient = Some(f),
                    _ => r.problem(format!(
                        "`{key}` must be a number from 1 (constant delay) to 10, got `{v}`"
                    )),
                }
            }
            _ => r.unknown(&format!("listeners.{name}.retry"), k, KNOWN),
        }
    }
    if let (Some(initial), Some(max)) = (out.initial_delay, out.max_delay) {
        if max < initial {
            r.problem(format!(
                "`listeners.{name}.retry.max_delay` ({} s) is shorter than `initial_delay` ({} s)",
                max.as_secs_f64(),
                initial.as_secs_f64()
            ));
        }
    }
    out
}
