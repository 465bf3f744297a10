//! `Store` and `AdminStore`, written once for every backend (see
//! [`Dialect`]): each method is either the same SQL on both backends (from
//! `sql`, run with [`on_pool!`]) or the backend's own operation. Also the parts of
//! `StatsStore` that both backends run the same way: retention, the range
//! `aggregate` rebuilds, and the rows a listener summary adds to the counts.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::admin::{AdminStore, PendingDeadLetter};
use super::aggregate::bucket_start;
use super::api::Store;
use super::audit::{AuditAction, AuditOutcome, AuditStore};
use super::dialect::{AdminDialect, Dialect, InboxDialect, RecordDialect};
use super::error::StoreError;
use super::lock::InstanceLock;
use super::model::{
    merge_overview, rows_to_unfinished, CleanupCounts, Cursor, CursorRow, DeadLetter,
    DeadLetterRow, ListenerOverview, ListenerState, LoggedEvent, LoggedEventRow, Origin, RunRecord,
    Summary, Unfinished, UnfinishedRow,
};
use super::rotation::RotationStore;
use super::sql::{self, on_conn, on_pool, stamped, Conn, Pool};
use super::statistics::{
    assemble, ListenerSummary, RetentionReport, RunCounts, StatsStore, SummaryRows, TOP_ERRORS,
};
use crate::event::Event;

#[async_trait]
impl<T> Store for T
where
    T: InboxDialect + RecordDialect + AdminStore + AuditStore + StatsStore + RotationStore,
{
    fn backend(&self) -> &'static str {
        T::NAME
    }

    fn location(&self) -> String {
        Dialect::location(self).to_owned()
    }

    async fn pending_migrations(&self) -> Result<Vec<String>, StoreError> {
        let applied: Vec<i64> = on_pool!(self.pool(), p => {
            let exists: Option<Option<String>> = sqlx::query_scalar(T::MIGRATIONS_TABLE)
                .fetch_optional(p)
                .await?;
            if exists.flatten().is_some() {
                sqlx::query_scalar(sql::APPLIED_MIGRATIONS).fetch_all(p).await?
            } else {
                Vec::new()
            }
        });
        Ok(self
            .migrator()
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .map(|m| format!("{} {}", m.version, m.description))
            .collect())
    }

    async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        let pending = self.pending_migrations().await?;
        on_pool!(self.pool(), p => self.migrator().run(p).await?);
        Ok(pending)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self.pool(), p => {
            sqlx::query(sql::PING).execute(p).await?;
        });
        Ok(())
    }

    async fn load_cursor(&self, instance: &str) -> Result<Option<Cursor>, StoreError> {
        let row: Option<CursorRow> = on_pool!(self.pool(), p => sqlx::query_as(sql::LOAD_CURSOR)
            .bind(instance)
            .fetch_optional(p)
            .await?);
        Ok(row.map(Cursor::from))
    }

    async fn append(
        &self,
        instance: &str,
        origin: &Origin,
        events: &[Event],
        cursor: Option<&Cursor>,
    ) -> Result<Vec<Option<i64>>, StoreError> {
        if !self.lock_state().may_append() {
            return Err(StoreError::LockNotHeld);
        }
        self.insert_events(instance, &origin.as_stored(), events, cursor)
            .await
    }

    async fn explain(&self, e: StoreError) -> StoreError {
        match e {
            StoreError::Unavailable(e) => StoreError::Unavailable(Dialect::explain(self, e).await),
            e => e,
        }
    }

    async fn lock_instance(&self, instance: &str) -> Result<InstanceLock, StoreError> {
        self.take_lock(instance).await
    }

    async fn record_batch(
        &self,
        instance: &str,
        runs: &[RunRecord],
        dispatched_through: Option<i64>,
        batch: i64,
    ) -> Result<(), StoreError> {
        let runs = super::storable::runs(runs);
        self.insert_runs(instance, &runs, dispatched_through, batch)
            .await
    }

    async fn cursor_updated_at(&self, instance: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at = on_pool!(self.pool(), p => sqlx::query_scalar(sql::CURSOR_UPDATED_AT)
            .bind(instance)
            .fetch_optional(p)
            .await?);
        Ok(at)
    }

    async fn last_record_batch(&self, instance: &str) -> Result<i64, StoreError> {
        let batch = on_pool!(self.pool(), p => sqlx::query_scalar(sql::LAST_RECORD_BATCH)
            .bind(instance)
            .fetch_one(p)
            .await?);
        Ok(batch)
    }

    async fn inbox_ids(
        &self,
        instance: &str,
        origin: &Origin,
        event_ids: &[i64],
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        self.find_inbox_ids(instance, &origin.as_stored(), event_ids)
            .await
    }

    async fn unfinished(&self, instance: &str) -> Result<Vec<Unfinished>, StoreError> {
        self.settle().await?;
        let (rows, done) = on_pool!(self.pool(), p => {
            let rows: Vec<UnfinishedRow> =
                sqlx::query_as(T::UNFINISHED).bind(instance).fetch_all(p).await?;
            let mut done: HashMap<i64, Vec<String>> = HashMap::new();
            if let Some((from, ..)) = rows.first() {
                let logged: Vec<(i64, String)> =
                    sqlx::query_as(sql::DONE_RUNS).bind(from).fetch_all(p).await?;
                for (inbox_id, listener) in logged {
                    done.entry(inbox_id).or_default().push(listener);
                }
            }
            (rows, done)
        });
        rows_to_unfinished(rows, done, self.cipher(), instance)
    }

    async fn cleanup(&self, before: DateTime<Utc>) -> Result<CleanupCounts, StoreError> {
        Ok(on_pool!(self.pool(), p => {
            let mut tx = p.begin().await?;
            let eventlog = sqlx::query(sql::CLEANUP_EVENTLOG)
                .bind(before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let inbox = sqlx::query(sql::CLEANUP_INBOX)
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
            CleanupCounts { eventlog, inbox, replies }
        }))
    }

    async fn summary(&self) -> Result<Summary, StoreError> {
        Ok(on_pool!(self.pool(), p => {
            let counts = sqlx::query(sql::SUMMARY_COUNTS).fetch_one(p).await?;
            Summary {
                inbox: counts.try_get(0)?,
                eventlog: counts.try_get(1)?,
                failures: counts.try_get(2)?,
                messages: counts.try_get(3)?,
                users: counts.try_get(4)?,
                by_type: sqlx::query_as(sql::SUMMARY_BY_TYPE).fetch_all(p).await?,
            }
        }))
    }
}

