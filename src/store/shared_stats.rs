//! The parts of `StatsStore` that both backends run the same way:
//! retention, the range `aggregate` rebuilds, and the rows a listener
//! summary adds to the counts.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::aggregate::bucket_start;
use super::error::StoreError;
use super::sql::{self, on_conn, on_pool, Conn, Pool};
use super::statistics::{
    assemble, ListenerSummary, RetentionReport, RunCounts, SummaryRows, TOP_ERRORS,
};

/// `StatsStore::retention` on either backend: the same three deletes in one
/// transaction.
pub(crate) async fn retention(
    pool: Pool<'_>,
    before: DateTime<Utc>,
) -> Result<RetentionReport, StoreError> {
    // PostgreSQL's event log is two tables (`sql::CLEANUP_EVENTRUNS`).
    let compact = matches!(pool, Pool::Postgres(_));
    Ok(on_pool!(pool, p => {
        let mut tx = p.begin().await?;
        let listenerstats = sqlx::query(sql::RETAIN_STATS)
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let rows = match compact {
            true => sql::RETAIN_EVENTLOG_ROWS,
            false => sql::RETAIN_EVENTLOG,
        };
        let mut eventlog = sqlx::query(rows)
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if compact {
            let n: i64 = sqlx::query_scalar(sql::RETAIN_EVENTRUNS)
                .bind(before)
                .fetch_one(&mut *tx)
                .await?;
            eventlog += n.unsigned_abs();
        }
        let inbox = sqlx::query(sql::RETAIN_INBOX)
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let replies = sqlx::query(sql::CLEANUP_SENT_REPLIES)
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        RetentionReport {
            listenerstats,
            eventlog,
            inbox,
            replies,
        }
    }))
}

/// The buckets `aggregate` rebuilds: `(first, from)`, the bucket of the
/// oldest event log row (kept, never overwritten) and the one to start
/// from (that of `since`, never before `first`); `None` when the event log
/// is empty.
pub(crate) async fn aggregate_range(
    conn: Conn<'_>,
    interval: Duration,
    since: Option<DateTime<Utc>>,
) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>, StoreError> {
    let oldest: Option<DateTime<Utc>> = on_conn!(conn, c => sqlx::query_scalar(sql::OLDEST_RUN)
        .fetch_one(c)
        .await?);
    Ok(oldest.map(|oldest| {
        let first = bucket_start(oldest, interval);
        (
            first,
            since.map_or(first, |s| bucket_start(s, interval).max(first)),
        )
    }))
}

/// `StatsStore::listener_stats` from the backend's event log `counts`: reads
/// the top errors, the volume and the stats buckets' last successes of
/// `listener` (all when `None`) since `since` on `conn`, and assembles them.
pub(crate) async fn listener_summaries(
    conn: Conn<'_>,
    listener: Option<&str>,
    since: DateTime<Utc>,
    counts: Vec<RunCounts>,
) -> Result<Vec<ListenerSummary>, StoreError> {
    Ok(on_conn!(conn, c => assemble(SummaryRows {
        counts,
        errors: sqlx::query_as(sql::TOP_ERRORS)
            .bind(since)
            .bind(listener)
            .bind(TOP_ERRORS)
            .fetch_all(&mut *c)
            .await?,
        volume: sqlx::query_as(sql::VOLUME)
            .bind(since)
            .bind(listener)
            .fetch_all(&mut *c)
            .await?,
        last_success: sqlx::query_as(sql::STATS_LAST_SUCCESS)
            .bind(listener)
            .fetch_all(&mut *c)
            .await?,
    })))
}
