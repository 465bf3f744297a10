//! `[statistics]`: whether listener runs are counted per bucket, the width
//! of a bucket, and how many days of history are kept.

use std::time::Duration;

use toml::Table;

use super::reader::Reader;

/// The section's name.
pub(super) const SECTION: &str = "statistics";

/// The keys of `[statistics]`.
pub(super) const KNOWN: &[&str] = &["enabled", "retention_days", "aggregation_interval"];

/// Longest kept history, in days (a century: a typo guard, not a policy).
const MAX_RETENTION_DAYS: u64 = 36_500;
/// Widest statistics bucket, in seconds (one day).
const MAX_AGGREGATION_INTERVAL: u64 = 86_400;

/// `[statistics]`.
#[derive(Debug, Clone)]
pub struct StatisticsConfig {
    /// Whether runs are counted in `event_listeners_listenerstats` and old
    /// rows are deleted while the daemon runs.
    pub enabled: bool,
    /// Days of statistics, event log and dispatched inbox rows kept.
    pub retention_days: u32,
    /// Width of a statistics bucket.
    pub aggregation_interval: Duration,
}

impl Default for StatisticsConfig {
    fn default() -> Self {
        StatisticsConfig {
            enabled: true,
            retention_days: 30,
            aggregation_interval: Duration::from_secs(300),
        }
    }
}

/// Reads `[statistics]` into `out`.
pub(super) fn read(r: &mut Reader, t: &Table, out: &mut StatisticsConfig) {
    for (k, v) in t {
        let key = r.key(k);
        match k.as_str() {
            "enabled" => {
                if let Some(b) = r.bool(&key, v) {
                    out.enabled = b;
                }
            }
            "retention_days" => match r.positive_int(&key, v) {
                Some(d) if d <= MAX_RETENTION_DAYS => out.retention_days = d as u32,
                Some(d) => r.problem(format!(
                    "`{key}` is at most {MAX_RETENTION_DAYS} days, got {d}"
                )),
                None => {}
            },
            "aggregation_interval" => match r.whole_seconds(&key, v) {
                Some(s) if s <= MAX_AGGREGATION_INTERVAL => {
                    out.aggregation_interval = Duration::from_secs(s);
                }
                Some(s) => r.problem(format!(
                    "`{key}` is a number of seconds up to {MAX_AGGREGATION_INTERVAL} (one day), got {s}"
                )),
                None => {}
            },
            _ => r.unknown_key(k),
        }
    }
}
