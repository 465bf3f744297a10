//! [`AdminStore`] for [`PgStore`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::admin::{
    attempts, inbox_event, merge_overview, AdminStore, AuditAction, DeadLetter, ListenerOverview,
    ListenerState, LoggedEvent,
};
use super::backend::StoreError;
use super::postgres::PgStore;

async fn insert_audit(
    conn: &mut sqlx::PgConnection,
    actor: &str,
    action: AuditAction,
    listener: Option<&str>,
    detail: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO event_listeners_audit (at, actor, action, listener_name, detail)
         VALUES (now(), $1, $2, $3, $4)",
    )
    .bind(actor)
    .bind(action.as_str())
    .bind(listener)
    .bind(detail)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl AdminStore for PgStore {
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
             VALUES ($1, $2, $3, $4, now())
             ON CONFLICT (listener_name) DO UPDATE SET
               enabled = excluded.enabled, reason = excluded.reason,
               changed_by = excluded.changed_by, changed_at = excluded.changed_at",
        )
        .bind(name)
        .bind(enabled)
        .bind(reason)
        .bind(actor)
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
                    d.replayed_at, d.replay_success, i.event_id, i.backfilled, i.raw::text
             FROM event_listeners_deadletter d
             JOIN event_listeners_inbox i ON i.id = d.inbox_id
             WHERE d.listener_name = $1
               AND ($2::timestamptz IS NULL OR d.created_at >= $2)
               AND ($3::int8 IS NULL OR d.inbox_id = $3)
               AND ($4 OR d.replayed_at IS NULL)
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
                    attempts: attempts(i64::from(r.get::<i32, _>(4))),
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
            "SELECT i.id, max(e.attempts), i.event_id, i.backfilled, i.raw::text
             FROM event_listeners_eventlog e
             JOIN event_listeners_inbox i ON i.id = e.inbox_id
             WHERE e.listener_name = $1
               AND ($2::timestamptz IS NULL OR e.timestamp >= $2)
               AND ($3::int8 IS NULL OR e.inbox_id = $3)
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
                    attempts: attempts(i64::from(r.get::<i32, _>(1))),
                    event: inbox_event(inbox_id, r.get(2), r.get(3), r.get(4))?,
                })
            })
            .collect())
    }

    async fn mark_replayed(&self, ids: &[i64], success: bool) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
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
            "SELECT listener_name, count(*) FILTER (WHERE NOT success),
                    max(timestamp) FILTER (WHERE success)
             FROM event_listeners_eventlog WHERE timestamp >= $1
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
