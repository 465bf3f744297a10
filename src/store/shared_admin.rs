//! `AdminStore`, written once for every backend (see [`AdminDialect`]):
//! the operator's reads and changes, each the same SQL on both backends
//! (from `sql`, run with [`on_pool!`]) or the backend's own operation.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::admin::{AdminStore, PendingDeadLetter};
use super::audit::{AuditAction, AuditOutcome};
use super::dialect::AdminDialect;
use super::error::StoreError;
use super::inbox_rows::{DeadLetter, DeadLetterRow, LoggedEvent, LoggedEventRow};
use super::model::{merge_overview, ListenerOverview, ListenerState};
use super::sql::{self, on_pool, stamped};

#[async_trait]
impl<T: AdminDialect> AdminStore for T {
    async fn listener_states(&self) -> Result<Vec<ListenerState>, StoreError> {
        let states = on_pool!(self.pool(), p => sqlx::query_as(sql::LISTENER_STATES)
            .fetch_all(p)
            .await?);
        Ok(states)
    }

    async fn set_listener_enabled(
        &self,
        name: &str,
        enabled: bool,
        reason: Option<&str>,
        actor: &str,
        audited: bool,
    ) -> Result<(), StoreError> {
        let action = if enabled {
            AuditAction::Enable
        } else {
            AuditAction::Disable
        };
        on_pool!(self.pool(), p => {
            let mut tx = p.begin().await?;
            stamped!(T, sqlx::query(T::UPSERT_LISTENER_STATE)
                .bind(name)
                .bind(enabled)
                .bind(reason)
                .bind(actor))
            .execute(&mut *tx)
            .await?;
            if audited {
                stamped!(T, sqlx::query(T::INSERT_AUDIT)
                    .bind(actor)
                    .bind(action.as_str())
                    .bind(name)
                    .bind(reason.unwrap_or(""))
                    .bind(AuditOutcome::Ok.as_str()))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    async fn dead_letters(
        &self,
        listener: &str,
        since: Option<DateTime<Utc>>,
        inbox_id: Option<i64>,
        include_replayed: bool,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let rows: Vec<DeadLetterRow> = on_pool!(self.pool(), p => sqlx::query_as(T::DEAD_LETTERS)
            .bind(listener)
            .bind(since)
            .bind(inbox_id)
            .bind(include_replayed)
            .fetch_all(p)
            .await?);
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.extend(row.decode(self.cipher())?);
        }
        Ok(out)
    }

    async fn logged_events(
        &self,
        listener: &str,
        since: Option<DateTime<Utc>>,
        inbox_id: Option<i64>,
    ) -> Result<Vec<LoggedEvent>, StoreError> {
        let rows: Vec<LoggedEventRow> = on_pool!(self.pool(), p => sqlx::query_as(T::LOGGED_EVENTS)
            .bind(listener)
            .bind(since)
            .bind(inbox_id)
            .fetch_all(p)
            .await?);
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.extend(row.decode(self.cipher())?);
        }
        Ok(out)
    }

    async fn mark_replayed(&self, ids: &[i64], success: bool) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.set_replayed(ids, success).await
    }

    async fn pending_dead_letters(
        &self,
        listener: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PendingDeadLetter>, StoreError> {
        Ok(
            on_pool!(self.pool(), p => sqlx::query_as(sql::PENDING_DEAD_LETTERS)
            .bind(listener.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?),
        )
    }

    async fn listener_overview(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<ListenerOverview>, StoreError> {
        let (window, older) = on_pool!(self.pool(), p => {
            let window = sqlx::query_as(sql::OVERVIEW_WINDOW)
                .bind(since)
                .fetch_all(p)
                .await?;
            let mut older: Vec<(String, Option<DateTime<Utc>>)> =
                sqlx::query_as(sql::OVERVIEW_STATS).fetch_all(p).await?;
            if older.is_empty() {
                older = sqlx::query_as(sql::OVERVIEW_EVENTLOG).fetch_all(p).await?;
            }
            (window, older)
        });
        Ok(merge_overview(window, older))
    }

    async fn quarantined_count(&self) -> Result<i64, StoreError> {
        Ok(
            on_pool!(self.pool(), p => sqlx::query_scalar(sql::QUARANTINED)
            .fetch_one(p)
            .await?),
        )
    }
}
