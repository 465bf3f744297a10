//! What the dispatcher publishes to the tap (`crate::tap`): [`Entered`],
//! an event entering dispatch with the listeners it is routed to, and
//! [`Finished`], one run's outcome. Both keep the stored event behind its
//! `Arc`, so a publish copies nothing; each subscriber filters and
//! formats them in its own task, redacted unless it asked for content.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::event::{Conversation, Event};
use crate::pii::redacted;
use crate::store::StoredEvent;
use crate::tap::{redact_event, TapFilter, Tapped};

/// An event entering dispatch.
pub(super) struct Entered {
    pub(super) org: Arc<str>,
    pub(super) stored: Arc<StoredEvent>,
    /// The listeners it runs for here.
    pub(super) listeners: Vec<Arc<str>>,
}

/// A run's outcome.
pub(super) struct Finished {
    pub(super) org: Arc<str>,
    pub(super) stored: Arc<StoredEvent>,
    pub(super) listener: Arc<str>,
    pub(super) success: bool,
    pub(super) attempts: u32,
    /// The failure's class (`transient`, `permanent`, `timeout`, `panic`,
    /// `skipped`); `None` for a success.
    pub(super) class: Option<&'static str>,
    pub(super) duration: Duration,
    pub(super) error: Option<String>,
}

/// Whether `event` is in channel `channel`: its name, or its id.
fn in_channel(event: &Event, channel: &str) -> bool {
    match event.conversation() {
        Some(Conversation::Channel {
            channel_id,
            channel: name,
            ..
        }) => name == Some(channel) || channel_id.is_some_and(|id| id.to_string() == channel),
        _ => false,
    }
}

/// Whether `event` passes a filter's type and channel.
fn event_matches(event: &Event, filter: &TapFilter) -> bool {
    filter
        .event_type
        .as_deref()
        .is_none_or(|t| t == event.event_type())
        && filter
            .channel
            .as_deref()
            .is_none_or(|c| in_channel(event, c))
}

/// The fields both lines share.
fn head(kind: &str, org: &str, stored: &StoredEvent) -> Map<String, Value> {
    let event = &stored.event;
    let mut m = Map::new();
    m.insert("kind".into(), kind.into());
    m.insert("time".into(), chrono::Utc::now().to_rfc3339().into());
    m.insert("org".into(), org.into());
    m.insert("inbox_id".into(), stored.inbox_id.into());
    m.insert("event_id".into(), event.id().into());
    m.insert("type".into(), event.event_type().into());
    if let Some(Conversation::Channel {
        channel_id,
        channel,
        ..
    }) = event.conversation()
    {
        m.insert("channel".into(), channel.into());
        m.insert("channel_id".into(), channel_id.into());
    }
    m
}

impl Tapped for Entered {
    fn matches(&self, filter: &TapFilter) -> bool {
        event_matches(&self.stored.event, filter)
            && filter
                .listener
                .as_deref()
                .is_none_or(|l| self.listeners.iter().any(|n| **n == *l))
    }

    fn line(&self, show_content: bool) -> String {
        let mut m = head("event", &self.org, &self.stored);
        m.insert("listeners".into(), json!(self.listeners));
        let event: Value = serde_json::from_str(self.stored.event.raw()).unwrap_or(Value::Null);
        let event = match show_content {
            true => event,
            false => redact_event(event),
        };
        m.insert("event".into(), event);
        Value::Object(m).to_string()
    }
}

impl Tapped for Finished {
    fn matches(&self, filter: &TapFilter) -> bool {
        event_matches(&self.stored.event, filter)
            && filter
                .listener
                .as_deref()
                .is_none_or(|l| *self.listener == *l)
    }

    fn line(&self, show_content: bool) -> String {
        let mut m = head("outcome", &self.org, &self.stored);
        m.insert("listener".into(), (*self.listener).into());
        m.insert("success".into(), self.success.into());
        m.insert("attempts".into(), self.attempts.into());
        m.insert("class".into(), self.class.into());
        m.insert(
            "duration_ms".into(),
            json!(self.duration.as_secs_f64() * 1000.0),
        );
        // An error may quote the event, a receiver's answer or stderr.
        let error = self.error.as_deref().map(|e| match show_content {
            true => e.to_owned(),
            false => redacted(e),
        });
        m.insert("error".into(), error.into());
        Value::Object(m).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> Arc<StoredEvent> {
        let event = Event::parse(
            r#"{"type":"message","id":4,"message":{"id":9,"type":"stream","stream_id":3,"sender_id":1,"sender_email":"a@example.com","display_recipient":"general","subject":"plans","timestamp":1,"content":"the secret"}}"#,
        )
        .unwrap();
        Arc::new(StoredEvent {
            inbox_id: 12,
            event,
            received_at: chrono::Utc::now(),
        })
    }

    fn finished(error: &str) -> Finished {
        Finished {
            org: "o".into(),
            stored: stored(),
            listener: "hook".into(),
            success: false,
            attempts: 3,
            class: Some("permanent"),
            duration: Duration::from_millis(5),
            error: Some(error.into()),
        }
    }

    #[test]
    fn an_event_line_is_redacted_unless_content_is_shown() {
        let entered = Entered {
            org: "o".into(),
            stored: stored(),
            listeners: vec!["hook".into()],
        };
        let line: Value = serde_json::from_str(&entered.line(false)).unwrap();
        assert_eq!(line["kind"], "event");
        assert_eq!(line["inbox_id"], 12);
        assert_eq!(line["event_id"], 4);
        assert_eq!(line["channel"], "general");
        assert_eq!(line["listeners"], json!(["hook"]));
        let text = line.to_string();
        for secret in ["the secret", "plans", "a@example.com"] {
            assert!(!text.contains(secret), "{secret}: {text}");
        }
        assert!(entered.line(true).contains("the secret"));
    }

    #[test]
    fn an_outcome_line_says_how_the_run_ended_with_its_error_redacted() {
        let line: Value = serde_json::from_str(&finished("body: the secret").line(false)).unwrap();
        assert_eq!(line["kind"], "outcome");
        assert_eq!(line["listener"], "hook");
        assert_eq!(line["success"], false);
        assert_eq!(line["attempts"], 3);
        assert_eq!(line["class"], "permanent");
        assert_eq!(line["error"], "[redacted: 16 characters]");
        assert!(finished("x").line(true).contains("\"error\":\"x\""));
    }

    #[test]
    fn filters_pick_by_listener_type_and_channel_name_or_id() {
        let f = finished("x");
        let filter = |l: Option<&str>, t: Option<&str>, c: Option<&str>| TapFilter {
            listener: l.map(Into::into),
            event_type: t.map(Into::into),
            channel: c.map(Into::into),
        };
        assert!(f.matches(&filter(Some("hook"), Some("message"), Some("general"))));
        assert!(f.matches(&filter(None, None, Some("3"))));
        assert!(!f.matches(&filter(Some("other"), None, None)));
        assert!(!f.matches(&filter(None, Some("reaction"), None)));
        assert!(!f.matches(&filter(None, None, Some("random"))));
    }
}
