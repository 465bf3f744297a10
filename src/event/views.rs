//! The typed views every component reads from an event: who acted
//! ([`Actor`]), where ([`Conversation`]), when ([`EventTime`]) and which
//! message it is about ([`MessageRef`]).
//!
//! They are read once per event: a `message` event's are borrowed from its
//! [`Message`](super::Message) view (only a direct message's sorted
//! participants are computed, once, and kept); any other event's come from
//! one pass over the raw JSON, on first use, kept in the event, that reads
//! only the fields below, each as a loose value so that an unexpected type
//! in one never hides the others.
//!
//! # Who acted
//!
//! A message's `sender_id` (and `sender_email`); else the first of
//! `sender.user_id` (typing), `sender_id` (submessages, edit typing),
//! `user_id` (reactions, presence, `user_status`, edits) and `user.user_id`
//! (the older form of a reaction's user). `sender` comes first because in
//! Zulip's events it names who produced the event and nothing else, while
//! `user_id` is a general field whose meaning depends on the event type (no
//! event in the API or the recorded fixtures carries both). The emails are
//! `sender.email`, `email` and `user.email`, in that order.
//!
//! # Where
//!
//! | event | conversation |
//! | --- | --- |
//! | `message` | its channel (id, name) and topic, or its participants, sender included |
//! | `update_message`, `delete_message` | `stream_id` and `orig_subject`, `subject` or `topic` (the topic the message was in, for a move) |
//! | `typing` | `stream_id` and `topic`, or `recipients` plus the sender |
//! | `typing_edit_message` | its `recipient` object: channel and topic, or `user_ids` plus `sender_id` |
//! | anything else | none |

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::message::{Message, Recipient};

/// Who an event is from, as far as it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor<'a> {
    /// The acting user's id.
    pub id: Option<i64>,
    /// Every email the event gives for the acting user (first the best).
    pub emails: &'a [String],
}

impl Actor<'_> {
    /// Whether the event names its actor at all.
    pub fn is_known(&self) -> bool {
        self.id.is_some() || !self.emails.is_empty()
    }

    /// The acting user's email, when the event gives one.
    pub fn email(&self) -> Option<&str> {
        self.emails.first().map(String::as_str)
    }
}

/// Where an event happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversation<'a> {
    /// A channel topic.
    Channel {
        /// The channel's id, when the event carries it.
        channel_id: Option<i64>,
        /// The channel's name (only a message carries it).
        channel: Option<&'a str>,
        /// The topic, as written.
        topic: &'a str,
    },
    /// A direct-message conversation: participant ids, sorted, no repeats.
    Direct(&'a [i64]),
}

/// When an event happened, by its own account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTime(pub DateTime<Utc>);

/// The one message an event is about: a message's own id, else
/// `message_id`, else the smallest of `message_ids`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRef(pub i64);

/// What the views of an event need kept: for a message event, only a
/// direct message's sorted participants (the rest is read from its
/// [`Message`] in place); for any other event, what its fields say.
#[derive(Debug, Default)]
pub(super) struct Views {
    user_id: Option<i64>,
    emails: Vec<String>,
    place: Option<Place>,
    time: Option<EventTime>,
    message: Option<MessageRef>,
}

/// A conversation as [`Views`] keep it.
#[derive(Debug)]
enum Place {
    Channel { channel_id: i64, topic: String },
    Direct(Vec<i64>),
}

impl Place {
    fn view(&self) -> Conversation<'_> {
        match self {
            Place::Channel { channel_id, topic } => Conversation::Channel {
                channel_id: Some(*channel_id),
                channel: None,
                topic,
            },
            Place::Direct(ids) => Conversation::Direct(ids),
        }
    }
}

impl Views {
    /// What to keep of an event of type `event_type` with this `raw` JSON
    /// and, for a message event, its typed `message`.
    pub(super) fn read(message: Option<&Message>, event_type: &str, raw: &str) -> Views {
        match message {
            Some(m) => Views {
                place: match &m.recipient {
                    Recipient::Direct { recipients } => Some(direct(
                        recipients
                            .iter()
                            .map(|r| r.id)
                            .chain(std::iter::once(m.sender_id)),
                    )),
                    Recipient::Channel { .. } => None,
                },
                ..Views::default()
            },
            None => Views::of_fields(event_type, &Fields::of(raw)),
        }
    }

    fn of_fields(event_type: &str, f: &Fields) -> Views {
        let user_id = f.user_id();
        let place = match event_type {
            "update_message" | "delete_message" => f.channel(),
            "typing" => f.channel().or_else(|| f.typing_group(user_id)),
            "typing_edit_message" => f.edit_typing(),
            _ => None,
        };
        Views {
            user_id,
            emails: f.emails(),
            place,
            time: f.time(),
            message: f.message(),
        }
    }
}

