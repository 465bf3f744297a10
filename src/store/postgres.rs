//! [`PgStore`]: the PostgreSQL backend.
//!
//! Every hot-path write is one statement per batch, its own transaction:
//! each table's rows travel as parallel arrays that `UNNEST` turns back
//! into rows, and the tables a batch touches are the data-modifying parts
//! of one `WITH`. The SQL text never changes with the batch size, so it is
//! prepared once per connection. Inserts assume the rows are new; a unique
//! violation retries the batch in the `ON CONFLICT` form ([`Insert`]).

use std::collections::HashMap;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Row;

use super::backend::{
    CleanupCounts, Cursor, RunRecord, Store, StoreError, StoreOptions, StoredEvent, Summary,
    Unfinished,
};
use super::postgres_record::RecordStatement;
use crate::event::Event;

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

    /// One try at storing `events` and the cursor: one statement, so one
    /// round trip and its own transaction (data-modifying `WITH` parts all
    /// run, atomically). A `BEGIN`, `INSERT`, cursor `INSERT`, `COMMIT`
    /// sequence costs four round trips, and the server sits idle in the
    /// transaction between them.
    async fn append_once(
        &self,
        instance: &str,
        source: &str,
        events: &[Event],
        cursor: Option<&Cursor>,
        mode: Insert,
    ) -> Result<Vec<Option<i64>>, StoreError> {
        if events.is_empty() {
            if let Some(c) = cursor {
                let mut conn = self.pool.acquire().await?;
                write_cursor(&mut conn, instance, c).await?;
            }
            return Ok(Vec::new());
        }
        let event_ids: Vec<i64> = events.iter().map(Event::id).collect();
        let types: Vec<&str> = events.iter().map(Event::event_type).collect();
        let ops: Vec<Option<&str>> = events.iter().map(Event::op).collect();
        let message_ids: Vec<Option<i64>> = events.iter().map(Event::message_id).collect();
        let backfilled: Vec<bool> = events.iter().map(Event::is_backfilled).collect();
        let raws: Vec<&str> = events.iter().map(Event::raw).collect();
        let sql = match (mode, cursor.is_some()) {
            (Insert::Plain, false) => APPEND_PLAIN,
            (Insert::Plain, true) => APPEND_PLAIN_CURSOR,
            (Insert::SkipExisting, false) => APPEND_SKIP,
            (Insert::SkipExisting, true) => APPEND_SKIP_CURSOR,
        };
        let mut query = sqlx::query(sql)
            .bind(instance)
            .bind(source)
            .bind(&event_ids)
            .bind(&types)
            .bind(&ops)
            .bind(&message_ids)
            .bind(&backfilled)
            .bind(&raws);
        if let Some(c) = cursor {
            query = query
                .bind(&c.site)
                .bind(&c.queue_id)
                .bind(c.last_event_id)
                .bind(c.last_message_id);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let by_event: HashMap<i64, i64> = rows
            .iter()
            .map(|r| (r.get::<i64, _>(1), r.get::<i64, _>(0)))
            .collect();
        Ok(event_ids
            .iter()
            .map(|id| by_event.get(id).copied())
            .collect())
    }

    /// One try at recording `runs`: one statement (see
    /// [`super::postgres_record`]).
    async fn record_once(
        &self,
        instance: &str,
        runs: &[RunRecord],
        dispatched_through: Option<i64>,
        batch: i64,
        mode: Insert,
    ) -> Result<(), StoreError> {
        let statement =
            RecordStatement::build(instance, runs, dispatched_through, batch, &self.opts, mode)
                .map_err(|e| StoreError::Query(sqlx::Error::Encode(e)))?;
        if let Some((sql, args)) = statement.into_parts() {
            sqlx::query_with(&sql, args).execute(&self.pool).await?;
        }
        Ok(())
    }
}

/// How a batch insert (inbox, message log) treats rows stored already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Insert {
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

/// `$1` instance, `$2` queue (source), `$3`-`$8` the events' columns.
macro_rules! inbox_insert {
    ($conflict:literal) => {
        concat!(
            "INSERT INTO event_listeners_inbox
               (instance, queue_id, event_id, event_type, op, message_id, backfilled, raw)
             SELECT $1, $2, t.event_id, t.event_type, t.op, t.message_id, t.backfilled, t.raw
             FROM UNNEST($3::int8[], $4::text[], $5::text[], $6::int8[], $7::bool[], $8::text[])
               AS t(event_id, event_type, op, message_id, backfilled, raw) ",
            $conflict,
            " RETURNING id, event_id"
        )
    };
}

/// The cursor's upsert: `$1` instance, then the placeholders of site,
/// queue id, last event id and last message id.
macro_rules! cursor_upsert {
    ($site:literal, $queue:literal, $event:literal, $message:literal) => {
        concat!(
            "INSERT INTO event_listeners_cursor (instance, site, queue_id, last_event_id, last_message_id, updated_at)
             VALUES ($1, ", $site, ", ", $queue, ", ", $event, ", ", $message, ", now())
             ON CONFLICT (instance) DO UPDATE SET
               site = excluded.site, queue_id = excluded.queue_id, last_event_id = excluded.last_event_id,
               last_message_id = GREATEST(event_listeners_cursor.last_message_id, excluded.last_message_id),
               updated_at = now()"
        )
    };
}

const APPEND_PLAIN: &str = inbox_insert!("");
const APPEND_SKIP: &str = inbox_insert!("ON CONFLICT DO NOTHING");
/// The inbox insert and the cursor upsert as one statement.
macro_rules! append_with_cursor {
    ($conflict:literal) => {
        concat!(
            "WITH ins AS (",
            inbox_insert!($conflict),
            "), cur AS (",
            cursor_upsert!("$9", "$10", "$11", "$12"),
            ") SELECT id, event_id FROM ins"
        )
    };
}

const APPEND_PLAIN_CURSOR: &str = append_with_cursor!("");
const APPEND_SKIP_CURSOR: &str = append_with_cursor!("ON CONFLICT DO NOTHING");

async fn write_cursor(
    conn: &mut sqlx::PgConnection,
    instance: &str,
    c: &Cursor,
) -> Result<(), sqlx::Error> {
    sqlx::query(cursor_upsert!("$2", "$3", "$4", "$5"))
        .bind(instance)
        .bind(&c.site)
        .bind(&c.queue_id)
        .bind(c.last_event_id)
        .bind(c.last_message_id)
        .execute(conn)
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
