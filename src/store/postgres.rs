//! [`PgStore`]: the PostgreSQL backend.
//!
//! Every hot-path write is one statement per table per batch: the rows
//! travel as parallel arrays and `UNNEST` turns them back into rows, so the
//! SQL text never changes with the batch size and is prepared once per
//! connection.

use std::collections::HashMap;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};

use super::aggregate::{activity_totals, stats_buckets};
use super::backend::{
    CleanupCounts, Cursor, RunRecord, Store, StoreError, StoreOptions, StoredEvent, Summary,
    Unfinished,
};
use crate::event::Event;
use crate::listeners::Record;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// The PostgreSQL store.
pub struct PgStore {
    pool: PgPool,
    location: String,
    opts: StoreOptions,
}

impl PgStore {
    /// Connects to the database at `url`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the URL is malformed or the server unreachable.
    pub async fn open(url: &str, opts: &StoreOptions) -> Result<PgStore, StoreError> {
        let connect = PgConnectOptions::from_str(url).map_err(StoreError::Query)?;
        let location = format!(
            "postgres://{}@{}:{}/{}",
            connect.get_username(),
            connect.get_host(),
            connect.get_port(),
            connect.get_database().unwrap_or(connect.get_username())
        );
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(std::time::Duration::from_secs(5))
            // No ping before each transaction: it is a round trip per batch
            // on the hot path, and a connection that died is found by the
            // statement itself, whose error every caller retries.
            .test_before_acquire(false)
            .connect_with(connect)
            .await?;
        Ok(PgStore {
            pool,
            location,
            opts: opts.clone(),
        })
    }

