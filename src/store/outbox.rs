//! [`OutboxStore`]: the reply sender's reads and writes of
//! `event_listeners_replyoutbox` (the rows `Store::record` inserts with
//! their run), written once for both backends: the open rows in order, the
//! status changes of a send (`pending` → `sending` → `sent` | `failed`),
//! and the search for a reply's echo among the inbox's message events.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::crypto::{Aad, Cipher, CryptoError};
use super::dialect::Dialect;
use super::error::StoreError;
use super::sql::{self, on_pool};
use crate::listeners::ReplyTo;

/// The prefix of a reply's `local_id`: `zel-<outbox id>`.
pub const LOCAL_ID_PREFIX: &str = "zel-";

/// The `local_id` of outbox row `id`.
pub fn local_id(id: i64) -> String {
    format!("{LOCAL_ID_PREFIX}{id}")
}

/// Where an open reply is in its send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenStatus {
    /// Never posted, or refused before Zulip processed it.
    Pending,
    /// Posted (or about to be) without a known answer: Zulip may have it.
    Sending,
}

/// An open row of the reply outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxReply {
    /// The row id (its `local_id` is [`local_id`] of it).
    pub id: i64,
    /// The listener instance that wrote it.
    pub listener: String,
    /// The inbox row of the event it answers.
    pub inbox_id: i64,
    /// Pending or sending.
    pub status: OpenStatus,
    /// Where it goes; `Err` with why for a row that cannot be read.
    pub to: Result<ReplyTo, String>,
    /// Its Markdown content.
    pub content: String,
    /// POSTs tried so far.
    pub attempts: i32,
    /// The queue id of the last POST.
    pub queue_id: Option<String>,
    /// The inbox id its echo is searched after (set by the first POST).
    pub echo_after: Option<i64>,
    /// When its status last changed: for `sending`, when it was marked so
    /// (right before its POST) or, once [`OutboxStore::mark_reply_unknown`]
    /// noted it, when the POST failed.
    pub updated_at: DateTime<Utc>,
    /// Why its last try failed: for `sending`, `None` while the POST has
    /// not failed (it is under way, or the daemon died during it).
    pub error: Option<String>,
}

/// The reply outbox as the reply sender uses it.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// The open (pending or sending) replies of `instance`, oldest first,
    /// at most `limit`.
    async fn open_replies(
        &self,
        instance: &str,
        limit: i64,
    ) -> Result<Vec<OutboxReply>, StoreError>;
    /// How many replies of `instance` are open.
    async fn open_reply_count(&self, instance: &str) -> Result<i64, StoreError>;
    /// Marks reply `id` as being posted on `queue_id` (one attempt more),
    /// committed before the POST.
    async fn mark_reply_sending(&self, id: i64, queue_id: &str) -> Result<(), StoreError>;
    /// Notes that reply `id`'s POST ended without an answer (`error`): it
    /// stays `sending`, from now.
    async fn mark_reply_unknown(&self, id: i64, error: &str) -> Result<(), StoreError>;
    /// Puts reply `id` back to `pending`: Zulip refused it without
    /// processing it (a rate limit), with `error`.
    async fn mark_reply_pending(&self, id: i64, error: &str) -> Result<(), StoreError>;
    /// Marks reply `id` as sent, as Zulip's message `message_id`.
    async fn mark_reply_sent(&self, id: i64, message_id: i64) -> Result<(), StoreError>;
    /// Marks reply `id` as failed for good, with `error`, and writes its
    /// dead letter (stage `reply`, class `permanent`) in the same transaction.
    async fn mark_reply_failed(&self, id: i64, error: &str) -> Result<(), StoreError>;
    /// The message id of the echo of reply `id` in `instance`'s inbox: a
    /// message event stored after inbox row `after` whose top-level
    /// `local_message_id` is the reply's `local_id`.
    async fn find_reply_echo(
        &self,
        instance: &str,
        id: i64,
        after: i64,
    ) -> Result<Option<i64>, StoreError>;
}

