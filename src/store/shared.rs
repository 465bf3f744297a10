//! `Store`, written once for every backend (see
//! [`Dialect`]): each method is either the same SQL on both backends (from
//! `sql`, run with [`on_pool!`]) or the backend's own operation. The parts
//! of `StatsStore` that both backends run the same way are `shared_stats`,
//! `AdminStore` is `shared_admin`.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::admin::AdminStore;
use super::api::Store;
use super::audit::AuditStore;
use super::dialect::{Dialect, InboxDialect, RecordDialect};
use super::error::StoreError;
use super::inbox_rows::{open_raw, rows_to_unfinished, UnfinishedRow};
use super::lock::InstanceLock;
use super::model::{
    CleanupCounts, Cursor, CursorRow, Line, Origin, RunRecord, Summary, Unfinished,
};
use super::rotation::RotationStore;
use super::sql::{self, on_pool, Pool};
use super::statistics::StatsStore;
use crate::event::{Event, Quarantined};

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

    async fn append_quarantining(
        &self,
        instance: &str,
        origin: &Origin,
        events: &[Event],
        quarantined: &[Quarantined],
        cursor: Option<&Cursor>,
    ) -> Result<Vec<Option<i64>>, StoreError> {
        append_to(self, instance, origin, events, quarantined, cursor, None).await
    }

    fn appends_in_flight(&self) -> usize {
        T::APPENDS_IN_FLIGHT
    }

    async fn append_in_line(
        &self,
        instance: &str,
        origin: &Origin,
        events: &[Event],
        quarantined: &[Quarantined],
        cursor: &Cursor,
        line: &Line,
    ) -> Result<Vec<Option<i64>>, StoreError> {
        append_to(
            self,
            instance,
            origin,
            events,
            quarantined,
            Some(cursor),
            Some(line),
        )
        .await
    }

    async fn inbox_raw(
        &self,
        instance: &str,
        origin: &Origin,
        event_id: i64,
    ) -> Result<Option<String>, StoreError> {
        let queue_id = origin.as_stored();
        let row: Option<(String, Option<String>)> = on_pool!(self.pool(), p => sqlx::query_as(sql::INBOX_RAW)
            .bind(instance)
            .bind(&queue_id)
            .bind(event_id)
            .fetch_optional(p)
            .await?);
        // Compared with the copy that came again: the plain text, whatever
        // the row is encrypted with.
        let cipher = self.cipher();
        row.map(|(raw, key_id)| {
            open_raw(
                cipher,
                instance,
                &queue_id,
                event_id,
                key_id.as_deref(),
                raw,
            )
            .map_err(StoreError::from)
        })
        .transpose()
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

    async fn lock_instances(&self, instances: &[String]) -> Result<Vec<InstanceLock>, StoreError> {
        let mut locks = Vec::with_capacity(instances.len());
        for instance in instances {
            locks.push(self.take_lock(instance).await?);
            if Self::LOCK_COVERS_EVERY_INSTANCE {
                break;
            }
        }
        Ok(locks)
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
                    sqlx::query_as(T::DONE_RUNS).bind(from).bind(instance).fetch_all(p).await?;
                for (inbox_id, listener) in logged {
                    done.entry(inbox_id).or_default().push(listener);
                }
            }
            (rows, done)
        });
        rows_to_unfinished(rows, done, self.cipher(), instance)
    }

    async fn cleanup(&self, before: DateTime<Utc>) -> Result<CleanupCounts, StoreError> {
        let compact = matches!(self.pool(), Pool::Postgres(_));
        Ok(on_pool!(self.pool(), p => {
            let mut tx = p.begin().await?;
            let (rows, runs) = match compact {
                true => (sql::CLEANUP_EVENTLOG_ROWS, Some(sql::CLEANUP_EVENTRUNS)),
                false => (sql::CLEANUP_EVENTLOG, None),
            };
            let mut eventlog = sqlx::query(rows)
                .bind(before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if let Some(runs) = runs {
                let n: i64 = sqlx::query_scalar(runs).bind(before).fetch_one(&mut *tx).await?;
                eventlog += n.unsigned_abs();
            }
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
        // Counting PostgreSQL's compact runs through the view would unnest
        // every row: their arrays' lengths are summed instead.
        let counts_sql = match self.pool() {
            Pool::Postgres(_) => sql::SUMMARY_COUNTS_COMPACT,
            Pool::Sqlite(_) => sql::SUMMARY_COUNTS,
        };
        Ok(on_pool!(self.pool(), p => {
            let counts = sqlx::query(counts_sql).fetch_one(p).await?;
            Summary {
                inbox: counts.try_get(0)?,
                eventlog: counts.try_get(1)?,
                failures: counts.try_get(2)?,
                messages: counts.try_get(3)?,
                users: counts.try_get(4)?,
                quarantined: counts.try_get(5)?,
                by_type: sqlx::query_as(sql::SUMMARY_BY_TYPE).fetch_all(p).await?,
            }
        }))
    }
}

/// `Store::append_quarantining` and `Store::append_in_line`: only while
/// the instance lock is held, and each repeated id's first copy only.
async fn append_to<T: InboxDialect>(
    store: &T,
    instance: &str,
    origin: &Origin,
    events: &[Event],
    quarantined: &[Quarantined],
    cursor: Option<&Cursor>,
    line: Option<&Line>,
) -> Result<Vec<Option<i64>>, StoreError> {
    if !store.lock_state().may_append() {
        return Err(StoreError::LockNotHeld);
    }
    let stored = store
        .insert_events(
            instance,
            &origin.as_stored(),
            events,
            quarantined,
            cursor,
            line,
        )
        .await?;
    Ok(super::repeats::first_copies(events, stored))
}
