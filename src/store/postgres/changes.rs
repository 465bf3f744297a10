//! Edits, moves and deletions of logged messages on PostgreSQL: one
//! `UPDATE … FROM UNNEST` for a batch's net changes (`store/changes.rs`),
//! run after the batch's new rows in the same transaction.
//!
//! A move to another channel carries the channel's id, not its name: the
//! name is that of the newest logged message in that channel (found by
//! walking the primary key down, so a busy channel is found at once), or
//! `NULL` when none is logged; `channel_id` is always set. Only the
//! batch's organization's rows (`instance`) change, and only its own
//! channels are looked up.

use sqlx::{Postgres, Transaction};

use crate::store::changes::MessageChange;
use crate::store::error::StoreError;

/// The statement: `$1`… are the columns of [`MessageChange`], as arrays;
/// `$8` the organization (`instance`) whose rows change.
const APPLY: &str = "
WITH n (message_id, content_length, edited_at, topic, channel_id, moved_at, deleted_at) AS (
    SELECT * FROM UNNEST($1::int8[], $2::int4[], $3::timestamptz[], $4::text[], $5::int8[],
                         $6::timestamptz[], $7::timestamptz[])
),
dest AS (
    SELECT d.channel_id,
           (SELECT l.channel FROM event_listeners_messagelog l
             WHERE l.instance = $8 AND l.channel_id = d.channel_id AND l.channel IS NOT NULL
             ORDER BY l.message_id DESC LIMIT 1) AS name
      FROM (SELECT DISTINCT channel_id FROM n WHERE channel_id IS NOT NULL) d
)
UPDATE event_listeners_messagelog AS m SET
    content_length = COALESCE(n.content_length, m.content_length),
    edited_at = COALESCE(n.edited_at, m.edited_at),
    topic = COALESCE(n.topic, m.topic),
    channel = CASE WHEN n.channel_id IS NULL OR n.channel_id IS NOT DISTINCT FROM m.channel_id
                   THEN m.channel ELSE dest.name END,
    channel_id = COALESCE(n.channel_id, m.channel_id),
    moved_at = COALESCE(n.moved_at, m.moved_at),
    deleted_at = COALESCE(m.deleted_at, n.deleted_at)
  FROM n LEFT JOIN dest ON dest.channel_id = n.channel_id
 WHERE m.instance = $8 AND m.message_id = n.message_id";

/// Applies `changes` (one per message) to the rows of `instance` in `tx`.
pub(super) async fn apply_message_changes(
    tx: &mut Transaction<'_, Postgres>,
    instance: &str,
    changes: &[MessageChange],
) -> Result<(), StoreError> {
    sqlx::query(APPLY)
        .bind(changes.iter().map(|c| c.message_id).collect::<Vec<_>>())
        .bind(
            changes
                .iter()
                .map(|c| {
                    c.content_length
                        .map(|n| i32::try_from(n).unwrap_or(i32::MAX))
                })
                .collect::<Vec<_>>(),
        )
        .bind(changes.iter().map(|c| c.edited_at).collect::<Vec<_>>())
        .bind(
            changes
                .iter()
                .map(|c| c.topic.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(changes.iter().map(|c| c.channel_id).collect::<Vec<_>>())
        .bind(changes.iter().map(|c| c.moved_at).collect::<Vec<_>>())
        .bind(changes.iter().map(|c| c.deleted_at).collect::<Vec<_>>())
        .bind(instance)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