/// An outbox row as stored.
#[derive(sqlx::FromRow)]
struct OutboxRow {
    id: i64,
    listener_name: String,
    inbox_id: i64,
    seq: i32,
    status: String,
    recipient_type: String,
    channel: Option<String>,
    topic: Option<String>,
    user_ids: Option<String>,
    content: String,
    key_id: Option<String>,
    attempts: i32,
    queue_id: Option<String>,
    echo_after: Option<i64>,
    updated_at: DateTime<Utc>,
    error: Option<String>,
}

impl OutboxRow {
    /// The reply, its content decrypted by `cipher`.
    ///
    /// # Errors
    ///
    /// [`CryptoError`] when the content does not decrypt.
    fn decode(self, cipher: &Cipher) -> Result<OutboxReply, CryptoError> {
        let row = Aad::Outbox {
            listener: &self.listener_name,
            inbox_id: self.inbox_id,
            seq: i64::from(self.seq),
        };
        let content = cipher.open(self.key_id.as_deref(), &row, self.content)?;
        let to = match (self.recipient_type.as_str(), self.channel, self.topic) {
            ("channel", Some(channel), Some(topic)) => Ok(ReplyTo::Channel { channel, topic }),
            ("direct", ..) => parse_user_ids(self.user_ids.as_deref().unwrap_or_default())
                .map(|user_ids| ReplyTo::Direct { user_ids }),
            (other, ..) => Err(format!("the outbox row has no valid recipient ({other})")),
        };
        Ok(OutboxReply {
            id: self.id,
            listener: self.listener_name,
            inbox_id: self.inbox_id,
            status: if self.status == "sending" {
                OpenStatus::Sending
            } else {
                OpenStatus::Pending
            },
            to,
            content,
            attempts: self.attempts,
            queue_id: self.queue_id,
            echo_after: self.echo_after,
            updated_at: self.updated_at,
            error: self.error,
        })
    }
}

/// The comma-separated user ids of a direct reply.
fn parse_user_ids(text: &str) -> Result<Vec<i64>, String> {
    let ids: Result<Vec<i64>, _> = text
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<i64>())
        .collect();
    match ids {
        Ok(ids) if !ids.is_empty() => Ok(ids),
        _ => Err(format!(
            "the outbox row's user ids are not valid ({text:?})"
        )),
    }
}

/// Whether `raw`, an inbox event's JSON, is the echo of `local_id`: its
/// top-level `local_message_id` (Zulip adds it to the sender's queue named
/// by the POST's `queue_id`), not text inside the message.
pub(crate) fn is_echo_of(raw: &str, local_id: &str) -> bool {
    #[derive(Deserialize)]
    struct Echo {
        #[serde(default)]
        local_message_id: Option<serde_json::Value>,
    }
    serde_json::from_str::<Echo>(raw).is_ok_and(|e| {
        e.local_message_id
            .as_ref()
            .and_then(serde_json::Value::as_str)
            == Some(local_id)
    })
}

/// One status change of reply `id`: `statement` with `id`, `text` and now.
async fn update<T: Dialect + ?Sized>(
    store: &T,
    statement: &str,
    id: i64,
    text: &str,
) -> Result<(), StoreError> {
    on_pool!(store.pool(), p => {
        sqlx::query(statement)
            .bind(id)
            .bind(text)
            .bind(Utc::now())
            .execute(p)
            .await?;
    });
    Ok(())
}

#[async_trait]
impl<T: Dialect> OutboxStore for T {
    async fn open_replies(
        &self,
        instance: &str,
        limit: i64,
    ) -> Result<Vec<OutboxReply>, StoreError> {
        let rows: Vec<OutboxRow> = on_pool!(self.pool(), p => sqlx::query_as(sql::OPEN_REPLIES)
            .bind(instance)
            .bind(limit)
            .fetch_all(p)
            .await?);
        let cipher = self.cipher();
        Ok(rows
            .into_iter()
            .map(|r| r.decode(cipher))
            .collect::<Result<_, _>>()?)
    }

