//! `StatsStore` for [`SqliteStore`]: buckets grouped in SQL and written
//! back with the recorder's own timestamp encoding; percentiles read with
//! `ORDER BY duration LIMIT 2 OFFSET k` in one read transaction.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Row, SqliteConnection};

use super::connect::{SqliteStore, CHUNK};
use super::record::stats_insert;
use crate::store::aggregate::StatsBucket;
use crate::store::dialect::Dialect;
use crate::store::error::StoreError;
use crate::store::shared_stats;
use crate::store::sql::Conn;
use crate::store::statistics::{
    bucket_time, interpolate, percentile_position, width_secs, AggregateReport, ListenerSummary,
    RetentionReport, RunCounts, StatsStore,
};

#[async_trait]
impl StatsStore for SqliteStore {
    async fn aggregate(
        &self,
        interval: Duration,
        since: Option<DateTime<Utc>>,
    ) -> Result<AggregateReport, StoreError> {
        // IMMEDIATE takes the write lock before the read, so no recorder
        // batch commits between them (see `statistics`).
        let _turn = self.write_turn().await;
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let Some((first, from)) =
            shared_stats::aggregate_range(Conn::Sqlite(&mut tx), interval, since).await?
        else {
            tx.commit().await?;
            return Ok(AggregateReport::default());
        };
        let buckets = recompute(&mut tx, width_secs(interval), from).await?;
        let mut written = 0;
        for chunk in buckets.chunks(CHUNK) {
            let mut q = stats_insert(chunk);
            q.push(
                " ON CONFLICT (listener_name, bucket_start) DO UPDATE SET
                   total_events = excluded.total_events,
                   successful_events = excluded.successful_events,
                   failed_events = excluded.failed_events,
                   total_duration = excluded.total_duration,
                   max_duration = excluded.max_duration,
                   last_success = excluded.last_success
                 WHERE bucket_start <> ",
            );
            q.push_bind(first);
            written += q.build().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(AggregateReport {
            runs: buckets.iter().map(|b| b.total.max(0) as u64).sum(),
            buckets: buckets.len() as u64,
            written,
        })
    }

    async fn retention(&self, before: DateTime<Utc>) -> Result<RetentionReport, StoreError> {
        shared_stats::retention(Dialect::pool(self), before).await
    }

    async fn listener_stats(
        &self,
        listener: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<Vec<ListenerSummary>, StoreError> {
        // One read transaction: the percentile offsets are computed from the
        // counts, so both must see the same rows.
        let mut tx = self.pool().begin().await?;
        let mut counts: Vec<RunCounts> = sqlx::query(
            "SELECT listener_name, count(*),
                    sum(CASE WHEN success THEN 1 ELSE 0 END),
                    sum(CASE WHEN success THEN 0 ELSE 1 END),
                    max(CASE WHEN success THEN timestamp END)
             FROM event_listeners_eventlog
             WHERE timestamp >= ?1 AND (?2 IS NULL OR listener_name = ?2)
             GROUP BY listener_name",
        )
        .bind(since)
        .bind(listener)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| RunCounts {
            listener: r.get(0),
            processed: r.get(1),
            successes: r.get(2),
            failures: r.get(3),
            p50: None,
            p95: None,
            last_success: r.get(4),
        })
        .collect();
        for c in &mut counts {
            let n = c.processed.max(0) as u64;
            c.p50 = percentile(&mut tx, &c.listener, since, 0.5, n).await?;
            c.p95 = percentile(&mut tx, &c.listener, since, 0.95, n).await?;
        }
        let summaries =
            shared_stats::listener_summaries(Conn::Sqlite(&mut tx), listener, since, counts)
                .await?;
        tx.commit().await?;
        Ok(summaries)
    }
}

/// The event log's buckets from `from` on, grouped in SQL. Bucket starts
/// come back as epoch seconds and are bound as timestamps again, so they
/// are stored in exactly the text form the recorder uses and meet its rows
/// in the `(listener_name, bucket_start)` key.
async fn recompute(
    conn: &mut SqliteConnection,
    width: i64,
    from: DateTime<Utc>,
) -> Result<Vec<StatsBucket>, StoreError> {
    let rows = sqlx::query(
        "SELECT listener_name, CAST(strftime('%s', timestamp) AS INTEGER) / ?1 * ?1 AS bucket,
                count(*), sum(CASE WHEN success THEN 1 ELSE 0 END),
                sum(CASE WHEN success THEN 0 ELSE 1 END),
                sum(duration), max(duration), max(CASE WHEN success THEN timestamp END)
         FROM event_listeners_eventlog
         WHERE timestamp >= ?2
         GROUP BY listener_name, bucket
         ORDER BY listener_name, bucket",
    )
    .bind(width)
    .bind(from)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(StatsBucket {
                listener: r.get(0),
                bucket_start: bucket_time(r.get(1))?,
                total: r.get(2),
                successes: r.get(3),
                failures: r.get(4),
                total_duration: r.get(5),
                max_duration: r.get(6),
                last_success: r.get(7),
            })
        })
        .collect()
}

/// The `p` quantile of `listener`'s run durations since `since`, in
/// seconds, out of its `n` runs there.
async fn percentile(
    conn: &mut SqliteConnection,
    listener: &str,
    since: DateTime<Utc>,
    p: f64,
    n: u64,
) -> Result<Option<f64>, StoreError> {
    let Some((lower, frac)) = percentile_position(p, n) else {
        return Ok(None);
    };
    let values: Vec<f64> = sqlx::query_scalar(
        "SELECT duration FROM event_listeners_eventlog
         WHERE listener_name = ?1 AND timestamp >= ?2
         ORDER BY duration LIMIT 2 OFFSET ?3",
    )
    .bind(listener)
    .bind(since)
    .bind(i64::try_from(lower).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await?;
    Ok(match values.as_slice() {
        [] => None,
        [only] => Some(*only),
        [lo, hi, ..] => Some(interpolate(*lo, *hi, frac)),
    })
}
