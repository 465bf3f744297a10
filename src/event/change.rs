//! The typed views of the events that change messages already sent:
//! [`MessageUpdate`] (`update_message`: a content edit, a move to another
//! topic or channel, or both) and [`MessageDeletion`] (`delete_message`).
//! They are parsed from the raw JSON on each call, not cached: only the
//! listeners that follow the message log read them, and such events are
//! few beside messages.
//!
//! # The shapes read (Zulip 10.2's, and what the capabilities select)
//!
//! | field | meaning |
//! | --- | --- |
//! | `message_ids` | every message the update or deletion applies to (a move with `propagate_mode` `change_later`/`change_all` lists each moved message); `message_id` alone is the older single form |
//! | `user_id` | who edited; absent for `rendering_only` updates (a link preview rendered later, not an edit) |
//! | `edit_timestamp` | when (Unix seconds) |
//! | `content`, `rendered_content` | the new content, Markdown and HTML, only when the content changed |
//! | `stream_id`, `orig_subject` | the channel and topic the messages were in, present on a move |
//! | `new_stream_id` | the channel they moved to, only when it changed |
//! | `subject` (or `topic`) | the topic they moved to, only when it changed |
//! | `propagate_mode` | `change_one`, `change_later` or `change_all` |
//!
//! A `delete_message` carries `message_ids` when the client declared
//! `bulk_message_deletion` (the daemon does), else one event per message
//! with `message_id`; a message retention policy's deletions are the same
//! events (servers send them from feature level 452).

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::head::Event;

/// What an `update_message` event changes.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageUpdate {
    /// Every message changed (for a content edit, the one edited).
    pub message_ids: Vec<i64>,
    /// Who edited, when the event says (not for `rendering_only`).
    pub user_id: Option<i64>,
    /// When the edit was made.
    pub edited_at: Option<DateTime<Utc>>,
    /// Only the rendering changed (a link preview): nobody edited anything.
    pub rendering_only: bool,
    /// The new content, Markdown, when the content changed.
    pub content: Option<String>,
    /// The new content, rendered HTML, when the content changed.
    pub rendered_content: Option<String>,
    /// The move, when the messages changed topic or channel.
    pub moved: Option<MessageMove>,
}

/// Messages moved to another topic, another channel, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMove {
    /// The channel they were in.
    pub from_channel_id: Option<i64>,
    /// The channel they are in now, when it changed.
    pub to_channel_id: Option<i64>,
    /// The topic they were in.
    pub from_topic: Option<String>,
    /// The topic they are in now, when it changed.
    pub to_topic: Option<String>,
    /// `change_one`, `change_later` or `change_all`.
    pub propagate_mode: Option<String>,
}

/// The messages a `delete_message` event deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageDeletion {
    /// Every message deleted.
    pub message_ids: Vec<i64>,
}

/// The fields read; loose where Zulip's type could surprise, so one odd
/// field never hides the others.
#[derive(Deserialize, Default)]
struct Wire {
    #[serde(default)]
    message_id: Option<Value>,
    #[serde(default)]
    message_ids: Option<Value>,
    #[serde(default)]
    user_id: Option<Value>,
    #[serde(default)]
    edit_timestamp: Option<Value>,
    #[serde(default)]
    rendering_only: Option<Value>,
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    rendered_content: Option<Value>,
    #[serde(default)]
    stream_id: Option<Value>,
    #[serde(default)]
    new_stream_id: Option<Value>,
    #[serde(default)]
    orig_subject: Option<Value>,
    #[serde(default)]
    subject: Option<Value>,
    #[serde(default)]
    topic: Option<Value>,
    #[serde(default)]
    propagate_mode: Option<Value>,
}

fn int(v: &Option<Value>) -> Option<i64> {
    v.as_ref().and_then(Value::as_i64)
}

fn text(v: &Option<Value>) -> Option<String> {
    v.as_ref().and_then(Value::as_str).map(str::to_owned)
}

impl Wire {
    fn of(raw: &str) -> Wire {
        serde_json::from_str(raw).unwrap_or_default()
    }