    /// The connection pool, for tests and the benchmark.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// One try at storing `events` and the cursor: one transaction.
    async fn append_once(
        &self,
        instance: &str,
        source: &str,
        events: &[Event],
        cursor: Option<&Cursor>,
        mode: Insert,
    ) -> Result<Vec<Option<i64>>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut ids = vec![None; events.len()];
        if !events.is_empty() {
            let event_ids: Vec<i64> = events.iter().map(Event::id).collect();
            let types: Vec<&str> = events.iter().map(Event::event_type).collect();
            let ops: Vec<Option<&str>> = events.iter().map(Event::op).collect();
            let message_ids: Vec<Option<i64>> = events.iter().map(Event::message_id).collect();
            let backfilled: Vec<bool> = events.iter().map(Event::is_backfilled).collect();
            let raws: Vec<&str> = events.iter().map(Event::raw).collect();
            let sql = match mode {
                Insert::Plain => INBOX_INSERT,
                Insert::SkipExisting => INBOX_INSERT_SKIP_EXISTING,
            };
            let rows = sqlx::query(sql)
                .bind(instance)
                .bind(source)
                .bind(&event_ids)
                .bind(&types)
                .bind(&ops)
                .bind(&message_ids)
                .bind(&backfilled)
                .bind(&raws)
                .fetch_all(&mut *tx)
                .await?;
            let by_event: HashMap<i64, i64> = rows
                .iter()
                .map(|r| (r.get::<i64, _>(1), r.get::<i64, _>(0)))
                .collect();
            for (slot, id) in ids.iter_mut().zip(&event_ids) {
                *slot = by_event.get(id).copied();
            }
        }
        if let Some(c) = cursor {
            write_cursor(&mut tx, instance, c).await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// One try at recording `runs`: all in one transaction.
    async fn record_once(
        &self,
        instance: &str,
        runs: &[RunRecord],
        dispatched_through: Option<i64>,
        batch: i64,
        mode: Insert,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        if !runs.is_empty() {
            insert_eventlog(&mut tx, runs).await?;
            super::postgres_admin::insert_dead_letters(&mut tx, runs).await?;
            insert_messagelog(&mut tx, runs, mode).await?;
            upsert_activity(&mut tx, runs).await?;
            if self.opts.stats_enabled {
                upsert_stats(&mut tx, runs, &self.opts).await?;
            }
        }
        if let Some(through) = dispatched_through {
            sqlx::query(
                "INSERT INTO event_listeners_cursor (instance, dispatched_through, record_batch, updated_at)
                 VALUES ($1, $2, $3, now())
                 ON CONFLICT (instance) DO UPDATE SET dispatched_through =
                   GREATEST(event_listeners_cursor.dispatched_through, excluded.dispatched_through),
                   record_batch = CASE WHEN excluded.record_batch = 0
                     THEN event_listeners_cursor.record_batch ELSE excluded.record_batch END",
            )
            .bind(instance)
            .bind(through)
            .bind(batch)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// How a batch insert treats rows stored already.
#[derive(Clone, Copy)]
enum Insert {
    /// Assumes there are none: the fast path. A row stored already fails the
    /// whole statement with a unique violation, and the batch is retried
    /// with [`Insert::SkipExisting`]. `ON CONFLICT` is not free: measured,
    /// 100,000 1 KB inbox rows in batches of 1,000 take 8.8 µs/row of
    /// server CPU without it and 14.8 µs/row with it (a speculative
    /// insertion per row, and a second WAL record to confirm it).
    Plain,
    /// `ON CONFLICT DO NOTHING`.
    SkipExisting,
}

/// Whether `e` is a unique-constraint violation (SQLSTATE 23505).
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}

const INBOX_INSERT: &str = "INSERT INTO event_listeners_inbox
       (instance, queue_id, event_id, event_type, op, message_id, backfilled, raw)
     SELECT $1, $2, t.event_id, t.event_type, t.op, t.message_id, t.backfilled, t.raw
     FROM UNNEST($3::int8[], $4::text[], $5::text[], $6::int8[], $7::bool[], $8::text[])
       AS t(event_id, event_type, op, message_id, backfilled, raw)
     RETURNING id, event_id";

const INBOX_INSERT_SKIP_EXISTING: &str = "INSERT INTO event_listeners_inbox
       (instance, queue_id, event_id, event_type, op, message_id, backfilled, raw)
     SELECT $1, $2, t.event_id, t.event_type, t.op, t.message_id, t.backfilled, t.raw
     FROM UNNEST($3::int8[], $4::text[], $5::text[], $6::int8[], $7::bool[], $8::text[])
       AS t(event_id, event_type, op, message_id, backfilled, raw)
     ON CONFLICT DO NOTHING
     RETURNING id, event_id";

const MESSAGELOG_INSERT: &str = "INSERT INTO event_listeners_messagelog
       (message_id, inbox_id, sender_id, sender_email, recipient_type, channel, topic,
        dm_recipients, content_length, sent_at)
     SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::text[], $5::text[],
                          $6::text[], $7::text[], $8::text[], $9::int4[], $10::timestamptz[])";

const MESSAGELOG_INSERT_SKIP_EXISTING: &str = "INSERT INTO event_listeners_messagelog
       (message_id, inbox_id, sender_id, sender_email, recipient_type, channel, topic,
        dm_recipients, content_length, sent_at)
     SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::text[], $5::text[],
                          $6::text[], $7::text[], $8::text[], $9::int4[], $10::timestamptz[])
     ON CONFLICT (message_id) DO NOTHING";

async fn write_cursor(
    tx: &mut Transaction<'_, Postgres>,
    instance: &str,
    c: &Cursor,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO event_listeners_cursor (instance, site, queue_id, last_event_id, last_message_id, updated_at)
         VALUES ($1, $2, $3, $4, $5, now())
         ON CONFLICT (instance) DO UPDATE SET
           site = excluded.site, queue_id = excluded.queue_id, last_event_id = excluded.last_event_id,
           last_message_id = GREATEST(event_listeners_cursor.last_message_id, excluded.last_message_id),
           updated_at = now()",
    )
    .bind(instance)
    .bind(&c.site)
    .bind(&c.queue_id)
    .bind(c.last_event_id)
    .bind(c.last_message_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    async fn pending_migrations(&self) -> Result<Vec<String>, StoreError> {
        let exists: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
                .fetch_one(&self.pool)
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
             WHERE instance = $1 AND queue_id IS NOT NULL",
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
        match self
            .append_once(instance, source, events, cursor, Insert::Plain)
            .await
        {
            Err(StoreError::Query(e)) if is_unique_violation(&e) => {
                // Some of these events are stored already (a backfilled
                // message arriving live, or a retried batch whose first
                // COMMIT answer was lost): the careful form skips them.
                self.append_once(instance, source, events, cursor, Insert::SkipExisting)
                    .await
            }
            other => other,
        }
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
            "SELECT updated_at FROM event_listeners_cursor WHERE instance = $1 AND queue_id IS NOT NULL",
        )
        .bind(instance)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn last_record_batch(&self, instance: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE((SELECT record_batch FROM event_listeners_cursor WHERE instance = $1), 0)",
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
        Ok(sqlx::query_as(
            "SELECT event_id, id FROM event_listeners_inbox
             WHERE instance = $1 AND queue_id = $2 AND event_id = ANY($3)",
        )
        .bind(instance)
        .bind(source)
        .bind(event_ids)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn record_batch(
        &self,
        instance: &str,
        runs: &[RunRecord],
        dispatched_through: Option<i64>,
        batch: i64,
    ) -> Result<(), StoreError> {
        match self
            .record_once(instance, runs, dispatched_through, batch, Insert::Plain)
            .await
        {
            Err(StoreError::Query(e)) if is_unique_violation(&e) => {
                // A message logged already (a replay): skip it.
                self.record_once(
                    instance,
                    runs,
                    dispatched_through,
                    batch,
                    Insert::SkipExisting,
                )
                .await
            }
            other => other,
        }
    }

    async fn unfinished(&self, instance: &str) -> Result<Vec<Unfinished>, StoreError> {
        let rows = sqlx::query(
            "SELECT i.id, i.event_id, i.backfilled, i.raw::text FROM event_listeners_inbox i
             WHERE i.instance = $1 AND i.id > COALESCE(
               (SELECT dispatched_through FROM event_listeners_cursor WHERE instance = $1), 0)
             ORDER BY i.id",
        )
        .bind(instance)
        .fetch_all(&self.pool)
        .await?;
        let from: i64 = rows.first().map(|r| r.get(0)).unwrap_or(i64::MAX);
        let done_rows = sqlx::query(
            "SELECT inbox_id, listener_name FROM event_listeners_eventlog WHERE inbox_id >= $1",
        )
        .bind(from)
        .fetch_all(&self.pool)
        .await?;
        let mut done: HashMap<i64, Vec<String>> = HashMap::new();
        for r in done_rows {
            done.entry(r.get(0)).or_default().push(r.get(1));
        }
        rows_to_unfinished(
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))),
            &mut done,
        )
    }

