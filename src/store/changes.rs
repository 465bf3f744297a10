//! Folding a batch's message-log changes (edits, moves, deletions) into
//! one net change per message, in the order the runs finished: the
//! dispatcher runs every change of a message after the run that logged it
//! and after the changes before it (`dispatch/ordering.rs`), and hands the
//! recorder each lane's runs in that order, so the batch order is the
//! conversation's. Both backends apply the net changes with one `UPDATE`
//! per chunk, after the batch's new rows are in, so a message logged and
//! edited in the same batch ends edited.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::model::RunRecord;
use crate::listeners::Record;

/// What a batch changes in one logged message; `None` leaves a column as
/// it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct MessageChange {
    /// The message.
    pub(crate) message_id: i64,
    /// Its new length, after its last edit in the batch.
    pub(crate) content_length: Option<i64>,
    /// Its last edit's time.
    pub(crate) edited_at: Option<DateTime<Utc>>,
    /// The topic it was last moved to.
    pub(crate) topic: Option<String>,
    /// The channel it was last moved to (its name is looked up by id).
    pub(crate) channel_id: Option<i64>,
    /// Its last move's time.
    pub(crate) moved_at: Option<DateTime<Utc>>,
    /// When it was deleted (a row deleted already keeps its first time).
    pub(crate) deleted_at: Option<DateTime<Utc>>,
}

/// The net change of every message the batch's records change, by id.
pub(crate) fn message_changes(runs: &[RunRecord]) -> Vec<MessageChange> {
    let mut map: BTreeMap<i64, MessageChange> = BTreeMap::new();
    fn entry(map: &mut BTreeMap<i64, MessageChange>, id: i64) -> &mut MessageChange {
        map.entry(id).or_insert_with(|| MessageChange {
            message_id: id,
            ..MessageChange::default()
        })
    }
    for record in runs.iter().flat_map(|r| &r.records) {
        match record {
            Record::MessageEdit(e) => {
                let c = entry(&mut map, e.message_id);
                c.content_length = Some(e.content_length);
                c.edited_at = Some(e.edited_at);
            }
            Record::MessageMove(m) => {
                for &id in &m.message_ids {
                    let c = entry(&mut map, id);
                    if m.topic.is_some() {
                        c.topic.clone_from(&m.topic);
                    }
                    if m.channel_id.is_some() {
                        c.channel_id = m.channel_id;
                    }
                    c.moved_at = Some(m.moved_at);
                }
            }
            Record::MessageDelete(d) => {
                for &id in &d.message_ids {
                    let c = entry(&mut map, id);
                    c.deleted_at = c.deleted_at.or(Some(d.deleted_at));
                }
            }
            _ => {}
        }
    }
    map.into_values().collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::listeners::{MessageDeleteRecord, MessageEditRecord, MessageMoveRecord};

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    fn run(records: Vec<Record>) -> RunRecord {
        RunRecord {
            inbox_id: 1,
            listener: "message_logger".into(),
            event_type: "update_message".into(),
            success: true,
            attempts: 1,
            error: None,
            duration: Duration::from_millis(1),
            finished_at: at(1),
            records,
            dead_letter: None,
            fallback: Default::default(),
        }
    }

    #[test]
    fn later_changes_win_and_a_deletion_keeps_its_first_time() {
        let edit = |len, secs| {
            Record::MessageEdit(MessageEditRecord {
                message_id: 5,
                content_length: len,
                edited_at: at(secs),
            })
        };
        let moved = |topic: Option<&str>, channel, secs| {
            Record::MessageMove(MessageMoveRecord {
                message_ids: vec![5, 6],
                channel_id: channel,
                topic: topic.map(str::to_owned),
                moved_at: at(secs),
            })
        };
        let deleted = |secs| {
            Record::MessageDelete(MessageDeleteRecord {
                message_ids: vec![6],
                deleted_at: at(secs),
            })
        };
        let runs = vec![
            run(vec![edit(3, 10), moved(Some("b"), None, 11)]),
            run(vec![edit(4, 12), moved(None, Some(9), 13)]),
            run(vec![deleted(14)]),
            run(vec![deleted(15)]),
        ];
        let changes = message_changes(&runs);
        assert_eq!(
            changes,
            vec![
                MessageChange {
                    message_id: 5,
                    content_length: Some(4),
                    edited_at: Some(at(12)),
                    topic: Some("b".into()),
                    channel_id: Some(9),
                    moved_at: Some(at(13)),
                    deleted_at: None,
                },
                MessageChange {
                    message_id: 6,
                    topic: Some("b".into()),
                    channel_id: Some(9),
                    moved_at: Some(at(13)),
                    deleted_at: Some(at(14)),
                    ..MessageChange::default()
                },
            ]
        );
    }
}
