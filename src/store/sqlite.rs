//! [`SqliteStore`]: the embedded default backend, one file in WAL mode.
//!
//! Batches are written as multi-row `INSERT … VALUES (…), (…)` statements
//! in chunks of [`CHUNK`] rows, so the common statement shapes are
//! prepared once and reused. `synchronous = FULL` keeps every commit on
//! disk before the daemon acknowledges the events to Zulip.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use super::aggregate::{activity_totals, stats_buckets, StatsBucket};
use super::backend::{
    CleanupCounts, Cursor, RunRecord, Store, StoreError, StoreOptions, Summary, Unfinished,
};
use super::postgres::rows_to_unfinished;
use crate::event::Event;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Rows per multi-row statement (SQLite allows 32766 parameters).
const CHUNK: usize = 200;

/// The SQLite store.
pub struct SqliteStore {
    pool: SqlitePool,
    location: String,
    opts: StoreOptions,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file named by `url`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the file cannot be created or opened.
    pub async fn open(url: &str, opts: &StoreOptions) -> Result<SqliteStore, StoreError> {
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(StoreError::Query)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .statement_cache_capacity(512);
        let path = connect.get_filename().to_owned();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
        }
        let location = std::path::absolute(&path)
            .unwrap_or_else(|_| path.clone())
            .display()
            .to_string();
        let pool = SqlitePoolOptions::new()
            .max_connections(opts.max_connections.clamp(1, 4))
            .connect_with(connect)
            .await?;
        Ok(SqliteStore {
            pool,
            location,
            opts: opts.clone(),
        })
    }

    /// The file behind the store.
    pub fn path(&self) -> &Path {
        Path::new(&self.location)
    }

    /// The connection pool, for tests.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    async fn pending_migrations(&self) -> Result<Vec<String>, StoreError> {
        let exists: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_optional(&self.pool)
        .await?;
        let applied: Vec<i64> = if exists.is_some() {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await?
        } else {
            Vec::new()
        };
        Ok(MIGRATOR
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .map(|m| format!("{} {}", m.version, m.description))
            .collect())
    }

    async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        let pending = self.pending_migrations().await?;
        MIGRATOR.run(&self.pool).await?;
        Ok(pending)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn load_cursor(&self, instance: &str) -> Result<Option<Cursor>, StoreError> {
        let row = sqlx::query(
            "SELECT site, queue_id, last_event_id, last_message_id FROM event_listeners_cursor
             WHERE instance = ? AND queue_id IS NOT NULL",
        )
        .bind(instance)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Cursor {
            site: r.get::<Option<String>, _>(0).unwrap_or_default(),
            queue_id: r.get(1),
            last_event_id: r.get::<Option<i64>, _>(2).unwrap_or(-1),
            last_message_id: r.get(3),
        }))
    }

    async fn append(
        &self,
        instance: &str,
        source: &str,
        events: &[Event],
        cursor: Option<&Cursor>,
    ) -> Result<Vec<Option<i64>>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let now = Utc::now();
        let mut by_event: HashMap<i64, i64> = HashMap::with_capacity(events.len());
        for chunk in events.chunks(CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO event_listeners_inbox
                   (instance, queue_id, event_id, event_type, op, message_id, backfilled, raw, received_at) ",
            );
            q.push_values(chunk, |mut b, e| {
                b.push_bind(instance)
                    .push_bind(source)
                    .push_bind(e.id())
                    .push_bind(e.event_type())
                    .push_bind(e.op())
                    .push_bind(e.message_id())
                    .push_bind(e.is_backfilled())
                    .push_bind(e.raw())
                    .push_bind(now);
            });
            q.push(" ON CONFLICT DO NOTHING RETURNING id, event_id");
            for r in q.build().fetch_all(&mut *tx).await? {
                by_event.insert(r.get(1), r.get(0));
            }
        }
        if let Some(c) = cursor {
            sqlx::query(
                "INSERT INTO event_listeners_cursor (instance, site, queue_id, last_event_id, last_message_id, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (instance) DO UPDATE SET
                   site = excluded.site, queue_id = excluded.queue_id, last_event_id = excluded.last_event_id,
                   last_message_id = COALESCE(MAX(last_message_id, excluded.last_message_id),
                                              excluded.last_message_id, last_message_id),
                   updated_at = excluded.updated_at",
            )
            .bind(instance)
            .bind(&c.site)
            .bind(&c.queue_id)
            .bind(c.last_event_id)
            .bind(c.last_message_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(events
            .iter()
            .map(|e| by_event.get(&e.id()).copied())
            .collect())
    }

    async fn record(
        &self,
        instance: &str,
        runs: &[RunRecord],
        dispatched_through: Option<i64>,
    ) -> Result<(), StoreError> {
        self.record_batch(instance, runs, dispatched_through, 0)
            .await
    }

    async fn cursor_updated_at(&self, instance: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT updated_at FROM event_listeners_cursor WHERE instance = ? AND queue_id IS NOT NULL",
        )
        .bind(instance)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn last_record_batch(&self, instance: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE((SELECT record_batch FROM event_listeners_cursor WHERE instance = ?), 0)",
        )
        .bind(instance)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn inbox_ids(
        &self,
        instance: &str,
        source: &str,
        event_ids: &[i64],
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let mut out = Vec::with_capacity(event_ids.len());
        for chunk in event_ids.chunks(CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "SELECT event_id, id FROM event_listeners_inbox WHERE instance = ",
            );
            q.push_bind(instance)
                .push(" AND queue_id = ")
                .push_bind(source)
                .push(" AND event_id IN (");
            let mut sep = q.separated(", ");
            for id in chunk {
                sep.push_bind(*id);
            }
            q.push(")");
            out.extend(
                q.build_query_as::<(i64, i64)>()
                    .fetch_all(&self.pool)
                    .await?,
            );
        }
        Ok(out)
    }

    async fn record_batch(
        &self,
        instance: &str,
        runs: &[RunRecord],
        dispatched_through: Option<i64>,
        batch: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        if !runs.is_empty() {
            insert_eventlog(&mut tx, runs).await?;
            super::sqlite_admin::insert_dead_letters(&mut tx, runs).await?;
            insert_messagelog(&mut tx, runs).await?;
            upsert_activity(&mut tx, runs).await?;
            if self.opts.stats_enabled {
                upsert_stats(&mut tx, runs, &self.opts).await?;
            }
        }
        if let Some(through) = dispatched_through {
            sqlx::query(
                "INSERT INTO event_listeners_cursor (instance, dispatched_through, record_batch, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (instance) DO UPDATE SET
                   dispatched_through = MAX(dispatched_through, excluded.dispatched_through),
                   record_batch = CASE WHEN excluded.record_batch = 0
                     THEN record_batch ELSE excluded.record_batch END",
            )
            .bind(instance)
            .bind(through)
            .bind(batch)
            .bind(Utc::now())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn unfinished(&self, instance: &str) -> Result<Vec<Unfinished>, StoreError> {
        let rows = sqlx::query(
            "SELECT i.id, i.event_id, i.backfilled, i.raw FROM event_listeners_inbox i
             WHERE i.instance = ?1 AND i.id > COALESCE(
               (SELECT dispatched_through FROM event_listeners_cursor WHERE instance = ?1), 0)
             ORDER BY i.id",
        )
        .bind(instance)
        .fetch_all(&self.pool)
        .await?;
        let mut done: HashMap<i64, Vec<String>> = HashMap::new();
        if let Some(first) = rows.first() {
            let from: i64 = first.get(0);
            for r in sqlx::query(
                "SELECT inbox_id, listener_name FROM event_listeners_eventlog WHERE inbox_id >= ?",
            )
            .bind(from)
            .fetch_all(&self.pool)
            .await?
            {
                done.entry(r.get(0)).or_default().push(r.get(1));
            }
        }
        rows_to_unfinished(
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))),
            &mut done,
        )
    }

    async fn cleanup(&self, before: DateTime<Utc>) -> Result<CleanupCounts, StoreError> {
        let mut tx = self.pool.begin().await?;
        let eventlog = sqlx::query("DELETE FROM event_listeners_eventlog WHERE timestamp < ?")
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let inbox = sqlx::query("DELETE FROM event_listeners_inbox WHERE received_at < ?")
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(CleanupCounts { eventlog, inbox })
    }

    async fn summary(&self) -> Result<Summary, StoreError> {
        let counts = sqlx::query(super::backend::SUMMARY_COUNTS)
            .fetch_one(&self.pool)
            .await?;
        let by_type = sqlx::query_as::<_, (String, i64)>(super::backend::SUMMARY_BY_TYPE)
            .fetch_all(&self.pool)
            .await?;
        Ok(Summary {
            inbox: counts.get(0),
            eventlog: counts.get(1),
            failures: counts.get(2),
            messages: counts.get(3),
            users: counts.get(4),
            by_type,
        })
    }
}

