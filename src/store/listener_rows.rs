//! The rows of a batch's `Record::Data` (one upsert per listener and key)
//! and `Record::Reply` (one reply-outbox row each), shared by both backends,
//! their sensitive column (the value, the content) sealed by the store's
//! [`Cipher`] with its key's id beside it.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::crypto::{Aad, Cipher, CryptoError, KeyId};
use super::model::RunRecord;
use crate::listeners::{Record, ReplyTo};

/// One `Record::Data` of a batch: the last value each (listener, key) got.
#[derive(Debug, PartialEq)]
pub(super) struct DataRow<'a> {
    pub(super) listener: &'a str,
    pub(super) key: &'a str,
    /// The value, or its sealed text as a JSON string.
    pub(super) value: Cow<'a, serde_json::Value>,
    /// The key that sealed it; `None` when stored in plain text.
    pub(super) key_id: Option<String>,
    pub(super) inbox_id: i64,
    pub(super) at: DateTime<Utc>,
}

/// The `Record::Data` of a batch, one per (listener, key): the value set by
/// the latest event (highest inbox id; the later run of one event) wins,
/// whatever order the runs finished in (one upsert statement cannot touch a
/// row twice, and the statement itself keeps a newer stored value).
///
/// # Errors
///
/// [`CryptoError`] when a value cannot be sealed.
pub(super) fn listener_data<'a>(
    runs: &'a [RunRecord],
    cipher: &Cipher,
) -> Result<Vec<DataRow<'a>>, CryptoError> {
    let mut rows: Vec<DataRow<'_>> = Vec::new();
    let mut at: HashMap<(&str, &str), usize> = HashMap::new();
    for r in runs {
        for rec in &r.records {
            if let Record::Data { key, value } = rec {
                let row = DataRow {
                    listener: &r.listener,
                    key,
                    value: Cow::Borrowed(value),
                    key_id: None,
                    inbox_id: r.inbox_id,
                    at: r.finished_at,
                };
                match at.get(&(&*r.listener, key.as_str())) {
                    Some(&i) if rows[i].inbox_id <= row.inbox_id => rows[i] = row,
                    Some(_) => {}
                    None => {
                        at.insert((&r.listener, key), rows.len());
                        rows.push(row);
                    }
                }
            }
        }
    }
    if cipher.encrypting().is_some() {
        for row in &mut rows {
            let aad = Aad::ListenerData {
                listener: row.listener,
                key: row.key,
            };
            let plain = row.value.to_string();
            let (id, sealed) = cipher.seal(&aad, &plain)?;
            row.key_id = id.map(KeyId::to_string);
            row.value = Cow::Owned(serde_json::Value::String(sealed.into_owned()));
        }
    }
    Ok(rows)
}

/// One `Record::Reply` of a batch, as its outbox row.
#[derive(Debug, PartialEq)]
pub(super) struct ReplyRow<'a> {
    pub(super) listener: &'a str,
    pub(super) inbox_id: i64,
    /// The reply's index among its run's replies.
    pub(super) seq: i32,
    /// `"channel"` or `"direct"`.
    pub(super) recipient_type: &'static str,
    pub(super) channel: Option<&'a str>,
    pub(super) topic: Option<&'a str>,
    /// Comma-separated user ids, for direct messages.
    pub(super) user_ids: Option<String>,
    /// The content, or its sealed text.
    pub(super) content: Cow<'a, str>,
    /// The key that sealed the content; `None` when stored in plain text.
    pub(super) key_id: Option<String>,
    pub(super) at: DateTime<Utc>,
}

/// The `Record::Reply` of a batch, as outbox rows.
///
/// # Errors
///
/// [`CryptoError`] when a content cannot be sealed.
pub(super) fn replies<'a>(
    runs: &'a [RunRecord],
    cipher: &Cipher,
) -> Result<Vec<ReplyRow<'a>>, CryptoError> {
    let mut rows = Vec::new();
    for r in runs {
        let mut seq = 0;
        for rec in &r.records {
            let Record::Reply(reply) = rec else { continue };
            let (recipient_type, channel, topic, user_ids) = match &reply.to {
                ReplyTo::Channel { channel, topic } => (
                    "channel",
                    Some(channel.as_str()),
                    Some(topic.as_str()),
                    None,
                ),
                ReplyTo::Direct { user_ids } => {
                    let ids: Vec<String> = user_ids.iter().map(i64::to_string).collect();
                    ("direct", None, None, Some(ids.join(",")))
                }
            };
            rows.push(ReplyRow {
                listener: &r.listener,
                inbox_id: r.inbox_id,
                seq,
                recipient_type,
                channel,
                topic,
                user_ids,
                content: Cow::Borrowed(&reply.content),
                key_id: None,
                at: r.finished_at,
            });
            seq += 1;
        }
    }
    for row in &mut rows {
        let aad = Aad::Outbox {
            listener: row.listener,
            inbox_id: row.inbox_id,
            seq: i64::from(row.seq),
        };
        if let (Some(id), Cow::Owned(sealed)) = cipher.seal(&aad, &row.content)? {
            row.key_id = Some(id.to_string());
            row.content = Cow::Owned(sealed);
        }
    }
    Ok(rows)
}
