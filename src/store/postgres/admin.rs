//! The operator's writes on PostgreSQL, stamped with the server's `now()`,
//! and the operator's reads, whose casts PostgreSQL needs (`raw::text`,
//! typed NULL tests, `int4` attempts widened).

use async_trait::async_trait;

use super::connect::PgStore;
use crate::store::dialect::AdminDialect;
use crate::store::error::StoreError;

#[async_trait]
impl AdminDialect for PgStore {
    const DEAD_LETTERS: &'static str =
        "SELECT d.id, d.inbox_id, i.instance, d.event_type, d.error, d.attempts::int8 AS attempts,
                d.created_at, d.first_failed_at, d.replayed_at, d.replay_success, i.event_id,
                i.backfilled, i.raw::text AS raw, i.received_at, i.instance, i.queue_id, i.key_id
         FROM event_listeners_deadletter d
         JOIN event_listeners_inbox i ON i.id = d.inbox_id
         WHERE d.listener_name = $1 AND d.stage <> 'reply'
           AND ($2::timestamptz IS NULL OR d.created_at >= $2)
           AND ($3::int8 IS NULL OR d.inbox_id = $3)
           AND ($4 OR d.replayed_at IS NULL)
         ORDER BY d.id";

    const LOGGED_EVENTS: &'static str =
        "SELECT i.id AS inbox_id, max(e.attempts)::int8 AS attempts, i.event_id, i.backfilled,
                i.raw::text AS raw, i.received_at, i.instance, i.queue_id, i.key_id
         FROM event_listeners_eventlog e
         JOIN event_listeners_inbox i ON i.id = e.inbox_id
         WHERE e.listener_name = $1
           AND ($2::timestamptz IS NULL OR e.timestamp >= $2)
           AND ($3::int8 IS NULL OR e.inbox_id = $3)
         GROUP BY i.id, i.instance
         ORDER BY i.id";

    const BINDS_NOW: bool = false;

    const UPSERT_LISTENER_STATE: &'static str = "INSERT INTO event_listeners_listenerstate
           (listener_name, enabled, reason, changed_by, changed_at)
         VALUES ($1, $2, $3, $4, now())
         ON CONFLICT (listener_name) DO UPDATE SET
           enabled = excluded.enabled, reason = excluded.reason,
           changed_by = excluded.changed_by, changed_at = excluded.changed_at";

    const INSERT_AUDIT: &'static str =
        "INSERT INTO event_listeners_audit (at, actor, action, target, detail, outcome)
         VALUES (now(), $1, $2, $3, $4, $5)";

    async fn set_replayed(&self, ids: &[i64], success: bool) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE event_listeners_deadletter SET replayed_at = now(), replay_success = $2
             WHERE id = ANY($1)",
        )
        .bind(ids)
        .bind(success)
        .execute(self.pool())
        .await?
        .rows_affected())
    }
}
