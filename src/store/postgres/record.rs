//! The recorder's write on PostgreSQL: one statement per batch.
//!
//! A batch of runs touches up to six tables (event log, dead letters,
//! message log, user activity, listener stats, the dispatch watermark).
//! Sent as six statements inside `BEGIN`/`COMMIT`, that is eight round
//! trips, and the server waits idle in the transaction between them while
//! the daemon's threads are busy elsewhere. Here each table's write is one
//! data-modifying `WITH` part of a single statement: one round trip, one
//! implicit transaction, all or nothing. Every part is executed whether or
//! not the final `SELECT` reads it.
//!
//! The statement's text depends only on which parts a batch needs, so there
//! are a handful of texts and each is prepared once per connection.
//!
//! A batch that edits, moves or deletes logged messages is the exception:
//! those changes must see the rows the batch logs, which another part of
//! the same statement cannot, so they follow as a second statement in one
//! transaction (`changes.rs`). The built-in listeners' parts (message
//! log, user activity) are in `builtin_rows.rs`.

use async_trait::async_trait;
use sqlx::encode::Encode;
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, Postgres, Type};

use super::changes::apply_message_changes;
use super::connect::{Insert, PgStore};
use super::eventruns::attempts;
use crate::store::aggregate::stats_buckets;
use crate::store::changes::message_changes;
use crate::store::crypto::Cipher;
use crate::store::dialect::RecordDialect;
use crate::store::error::StoreError;
use crate::store::listener_rows::{listener_data, replies};
use crate::store::model::{fallback_columns, RunRecord, StoreOptions};
use crate::store::triage_model::DeadLetterCause;