async fn insert_eventlog(
    tx: &mut Transaction<'_, Sqlite>,
    runs: &[RunRecord],
) -> Result<(), sqlx::Error> {
    for chunk in runs.chunks(CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO event_listeners_eventlog
               (listener_name, inbox_id, event_type, success, attempts, error, duration, timestamp) ",
        );
        q.push_values(chunk, |mut b, r| {
            b.push_bind(&*r.listener)
                .push_bind(r.inbox_id)
                .push_bind(&*r.event_type)
                .push_bind(r.success)
                .push_bind(r.attempts as i64)
                .push_bind(r.error.as_deref())
                .push_bind(r.duration.as_secs_f64())
                .push_bind(r.finished_at);
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

async fn insert_messagelog(
    tx: &mut Transaction<'_, Sqlite>,
    runs: &[RunRecord],
) -> Result<(), sqlx::Error> {
    let logs = super::aggregate::message_logs(runs);
    for chunk in logs.chunks(CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO event_listeners_messagelog
               (message_id, inbox_id, sender_id, sender_email, recipient_type, channel, topic,
                dm_recipients, content_length, sent_at) ",
        );
        q.push_values(chunk, |mut b, (inbox_id, m)| {
            b.push_bind(m.message_id)
                .push_bind(*inbox_id)
                .push_bind(m.sender_id)
                .push_bind(m.sender_email.as_str())
                .push_bind(m.recipient_type)
                .push_bind(m.channel.as_deref())
                .push_bind(m.topic.as_deref())
                .push_bind(m.dm_recipients.as_deref())
                .push_bind(m.content_length)
                .push_bind(m.sent_at);
        });
        q.push(" ON CONFLICT (message_id) DO NOTHING");
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

async fn upsert_activity(
    tx: &mut Transaction<'_, Sqlite>,
    runs: &[RunRecord],
) -> Result<(), sqlx::Error> {
    let totals = activity_totals(runs);
    for chunk in totals.chunks(CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO event_listeners_useractivity
               (user_id, email, last_seen, message_count, reaction_count, presence_count, typing_count) ",
        );
        q.push_values(chunk, |mut b, t| {
            b.push_bind(t.user_id)
                .push_bind(t.email.as_deref())
                .push_bind(t.last_seen)
                .push_bind(t.messages)
                .push_bind(t.reactions)
                .push_bind(t.presence)
                .push_bind(t.typing);
        });
        q.push(
            " ON CONFLICT (user_id) DO UPDATE SET
               email = COALESCE(excluded.email, email),
               last_seen = MAX(last_seen, excluded.last_seen),
               message_count = message_count + excluded.message_count,
               reaction_count = reaction_count + excluded.reaction_count,
               presence_count = presence_count + excluded.presence_count,
               typing_count = typing_count + excluded.typing_count",
        );
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// `INSERT INTO event_listeners_listenerstats … VALUES` for `buckets`; the
/// caller adds the `ON CONFLICT` clause (increments from the recorder,
/// absolute values from `aggregate`).
pub(super) fn stats_insert(buckets: &[StatsBucket]) -> QueryBuilder<'_, Sqlite> {
    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO event_listeners_listenerstats
           (listener_name, bucket_start, total_events, successful_events, failed_events,
            total_duration, max_duration, last_success) ",
    );
    q.push_values(buckets, |mut b, s| {
        b.push_bind(s.listener.as_str())
            .push_bind(s.bucket_start)
            .push_bind(s.total)
            .push_bind(s.successes)
            .push_bind(s.failures)
            .push_bind(s.total_duration)
            .push_bind(s.max_duration)
            .push_bind(s.last_success);
    });
    q
}

async fn upsert_stats(
    tx: &mut Transaction<'_, Sqlite>,
    runs: &[RunRecord],
    opts: &StoreOptions,
) -> Result<(), sqlx::Error> {
    let buckets = stats_buckets(runs, opts.stats_interval);
    for chunk in buckets.chunks(CHUNK) {
        let mut q = stats_insert(chunk);
        q.push(
            " ON CONFLICT (listener_name, bucket_start) DO UPDATE SET
               total_events = total_events + excluded.total_events,
               successful_events = successful_events + excluded.successful_events,
               failed_events = failed_events + excluded.failed_events,
               total_duration = total_duration + excluded.total_duration,
               max_duration = MAX(max_duration, excluded.max_duration),
               last_success = COALESCE(MAX(last_success, excluded.last_success),
                                       excluded.last_success, last_success)",
        );
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}
