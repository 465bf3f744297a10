//! `message_logger`: one `event_listeners_messagelog` row per message.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::listener::{Context, DryRun, Listener, ListenerError, MessageLogRecord, Record};
use crate::event::{Event, Recipient};

/// Logs every message: id, sender, channel and topic or DM participants,
/// length and time. The content itself is not stored.
pub struct MessageLogger;

#[async_trait]
impl Listener for MessageLogger {
    fn name(&self) -> &str {
        "message_logger"
    }

    fn description(&self) -> &str {
        "Logs every message (sender, channel/topic or DM, length, time) to event_listeners_messagelog"
    }

    fn event_types(&self) -> &[&str] {
        &["message"]
    }

    fn dry_run(&self, _event: &Event, _ctx: &Context) -> DryRun {
        DryRun::Handle
    }

    async fn handle(&self, event: &Event, _ctx: &Context) -> Result<Vec<Record>, ListenerError> {
        let m = event.message().ok_or_else(|| {
            ListenerError::permanent("message event without a valid message object")
        })?;
        let (recipient_type, channel, topic, dm_recipients) = match &m.recipient {
            Recipient::Channel { channel, topic, .. } => {
                ("channel", Some(channel.clone()), Some(topic.clone()), None)
            }
            Recipient::Direct { recipients } => {
                let ids: Vec<String> = recipients.iter().map(|r| r.id.to_string()).collect();
                ("direct", None, None, Some(ids.join(",")))
            }
        };
        Ok(vec![Record::MessageLog(MessageLogRecord {
            message_id: m.id,
            sender_id: m.sender_id,
            sender_email: m.sender_email.clone(),
            recipient_type,
            channel,
            topic,
            dm_recipients,
            content_length: m.content.chars().count() as i64,
            sent_at: DateTime::<Utc>::from_timestamp(m.timestamp, 0).unwrap_or_default(),
        })])
    }
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
        assert_eq!(r.dm_recipients.as_deref(), Some("1,2"));
        assert_eq!(r.content_length, 5);
        assert_eq!(r.sent_at.timestamp(), 1_790_000_000);
    }

    #[tokio::test]
    async fn a_message_event_without_a_message_is_a_permanent_failure() {
        let e = Event::parse(r#"{"type":"message","id":1}"#).unwrap();
        let err = MessageLogger.handle(&e, &ctx()).await.unwrap_err();
        assert!(matches!(err, ListenerError::Permanent(_)));
    }
}
