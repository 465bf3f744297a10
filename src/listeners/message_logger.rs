//! `message_logger`: one `event_listeners_messagelog` row per message,
//! kept true to the conversation: content edits, moves to another topic or
//! channel, and deletions are applied to the rows already logged.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::listener::{Context, DryRun, Listener, ListenerError, MessageLogRecord, Record};
use super::{MessageDeleteRecord, MessageEditRecord, MessageMoveRecord};
use crate::event::{Event, Recipient};

/// Logs every message: id, sender, channel and topic or DM participants,
/// length and time (the content itself is not stored); then follows it:
/// an edit updates the length and sets `edited_at`, a move updates the
/// topic and channel of every moved message and sets `moved_at`, a
/// deletion sets `deleted_at` (the row stays, for audits).
pub struct MessageLogger;

#[async_trait]
impl Listener for MessageLogger {
    fn name(&self) -> &str {
        "message_logger"
    }

    fn description(&self) -> &str {
        "Logs every message (sender, channel/topic or DM, length, time) to event_listeners_messagelog, following edits, moves and deletions"
    }

    fn event_types(&self) -> &[&str] {
        &["message", "update_message", "delete_message"]
    }

    fn dry_run(&self, _event: &Event, _ctx: &Context) -> DryRun {
        DryRun::Handle
    }

    async fn handle(&self, event: &Event, _ctx: &Context) -> Result<Vec<Record>, ListenerError> {
        match event.event_type() {
            "update_message" => update(event),
            "delete_message" => delete(event),
            _ => message(event),
        }
    }
}

fn message(event: &Event) -> Result<Vec<Record>, ListenerError> {
    let m = event
        .message()
        .ok_or_else(|| ListenerError::permanent("message event without a valid message object"))?;
    let (recipient_type, channel, channel_id, topic, dm_recipients) = match &m.recipient {
        Recipient::Channel {
            channel,
            channel_id,
            topic,
        } => (
            "channel",
            Some(channel.clone()),
            *channel_id,
            Some(topic.clone()),
            None,
        ),
        Recipient::Direct { recipients } => {
            let ids: Vec<String> = recipients.iter().map(|r| r.id.to_string()).collect();
            ("direct", None, None, None, Some(ids.join(",")))
        }
    };
    Ok(vec![Record::MessageLog(MessageLogRecord {
        message_id: m.id,
        sender_id: m.sender_id,
        sender_email: m.sender_email.clone(),
        recipient_type,
        channel,
        channel_id,
        topic,
        dm_recipients,
        content_length: m.content.chars().count() as i64,
        sent_at: DateTime::<Utc>::from_timestamp(m.timestamp, 0).unwrap_or_default(),
    })])
}

/// A content edit, a move, or both. The length is the Markdown source's
/// (`content`): the form of the default `apply_markdown = false`; an
/// update that only re-renders (`rendering_only`) changes nothing.
fn update(event: &Event) -> Result<Vec<Record>, ListenerError> {
    let u = event
        .message_update()
        .ok_or_else(|| ListenerError::permanent("update_message event without a message id"))?;
    let at = u.edited_at.unwrap_or_else(Utc::now);
    let mut records = Vec::new();
    if u.edits_content() {
        let content = u.content.as_deref().unwrap_or_default();
        records.extend(u.message_ids.iter().map(|&message_id| {
            Record::MessageEdit(MessageEditRecord {
                message_id,
                content_length: content.chars().count() as i64,
                edited_at: at,
            })
        }));
    }
    if let Some(moved) = u.moved.filter(|_| !u.rendering_only) {
        records.push(Record::MessageMove(MessageMoveRecord {
            message_ids: u.message_ids,
            channel_id: moved.to_channel_id,
            topic: moved.to_topic,
            moved_at: at,
        }));
    }
    Ok(records)
}