/// Who acted in `message`'s event, or in another event with these `views`.
pub(super) fn actor<'a>(
    message: Option<&'a Message>,
    views: impl FnOnce() -> &'a Views,
) -> Actor<'a> {
    match message {
        Some(m) => Actor {
            id: Some(m.sender_id),
            emails: match m.sender_email.is_empty() {
                true => &[],
                false => std::slice::from_ref(&m.sender_email),
            },
        },
        None => {
            let v = views();
            Actor {
                id: v.user_id,
                emails: &v.emails,
            }
        }
    }
}

/// Where `message`'s event happens, or another event with these `views`.
pub(super) fn conversation<'a>(
    message: Option<&'a Message>,
    views: impl FnOnce() -> &'a Views,
) -> Option<Conversation<'a>> {
    match message.map(|m| &m.recipient) {
        Some(Recipient::Channel {
            channel_id,
            channel,
            topic,
        }) => Some(Conversation::Channel {
            channel_id: *channel_id,
            channel: Some(channel),
            topic,
        }),
        Some(Recipient::Direct { .. }) | None => views().place.as_ref().map(Place::view),
    }
}

/// When `message`'s event happened, or another event with these `views`.
pub(super) fn time<'a>(
    message: Option<&'a Message>,
    views: impl FnOnce() -> &'a Views,
) -> Option<EventTime> {
    match message {
        Some(m) => (m.timestamp > 0)
            .then(|| DateTime::from_timestamp(m.timestamp, 0))
            .flatten()
            .map(EventTime),
        None => views().time,
    }
}

/// The message `message`'s event is (itself), or another event with these
/// `views` is about.
pub(super) fn about<'a>(
    message: Option<&'a Message>,
    views: impl FnOnce() -> &'a Views,
) -> Option<MessageRef> {
    match message {
        Some(m) => Some(MessageRef(m.id)),
        None => views().message,
    }
}

/// The fields outside `message` that the views read. Each is a loose
/// [`Value`] so that an unexpected type in one field never hides the others.
#[derive(Deserialize, Default)]
struct Fields {
    #[serde(default)]
    stream_id: Option<Value>,
    #[serde(default)]
    orig_subject: Option<Value>,
    #[serde(default)]
    subject: Option<Value>,
    #[serde(default)]
    topic: Option<Value>,
    #[serde(default)]
    message_id: Option<Value>,
    #[serde(default)]
    message_ids: Option<Value>,
    #[serde(default)]
    user_id: Option<Value>,
    #[serde(default)]
    sender_id: Option<Value>,
    #[serde(default)]
    sender: Option<Value>,
    #[serde(default)]
    user: Option<Value>,
    #[serde(default)]
    email: Option<Value>,
    #[serde(default)]
    recipients: Option<Value>,
    #[serde(default)]
    recipient: Option<Value>,
    #[serde(default)]
    timestamp: Option<Value>,
    #[serde(default)]
    server_timestamp: Option<Value>,
    #[serde(default)]
    edit_timestamp: Option<Value>,
}

fn int(v: &Option<Value>) -> Option<i64> {
    v.as_ref().and_then(Value::as_i64)
}

fn text(v: &Option<Value>) -> Option<&str> {
    v.as_ref().and_then(Value::as_str)
}

fn nested<'a>(v: &'a Option<Value>, field: &str) -> Option<&'a Value> {
    v.as_ref()?.get(field)
}

fn direct(ids: impl Iterator<Item = i64>) -> Place {
    let mut ids: Vec<i64> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    Place::Direct(ids)
}

fn channel(id: i64, topic: &str) -> Place {
    Place::Channel {
        channel_id: id,
        topic: topic.to_owned(),
    }
}

impl Fields {
    fn of(raw: &str) -> Fields {
        serde_json::from_str(raw).unwrap_or_default()
    }

    fn user_id(&self) -> Option<i64> {
        nested(&self.sender, "user_id")
            .and_then(Value::as_i64)
            .or_else(|| int(&self.sender_id))
            .or_else(|| int(&self.user_id))
            .or_else(|| nested(&self.user, "user_id").and_then(Value::as_i64))
    }

    fn emails(&self) -> Vec<String> {
        [
            nested(&self.sender, "email"),
            self.email.as_ref(),
            nested(&self.user, "email"),
        ]
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
    }

    /// `message_id`, else the smallest of `message_ids`.
    fn message(&self) -> Option<MessageRef> {
        int(&self.message_id)
            .or_else(|| {
                self.message_ids
                    .as_ref()?
                    .as_array()?
                    .iter()
                    .filter_map(Value::as_i64)
                    .min()
            })
            .map(MessageRef)
    }

