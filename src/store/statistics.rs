//! [`StatsStore`]: rebuilding listener statistics from the event log,
//! deleting old rows, and reading per-listener summaries; with the pieces
//! both backends share (percentile positions, assembling summaries).
//!
//! # Why `aggregate` converges with the recorder running
//!
//! The recorder (`Store::record`) inserts a batch's event log rows
//! and adds the same runs to their stats buckets in *one* transaction, so
//! every committed event log row is counted in `event_listeners_listenerstats`
//! exactly once, and an uncommitted one not at all. `aggregate` overwrites
//! buckets with absolute values computed from the event log, which is only
//! right if its read of the event log and its write of the buckets see the
//! same set of committed batches. Without care they do not: a recorder batch
//! committing between the read and the write adds its runs to a bucket that
//! the write then overwrites with a count that misses them (on PostgreSQL the
//! upsert would even wait for the batch's row lock and then overwrite it).
//!
//! So each backend makes the read and the write one step that no recorder
//! batch can enter:
//!
//! - PostgreSQL: the transaction first takes
//!   `LOCK TABLE event_listeners_listenerstats IN SHARE ROW EXCLUSIVE MODE`.
//!   It conflicts with the `ROW EXCLUSIVE` lock every recorder upsert takes,
//!   so it is granted only once no batch that has touched the stats is still
//!   open (those have committed, and the event log read that follows, under
//!   READ COMMITTED with a snapshot taken after the lock, sees them). Batches
//!   that have not reached their stats upsert yet are invisible to the read
//!   and block on the lock until `aggregate` commits, then add their runs on
//!   top of the absolute values: counted once either way.
//! - SQLite: the transaction starts with `BEGIN IMMEDIATE`, taking the
//!   database's single write lock before reading, so no batch commits
//!   between the read and the write.
//!
//! One bucket is treated differently: the one holding the oldest event log
//! row. `cleanup --days N` cuts the event log at an arbitrary instant, so
//! that bucket may have lost part of its runs while its stats row, written
//! when they were recorded, still counts them all. `aggregate` inserts it
//! when missing but never overwrites it.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::error::StoreError;

/// Failure groups kept per listener in a [`ListenerSummary`].
pub(super) const TOP_ERRORS: i64 = 5;

/// What [`StatsStore::aggregate`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AggregateReport {
    /// Event log rows counted.
    pub runs: u64,
    /// (listener, bucket) pairs found in the event log.
    pub buckets: u64,
    /// Stats rows inserted or overwritten with the recomputed values.
    pub written: u64,
}

impl AggregateReport {
    /// Buckets left as they were: the existing row of the bucket holding the
    /// oldest event log row, which `cleanup` may have cut (see the module docs).
    pub fn kept(&self) -> u64 {
        self.buckets.saturating_sub(self.written)
    }
}

/// What [`StatsStore::retention`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Rows of `event_listeners_listenerstats`.
    pub listenerstats: u64,
    /// Rows of `event_listeners_eventlog` (not counting those that went with
    /// their inbox row).
    pub eventlog: u64,
    /// Rows of `event_listeners_inbox`.
    pub inbox: u64,
    /// Sent rows of `event_listeners_replyoutbox`.
    pub replies: u64,
}

impl RetentionReport {
    /// Rows deleted, over the four tables.
    pub fn total(&self) -> u64 {
        self.listenerstats + self.eventlog + self.inbox + self.replies
    }
}

/// Failed runs of one listener that ended with the same error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCount {
    /// The error text; `None` for failures recorded without one.
    pub error: Option<String>,
    /// How many runs.
    pub count: i64,
}

/// One listener's runs since a point in time.
///
/// Counts, percentiles and errors come from the event log; `volume` comes
/// from the stats buckets, which outlive `cleanup`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerSummary {
    /// The listener.
    pub listener: String,
    /// Runs recorded.
    pub processed: i64,
    /// Successful runs.
    pub successes: i64,
    /// Failed (and timed-out) runs.
    pub failures: i64,
    /// `successes / processed`, from 0 to 1; `None` without runs.
    pub success_rate: Option<f64>,
    /// Median run duration (continuous percentile, as PostgreSQL's `percentile_cont`).
    pub p50: Option<Duration>,
    /// 95th percentile of run durations.
    pub p95: Option<Duration>,
    /// The most frequent errors of failed runs, most frequent first, at most five.
    pub errors: Vec<ErrorCount>,
    /// When a run last succeeded, in the event log window or in any stats bucket.
    pub last_success: Option<DateTime<Utc>>,
    /// Runs per stats bucket starting at or after `since`, oldest first;
    /// buckets without runs are absent.
    pub volume: Vec<(DateTime<Utc>, i64)>,
}