#[async_trait]
impl<T: AdminDialect> AdminStore for T {
    async fn listener_states(&self) -> Result<Vec<ListenerState>, StoreError> {
        let states = on_pool!(self.pool(), p => sqlx::query_as(sql::LISTENER_STATES)
            .fetch_all(p)
            .await?);
        Ok(states)
    }

    async fn set_listener_enabled(
        &self,
        name: &str,
        enabled: bool,
        reason: Option<&str>,
        actor: &str,
        audited: bool,
    ) -> Result<(), StoreError> {
        let action = if enabled {
            AuditAction::Enable
        } else {
            AuditAction::Disable
        };
        on_pool!(self.pool(), p => {
            let mut tx = p.begin().await?;
            stamped!(T, sqlx::query(T::UPSERT_LISTENER_STATE)
                .bind(name)
                .bind(enabled)
                .bind(reason)
                .bind(actor))
            .execute(&mut *tx)
            .await?;
            if audited {
                stamped!(T, sqlx::query(T::INSERT_AUDIT)
                    .bind(actor)
                    .bind(action.as_str())
                    .bind(name)
                    .bind(reason.unwrap_or(""))
                    .bind(AuditOutcome::Ok.as_str()))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    async fn dead_letters(
        &self,
        listener: &str,
        since: Option<DateTime<Utc>>,
        inbox_id: Option<i64>,
        include_replayed: bool,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let rows: Vec<DeadLetterRow> = on_pool!(self.pool(), p => sqlx::query_as(T::DEAD_LETTERS)
            .bind(listener)
            .bind(since)
            .bind(inbox_id)
            .bind(include_replayed)
            .fetch_all(p)
            .await?);
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.extend(row.decode(self.cipher())?);
        }
        Ok(out)
    }

    async fn logged_events(
        &self,
        listener: &str,
        since: Option<DateTime<Utc>>,
        inbox_id: Option<i64>,
    ) -> Result<Vec<LoggedEvent>, StoreError> {
        let rows: Vec<LoggedEventRow> = on_pool!(self.pool(), p => sqlx::query_as(T::LOGGED_EVENTS)
            .bind(listener)
            .bind(since)
            .bind(inbox_id)
            .fetch_all(p)
            .await?);
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.extend(row.decode(self.cipher())?);
        }
        Ok(out)
    }

    async fn mark_replayed(&self, ids: &[i64], success: bool) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.set_replayed(ids, success).await
    }

    async fn pending_dead_letters(
        &self,
        listener: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PendingDeadLetter>, StoreError> {
        Ok(
            on_pool!(self.pool(), p => sqlx::query_as(sql::PENDING_DEAD_LETTERS)
            .bind(listener.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?),
        )
    }

    async fn listener_overview(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<ListenerOverview>, StoreError> {
        let (window, older) = on_pool!(self.pool(), p => {
            let window = sqlx::query_as(sql::OVERVIEW_WINDOW)
                .bind(since)
                .fetch_all(p)
                .await?;
            let mut older: Vec<(String, Option<DateTime<Utc>>)> =
                sqlx::query_as(sql::OVERVIEW_STATS).fetch_all(p).await?;
            if older.is_empty() {
                older = sqlx::query_as(sql::OVERVIEW_EVENTLOG).fetch_all(p).await?;
            }
            (window, older)
        });
        Ok(merge_overview(window, older))
    }
}

/// `StatsStore::retention` on either backend: the same three deletes in one
/// transaction.
pub(crate) async fn retention(
    pool: Pool<'_>,
    before: DateTime<Utc>,
) -> Result<RetentionReport, StoreError> {
    Ok(on_pool!(pool, p => {
        let mut tx = p.begin().await?;
        let mut delete = async |statement| {
            sqlx::query(statement)
                .bind(before)
                .execute(&mut *tx)
                .await
                .map(|done| done.rows_affected())
        };
        let listenerstats = delete(sql::RETAIN_STATS).await?;
        let eventlog = delete(sql::RETAIN_EVENTLOG).await?;
        let inbox = delete(sql::RETAIN_INBOX).await?;
        let replies = delete(sql::CLEANUP_SENT_REPLIES).await?;
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
