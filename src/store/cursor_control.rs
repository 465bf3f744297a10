//! [`CursorStore`]: `cursor show`, `cursor rewind` and `cursor skip`, the
//! operator's hold on where an instance stands, written once for both
//! backends. Nothing is deleted. A rewind moves the instance's
//! `dispatched_through` back below the first event asked for and writes one
//! `event_listeners_rewind` row per chosen listener; at the next start the
//! recovery (`Store::unfinished`, `sql::DONE_RUNS`) takes a chosen
//! listener's runs logged before the rewind as not done, so exactly those
//! runs are made again, while the other listeners' rows still count. A skip
//! logs a successful run of one event for one listener, with attempts 0 and
//! the error column saying who skipped it, so the recovery never runs it
//! again for that listener.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::dialect::Dialect;
use super::error::StoreError;
use super::sql::on_pool;

/// The error text of a run that `cursor skip` logged.
pub const SKIPPED_PREFIX: &str = "skipped by operator";

/// An instance's stored queue position and dispatch watermark.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct CursorPosition {
    /// The Zulip site of the queue, when stored.
    pub site: Option<String>,
    /// The queue id, when a queue was registered.
    pub queue_id: Option<String>,
    /// The last event id committed (acknowledged at the next poll).
    pub last_event_id: Option<i64>,
    /// The newest message id stored.
    pub last_message_id: Option<i64>,
    /// Every inbox row at or below this id has all its runs recorded.
    pub dispatched_through: i64,
}

/// Where a rewind starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewindFrom {
    /// This inbox id and the ones after it.
    InboxId(i64),
    /// The first event stored at or after this time.
    Since(DateTime<Utc>),
}

/// What a rewind did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewound {
    /// The first inbox id that is dispatched again (`None`: no stored event
    /// of the instance is at or after the point asked for; nothing changed).
    pub from_inbox_id: Option<i64>,
    /// How many stored events of the instance lie from there on.
    pub events: i64,
}

/// Reads and moves an instance's position; every `Store` implements it.
#[async_trait]
pub trait CursorStore: Send + Sync {
    /// The stored position of `instance`, `None` before its first poll.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    async fn cursor_position(&self, instance: &str) -> Result<Option<CursorPosition>, StoreError>;

    /// Makes the next start dispatch `instance`'s stored events from `from`
    /// on again to `listeners` (and only to them), in one transaction.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    async fn rewind(
        &self,
        instance: &str,
        from: RewindFrom,
        listeners: &[String],
        actor: &str,
    ) -> Result<Rewound, StoreError>;

    /// Logs `instance`'s event `inbox_id` as done for `listener` (a
    /// successful run with attempts 0 and `SKIPPED_PREFIX` by `actor`).
    /// Returns the event's type, `None` when the instance has no such event
    /// (nothing is written then).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    async fn skip(
        &self,
        instance: &str,
        inbox_id: i64,
        listener: &str,
        actor: &str,
    ) -> Result<Option<String>, StoreError>;
}

#[async_trait]
impl<T: Dialect> CursorStore for T {
    async fn cursor_position(&self, instance: &str) -> Result<Option<CursorPosition>, StoreError> {
        Ok(on_pool!(self.pool(), p => sqlx::query_as(
            "SELECT c.site, c.queue_id, c.last_event_id, c.last_message_id,
                    COALESCE(d.dispatched_through, 0) AS dispatched_through
             FROM event_listeners_cursor c
             LEFT JOIN event_listeners_dispatched d ON d.instance = c.instance
             WHERE c.instance = $1")
            .bind(instance)
            .fetch_optional(p)
            .await?))
    }

    async fn rewind(
        &self,
        instance: &str,
        from: RewindFrom,
        listeners: &[String],
        actor: &str,
    ) -> Result<Rewound, StoreError> {
        Ok(on_pool!(self.pool(), p => {
            let mut tx = p.begin().await?;
            let first: Option<i64> = match from {
                RewindFrom::InboxId(id) => sqlx::query_scalar(
                    "SELECT MIN(id) FROM event_listeners_inbox WHERE instance = $1 AND id >= $2")
                    .bind(instance)
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?,
                RewindFrom::Since(at) => sqlx::query_scalar(
                    "SELECT MIN(id) FROM event_listeners_inbox
                     WHERE instance = $1 AND received_at >= $2")
                    .bind(instance)
                    .bind(at)
                    .fetch_one(&mut *tx)
                    .await?,
            };
            let rewound = match first {
                None => Rewound { from_inbox_id: None, events: 0 },
                Some(first) => {
                    let events: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM event_listeners_inbox WHERE instance = $1 AND id >= $2")
                        .bind(instance)
                        .bind(first)
                        .fetch_one(&mut *tx)
                        .await?;
                    let logged: i64 = sqlx::query_scalar(
                        "SELECT COALESCE(MAX(id), 0) FROM event_listeners_eventlog")
                        .fetch_one(&mut *tx)
                        .await?;
                    for listener in listeners {
                        sqlx::query(
                            "INSERT INTO event_listeners_rewind
                               (instance, listener_name, from_inbox_id, eventlog_through,
                                requested_by, requested_at)
                             VALUES ($1, $2, $3, $4, $5, $6)")
                            .bind(instance)
                            .bind(listener)
                            .bind(first)
                            .bind(logged)
                            .bind(actor)
                            .bind(Utc::now())
                            .execute(&mut *tx)
                            .await?;
                    }
                    sqlx::query(
                        "UPDATE event_listeners_dispatched SET dispatched_through = $2
                         WHERE instance = $1 AND dispatched_through > $2")
                        .bind(instance)
                        .bind(first - 1)
                        .execute(&mut *tx)
                        .await?;
                    Rewound { from_inbox_id: Some(first), events }
                }
            };
            tx.commit().await?;
            rewound
        }))
    }

    async fn skip(
        &self,
        instance: &str,
        inbox_id: i64,
        listener: &str,
        actor: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(on_pool!(self.pool(), p => {
            let mut tx = p.begin().await?;
            let event_type: Option<String> = sqlx::query_scalar(
                "SELECT event_type FROM event_listeners_inbox WHERE instance = $1 AND id = $2")
                .bind(instance)
                .bind(inbox_id)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(event_type) = &event_type {
                sqlx::query(
                    "INSERT INTO event_listeners_eventlog
                       (listener_name, inbox_id, event_type, success, attempts, error, duration,
                        timestamp)
                     VALUES ($1, $2, $3, TRUE, 0, $4, 0, $5)")
                    .bind(listener)
                    .bind(inbox_id)
                    .bind(event_type)
                    .bind(format!("{SKIPPED_PREFIX} {actor}"))
                    .bind(Utc::now())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            event_type
        }))
    }
}