    async fn cleanup(&self, before: DateTime<Utc>) -> Result<CleanupCounts, StoreError> {
        let mut tx = self.pool.begin().await?;
        let eventlog = sqlx::query("DELETE FROM event_listeners_eventlog WHERE timestamp < $1")
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let inbox = sqlx::query("DELETE FROM event_listeners_inbox WHERE received_at < $1")
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(CleanupCounts { eventlog, inbox })
    }

    async fn summary(&self) -> Result<Summary, StoreError> {
        summary_queries(&self.pool).await
    }
}

/// Builds [`Unfinished`] values from `(inbox id, event id, backfilled, raw)` rows.
pub(super) fn rows_to_unfinished(
    rows: impl Iterator<Item = (i64, i64, bool, String)>,
    done: &mut HashMap<i64, Vec<String>>,
) -> Result<Vec<Unfinished>, StoreError> {
    let mut out = Vec::new();
    for (inbox_id, event_id, backfilled, raw) in rows {
        let raw = RawValue::from_string(raw)
            .map_err(|e| StoreError::Query(sqlx::Error::Decode(Box::new(e))))?;
        match Event::from_raw_parts(raw, Some(event_id), backfilled) {
            Ok(event) => out.push(Unfinished {
                stored: StoredEvent { inbox_id, event },
                done: done.remove(&inbox_id).unwrap_or_default(),
            }),
            Err(e) => tracing::warn!(inbox_id, error = %e, "Skipping an unreadable inbox row"),
        }
    }
    Ok(out)
}