    /// `message_ids` (deduplicated, in order), else `[message_id]`.
    fn message_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = match self.message_ids.as_ref().and_then(Value::as_array) {
            Some(list) => list.iter().filter_map(Value::as_i64).collect(),
            None => Vec::new(),
        };
        if ids.is_empty() {
            ids.extend(int(&self.message_id));
        }
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        ids.retain(|id| seen.insert(*id));
        ids
    }

    fn moved(&self) -> Option<MessageMove> {
        let from_channel_id = int(&self.stream_id);
        let to_channel_id = int(&self.new_stream_id).filter(|to| Some(*to) != from_channel_id);
        let from_topic = text(&self.orig_subject);
        // A topic is moved only when the event says what it was: a content
        // edit carries neither `orig_subject` nor a new topic.
        let to_topic = from_topic
            .as_ref()
            .and_then(|_| text(&self.subject).or_else(|| text(&self.topic)))
            .filter(|to| Some(to) != from_topic.as_ref());
        (to_channel_id.is_some() || to_topic.is_some()).then(|| MessageMove {
            from_channel_id,
            to_channel_id,
            from_topic,
            to_topic,
            propagate_mode: text(&self.propagate_mode),
        })
    }
}

impl MessageUpdate {
    /// The update in an `update_message` event's raw JSON; `None` when it
    /// names no message.
    pub fn parse(raw: &str) -> Option<MessageUpdate> {
        let w = Wire::of(raw);
        let message_ids = w.message_ids();
        if message_ids.is_empty() {
            return None;
        }
        let edited_at = w
            .edit_timestamp
            .as_ref()
            .and_then(Value::as_f64)
            .filter(|s| s.is_finite() && *s > 0.0)
            .and_then(|s| DateTime::from_timestamp_millis((s * 1000.0) as i64));
        Some(MessageUpdate {
            user_id: int(&w.user_id),
            edited_at,
            rendering_only: w
                .rendering_only
                .as_ref()
                .and_then(Value::as_bool)
                .unwrap_or(false),
            content: text(&w.content),
            rendered_content: text(&w.rendered_content),
            moved: w.moved(),
            message_ids,
        })
    }

    /// Whether a person changed the content (not only its rendering).
    pub fn edits_content(&self) -> bool {
        !self.rendering_only && self.content.is_some()
    }
}

impl MessageDeletion {
    /// The deletion in a `delete_message` event's raw JSON; `None` when it
    /// names no message.
    pub fn parse(raw: &str) -> Option<MessageDeletion> {
        let message_ids = Wire::of(raw).message_ids();
        (!message_ids.is_empty()).then_some(MessageDeletion { message_ids })
    }
}

impl Event {
    /// The typed view of an `update_message` event; `None` for other
    /// events and for one that names no message.
    pub fn message_update(&self) -> Option<MessageUpdate> {
        (self.event_type() == "update_message")
            .then(|| MessageUpdate::parse(self.raw()))
            .flatten()
    }

    /// The typed view of a `delete_message` event; `None` for other
    /// events and for one that names no message.
    pub fn message_deletion(&self) -> Option<MessageDeletion> {
        (self.event_type() == "delete_message")
            .then(|| MessageDeletion::parse(self.raw()))
            .flatten()
    }