/// Statistics maintenance and reports; every `Store` implements it.
#[async_trait]
pub trait StatsStore: Send + Sync {
    /// Recomputes `event_listeners_listenerstats` from the event log, in
    /// `interval`-wide buckets, for every bucket with event log rows (from
    /// the bucket holding `since`, when given), writing absolute values.
    /// Running it again, or while the daemon records runs, gives the same
    /// table (see the module docs for why).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails; nothing is written then.
    async fn aggregate(
        &self,
        interval: Duration,
        since: Option<DateTime<Utc>>,
    ) -> Result<AggregateReport, StoreError>;

    /// Deletes, in one transaction, stats buckets starting before `before`,
    /// event log rows older than it, and inbox rows received before it whose
    /// runs are all recorded (at or below their instance's
    /// `dispatched_through`). An inbox row still waiting for runs, and the
    /// event log rows of its finished runs, are kept: the next start
    /// dispatches it again to the listeners that have no logged run.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails; nothing is deleted then.
    async fn retention(&self, before: DateTime<Utc>) -> Result<RetentionReport, StoreError>;

    /// A summary per listener (only `listener`, when given) of the runs
    /// since `since`, sorted by listener name.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    async fn listener_stats(
        &self,
        listener: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<Vec<ListenerSummary>, StoreError>;
}

/// Bucket width in whole seconds, at least one.
pub(super) fn width_secs(interval: Duration) -> i64 {
    i64::try_from(interval.as_secs()).unwrap_or(i64::MAX).max(1)
}

/// The bucket starting `secs` seconds after the epoch.
///
/// # Errors
///
/// [`StoreError::Query`] when the database returned a time out of range.
pub(super) fn bucket_time(secs: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::<Utc>::from_timestamp(secs, 0).ok_or_else(|| {
        StoreError::Query(sqlx::Error::Decode(
            format!("bucket start {secs} is out of range").into(),
        ))
    })
}

/// Where the `p` quantile (0 to 1) of `n` sorted values lies, as
/// PostgreSQL's `percentile_cont` places it: the 0-based index of the lower
/// value and the fraction of the way to the next one. `None` when `n` is 0.
pub(super) fn percentile_position(p: f64, n: u64) -> Option<(u64, f64)> {
    if n == 0 {
        return None;
    }
    let pos = p.clamp(0.0, 1.0) * (n - 1) as f64;
    let lower = pos.floor();
    Some((lower as u64, pos - lower))
}

/// The value `frac` of the way from `lower` to `upper`.
pub(super) fn interpolate(lower: f64, upper: f64, frac: f64) -> f64 {
    lower + (upper - lower) * frac
}

/// A duration from a number of seconds read from the database.
pub(super) fn seconds(secs: Option<f64>) -> Option<Duration> {
    secs.and_then(|s| Duration::try_from_secs_f64(s.max(0.0)).ok())
}

/// One listener's event log counts, before errors and volume are attached.
#[derive(Debug, Clone)]
pub(super) struct RunCounts {
    pub listener: String,
    pub processed: i64,
    pub successes: i64,
    pub failures: i64,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub last_success: Option<DateTime<Utc>>,
}

/// The rows each backend reads for [`StatsStore::listener_stats`].
#[derive(Debug, Default)]
pub(super) struct SummaryRows {
    /// Event log counts per listener.
    pub counts: Vec<RunCounts>,
    /// (listener, error, failed runs), at most [`TOP_ERRORS`] per listener.
    pub errors: Vec<(String, Option<String>, i64)>,
    /// (listener, bucket start, runs).
    pub volume: Vec<(String, DateTime<Utc>, i64)>,
    /// (listener, latest `last_success` of its stats buckets).
    pub last_success: Vec<(String, Option<DateTime<Utc>>)>,
}

