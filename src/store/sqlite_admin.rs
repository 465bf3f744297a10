//! [`AdminStore`] for [`SqliteStore`], and the dead-letter insert that
//! [`super::Store::record`] runs in its transaction. Times are bound from
//! Rust, never `CURRENT_TIMESTAMP`, so they compare as text with the
//! recorder's.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, Transaction};

use super::admin::{
    attempts, inbox_event, merge_overview, AdminStore, AuditAction, DeadLetter, ListenerOverview,
    ListenerState, LoggedEvent,
};
use super::backend::{RunRecord, StoreError};
use super::sqlite::SqliteStore;

/// Rows (or ids) per multi-row statement, far below SQLite's parameter limit.
const CHUNK: usize = 200;

/// Inserts one `event_listeners_deadletter` row per run of `runs` marked
/// [`RunRecord::dead_letter`], in multi-row statements.
pub(super) async fn insert_dead_letters(
    tx: &mut Transaction<'_, Sqlite>,
    runs: &[RunRecord],
) -> Result<(), sqlx::Error> {
    let dead: Vec<&RunRecord> = runs.iter().filter(|r| r.dead_letter).collect();
    for chunk in dead.chunks(CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO event_listeners_deadletter
               (listener_name, inbox_id, event_type, error, attempts, created_at) ",
        );
        q.push_values(chunk, |mut b, r| {
            b.push_bind(&*r.listener)
                .push_bind(r.inbox_id)
                .push_bind(&*r.event_type)
                .push_bind(r.error.as_deref())
                .push_bind(i64::from(r.attempts))
                .push_bind(r.finished_at);
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

async fn insert_audit(
    conn: &mut SqliteConnection,
    actor: &str,
    action: AuditAction,
    listener: Option<&str>,
    detail: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO event_listeners_audit (at, actor, action, listener_name, detail)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(Utc::now())
    .bind(actor)
    .bind(action.as_str())
    .bind(listener)
    .bind(detail)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl AdminStore for SqliteStore {
    async fn listener_states(&self) -> Result<Vec<ListenerState>, StoreError> {
        let rows = sqlx::query(
            "SELECT listener_name, enabled, reason, changed_by, changed_at
             FROM event_listeners_listenerstate ORDER BY listener_name",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| ListenerState {
                name: r.get(0),
                enabled: r.get(1),
                reason: r.get(2),
                changed_by: r.get(3),
                changed_at: r.get(4),
            })
            .collect())
    }

    async fn set_listener_enabled(
        &self,
        name: &str,
        enabled: bool,
        reason: Option<&str>,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO event_listeners_listenerstate
               (listener_name, enabled, reason, changed_by, changed_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (listener_name) DO UPDATE SET
               enabled = excluded.enabled, reason = excluded.reason,
               changed_by = excluded.changed_by, changed_at = excluded.changed_at",
        )
        .bind(name)
        .bind(enabled)
        .bind(reason)
        .bind(actor)
        .bind(Utc::now())
        .execute(&mut *tx)
        .await?;
        let action = if enabled {
            AuditAction::Enable
        } else {
            AuditAction::Disable
        };
        insert_audit(&mut tx, actor, action, Some(name), reason.unwrap_or("")).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn dead_letters(
        &self,
        listener: &str,
        since: Option<DateTime<Utc>>,
        inbox_id: Option<i64>,
        include_replayed: bool,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id, d.inbox_id, d.event_type, d.error, d.attempts, d.created_at,
                    d.replayed_at, d.replay_success, i.event_id, i.backfilled, i.raw
             FROM event_listeners_deadletter d
             JOIN event_listeners_inbox i ON i.id = d.inbox_id
             WHERE d.listener_name = ?1
               AND (?2 IS NULL OR d.created_at >= ?2)
               AND (?3 IS NULL OR d.inbox_id = ?3)
               AND (?4 OR d.replayed_at IS NULL)
             ORDER BY d.id",
        )
        .bind(listener)
        .bind(since)
        .bind(inbox_id)
        .bind(include_replayed)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let inbox_id: i64 = r.get(1);
                Some(DeadLetter {
                    id: r.get(0),
                    inbox_id,
                    event_type: r.get(2),
                    error: r.get(3),
                    attempts: attempts(r.get(4)),
                    created_at: r.get(5),
                    replayed_at: r.get(6),
                    replay_success: r.get(7),
                    event: inbox_event(inbox_id, r.get(8), r.get(9), r.get(10))?,
                })
            })
            .collect())
    }

    async fn logged_events(
        &self,
        listener: &str,
        since: Option<DateTime<Utc>>,
        inbox_id: Option<i64>,
    ) -> Result<Vec<LoggedEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT i.id, max(e.attempts), i.event_id, i.backfilled, i.raw
             FROM event_listeners_eventlog e
             JOIN event_listeners_inbox i ON i.id = e.inbox_id
             WHERE e.listener_name = ?1
               AND (?2 IS NULL OR e.timestamp >= ?2)
               AND (?3 IS NULL OR e.inbox_id = ?3)
             GROUP BY i.id
             ORDER BY i.id",
        )
        .bind(listener)
        .bind(since)
        .bind(inbox_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let inbox_id: i64 = r.get(0);
                Some(LoggedEvent {
                    inbox_id,
                    attempts: attempts(r.get(1)),
                    event: inbox_event(inbox_id, r.get(2), r.get(3), r.get(4))?,
                })
            })
            .collect())
    }

    async fn mark_replayed(&self, ids: &[i64], success: bool) -> Result<u64, StoreError> {
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

    async fn audit(
        &self,
        actor: &str,
        action: AuditAction,
        listener: Option<&str>,
        detail: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool().acquire().await?;
        insert_audit(&mut conn, actor, action, listener, detail).await?;
        Ok(())
    }

    async fn listener_overview(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<ListenerOverview>, StoreError> {
        let window = sqlx::query_as(
            "SELECT listener_name, sum(CASE WHEN success THEN 0 ELSE 1 END),
                    max(CASE WHEN success THEN timestamp END)
             FROM event_listeners_eventlog WHERE timestamp >= ?1
             GROUP BY listener_name",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        let mut older: Vec<(String, Option<DateTime<Utc>>)> = sqlx::query_as(
            "SELECT listener_name, max(last_success) FROM event_listeners_listenerstats
             GROUP BY listener_name",
        )
        .fetch_all(self.pool())
        .await?;
        if older.is_empty() {
            older = sqlx::query_as(
                "SELECT listener_name, max(timestamp) FROM event_listeners_eventlog
                 WHERE success GROUP BY listener_name",
            )
            .fetch_all(self.pool())
            .await?;
        }
        Ok(merge_overview(window, older))
    }
}
