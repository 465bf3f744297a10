//! Ordering: which runs must keep their order ([`OrderingKey`]).
//!
//! [`ordering_key`] is a pure function of the event's views (its
//! conversation, the message it is about, its actor; see `crate::event`):
//! runs sharing a key must run in dispatch order; others may run in
//! parallel. The same key decides which instance owns an event under the
//! hash strategy (`partition.rs`), so it never depends on what an instance
//! has seen before.
//!
//! # Keys
//!
//! | event | key |
//! | --- | --- |
//! | `message` to a channel | channel id (name when Zulip sent no id) + lower-cased topic |
//! | `message` direct | the sorted set of participant ids, sender included |
//! | `update_message`, `delete_message` with channel + topic | the conversation they change (`orig_subject` before `subject` for a move: the topic the message was in) |
//! | `update_message`, `delete_message` without a conversation | the message id (see below) |
//! | `typing`, `typing_edit_message` | their conversation |
//! | anything with an actor (`sender.user_id`, `sender_id`, `user_id`: reactions, presence, `user_status`, `submessage`) | the user id |
//! | everything else | the event type |
//!
//! Zulip does not put the topic in an `update_message` that only changes
//! content, nor the participants in a direct message's edit or deletion. Those
//! fall back to a key by message id. The key alone would order them per
//! message but not after the message itself, so the dispatcher also puts
//! every run about a message (the message, its edits, moves and deletion:
//! `Event::messages_touched`) in the lane of each message it touches: on one
//! instance, all of a message's runs keep their order. With the hash
//! strategy an edit keyed by message id may still be owned by another
//! instance than its message (ownership follows this key alone).

use std::fmt::{self, Write as _};

use crate::event::{Conversation, Event};

/// The key of runs that must keep their order.
///
/// Its text form (`Display`) is what the partitioner's `stable_hash`
/// hashes; it also reads
/// well in logs: `channel:3:lunch`, `dm:10,11`, `message:1004`, `user:7`,
/// `type:realm_user`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum OrderingKey {
    /// A channel conversation.
    Channel {
        /// The channel.
        channel: ChannelRef,
        /// The topic, lower-cased (Zulip compares topics case-insensitively).
        topic: String,
    },
    /// A direct-message conversation: participant ids, sorted, no repeats.
    Direct(Vec<i64>),
    /// An edit or deletion whose conversation the event does not carry.
    Message(i64),
    /// An event about one user.
    User(i64),
    /// Anything else: all events of this type keep their order.
    EventType(String),
}

/// How a channel is named in a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum ChannelRef {
    /// The channel's id (`stream_id`), which edits and deletions carry too.
    Id(i64),
    /// The channel's name, only when Zulip sent no id.
    Name(String),
}

impl fmt::Display for OrderingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderingKey::Channel {
                channel: ChannelRef::Id(id),
                topic,
            } => write!(f, "channel:{id}:{topic}"),
            OrderingKey::Channel {
                channel: ChannelRef::Name(name),
                topic,
            } => write!(f, "channel-name:{name}:{topic}"),
            OrderingKey::Direct(ids) => {
                f.write_str("dm:")?;
                for (i, id) in ids.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{id}")?;
                }
                Ok(())
            }
            OrderingKey::Message(id) => write!(f, "message:{id}"),
            OrderingKey::User(id) => write!(f, "user:{id}"),
            OrderingKey::EventType(t) => write!(f, "type:{t}"),
        }
    }
}

/// The ordering key of `event` (see the module documentation for the rules).
pub(crate) fn ordering_key(event: &Event) -> OrderingKey {
    if let Some(c) = event.conversation() {
        return match c {
            Conversation::Channel {
                channel_id: Some(id),
                topic,
                ..
            } => channel_key(ChannelRef::Id(id), topic),
            Conversation::Channel { channel, topic, .. } => channel_key(
                ChannelRef::Name(channel.unwrap_or_default().to_owned()),
                topic,
            ),
            Conversation::Direct(ids) => OrderingKey::Direct(ids.to_vec()),
        };
    }
    let about_one_message = matches!(
        event.event_type(),
        "update_message" | "delete_message" | "typing_edit_message"
    );
    about_one_message
        .then(|| event.about_message())
        .flatten()
        .map(|m| OrderingKey::Message(m.0))
        .or_else(|| event.actor().id.map(OrderingKey::User))
        .unwrap_or_else(|| OrderingKey::EventType(event.event_type().to_owned()))
}

