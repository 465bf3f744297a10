//! `[queue]`: how often, and how far apart, a failed listener run is tried
//! again before it becomes a dead letter.

use std::time::Duration;

use toml::{Table, Value};

use super::reader::Reader;

/// The section's name.
pub(super) const SECTION: &str = "queue";

/// The keys of `[queue]`.
pub(super) const KNOWN: &[&str] = &["max_retries", "retry_delay"];

/// `[queue]`: retries of failed listener runs.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Retries after a failed or timed-out run (permanent errors are not retried).
    pub max_retries: u32,
    /// Delay between tries (jittered ±50%).
    pub retry_delay: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_retries: 3,
            retry_delay: Duration::from_secs(5),
        }
    }
}

/// Reads `[queue]` into `out`.
pub(super) fn read(r: &mut Reader, t: &Table, out: &mut QueueConfig) {
    for (k, v) in t {
        let key = r.key(k);
        match k.as_str() {
            "max_retries" => match v {
                Value::Integer(i) if (0..=100).contains(i) => out.max_retries = *i as u32,
                _ => r.problem(format!("`{key}` must be an integer from 0 to 100, got `{v}`")),
            },
            "retry_delay" => {
                if let Some(d) = r.seconds(&key, v) {
                    out.retry_delay = d;
                }
            }
            "batch_size" => r.problem(format!(
                "`{key}` only made sense for the Python plugin's processing loop; this daemon sizes its group commits by time and count itself: remove the key"
            )),
            "timeout" => r.problem(format!(
                "`{key}` duplicates `performance.handler_timeout`, which bounds every listener run here: remove the key"
            )),
            _ => r.unknown_key(k),
        }
    }
}
