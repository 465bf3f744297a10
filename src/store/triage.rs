//! [`DeadLetterStore`]: dead-letter triage (`deadletters list|show|retry|delete`),
//! the retention of `[error_handling] deadletter_retention_days`, and the
//! pending counts behind the `deadletters_pending` gauge, written once for
//! both backends.
//!
//! Dead letters are written elsewhere: a run's by `Store::record`, in the
//! transaction of its event log row; a refused reply's by
//! `OutboxStore::mark_reply_failed`, in the transaction that marks the
//! reply failed. A retry goes through `dispatch::replay`, which marks the
//! dead letters it runs replayed (resolved or failed again) and never
//! deletes them; only `delete` and the retention do.
//!
//! The filters become one statement whose `$N` placeholders both drivers
//! read, with only the clauses of the filters given, so PostgreSQL never
//! has to guess the type of a NULL parameter.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::dialect::Dialect;
use super::error::StoreError;
use super::sql::on_pool;
use super::triage_model::{DeadLetterFilter, DeadLetterStatus, DeadLetterSummary, SummaryRow};

/// The columns of a [`SummaryRow`], from `d` (the dead letter) and `i`
/// (its inbox row).
const SUMMARY_COLUMNS: &str = "SELECT d.id, d.listener_name, i.instance, d.inbox_id, d.event_type,
        d.stage, d.error_class, d.error, CAST(d.attempts AS BIGINT) AS attempts,
        d.first_failed_at, d.last_failed_at, d.replayed_at, d.replay_success
     FROM event_listeners_deadletter d
     JOIN event_listeners_inbox i ON i.id = d.inbox_id";

/// Triage reads and writes; every `Store` implements it.
#[async_trait]
pub trait DeadLetterStore: Send + Sync {
    /// The dead letters `filter` selects, newest first.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    async fn list_dead_letters(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<Vec<DeadLetterSummary>, StoreError>;

    /// Dead letter `id`, whatever its status.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetterSummary>, StoreError>;

    /// Deletes the dead letters `filter` selects (the same rows
    /// [`DeadLetterStore::list_dead_letters`] returns), in one statement;
    /// returns how many.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails; nothing is deleted then.
    async fn delete_dead_letters(&self, filter: &DeadLetterFilter) -> Result<u64, StoreError>;

    /// Deletes the dead letters, of any status, that last failed before
    /// `before`; returns how many.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    async fn retain_dead_letters(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// `(organization, listener, pending dead letters)` for every pair with one.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    async fn pending_dead_letter_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError>;

    /// Puts the refused replies of `listener` on inbox row `inbox_id` back
    /// in the outbox as pending, for the reply sender to post again;
    /// returns how many.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    async fn requeue_failed_replies(
        &self,
        listener: &str,
        inbox_id: i64,
    ) -> Result<u64, StoreError>;
}

/// A bound value of a filtered statement.
enum Arg {
    Text(String),
    Time(DateTime<Utc>),
    Int(i64),
}

/// `SELECT d.id` (or the summary columns when `summary`) of the dead
/// letters `filter` selects, newest first, and its parameters.
fn filtered(filter: &DeadLetterFilter, summary: bool) -> (String, Vec<Arg>) {
    let mut sql = if summary {
        SUMMARY_COLUMNS.to_owned()
    } else {
        "SELECT d.id FROM event_listeners_deadletter d".to_owned()
    };
    let mut args = Vec::new();
    let mut clauses: Vec<String> = Vec::new();
    let bind = |arg: Arg, args: &mut Vec<Arg>| {
        args.push(arg);
        format!("${}", args.len())
    };
    if let Some(l) = &filter.listener {
        clauses.push(format!(
            "d.listener_name = {}",
            bind(Arg::Text(l.clone()), &mut args)
        ));
    }
    if let Some(t) = filter.since {
        // created_at is the last failure's time; its index serves this.
        clauses.push(format!("d.created_at >= {}", bind(Arg::Time(t), &mut args)));
    }
    if let Some(c) = filter.class {
        clauses.push(format!(
            "d.error_class = {}",
            bind(Arg::Text(c.as_str().to_owned()), &mut args)
        ));
    }
    match filter.status {
        DeadLetterStatus::Pending => clauses.push("d.replayed_at IS NULL".to_owned()),
        DeadLetterStatus::Resolved => clauses.push(
            "d.replayed_at IS NOT NULL AND d.replay_success IS NOT NULL AND d.replay_success"
                .to_owned(),
        ),
        DeadLetterStatus::Failed => clauses.push(
            "d.replayed_at IS NOT NULL AND (d.replay_success IS NULL OR NOT d.replay_success)"
                .to_owned(),
        ),
        DeadLetterStatus::Any => {}
    }
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(" ORDER BY d.id DESC");
    if let Some(n) = filter.limit {
        sql.push_str(&format!(
            " LIMIT {}",
            bind(Arg::Int(i64::from(n)), &mut args)
        ));
    }
    (sql, args)
}

