//! The rows of a batch's `Record::Data` (one upsert per listener and key)
//! and `Record::Reply` (one reply-outbox row each), shared by both backends.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::model::RunRecord;
use crate::listeners::{Record, ReplyTo};

/// One `Record::Data` of a batch: the last value each (listener, key) got.
#[derive(Debug, PartialEq)]
pub(super) struct DataRow<'a> {
    pub(super) listener: &'a str,
    pub(super) key: &'a str,
    pub(super) value: &'a serde_json::Value,
    pub(super) inbox_id: i64,
    pub(super) at: DateTime<Utc>,
}

/// The `Record::Data` of a batch, one per (listener, key): the last in run
/// order wins (one upsert statement cannot touch a row twice).
pub(super) fn listener_data(runs: &[RunRecord]) -> Vec<DataRow<'_>> {
    let mut rows: Vec<DataRow<'_>> = Vec::new();
    let mut at: HashMap<(&str, &str), usize> = HashMap::new();
    for r in runs {
        for rec in &r.records {
            if let Record::Data { key, value } = rec {
                let row = DataRow {
                    listener: &r.listener,
                    key,
                    value,
                    inbox_id: r.inbox_id,
                    at: r.finished_at,
                };
                match at.get(&(&*r.listener, key.as_str())) {
                    Some(&i) => rows[i] = row,
                    None => {
                        at.insert((&r.listener, key), rows.len());
                        rows.push(row);
                    }
                }
            }
        }
    }
    rows
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
    pub(super) content: &'a str,
    pub(super) at: DateTime<Utc>,
}

/// The `Record::Reply` of a batch, as outbox rows.
pub(super) fn replies(runs: &[RunRecord]) -> Vec<ReplyRow<'_>> {
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
                content: &reply.content,
                at: r.finished_at,
            });
            seq += 1;
        }
    }
    rows
}