    /// Every message this event creates or changes: a message's own id,
    /// the ids an edit, move or deletion applies to; empty for others.
    pub fn messages_touched(&self) -> Vec<i64> {
        match self.event_type() {
            "message" => self.message_id().into_iter().collect(),
            "update_message" | "delete_message" => Wire::of(self.raw()).message_ids(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events captured from a real Zulip 10.2 server (the shared fixtures).
    const CONTENT_EDIT: &str = r#"{"type": "update_message", "user_id": 7, "edit_timestamp": 1796111633, "message_id": 516, "rendering_only": false, "orig_content": "ev1 original content", "orig_rendered_content": "<p>ev1 original content</p>", "content": "ev1 edited content", "rendered_content": "<p>ev1 edited content</p>", "is_me_message": false, "stream_name": "test-a", "stream_id": 4, "message_ids": [516], "flags": [], "id": 7}"#;
    const TOPIC_MOVE: &str = r#"{"type": "update_message", "user_id": 7, "edit_timestamp": 1796111633, "message_id": 517, "rendering_only": false, "stream_name": "test-a", "stream_id": 4, "propagate_mode": "change_one", "orig_subject": "ev1-edits", "subject": "ev1-moved", "topic_links": [], "message_ids": [517], "flags": [], "id": 8}"#;
    const BULK_DELETE: &str = r#"{"type": "delete_message", "message_ids": [518], "stream_id": 5, "topic": "ev1-del", "message_type": "stream", "id": 11}"#;

    #[test]
    fn a_real_content_edit_is_an_edit_and_no_move() {
        let u = Event::parse(CONTENT_EDIT)
            .unwrap()
            .message_update()
            .unwrap();
        assert_eq!(u.message_ids, vec![516]);
        assert_eq!(u.user_id, Some(7));
        assert_eq!(u.edited_at.unwrap().timestamp(), 1_796_111_633);
        assert!(u.edits_content());
        assert_eq!(u.content.as_deref(), Some("ev1 edited content"));
        assert_eq!(u.moved, None, "stream_id alone is no move");
    }

    #[test]
    fn a_real_topic_move_names_both_topics_and_no_content() {
        let u = Event::parse(TOPIC_MOVE).unwrap().message_update().unwrap();
        assert!(!u.edits_content());
        assert_eq!(
            u.moved,
            Some(MessageMove {
                from_channel_id: Some(4),
                to_channel_id: None,
                from_topic: Some("ev1-edits".into()),
                to_topic: Some("ev1-moved".into()),
                propagate_mode: Some("change_one".into()),
            })
        );
    }

    #[test]
    fn a_channel_move_of_later_messages_lists_every_moved_message() {
        let e = Event::parse(r#"{"type":"update_message","user_id":7,"edit_timestamp":1796111700,"message_id":600,"message_ids":[600,601,602],"stream_name":"test-a","stream_id":4,"new_stream_id":9,"propagate_mode":"change_later","orig_subject":"t","flags":[],"id":3}"#).unwrap();
        let u = e.message_update().unwrap();
        assert_eq!(u.message_ids, vec![600, 601, 602]);
        let m = u.moved.unwrap();
        assert_eq!((m.to_channel_id, m.to_topic), (Some(9), None));
        assert_eq!(e.messages_touched(), vec![600, 601, 602]);
    }

    #[test]
    fn a_rendering_only_update_edits_nothing() {
        let u = MessageUpdate::parse(r#"{"type":"update_message","rendering_only":true,"message_id":5,"message_ids":[5],"content":"x","rendered_content":"<p>x</p>","edit_timestamp":1,"flags":[],"id":1}"#).unwrap();
        assert!(!u.edits_content());
        assert_eq!(u.user_id, None);
    }

    #[test]
    fn both_deletion_forms_name_their_messages() {
        let bulk = Event::parse(BULK_DELETE).unwrap();
        assert_eq!(bulk.message_deletion().unwrap().message_ids, vec![518]);
        let single = Event::parse(
            r#"{"type":"delete_message","message_id":42,"message_type":"private","id":2}"#,
        )
        .unwrap();
        assert_eq!(single.message_deletion().unwrap().message_ids, vec![42]);
        let none = Event::parse(r#"{"type":"delete_message","id":3}"#).unwrap();
        assert_eq!(none.message_deletion(), None);
        assert!(none.messages_touched().is_empty());
    }

    #[test]
    fn other_events_have_no_change_view() {
        let m = Event::parse(r#"{"type":"message","id":1,"message":{"id":8,"sender_id":7,"display_recipient":"g","subject":"t","content":"hi"}}"#).unwrap();
        assert_eq!(m.message_update(), None);
        assert_eq!(m.message_deletion(), None);
        assert_eq!(m.messages_touched(), vec![8]);
    }
}