fn channel_key(channel: ChannelRef, topic: &str) -> OrderingKey {
    OrderingKey::Channel {
        channel,
        topic: topic.to_lowercase(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn key(json: &str) -> OrderingKey {
        ordering_key(&Event::parse(json).unwrap())
    }

    /// The key of channel `id`'s `topic` (already lower-cased).
    pub(crate) fn channel(id: i64, topic: &str) -> OrderingKey {
        OrderingKey::Channel {
            channel: ChannelRef::Id(id),
            topic: topic.to_owned(),
        }
    }

    /// A channel message, with message id 1004.
    pub(crate) const MSG: &str = r#"{"type":"message","message":{"id":1004,"sender_id":13,"display_recipient":"engineering","stream_id":3,"subject":"Deploy 2026-11-27","timestamp":1,"content":"x"},"id":8}"#;
    #[test]
    fn a_channel_message_is_keyed_by_channel_id_and_lower_cased_topic() {
        assert_eq!(key(MSG), channel(3, "deploy 2026-11-27"));
    }
    #[test]
    fn a_channel_message_without_an_id_is_keyed_by_name() {
        let k = key(
            r#"{"type":"message","message":{"id":1,"sender_id":1,"display_recipient":"general","subject":"Lunch"},"id":1}"#,
        );
        assert_eq!(
            k,
            OrderingKey::Channel {
                channel: ChannelRef::Name("general".into()),
                topic: "lunch".into()
            }
        );
    }
    #[test]
    fn direct_messages_of_one_group_share_a_key_whoever_sends() {
        let a = key(
            r#"{"type":"message","message":{"id":1,"sender_id":11,"display_recipient":[{"id":11},{"id":10}]},"id":1}"#,
        );
        let b = key(
            r#"{"type":"message","message":{"id":2,"sender_id":10,"display_recipient":[{"id":10},{"id":11}]},"id":2}"#,
        );
        assert_eq!(a, OrderingKey::Direct(vec![10, 11]));
        assert_eq!(a, b);
    }
    #[test]
    fn a_topic_edit_follows_the_topic_the_message_was_in() {
        let k = key(
            r#"{"type":"update_message","user_id":10,"message_id":58,"stream_id":5,"orig_subject":"Test","subject":"new_topic","message_ids":[58,57],"id":0}"#,
        );
        assert_eq!(k, channel(5, "test"));
    }
    #[test]
    fn a_channel_deletion_shares_its_messages_key() {
        let msg = key(
            r#"{"type":"message","message":{"id":1013,"sender_id":13,"display_recipient":"general","stream_id":1,"subject":"Welcome Frank"},"id":22}"#,
        );
        let del = key(
            r#"{"type":"delete_message","message_ids":[1013],"message_type":"stream","stream_id":1,"topic":"Welcome Frank","id":23}"#,
        );
        assert_eq!(msg, del);
    }
    #[test]
    fn edits_and_deletions_without_a_conversation_are_keyed_by_message() {
        // A content-only edit carries no topic; a DM deletion no participants.
        let edit = key(
            r#"{"type":"update_message","user_id":13,"message_id":1004,"stream_id":3,"content":"y","id":9}"#,
        );
        let del =
            key(r#"{"type":"delete_message","message_type":"private","message_id":37,"id":0}"#);
        let bulk = key(
            r#"{"type":"delete_message","message_type":"private","message_ids":[40,38],"id":1}"#,
        );
        assert_eq!(edit, OrderingKey::Message(1004));
        assert_eq!(del, OrderingKey::Message(37));
        assert_eq!(bulk, OrderingKey::Message(38));
    }
    #[test]
    fn typing_is_keyed_by_its_conversation() {
        let channel_typing = key(
            r#"{"type":"typing","op":"start","message_type":"stream","sender":{"user_id":15},"stream_id":4,"topic":"Ticket #4821","id":28}"#,
        );
        let dm_typing = key(
            r#"{"type":"typing","op":"start","message_type":"direct","sender":{"user_id":11},"recipients":[{"user_id":10},{"user_id":11}],"id":11}"#,
        );
        let edit_typing = key(
            r#"{"type":"typing_edit_message","op":"start","sender_id":10,"recipient":{"type":"direct","user_ids":[8,10]},"message_id":7,"id":0}"#,
        );
        assert_eq!(channel_typing, channel(4, "ticket #4821"));
        assert_eq!(dm_typing, OrderingKey::Direct(vec![10, 11]));
        assert_eq!(edit_typing, OrderingKey::Direct(vec![8, 10]));
    }
    #[test]
    fn user_scoped_events_are_keyed_by_user_and_the_rest_by_type() {
        let reaction =
            key(r#"{"type":"reaction","op":"add","user_id":11,"message_id":1001,"id":6}"#);
        let presence = key(r#"{"type":"presence","user_id":15,"server_timestamp":1.5,"id":2}"#);
        let sub = key(r#"{"type":"submessage","message_id":9,"sender_id":58,"id":28}"#);
        let flags = key(r#"{"type":"update_message_flags","op":"add","messages":[1],"id":31}"#);
        assert_eq!(reaction, OrderingKey::User(11));
        assert_eq!(presence, OrderingKey::User(15));
        assert_eq!(sub, OrderingKey::User(58));
        assert_eq!(flags, OrderingKey::EventType("update_message_flags".into()));
    }
}
