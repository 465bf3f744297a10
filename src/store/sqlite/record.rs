//! The recorder's write on SQLite: one transaction per batch, each table's
//! rows as multi-row statements in chunks of [`CHUNK`] rows. Times are
//! bound from Rust, so they compare as text with each other. Edits, moves
//! and deletions of logged messages follow the batch's new rows
//! (`changes.rs`). The message log and user activity rows are the
//! batch's organization's (`instance`).

use async_trait::async_trait;
use chrono::Utc;
use sqlx::{QueryBuilder, Sqlite, Transaction};

use super::changes::apply_message_changes;
use super::connect::{SqliteStore, CHUNK};
use crate::store::aggregate::{activity_totals, message_logs, stats_buckets, StatsBucket};
use crate::store::changes::message_changes;
use crate::store::dialect::RecordDialect;
use crate::store::error::StoreError;
use crate::store::listener_rows::{listener_data, replies, DataRow, ReplyRow};
use crate::store::model::{fallback_columns, RunRecord, StoreOptions};
use crate::store::triage_model::DeadLetterCause;

#[async_trait]
impl RecordDialect for SqliteStore {
    async fn insert_runs(
        &self,
        instance: &str,
        runs: &[RunRecord],
        dispatched_through: Option<i64>,
        batch: i64,
    ) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool().begin().await?;
        if !runs.is_empty() {
            insert_eventlog(&mut tx, runs).await?;
            insert_dead_letters(&mut tx, runs).await?;
            insert_messagelog(&mut tx, instance, runs).await?;
            apply_message_changes(&mut tx, instance, &message_changes(runs)).await?;
            upsert_activity(&mut tx, instance, runs).await?;
            let cipher = &self.opts().cipher;
            upsert_listener_data(&mut tx, &listener_data(runs, cipher)?).await?;
            insert_replies(&mut tx, instance, &replies(runs, cipher)?).await?;
            if self.opts().stats_enabled {
                upsert_stats(&mut tx, runs, self.opts()).await?;
            }
        }
        if let Some(through) = dispatched_through {
            sqlx::query(
                "INSERT INTO event_listeners_dispatched (instance, dispatched_through, record_batch, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (instance) DO UPDATE SET
                   dispatched_through = MAX(dispatched_through, excluded.dispatched_through),
                   record_batch = CASE WHEN excluded.record_batch = 0
                     THEN record_batch ELSE excluded.record_batch END,
                   updated_at = excluded.updated_at",
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
    instance: &str,
    runs: &[RunRecord],
) -> Result<(), sqlx::Error> {
    let logs = message_logs(runs);
    for chunk in logs.chunks(CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO event_listeners_messagelog
               (instance, message_id, inbox_id, sender_id, sender_email, recipient_type, channel,
                topic, dm_recipients, content_length, sent_at, channel_id) ",
        );
        q.push_values(chunk, |mut b, (inbox_id, m)| {
            b.push_bind(instance)
                .push_bind(m.message_id)
                .push_bind(*inbox_id)
                .push_bind(m.sender_id)
                .push_bind(m.sender_email.as_str())
                .push_bind(m.recipient_type)
                .push_bind(m.channel.as_deref())
                .push_bind(m.topic.as_deref())
                .push_bind(m.dm_recipients.as_deref())
                .push_bind(m.content_length)
                .push_bind(m.sent_at)
                .push_bind(m.channel_id);
        });
        q.push(" ON CONFLICT (instance, message_id) DO NOTHING");
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

async fn upsert_activity(
    tx: &mut Transaction<'_, Sqlite>,
    instance: &str,
    runs: &[RunRecord],
) -> Result<(), sqlx::Error> {
    let totals = activity_totals(runs);
    for chunk in totals.chunks(CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO event_listeners_useractivity
               (instance, user_id, email, last_seen, message_count, reaction_count,
                presence_count, typing_count, edit_count) ",
        );
        q.push_values(chunk, |mut b, t| {
            b.push_bind(instance)
                .push_bind(t.user_id)
                .push_bind(t.email.as_deref())
                .push_bind(t.last_seen)
                .push_bind(t.messages)
                .push_bind(t.reactions)
                .push_bind(t.presence)
                .push_bind(t.typing)
                .push_bind(t.edits);
        });
        q.push(
            " ON CONFLICT (instance, user_id) DO UPDATE SET
               email = COALESCE(excluded.email, email),
               last_seen = MAX(last_seen, excluded.last_seen),
               message_count = message_count + excluded.message_count,
               reaction_count = reaction_count + excluded.reaction_count,
               presence_count = presence_count + excluded.presence_count,
               typing_count = typing_count + excluded.typing_count,
               edit_count = edit_count + excluded.edit_count",
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

/// Inserts one `event_listeners_deadletter` row per run of `runs` with a
/// [`RunRecord::dead_letter`] cause, in multi-row statements.
async fn insert_dead_letters(
    tx: &mut Transaction<'_, Sqlite>,
    runs: &[RunRecord],
) -> Result<(), sqlx::Error> {
    let dead: Vec<(&RunRecord, &DeadLetterCause)> = runs
        .iter()
        .filter_map(|r| r.dead_letter.as_ref().map(|c| (r, c)))
        .collect();
    for chunk in dead.chunks(CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO event_listeners_deadletter
               (listener_name, inbox_id, event_type, error, attempts, created_at, stage,
                error_class, first_failed_at, last_failed_at, fallback_listener,
                fallback_outcome) ",
        );
        q.push_values(chunk, |mut b, (r, c)| {
            let (fb_name, fb_outcome) = fallback_columns(r);
            b.push_bind(&*r.listener)
                .push_bind(r.inbox_id)
                .push_bind(&*r.event_type)
                .push_bind(r.error.as_deref())
                .push_bind(i64::from(r.attempts))
                .push_bind(r.finished_at)
                .push_bind(c.stage.as_str())
                .push_bind(c.class.as_str())
                .push_bind(c.first_failed_at.min(r.finished_at))
                .push_bind(r.finished_at)
                .push_bind(fb_name)
                .push_bind(fb_outcome);
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Upserts the batch's `Record::Data`, one row per (listener, key).
async fn upsert_listener_data(
    tx: &mut Transaction<'_, Sqlite>,
    rows: &[DataRow<'_>],
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO event_listeners_listenerdata (listener_name, key, value, key_id, inbox_id, updated_at) ",
        );
        q.push_values(chunk, |mut b, d| {
            b.push_bind(d.listener)
                .push_bind(d.key)
                .push_bind(d.value.to_string())
                .push_bind(d.key_id.as_deref())
                .push_bind(d.inbox_id)
                .push_bind(d.at);
        });
        q.push(
            " ON CONFLICT (listener_name, key) DO UPDATE SET value = excluded.value,
               key_id = excluded.key_id, inbox_id = excluded.inbox_id,
               updated_at = excluded.updated_at
             WHERE excluded.inbox_id >= event_listeners_listenerdata.inbox_id",
        );
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Inserts the batch's `Record::Reply` into the reply outbox.
async fn insert_replies(
    tx: &mut Transaction<'_, Sqlite>,
    instance: &str,
    rows: &[ReplyRow<'_>],
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO event_listeners_replyoutbox
               (instance, listener_name, inbox_id, seq, recipient_type, channel, topic, user_ids,
                content, key_id, created_at, updated_at) ",
        );
        q.push_values(chunk, |mut b, r| {
            b.push_bind(instance)
                .push_bind(r.listener)
                .push_bind(r.inbox_id)
                .push_bind(r.seq)
                .push_bind(r.recipient_type)
                .push_bind(r.channel)
                .push_bind(r.topic)
                .push_bind(r.user_ids.as_deref())
                .push_bind(r.content.as_ref())
                .push_bind(r.key_id.as_deref())
                .push_bind(r.at)
                .push_bind(r.at);
        });
        q.push(" ON CONFLICT (listener_name, inbox_id, seq) DO NOTHING");
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}