#[async_trait]
impl RecordDialect for PgStore {
    async fn insert_runs(
        &self,
        instance: &str,
        runs: &[RunRecord],
        dispatched_through: Option<i64>,
        batch: i64,
    ) -> Result<(), StoreError> {
        let changes = message_changes(runs);
        let changes = &changes;
        // A unique violation is a message logged already (a replay): the
        // careful form skips it.
        Insert::plain_then_skipping(|mode| async move {
            let statement = RecordStatement::build(
                instance,
                runs,
                dispatched_through,
                batch,
                self.opts(),
                mode,
            )
            .map_err(|e| StoreError::Query(sqlx::Error::Encode(e)))?;
            let parts = statement.into_parts();
            if changes.is_empty() {
                if let Some((sql, args)) = parts {
                    sqlx::query_with(&sql, args).execute(self.pool()).await?;
                }
                return Ok(());
            }
            // Edits, moves and deletions must see the rows this batch logs
            // (the parts of one statement share a snapshot): a second
            // statement, in one transaction with the first.
            let mut tx = self.pool().begin().await?;
            if let Some((sql, args)) = parts {
                sqlx::query_with(&sql, args).execute(&mut *tx).await?;
            }
            apply_message_changes(&mut tx, instance, changes).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }
}

/// The statement and its arguments, built part by part.
pub(super) struct RecordStatement {
    pub(super) parts: Vec<String>,
    args: PgArguments,
    next: usize,
}

impl RecordStatement {
    /// The statement for `runs`, the watermark and the batch tag.
    fn build(
        instance: &str,
        runs: &[RunRecord],
        dispatched_through: Option<i64>,
        batch: i64,
        opts: &StoreOptions,
        mode: Insert,
    ) -> Result<RecordStatement, sqlx::error::BoxDynError> {
        let mut s = RecordStatement {
            parts: Vec::new(),
            args: PgArguments::default(),
            next: 1,
        };
        if !runs.is_empty() {
            s.eventlog(runs)?;
            s.dead_letters(runs)?;
            s.messagelog(instance, runs, mode)?;
            s.activity(instance, runs)?;
            s.listener_data(runs, &opts.cipher)?;
            s.replies(instance, runs, &opts.cipher)?;
            if opts.stats_enabled {
                s.stats(runs, opts)?;
            }
        }
        if let Some(through) = dispatched_through {
            s.watermark(instance, through, batch)?;
        }
        Ok(s)
    }

    /// The SQL text and its arguments; `None` when there is nothing to write.
    fn into_parts(self) -> Option<(String, PgArguments)> {
        if self.parts.is_empty() {
            return None;
        }
        let withs: Vec<String> = self
            .parts
            .iter()
            .enumerate()
            .map(|(i, p)| format!("w{i} AS ({p})"))
            .collect();
        Some((format!("WITH {} SELECT 1", withs.join(", ")), self.args))
    }

    /// Binds `value` and returns its placeholder, such as `$3`.
    pub(super) fn bind<'q, T>(&mut self, value: T) -> Result<String, sqlx::error::BoxDynError>
    where
        T: Encode<'q, Postgres> + Type<Postgres> + Send + 'q,
    {
        self.args.add(value)?;
        let p = format!("${}", self.next);
        self.next += 1;
        Ok(p)
    }

    /// The runs' event log: the successes one compact row for the batch
    /// (`eventruns.rs`), the others a row each.
    fn eventlog(&mut self, runs: &[RunRecord]) -> Result<(), sqlx::error::BoxDynError> {
        let (compact, rows) = super::eventruns::split(runs);
        if let Some(at) = compact.logged_at {
            let first = self.bind(compact.first_inbox)?;
            let last = self.bind(compact.last_inbox)?;
            let at = self.bind(at)?;
            let inbox = self.bind(compact.inbox_ids)?;
            let types = self.bind(compact.event_types)?;
            let names = self.bind(compact.listeners)?;
            let tries = self.bind(compact.attempts)?;
            let durations = self.bind(compact.durations)?;
            let behind = self.bind(compact.behind)?;
            self.parts.push(format!(
                "INSERT INTO event_listeners_eventruns
                   (first_inbox, last_inbox, logged_at, inbox_ids, event_types, listeners,
                    attempts, durations, behind)
                 VALUES ({first}, {last}, {at}, {inbox}::int8[], {types}::text[], {names}::text[],
                   {tries}::int4[], {durations}::float8[], {behind}::int8[])"
            ));
        }
        if rows.is_empty() {
            return Ok(());
        }
        let names = self.bind(rows.iter().map(|r| &*r.listener).collect::<Vec<_>>())?;
        let inbox = self.bind(rows.iter().map(|r| r.inbox_id).collect::<Vec<_>>())?;
        let types = self.bind(rows.iter().map(|r| &*r.event_type).collect::<Vec<_>>())?;
        let success = self.bind(rows.iter().map(|r| r.success).collect::<Vec<_>>())?;
        let attempts = self.bind(
            rows.iter()
                .map(|r| attempts(r.attempts))
                .collect::<Vec<_>>(),
        )?;
        let errors = self.bind(rows.iter().map(|r| r.error.as_deref()).collect::<Vec<_>>())?;
        let durations = self.bind(
            rows.iter()
                .map(|r| r.duration.as_secs_f64())
                .collect::<Vec<_>>(),
        )?;
        let times = self.bind(rows.iter().map(|r| r.finished_at).collect::<Vec<_>>())?;
        self.parts.push(format!(
            "INSERT INTO event_listeners_eventlog_rows
               (listener_name, inbox_id, event_type, success, attempts, error, duration, timestamp)
             SELECT * FROM UNNEST({names}::text[], {inbox}::int8[], {types}::text[],
               {success}::bool[], {attempts}::int4[], {errors}::text[], {durations}::float8[],
               {times}::timestamptz[])"
        ));
        Ok(())
    }

    fn dead_letters(&mut self, runs: &[RunRecord]) -> Result<(), sqlx::error::BoxDynError> {
        let dead: Vec<(&RunRecord, &DeadLetterCause)> = runs
            .iter()
            .filter_map(|r| r.dead_letter.as_ref().map(|c| (r, c)))
            .collect();
        if dead.is_empty() {
            return Ok(());
        }
        let names = self.bind(dead.iter().map(|(r, _)| &*r.listener).collect::<Vec<_>>())?;
        let inbox = self.bind(dead.iter().map(|(r, _)| r.inbox_id).collect::<Vec<_>>())?;
        let types = self.bind(dead.iter().map(|(r, _)| &*r.event_type).collect::<Vec<_>>())?;
        let errors = self.bind(
            dead.iter()
                .map(|(r, _)| r.error.as_deref())
                .collect::<Vec<_>>(),
        )?;
        let tries = self.bind(
            dead.iter()
                .map(|(r, _)| attempts(r.attempts))
                .collect::<Vec<_>>(),
        )?;
        let times = self.bind(dead.iter().map(|(r, _)| r.finished_at).collect::<Vec<_>>())?;
        let stages = self.bind(
            dead.iter()
                .map(|(_, c)| c.stage.as_str())
                .collect::<Vec<_>>(),
        )?;
        let classes = self.bind(
            dead.iter()
                .map(|(_, c)| c.class.as_str())
                .collect::<Vec<_>>(),
        )?;
        let firsts = self.bind(
            dead.iter()
                .map(|(r, c)| c.first_failed_at.min(r.finished_at))
                .collect::<Vec<_>>(),
        )?;
        let (fb_names, fb_outcomes): (Vec<_>, Vec<_>) =
            dead.iter().map(|(r, _)| fallback_columns(r)).unzip();
        let fb_names = self.bind(fb_names)?;
        let fb_outcomes = self.bind(fb_outcomes)?;
        self.parts.push(format!(
            "INSERT INTO event_listeners_deadletter
               (listener_name, inbox_id, event_type, error, attempts, created_at, stage,
                error_class, first_failed_at, last_failed_at, fallback_listener, fallback_outcome)
             SELECT n, i, t, e, a, at, s, c, f, at, fl, fo FROM UNNEST({names}::text[],
               {inbox}::int8[], {types}::text[], {errors}::text[], {tries}::int4[],
               {times}::timestamptz[], {stages}::text[], {classes}::text[], {firsts}::timestamptz[],
               {fb_names}::text[], {fb_outcomes}::text[])
               AS u(n, i, t, e, a, at, s, c, f, fl, fo)"
        ));
        Ok(())
    }

    fn listener_data(
        &mut self,
        runs: &[RunRecord],
        cipher: &Cipher,
    ) -> Result<(), sqlx::error::BoxDynError> {
        let rows = listener_data(runs, cipher)?;
        if rows.is_empty() {
            return Ok(());
        }
        let names = self.bind(rows.iter().map(|d| d.listener).collect::<Vec<_>>())?;
        let keys = self.bind(rows.iter().map(|d| d.key).collect::<Vec<_>>())?;
        let values = self.bind(
            rows.iter()
                .map(|d| sqlx::types::Json(d.value.as_ref()))
                .collect::<Vec<_>>(),
        )?;
        let key_ids = self.bind(rows.iter().map(|d| d.key_id.as_deref()).collect::<Vec<_>>())?;
        let inbox = self.bind(rows.iter().map(|d| d.inbox_id).collect::<Vec<_>>())?;
        let times = self.bind(rows.iter().map(|d| d.at).collect::<Vec<_>>())?;
        self.parts.push(format!(
            "INSERT INTO event_listeners_listenerdata
               (listener_name, key, value, key_id, inbox_id, updated_at)
             SELECT * FROM UNNEST({names}::text[], {keys}::text[], {values}::jsonb[],
               {key_ids}::text[], {inbox}::int8[], {times}::timestamptz[])
             ON CONFLICT (listener_name, key) DO UPDATE SET value = excluded.value,
               key_id = excluded.key_id, inbox_id = excluded.inbox_id,
               updated_at = excluded.updated_at
             WHERE excluded.inbox_id >= event_listeners_listenerdata.inbox_id"
        ));
        Ok(())
    }

    fn replies(
        &mut self,
        instance: &str,
        runs: &[RunRecord],
        cipher: &Cipher,
    ) -> Result<(), sqlx::error::BoxDynError> {
        let rows = replies(runs, cipher)?;
        if rows.is_empty() {
            return Ok(());
        }
        let instance = self.bind(instance)?;
        let names = self.bind(rows.iter().map(|r| r.listener).collect::<Vec<_>>())?;
        let inbox = self.bind(rows.iter().map(|r| r.inbox_id).collect::<Vec<_>>())?;
        let seqs = self.bind(rows.iter().map(|r| r.seq).collect::<Vec<_>>())?;
        let kinds = self.bind(rows.iter().map(|r| r.recipient_type).collect::<Vec<_>>())?;
        let channels = self.bind(rows.iter().map(|r| r.channel).collect::<Vec<_>>())?;
        let topics = self.bind(rows.iter().map(|r| r.topic).collect::<Vec<_>>())?;
        let users = self.bind(
            rows.iter()
                .map(|r| r.user_ids.as_deref())
                .collect::<Vec<_>>(),
        )?;
        let contents = self.bind(rows.iter().map(|r| r.content.as_ref()).collect::<Vec<_>>())?;
        let key_ids = self.bind(rows.iter().map(|r| r.key_id.as_deref()).collect::<Vec<_>>())?;
        let times = self.bind(rows.iter().map(|r| r.at).collect::<Vec<_>>())?;
        self.parts.push(format!(
            "INSERT INTO event_listeners_replyoutbox
               (instance, listener_name, inbox_id, seq, recipient_type, channel, topic, user_ids,
                content, key_id, created_at, updated_at)
             SELECT {instance}::text, n, i, s, k, c, t, u, b, kid, at, at FROM UNNEST({names}::text[],
               {inbox}::int8[], {seqs}::int4[], {kinds}::text[], {channels}::text[],
               {topics}::text[], {users}::text[], {contents}::text[], {key_ids}::text[],
               {times}::timestamptz[])
               AS x(n, i, s, k, c, t, u, b, kid, at)
             ON CONFLICT (listener_name, inbox_id, seq) DO NOTHING"
        ));
        Ok(())
    }

    fn stats(
        &mut self,
        runs: &[RunRecord],
        opts: &StoreOptions,
    ) -> Result<(), sqlx::error::BoxDynError> {
        let buckets = stats_buckets(runs, opts.stats_interval);
        if buckets.is_empty() {
            return Ok(());
        }
        let names = self.bind(
            buckets
                .iter()
                .map(|b| b.listener.as_str())
                .collect::<Vec<_>>(),
        )?;
        let starts = self.bind(buckets.iter().map(|b| b.bucket_start).collect::<Vec<_>>())?;
        let totals = self.bind(buckets.iter().map(|b| b.total).collect::<Vec<_>>())?;
        let successes = self.bind(buckets.iter().map(|b| b.successes).collect::<Vec<_>>())?;
        let failures = self.bind(buckets.iter().map(|b| b.failures).collect::<Vec<_>>())?;
        let durations = self.bind(buckets.iter().map(|b| b.total_duration).collect::<Vec<_>>())?;
        let maxima = self.bind(buckets.iter().map(|b| b.max_duration).collect::<Vec<_>>())?;
        let last = self.bind(buckets.iter().map(|b| b.last_success).collect::<Vec<_>>())?;
        self.parts.push(format!(
            "INSERT INTO event_listeners_listenerstats AS s
               (listener_name, bucket_start, total_events, successful_events, failed_events,
                total_duration, max_duration, last_success)
             SELECT * FROM UNNEST({names}::text[], {starts}::timestamptz[], {totals}::int8[],
               {successes}::int8[], {failures}::int8[], {durations}::float8[], {maxima}::float8[],
               {last}::timestamptz[])
             ON CONFLICT (listener_name, bucket_start) DO UPDATE SET
               total_events = s.total_events + excluded.total_events,
               successful_events = s.successful_events + excluded.successful_events,
               failed_events = s.failed_events + excluded.failed_events,
               total_duration = s.total_duration + excluded.total_duration,
               max_duration = GREATEST(s.max_duration, excluded.max_duration),
               last_success = GREATEST(s.last_success, excluded.last_success)"
        ));
        Ok(())
    }

    fn watermark(
        &mut self,
        instance: &str,
        through: i64,
        batch: i64,
    ) -> Result<(), sqlx::error::BoxDynError> {
        let instance = self.bind(instance)?;
        let through = self.bind(through)?;
        let batch = self.bind(batch)?;
        self.parts.push(format!(
            "INSERT INTO event_listeners_dispatched (instance, dispatched_through, record_batch, updated_at)
             VALUES ({instance}, {through}, {batch}, now())
             ON CONFLICT (instance) DO UPDATE SET dispatched_through =
               GREATEST(event_listeners_dispatched.dispatched_through, excluded.dispatched_through),
               record_batch = CASE WHEN excluded.record_batch = 0
                 THEN event_listeners_dispatched.record_batch ELSE excluded.record_batch END,
               updated_at = excluded.updated_at"
        ));
        Ok(())
    }
}