fn delete(event: &Event) -> Result<Vec<Record>, ListenerError> {
    let d = event
        .message_deletion()
        .ok_or_else(|| ListenerError::permanent("delete_message event without a message id"))?;
    Ok(vec![Record::MessageDelete(MessageDeleteRecord {
        message_ids: d.message_ids,
        deleted_at: Utc::now(),
    })])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context {
            org: "o".into(),
            inbox_id: 1,
            bot_user_id: None,
            attempt: 1,
            bot: None,
            received_at: None,
            fallback_of: None,
        }
    }

    #[tokio::test]
    async fn a_direct_message_is_logged_with_its_participants() {
        let e = Event::parse(r#"{"type":"message","id":1,"message":{"id":9,"sender_id":1,"sender_email":"a@x","display_recipient":[{"id":1,"email":"a@x"},{"id":2,"email":"b@x"}],"subject":"","timestamp":1790000000,"content":"héllo"}}"#).unwrap();
        let records = MessageLogger.handle(&e, &ctx()).await.unwrap();
        let Record::MessageLog(r) = &records[0] else {
            panic!("{records:?}")
        };
        assert_eq!(r.recipient_type, "direct");
        assert_eq!(r.channel_id, None);
        assert_eq!(r.dm_recipients.as_deref(), Some("1,2"));
        assert_eq!(r.content_length, 5);
        assert_eq!(r.sent_at.timestamp(), 1_790_000_000);
    }

    async fn records(json: &str) -> Vec<Record> {
        MessageLogger
            .handle(&Event::parse(json).unwrap(), &ctx())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_content_edit_gives_the_new_length_and_the_edit_time() {
        let r = records(r#"{"type": "update_message", "user_id": 7, "edit_timestamp": 1796111633, "message_id": 516, "rendering_only": false, "content": "ev1 edited content", "rendered_content": "<p>ev1 edited content</p>", "stream_name": "test-a", "stream_id": 4, "message_ids": [516], "flags": [], "id": 7}"#).await;
        assert_eq!(
            r,
            vec![Record::MessageEdit(MessageEditRecord {
                message_id: 516,
                content_length: 18,
                edited_at: DateTime::from_timestamp(1_796_111_633, 0).unwrap(),
            })]
        );
    }

    #[tokio::test]
    async fn a_move_names_every_moved_message_and_where_they_went() {
        let r = records(r#"{"type":"update_message","user_id":7,"edit_timestamp":1796111700,"message_id":600,"message_ids":[600,601],"stream_id":4,"new_stream_id":9,"propagate_mode":"change_all","orig_subject":"a","subject":"b","flags":[],"id":3}"#).await;
        assert_eq!(
            r,
            vec![Record::MessageMove(MessageMoveRecord {
                message_ids: vec![600, 601],
                channel_id: Some(9),
                topic: Some("b".into()),
                moved_at: DateTime::from_timestamp(1_796_111_700, 0).unwrap(),
            })]
        );
    }

    #[tokio::test]
    async fn a_rendering_only_update_records_nothing() {
        let r = records(r#"{"type":"update_message","rendering_only":true,"message_id":5,"message_ids":[5],"content":"x","rendered_content":"<p>x</p>","edit_timestamp":1,"flags":[],"id":1}"#).await;
        assert!(r.is_empty(), "{r:?}");
    }

    #[tokio::test]
    async fn both_deletion_forms_mark_their_messages() {
        for (json, ids) in [
            (
                r#"{"type": "delete_message", "message_ids": [518, 519], "stream_id": 5, "topic": "ev1-del", "message_type": "stream", "id": 11}"#,
                vec![518, 519],
            ),
            (
                r#"{"type":"delete_message","message_id":42,"message_type":"private","id":2}"#,
                vec![42],
            ),
        ] {
            match records(json).await.as_slice() {
                [Record::MessageDelete(d)] => assert_eq!(d.message_ids, ids),
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_message_event_without_a_message_is_a_permanent_failure() {
        let e = Event::parse(r#"{"type":"message","id":1}"#).unwrap();
        let err = MessageLogger.handle(&e, &ctx()).await.unwrap_err();
        assert!(matches!(err, ListenerError::Permanent(_)));
    }
}