/// Merges the rows into one summary per listener that appears in any of
/// them, sorted by name.
pub(super) fn assemble(rows: SummaryRows) -> Vec<ListenerSummary> {
    let mut map: BTreeMap<String, ListenerSummary> = BTreeMap::new();
    fn entry<'a>(
        map: &'a mut BTreeMap<String, ListenerSummary>,
        listener: &str,
    ) -> &'a mut ListenerSummary {
        map.entry(listener.to_owned())
            .or_insert_with(|| ListenerSummary {
                listener: listener.to_owned(),
                processed: 0,
                successes: 0,
                failures: 0,
                success_rate: None,
                p50: None,
                p95: None,
                errors: Vec::new(),
                last_success: None,
                volume: Vec::new(),
            })
    }
    for c in rows.counts {
        let s = entry(&mut map, &c.listener);
        s.processed = c.processed;
        s.successes = c.successes;
        s.failures = c.failures;
        s.success_rate = (c.processed > 0).then(|| c.successes as f64 / c.processed as f64);
        s.p50 = seconds(c.p50);
        s.p95 = seconds(c.p95);
        s.last_success = s.last_success.max(c.last_success);
    }
    for (listener, error, count) in rows.errors {
        entry(&mut map, &listener)
            .errors
            .push(ErrorCount { error, count });
    }
    for (listener, start, count) in rows.volume {
        entry(&mut map, &listener).volume.push((start, count));
    }
    for (listener, last) in rows.last_success {
        let s = entry(&mut map, &listener);
        s.last_success = s.last_success.max(last);
    }
    let mut out: Vec<ListenerSummary> = map.into_values().collect();
    for s in &mut out {
        s.errors.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.error.as_deref().cmp(&b.error.as_deref()))
        });
        s.errors.truncate(TOP_ERRORS as usize);
        s.volume.sort_by_key(|(start, _)| *start);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition `percentile_position` must agree with.
    fn percentile_cont(sorted: &[f64], p: f64) -> Option<f64> {
        let (lo, frac) = percentile_position(p, sorted.len() as u64)?;
        let lo = lo as usize;
        let hi = (lo + 1).min(sorted.len() - 1);
        Some(interpolate(sorted[lo], sorted[hi], frac))
    }

    #[test]
    fn percentiles_interpolate_between_neighbours_like_percentile_cont() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        // PostgreSQL: percentile_cont(0.5) of 1..20 is 10.5, 0.95 is 19.05.
        assert_eq!(percentile_cont(&v, 0.5), Some(10.5));
        let p95 = percentile_cont(&v, 0.95).unwrap();
        assert!((p95 - 19.05).abs() < 1e-9, "{p95}");
        assert_eq!(percentile_cont(&v, 0.0), Some(1.0));
        assert_eq!(percentile_cont(&v, 1.0), Some(20.0));
    }

    #[test]
    fn one_value_is_every_percentile_and_none_has_no_percentile() {
        assert_eq!(percentile_position(0.95, 1), Some((0, 0.0)));
        assert_eq!(percentile_cont(&[7.0], 0.5), Some(7.0));
        assert_eq!(percentile_position(0.5, 0), None);
    }

    #[test]
    fn summaries_merge_counts_errors_and_volume_per_listener() {
        let t = |s| DateTime::<Utc>::from_timestamp(s, 0).unwrap();
        let rows = SummaryRows {
            counts: vec![RunCounts {
                listener: "a".into(),
                processed: 4,
                successes: 3,
                failures: 1,
                p50: Some(0.002),
                p95: Some(0.004),
                last_success: Some(t(600)),
            }],
            errors: vec![
                ("a".into(), Some("x".into()), 1),
                ("a".into(), Some("y".into()), 3),
            ],
            volume: vec![("b".into(), t(900), 2), ("a".into(), t(600), 4)],
            last_success: vec![("a".into(), Some(t(300))), ("b".into(), Some(t(900)))],
        };
        let s = assemble(rows);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].listener, "a");
        assert_eq!(s[0].success_rate, Some(0.75));
        assert_eq!(s[0].p50, Some(Duration::from_millis(2)));
        assert_eq!(s[0].errors[0].error.as_deref(), Some("y"));
        assert_eq!(s[0].last_success, Some(t(600)));
        assert_eq!(s[1].processed, 0, "b has buckets but no logged runs");
        assert_eq!(s[1].success_rate, None);
        assert_eq!(s[1].volume, vec![(t(900), 2)]);
    }
}
