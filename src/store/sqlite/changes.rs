//! Edits, moves and deletions of logged messages on SQLite: one
//! `UPDATE … FROM (VALUES …)` per chunk of a batch's net changes
//! (`store/changes.rs`), after the batch's new rows, in its transaction.
//! A moved message's channel name is looked up as on PostgreSQL
//! (`postgres/changes.rs`). Only the batch's organization's rows
//! (`instance`) are changed, and its own channels looked up.

use sqlx::{QueryBuilder, Sqlite, Transaction};

use super::connect::CHUNK;
use crate::store::changes::MessageChange;

/// What follows the `VALUES` list of the changes, named `n`.
const APPLY: &str = "),
dest AS (
    SELECT d.instance, d.channel_id,
           (SELECT l.channel FROM event_listeners_messagelog l
             WHERE l.instance = d.instance AND l.channel_id = d.channel_id
               AND l.channel IS NOT NULL
             ORDER BY l.message_id DESC LIMIT 1) AS name
      FROM (SELECT DISTINCT instance, channel_id FROM n WHERE channel_id IS NOT NULL) d
)
UPDATE event_listeners_messagelog AS m SET
    content_length = COALESCE(n.content_length, m.content_length),
    edited_at = COALESCE(n.edited_at, m.edited_at),
    topic = COALESCE(n.topic, m.topic),
    channel = CASE WHEN n.channel_id IS NULL OR n.channel_id IS m.channel_id
                   THEN m.channel ELSE dest.name END,
    channel_id = COALESCE(n.channel_id, m.channel_id),
    moved_at = COALESCE(n.moved_at, m.moved_at),
    deleted_at = COALESCE(m.deleted_at, n.deleted_at)
  FROM n LEFT JOIN dest ON dest.instance = n.instance AND dest.channel_id = n.channel_id
 WHERE m.instance = n.instance AND m.message_id = n.message_id";

/// Applies `changes` (one per message) to the rows of `instance` in `tx`.
pub(super) async fn apply_message_changes(
    tx: &mut Transaction<'_, Sqlite>,
    instance: &str,
    changes: &[MessageChange],
) -> Result<(), sqlx::Error> {
    for chunk in changes.chunks(CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "WITH n (instance, message_id, content_length, edited_at, topic, channel_id, moved_at,
                     deleted_at) AS (",
        );
        q.push_values(chunk, |mut b, c| {
            b.push_bind(instance)
                .push_bind(c.message_id)
                .push_bind(c.content_length)
                .push_bind(c.edited_at)
                .push_bind(c.topic.as_deref())
                .push_bind(c.channel_id)
                .push_bind(c.moved_at)
                .push_bind(c.deleted_at);
        });
        q.push(APPLY);
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}