    fn time(&self) -> Option<EventTime> {
        let secs = [
            &self.server_timestamp,
            &self.timestamp,
            &self.edit_timestamp,
        ]
        .into_iter()
        .find_map(|v| v.as_ref()?.as_f64())?;
        (secs.is_finite() && secs > 0.0)
            .then(|| DateTime::from_timestamp_millis((secs * 1000.0) as i64))
            .flatten()
            .map(EventTime)
    }

    /// The channel topic named by `stream_id` and a topic field
    /// (`orig_subject` first: the topic an edited message was in).
    fn channel(&self) -> Option<Place> {
        let id = int(&self.stream_id)?;
        let topic = text(&self.orig_subject)
            .or_else(|| text(&self.subject))
            .or_else(|| text(&self.topic))?;
        Some(channel(id, topic))
    }

    /// A direct typing event's participants: `recipients` and the sender.
    fn typing_group(&self, sender: Option<i64>) -> Option<Place> {
        let ids = self
            .recipients
            .as_ref()?
            .as_array()?
            .iter()
            .filter_map(|r| r.get("user_id")?.as_i64());
        Some(direct(ids.chain(sender)))
    }

    /// A `typing_edit_message` event's conversation (`recipient` object).
    fn edit_typing(&self) -> Option<Place> {
        let r = self.recipient.as_ref()?;
        match r.get("type")?.as_str()? {
            "channel" | "stream" => {
                let id = r.get("channel_id").or_else(|| r.get("stream_id"))?;
                let topic = r.get("topic")?.as_str()?;
                Some(channel(id.as_i64()?, topic))
            }
            _ => {
                let ids = r
                    .get("user_ids")?
                    .as_array()?
                    .iter()
                    .filter_map(Value::as_i64);
                Some(direct(ids.chain(int(&self.sender_id))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn parse(json: &str) -> Event {
        Event::parse(json).unwrap()
    }

    #[test]
    fn user_ids_are_found_in_reactions_and_typing() {
        let r = parse(r#"{"type":"reaction","op":"add","user_id":12,"id":1}"#);
        assert_eq!(r.user_id(), Some(12));
        let t =
            parse(r#"{"type":"typing","op":"start","sender":{"user_id":13,"email":"x"},"id":2}"#);
        assert_eq!(t.user_id(), Some(13));
    }

    #[test]
    fn the_sender_is_the_actor_before_any_user_id() {
        // No Zulip event is known to carry both; should one, the sender
        // is who acted, as it is for typing, edit typing and submessages.
        let e = parse(
            r#"{"type":"typing","op":"start","user_id":9,"sender":{"user_id":13,"email":"s@x"},"email":"u@x","id":2}"#,
        );
        assert_eq!(e.actor().id, Some(13));
        assert_eq!(e.actor().email(), Some("s@x"));
        let sub = parse(r#"{"type":"submessage","message_id":9,"sender_id":58,"id":28}"#);
        assert_eq!(sub.user_id(), Some(58));
        let reaction = parse(
            r#"{"type":"reaction","op":"add","user":{"user_id":8,"email":"o@x"},"message_id":1,"id":4}"#,
        );
        assert_eq!(reaction.user_id(), Some(8));
        assert_eq!(reaction.actor().email(), Some("o@x"));
    }

    #[test]
    fn a_message_gives_every_view_from_its_typed_message() {
        let e = parse(
            r#"{"type":"message","message":{"id":42,"sender_id":7,"sender_email":"a@x.org","display_recipient":[{"id":9},{"id":7}],"timestamp":1790000000,"content":"hi"},"id":5}"#,
        );
        assert_eq!(e.actor().id, Some(7));
        assert_eq!(e.actor().email(), Some("a@x.org"));
        assert_eq!(e.conversation(), Some(Conversation::Direct(&[7, 9])));
        assert_eq!(e.time().map(|t| t.0.timestamp()), Some(1_790_000_000));
        assert_eq!(e.about_message(), Some(MessageRef(42)));
    }

    #[test]
    fn edits_name_the_topic_the_message_was_in_and_deletions_their_smallest_message() {
        let edit = parse(
            r#"{"type":"update_message","user_id":10,"message_id":58,"stream_id":5,"orig_subject":"Test","subject":"new","edit_timestamp":1594825451,"id":0}"#,
        );
        assert_eq!(
            edit.conversation(),
            Some(Conversation::Channel {
                channel_id: Some(5),
                channel: None,
                topic: "Test"
            })
        );
        assert_eq!(edit.time().map(|t| t.0.timestamp()), Some(1_594_825_451));
        let del = parse(r#"{"type":"delete_message","message_ids":[40,38],"id":1}"#);
        assert_eq!(del.about_message(), Some(MessageRef(38)));
        assert_eq!(del.conversation(), None);
    }
}