async fn insert_eventlog(
    tx: &mut Transaction<'_, Postgres>,
    runs: &[RunRecord],
) -> Result<(), sqlx::Error> {
    let names: Vec<&str> = runs.iter().map(|r| &*r.listener).collect();
    let inbox: Vec<i64> = runs.iter().map(|r| r.inbox_id).collect();
    let types: Vec<&str> = runs.iter().map(|r| &*r.event_type).collect();
    let success: Vec<bool> = runs.iter().map(|r| r.success).collect();
    let attempts: Vec<i32> = runs.iter().map(|r| r.attempts as i32).collect();
    let errors: Vec<Option<&str>> = runs.iter().map(|r| r.error.as_deref()).collect();
    let durations: Vec<f64> = runs.iter().map(|r| r.duration.as_secs_f64()).collect();
    let times: Vec<DateTime<Utc>> = runs.iter().map(|r| r.finished_at).collect();
    sqlx::query(
        "INSERT INTO event_listeners_eventlog
           (listener_name, inbox_id, event_type, success, attempts, error, duration, timestamp)
         SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::bool[], $5::int4[],
                              $6::text[], $7::float8[], $8::timestamptz[])",
    )
    .bind(&names)
    .bind(&inbox)
    .bind(&types)
    .bind(&success)
    .bind(&attempts)
    .bind(&errors)
    .bind(&durations)
    .bind(&times)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_messagelog(
    tx: &mut Transaction<'_, Postgres>,
    runs: &[RunRecord],
    mode: Insert,
) -> Result<(), sqlx::Error> {
    let logs: Vec<(i64, &crate::listeners::MessageLogRecord)> = runs
        .iter()
        .flat_map(|r| {
            r.records.iter().filter_map(move |rec| match rec {
                Record::MessageLog(m) => Some((r.inbox_id, m)),
                Record::Activity(_) => None,
            })
        })
        .collect();
    if logs.is_empty() {
        return Ok(());
    }
    sqlx::query(match mode {
        Insert::Plain => MESSAGELOG_INSERT,
        Insert::SkipExisting => MESSAGELOG_INSERT_SKIP_EXISTING,
    })
    .bind(logs.iter().map(|(_, m)| m.message_id).collect::<Vec<_>>())
    .bind(logs.iter().map(|(i, _)| *i).collect::<Vec<_>>())
    .bind(logs.iter().map(|(_, m)| m.sender_id).collect::<Vec<_>>())
    .bind(
        logs.iter()
            .map(|(_, m)| m.sender_email.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        logs.iter()
            .map(|(_, m)| m.recipient_type)
            .collect::<Vec<_>>(),
    )
    .bind(
        logs.iter()
            .map(|(_, m)| m.channel.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        logs.iter()
            .map(|(_, m)| m.topic.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        logs.iter()
            .map(|(_, m)| m.dm_recipients.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        logs.iter()
            .map(|(_, m)| m.content_length as i32)
            .collect::<Vec<_>>(),
    )
    .bind(logs.iter().map(|(_, m)| m.sent_at).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn upsert_activity(
    tx: &mut Transaction<'_, Postgres>,
    runs: &[RunRecord],
) -> Result<(), sqlx::Error> {
    let totals = activity_totals(runs);
    if totals.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO event_listeners_useractivity AS a
           (user_id, email, last_seen, message_count, reaction_count, presence_count, typing_count)
         SELECT * FROM UNNEST($1::int8[], $2::text[], $3::timestamptz[], $4::int8[], $5::int8[],
                              $6::int8[], $7::int8[])
         ON CONFLICT (user_id) DO UPDATE SET
           email = COALESCE(excluded.email, a.email),
           last_seen = GREATEST(a.last_seen, excluded.last_seen),
           message_count = a.message_count + excluded.message_count,
           reaction_count = a.reaction_count + excluded.reaction_count,
           presence_count = a.presence_count + excluded.presence_count,
           typing_count = a.typing_count + excluded.typing_count",
    )
    .bind(totals.iter().map(|t| t.user_id).collect::<Vec<_>>())
    .bind(
        totals
            .iter()
            .map(|t| t.email.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(totals.iter().map(|t| t.last_seen).collect::<Vec<_>>())
    .bind(totals.iter().map(|t| t.messages).collect::<Vec<_>>())
    .bind(totals.iter().map(|t| t.reactions).collect::<Vec<_>>())
    .bind(totals.iter().map(|t| t.presence).collect::<Vec<_>>())
    .bind(totals.iter().map(|t| t.typing).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn upsert_stats(
    tx: &mut Transaction<'_, Postgres>,
    runs: &[RunRecord],
    opts: &StoreOptions,
) -> Result<(), sqlx::Error> {
    let buckets = stats_buckets(runs, opts.stats_interval);
    sqlx::query(
        "INSERT INTO event_listeners_listenerstats AS s
           (listener_name, bucket_start, total_events, successful_events, failed_events,
            total_duration, max_duration, last_success)
         SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::int8[], $4::int8[], $5::int8[],
                              $6::float8[], $7::float8[], $8::timestamptz[])
         ON CONFLICT (listener_name, bucket_start) DO UPDATE SET
           total_events = s.total_events + excluded.total_events,
           successful_events = s.successful_events + excluded.successful_events,
           failed_events = s.failed_events + excluded.failed_events,
           total_duration = s.total_duration + excluded.total_duration,
           max_duration = GREATEST(s.max_duration, excluded.max_duration),
           last_success = GREATEST(s.last_success, excluded.last_success)",
    )
    .bind(
        buckets
            .iter()
            .map(|b| b.listener.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(buckets.iter().map(|b| b.bucket_start).collect::<Vec<_>>())
    .bind(buckets.iter().map(|b| b.total).collect::<Vec<_>>())
    .bind(buckets.iter().map(|b| b.successes).collect::<Vec<_>>())
    .bind(buckets.iter().map(|b| b.failures).collect::<Vec<_>>())
    .bind(buckets.iter().map(|b| b.total_duration).collect::<Vec<_>>())
    .bind(buckets.iter().map(|b| b.max_duration).collect::<Vec<_>>())
    .bind(buckets.iter().map(|b| b.last_success).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn summary_queries(pool: &PgPool) -> Result<Summary, StoreError> {
    let counts = sqlx::query(super::backend::SUMMARY_COUNTS)
        .fetch_one(pool)
        .await?;
    let by_type = sqlx::query_as::<_, (String, i64)>(super::backend::SUMMARY_BY_TYPE)
        .fetch_all(pool)
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
