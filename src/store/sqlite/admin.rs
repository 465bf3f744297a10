//! The operator's writes on SQLite and the operator's reads in SQLite's
//! words. Times are bound from Rust, never `CURRENT_TIMESTAMP`, so they
//! compare as text with the recorder's.

use async_trait::async_trait;
use chrono::Utc;
use sqlx::{QueryBuilder, Sqlite};

use super::connect::{SqliteStore, CHUNK};
use crate::store::dialect::AdminDialect;
use crate::store::error::StoreError;

#[async_trait]
impl AdminDialect for SqliteStore {
    const DEAD_LETTERS: &'static str =
        "SELECT d.id, d.inbox_id, d.event_type, d.error, d.attempts, d.created_at,
                d.first_failed_at, d.replayed_at, d.replay_success, i.event_id, i.backfilled, i.raw, i.received_at,
                i.instance, i.queue_id, i.key_id
         FROM event_listeners_deadletter d
         JOIN event_listeners_inbox i ON i.id = d.inbox_id
         WHERE d.listener_name = $1 AND d.stage <> 'reply'
           AND ($2 IS NULL OR d.created_at >= $2)
           AND ($3 IS NULL OR d.inbox_id = $3)
           AND ($4 OR d.replayed_at IS NULL)
         ORDER BY d.id";

    const LOGGED_EVENTS: &'static str =
        "SELECT i.id AS inbox_id, max(e.attempts) AS attempts, i.event_id, i.backfilled, i.raw,
                i.received_at, i.instance, i.queue_id, i.key_id
         FROM event_listeners_eventlog e
         JOIN event_listeners_inbox i ON i.id = e.inbox_id
         WHERE e.listener_name = $1
           AND ($2 IS NULL OR e.timestamp >= $2)
           AND ($3 IS NULL OR e.inbox_id = $3)
         GROUP BY i.id, i.instance
         ORDER BY i.id";

    const BINDS_NOW: bool = true;

    const UPSERT_LISTENER_STATE: &'static str = "INSERT INTO event_listeners_listenerstate
           (listener_name, enabled, reason, changed_by, changed_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (listener_name) DO UPDATE SET
           enabled = excluded.enabled, reason = excluded.reason,
           changed_by = excluded.changed_by, changed_at = excluded.changed_at";

    const INSERT_AUDIT: &'static str =
        "INSERT INTO event_listeners_audit (at, actor, action, target, detail, outcome)
         VALUES ($6, $1, $2, $3, $4, $5)";

    async fn set_replayed(&self, ids: &[i64], success: bool) -> Result<u64, StoreError> {
        let now = Utc::now();
        let mut tx = self.pool().begin().await?;
        let mut changed = 0;
        for chunk in ids.chunks(CHUNK) {
            let mut q =
                QueryBuilder::<Sqlite>::new("UPDATE event_listeners_deadletter SET replayed_at = ");
            q.push_bind(now)
                .push(", replay_success = ")
                .push_bind(success)
                .push(" WHERE id IN (");
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            q.push(")");
            changed += q.build().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(changed)
    }
}
