//! The audit trail: one row of `event_listeners_audit` per operator action
//! (`enable`, `disable`, `replay`, `cleanup`, `migrate`, the admin API's
//! calls) and per automatic disable, saying who ([`AuditEntry::actor`]:
//! `user@host`, `token:NAME` or `auto-disable`), when, what, about what and
//! with which outcome. [`AuditStore`] writes and reads the rows on both
//! backends; `AuditTrail` (`audit_trail.rs`) is what callers hold.
//!
//! A new kind of operator action (`rotate-key`, a configuration reload) is
//! a variant of [`AuditAction`] and one call to `AuditTrail::record`.
//! `enable` and `disable` are the exception: their row is written in the
//! transaction that switches the listener (`AdminStore::set_listener_enabled`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::dialect::AdminDialect;
use super::error::StoreError;
use super::sql::{self, on_pool, stamped};

/// What an audit row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    /// A listener was enabled.
    Enable,
    /// A listener was disabled (by an operator, or automatically).
    Disable,
    /// Dead letters or logged events were replayed.
    Replay,
    /// Old rows were deleted.
    Cleanup,
    /// Database migrations were applied.
    Migrate,
    /// Rows were re-encrypted under a new key (`rotate-key`).
    RotateKey,
    /// `cursor rewind`: stored events are dispatched again at the next start.
    CursorRewind,
    /// `cursor skip`: one event marked done for one listener.
    CursorSkip,
    /// The configuration was reloaded (not possible yet).
    ConfigReload,
    /// The admin API listed the listeners.
    ListListeners,
    /// The admin API listed dead letters.
    ListDeadLetters,
    /// `deadletters retry`: dead letters run (or their replies queued) again.
    RetryDeadLetters,
    /// `deadletters delete`: dead letters deleted.
    DeleteDeadLetters,
}

impl AuditAction {
    /// The text stored in `event_listeners_audit.action`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Enable => "enable",
            AuditAction::Disable => "disable",
            AuditAction::Replay => "replay",
            AuditAction::Cleanup => "cleanup",
            AuditAction::Migrate => "migrate",
            AuditAction::RotateKey => "rotate-key",
            AuditAction::CursorRewind => "cursor-rewind",
            AuditAction::CursorSkip => "cursor-skip",
            AuditAction::ConfigReload => "config-reload",
            AuditAction::ListListeners => "list-listeners",
            AuditAction::ListDeadLetters => "list-deadletters",
            AuditAction::RetryDeadLetters => "retry-deadletters",
            AuditAction::DeleteDeadLetters => "delete-deadletters",
        }
    }
}

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOutcome {
    /// It did what was asked.
    Ok,
    /// It failed, or part of it did (the detail says what).
    Failed,
}

impl AuditOutcome {
    /// The text stored in `event_listeners_audit.outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Ok => "ok",
            AuditOutcome::Failed => "failed",
        }
    }
}

/// One audit row to write.
#[derive(Debug, Clone, Copy)]
pub struct AuditEntry<'a> {
    /// Who: `user@host`, `token:NAME` or `auto-disable`.
    pub actor: &'a str,
    /// What.
    pub action: AuditAction,
    /// What it was about: a listener, an admin API path, …
    pub target: Option<&'a str>,
    /// The particulars (a reason, counts, an error).
    pub detail: &'a str,
    /// How it ended.
    pub outcome: AuditOutcome,
}

/// One audit row as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AuditRow {
    /// The row id.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// What ([`AuditAction::as_str`]).
    pub action: String,
    /// About what.
    pub target: Option<String>,
    /// The particulars.
    pub detail: Option<String>,
    /// `ok` or `failed`.
    pub outcome: String,
}

/// The audit table's writes and reads; every `Store` implements it.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends `entry` to `event_listeners_audit`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    async fn audit(&self, entry: &AuditEntry<'_>) -> Result<(), StoreError>;

    /// The newest `limit` rows written at or after `since`, oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    async fn audit_rows(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<AuditRow>, StoreError>;
}

#[async_trait]
impl<T: AdminDialect> AuditStore for T {
    async fn audit(&self, entry: &AuditEntry<'_>) -> Result<(), StoreError> {
        on_pool!(self.pool(), p => {
            stamped!(T, sqlx::query(T::INSERT_AUDIT)
                .bind(entry.actor)
                .bind(entry.action.as_str())
                .bind(entry.target)
                .bind(entry.detail)
                .bind(entry.outcome.as_str()))
            .execute(p)
            .await?;
        });
        Ok(())
    }

    async fn audit_rows(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let mut rows: Vec<AuditRow> = on_pool!(self.pool(), p => sqlx::query_as(sql::AUDIT_ROWS)
            .bind(since)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?);
        rows.reverse();
        Ok(rows)
    }
}