    async fn open_reply_count(&self, instance: &str) -> Result<i64, StoreError> {
        let n = on_pool!(self.pool(), p => sqlx::query_scalar(sql::OPEN_REPLY_COUNT)
            .bind(instance)
            .fetch_one(p)
            .await?);
        Ok(n)
    }

    async fn mark_reply_sending(&self, id: i64, queue_id: &str) -> Result<(), StoreError> {
        update(self, sql::MARK_REPLY_SENDING, id, queue_id).await
    }

    async fn mark_reply_unknown(&self, id: i64, error: &str) -> Result<(), StoreError> {
        update(self, sql::MARK_REPLY_UNKNOWN, id, error).await
    }

    async fn mark_reply_pending(&self, id: i64, error: &str) -> Result<(), StoreError> {
        update(self, sql::MARK_REPLY_PENDING, id, error).await
    }

    async fn mark_reply_sent(&self, id: i64, message_id: i64) -> Result<(), StoreError> {
        on_pool!(self.pool(), p => {
            sqlx::query(sql::MARK_REPLY_SENT)
                .bind(id)
                .bind(message_id)
                .bind(Utc::now())
                .execute(p)
                .await?;
        });
        Ok(())
    }

    async fn mark_reply_failed(&self, id: i64, error: &str) -> Result<(), StoreError> {
        let now = Utc::now();
        on_pool!(self.pool(), p => {
            let mut tx = p.begin().await?;
            let failed = sqlx::query(sql::MARK_REPLY_FAILED)
                .bind(id)
                .bind(error)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            // Only the change to `failed` writes the dead letter, so a
            // repeated call does not write a second one.
            if failed > 0 {
                sqlx::query(sql::REPLY_DEAD_LETTER)
                    .bind(id)
                    .bind(error)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    async fn find_reply_echo(
        &self,
        instance: &str,
        id: i64,
        after: i64,
    ) -> Result<Option<i64>, StoreError> {
        let local = local_id(id);
        // The quotes make `zel-5` miss `zel-50`; the parse below makes
        // text inside a message miss too.
        let pattern = format!("%\"{local}\"%");
        type Candidate = (Option<i64>, String, String, i64, Option<String>);
        let rows: Vec<Candidate> = on_pool!(self.pool(), p => sqlx::query_as(sql::REPLY_ECHO_CANDIDATES)
                .bind(instance)
                .bind(after)
                .bind(&pattern)
                .fetch_all(p)
                .await?);
        for (message_id, raw, queue_id, event_id, key_id) in rows {
            let row = Aad::Inbox {
                instance,
                queue_id: &queue_id,
                event_id,
            };
            let raw = self.cipher().open(key_id.as_deref(), &row, raw)?;
            if is_echo_of(&raw, &local) {
                return Ok(message_id);
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_top_level_local_message_id_is_an_echo() {
        let echo = r#"{"type":"message","id":3,"local_message_id":"zel-5","message":{"id":9,"content":"x"}}"#;
        assert!(is_echo_of(echo, "zel-5"));
        assert!(!is_echo_of(echo, "zel-50"));
        let quoted = r#"{"type":"message","id":3,"message":{"id":9,"content":"\"zel-5\""}}"#;
        assert!(
            !is_echo_of(quoted, "zel-5"),
            "text in the message is not an echo"
        );
        assert!(!is_echo_of("not json", "zel-5"));
    }

    #[test]
    fn direct_reply_user_ids_are_read_back() {
        assert_eq!(parse_user_ids("7,9"), Ok(vec![7, 9]));
        assert!(parse_user_ids("").is_err());
        assert!(parse_user_ids("7,x").is_err());
        assert_eq!(local_id(42), "zel-42");
    }
}
