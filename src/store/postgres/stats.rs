//! `StatsStore` for [`PgStore`]: statistics rebuilt, pruned and
//! summarised with set-based SQL (`percentile_cont` for the percentiles).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::connect::PgStore;
use crate::store::dialect::Dialect;
use crate::store::error::StoreError;
use crate::store::shared_stats;
use crate::store::sql::Conn;
use crate::store::statistics::{
    width_secs, AggregateReport, ListenerSummary, RetentionReport, RunCounts, StatsStore,
};

/// Recomputes the buckets from `$2` on and upserts them, except that the
/// existing row of the bucket `$3` (the oldest in the event log) is kept.
/// Returns (buckets found, rows written, runs counted).
const AGGREGATE_SQL: &str = "
WITH runs AS (
    SELECT listener_name,
           to_timestamp((floor(extract(epoch FROM timestamp))::bigint / $1) * $1) AS bucket_start,
           count(*) AS total,
           count(*) FILTER (WHERE success) AS successes,
           count(*) FILTER (WHERE NOT success) AS failures,
           sum(duration) AS total_duration,
           max(duration) AS max_duration,
           max(timestamp) FILTER (WHERE success) AS last_success
    FROM event_listeners_eventlog
    WHERE timestamp >= $2
    GROUP BY 1, 2
), written AS (
    INSERT INTO event_listeners_listenerstats AS s
        (listener_name, bucket_start, total_events, successful_events, failed_events,
         total_duration, max_duration, last_success)
    SELECT * FROM runs
    ON CONFLICT (listener_name, bucket_start) DO UPDATE SET
        total_events = excluded.total_events,
        successful_events = excluded.successful_events,
        failed_events = excluded.failed_events,
        total_duration = excluded.total_duration,
        max_duration = excluded.max_duration,
        last_success = excluded.last_success
    WHERE s.bucket_start <> $3
    RETURNING 1
)
SELECT (SELECT count(*) FROM runs),
       (SELECT count(*) FROM written),
       (SELECT COALESCE(sum(total), 0)::bigint FROM runs)";

#[async_trait]
impl StatsStore for PgStore {
    async fn aggregate(
        &self,
        interval: Duration,
        since: Option<DateTime<Utc>>,
    ) -> Result<AggregateReport, StoreError> {
        let mut tx = self.pool().begin().await?;
        // Keeps recorder batches out from before the read to after the write
        // (see `statistics` for the argument); released at commit.
        sqlx::query("LOCK TABLE event_listeners_listenerstats IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let Some((first, from)) =
            shared_stats::aggregate_range(Conn::Postgres(&mut tx), interval, since).await?
        else {
            tx.commit().await?;
            return Ok(AggregateReport::default());
        };
        let row = sqlx::query(AGGREGATE_SQL)
            .bind(width_secs(interval))
            .bind(from)
            .bind(first)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(AggregateReport {
            buckets: row.get::<i64, _>(0).max(0) as u64,
            written: row.get::<i64, _>(1).max(0) as u64,
            runs: row.get::<i64, _>(2).max(0) as u64,
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
        let mut conn = self.pool().acquire().await?;
        let counts = sqlx::query(
            "SELECT listener_name, count(*), count(*) FILTER (WHERE success),
                    count(*) FILTER (WHERE NOT success),
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY duration),
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY duration),
                    max(timestamp) FILTER (WHERE success)
             FROM event_listeners_eventlog
             WHERE timestamp >= $1 AND ($2::text IS NULL OR listener_name = $2)
             GROUP BY listener_name",
        )
        .bind(since)
        .bind(listener)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| RunCounts {
            listener: r.get(0),
            processed: r.get(1),
            successes: r.get(2),
            failures: r.get(3),
            p50: r.get(4),
            p95: r.get(5),
            last_success: r.get(6),
        })
        .collect();
        shared_stats::listener_summaries(Conn::Postgres(&mut conn), listener, since, counts).await
    }
}
