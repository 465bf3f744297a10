//! The [`Record`](super::Record)s that keep `event_listeners_messagelog`
//! true to the conversation after a message was logged: its content
//! edited, messages moved to another topic or channel, messages deleted.
//! The store applies them in the order their runs finished, in the same
//! transaction as those runs; one naming a message that was never logged
//! changes nothing.

use chrono::{DateTime, Utc};

/// A message's content was edited.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageEditRecord {
    /// The message.
    pub message_id: i64,
    /// The new content's length in characters.
    pub content_length: i64,
    /// When it was edited (`edit_timestamp`).
    pub edited_at: DateTime<Utc>,
}

/// Messages moved to another topic, another channel, or both.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageMoveRecord {
    /// Every message moved.
    pub message_ids: Vec<i64>,
    /// The channel they moved to, when it changed. Its name is looked up
    /// among the messages logged in it.
    pub channel_id: Option<i64>,
    /// The topic they moved to, when it changed.
    pub topic: Option<String>,
    /// When they were moved (`edit_timestamp`).
    pub moved_at: DateTime<Utc>,
}

/// Messages deleted: their rows stay, marked, for audits.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageDeleteRecord {
    /// Every message deleted.
    pub message_ids: Vec<i64>,
    /// When the deletion was received (Zulip's event carries no time).
    pub deleted_at: DateTime<Utc>,
}