/// `$query` with each of `$args` bound in order.
macro_rules! bound {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for arg in $args {
            q = match arg {
                Arg::Text(s) => q.bind(s.as_str()),
                Arg::Time(t) => q.bind(*t),
                Arg::Int(n) => q.bind(*n),
            };
        }
        q
    }};
}

#[async_trait]
impl<T: Dialect> DeadLetterStore for T {
    async fn list_dead_letters(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<Vec<DeadLetterSummary>, StoreError> {
        let (sql, args) = filtered(filter, true);
        let rows: Vec<SummaryRow> = on_pool!(self.pool(), p =>
            bound!(sqlx::query_as(&sql), &args).fetch_all(p).await?);
        Ok(rows.into_iter().map(SummaryRow::decode).collect())
    }

    async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetterSummary>, StoreError> {
        let sql = format!("{SUMMARY_COLUMNS} WHERE d.id = $1");
        let row: Option<SummaryRow> = on_pool!(self.pool(), p =>
            sqlx::query_as(&sql).bind(id).fetch_optional(p).await?);
        Ok(row.map(SummaryRow::decode))
    }

    async fn delete_dead_letters(&self, filter: &DeadLetterFilter) -> Result<u64, StoreError> {
        let (select, args) = filtered(filter, false);
        let sql = format!("DELETE FROM event_listeners_deadletter WHERE id IN ({select})");
        Ok(on_pool!(self.pool(), p =>
            bound!(sqlx::query(&sql), &args).execute(p).await?.rows_affected()))
    }

    async fn retain_dead_letters(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(on_pool!(self.pool(), p => sqlx::query(
            "DELETE FROM event_listeners_deadletter WHERE created_at < $1")
            .bind(before)
            .execute(p)
            .await?
            .rows_affected()))
    }

    async fn pending_dead_letter_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(on_pool!(self.pool(), p => sqlx::query_as(
            "SELECT i.instance, d.listener_name, count(*)
             FROM event_listeners_deadletter d
             JOIN event_listeners_inbox i ON i.id = d.inbox_id
             WHERE d.replayed_at IS NULL
             GROUP BY i.instance, d.listener_name")
            .fetch_all(p)
            .await?))
    }

    async fn requeue_failed_replies(
        &self,
        listener: &str,
        inbox_id: i64,
    ) -> Result<u64, StoreError> {
        Ok(on_pool!(self.pool(), p => sqlx::query(
            "UPDATE event_listeners_replyoutbox
             SET status = 'pending', error = NULL, queue_id = NULL, updated_at = $3
             WHERE listener_name = $1 AND inbox_id = $2 AND status = 'failed'")
            .bind(listener)
            .bind(inbox_id)
            .bind(Utc::now())
            .execute(p)
            .await?
            .rows_affected()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::triage_model::ErrorClass;

    #[test]
    fn only_the_filters_given_become_clauses_numbered_in_order() {
        let f = DeadLetterFilter {
            listener: Some("hook".into()),
            class: Some(ErrorClass::Timeout),
            limit: Some(5),
            ..DeadLetterFilter::default()
        };
        let (sql, args) = filtered(&f, false);
        assert!(sql.ends_with(
            "WHERE d.listener_name = $1 AND d.error_class = $2 AND d.replayed_at IS NULL \
             ORDER BY d.id DESC LIMIT $3"
        ));
        assert_eq!(args.len(), 3);
        let all = DeadLetterFilter {
            status: DeadLetterStatus::Any,
            ..DeadLetterFilter::default()
        };
        let (sql, args) = filtered(&all, false);
        assert_eq!(
            sql,
            "SELECT d.id FROM event_listeners_deadletter d ORDER BY d.id DESC"
        );
        assert!(args.is_empty());
    }
}
