//! [`Message`]: the typed view of a `message` event (sender, recipient,
//! time, content), parsed from the raw JSON once and cached in the event:
//! on arrival for a message event from the wire (in one pass with its
//! head, [`read_with_head`]), else on first use.

use std::borrow::Cow;

use serde::Deserialize;

use super::lenient::Head;

/// Parses the typed message of a `message` event's raw JSON; `None` when
/// it is malformed.
pub(super) fn parse(raw: &str) -> Option<Message> {
    #[derive(Deserialize)]
    struct Wrapper {
        message: WireMessage,
    }
    serde_json::from_str::<Wrapper>(raw)
        .ok()
        .map(|w| w.message.into())
}

/// The id, `op` and message of a well-formed `message` event (an integer
/// `id`, the type `message`, no `op` or a string one, a message that
/// parses), read in one pass; `None` for anything else, which
/// `Event::from_wire` reads the general way. A message event's message is
/// read on arrival anyway (the queue-lag metric, then the listeners), and
/// reading the head alone first scanned the whole text once more. The
/// key's test keeps events without a `message` from paying for the try.
pub(super) fn read_with_head(text: &str) -> Option<(i64, Option<String>, Message)> {
    if !text.contains("\"message\"") {
        return None;
    }
    let head = serde_json::from_str::<Head<'_, Option<WireMessage>>>(text).ok()?;
    match head.into_parts() {
        (Some(id), Some((event_type, op)), Some(message)) if event_type == "message" => {
            Some((id, op.map(Cow::into_owned), message.into()))
        }
        _ => None,
    }
}

/// Where a message was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// A channel (stream) message.
    Channel {
        /// The channel's id, when Zulip sent it.
        channel_id: Option<i64>,
        /// The channel's name.
        channel: String,
        /// The topic.
        topic: String,
    },
    /// A direct message to one or more users.
    Direct {
        /// Every participant, the sender included, as Zulip lists them.
        recipients: Vec<DirectRecipient>,
    },
}

/// One participant of a direct message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DirectRecipient {
    /// User id.
    pub id: i64,
    /// Email address.
    #[serde(default)]
    pub email: String,
}

/// The typed view of a Zulip message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Message id.
    pub id: i64,
    /// Sender's user id.
    pub sender_id: i64,
    /// Sender's email.
    pub sender_email: String,
    /// Channel and topic, or the direct-message participants.
    pub recipient: Recipient,
    /// Unix seconds.
    pub timestamp: i64,
    /// Markdown or HTML, as registered (`apply_markdown`).
    pub content: String,
}

/// `display_recipient`: a channel name, or the direct-message recipients.
/// Read straight from the parser (`#[serde(untagged)]` would buffer the
/// value first and try each form in turn).
enum WireRecipient {
    Channel(String),
    Direct(Vec<DirectRecipient>),
}

impl<'de> Deserialize<'de> for WireRecipient {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<WireRecipient, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = WireRecipient;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a channel name or a list of recipients")
            }
            fn visit_str<E>(self, v: &str) -> Result<WireRecipient, E> {
                Ok(WireRecipient::Channel(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<WireRecipient, E> {
                Ok(WireRecipient::Channel(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<WireRecipient, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(2));
                while let Some(r) = seq.next_element::<DirectRecipient>()? {
                    out.push(r);
                }
                Ok(WireRecipient::Direct(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A message as `GET /events` sends it.
#[derive(Deserialize)]
struct WireMessage {
    id: i64,
    sender_id: i64,
    #[serde(default)]
    sender_email: String,
    display_recipient: WireRecipient,
    #[serde(default)]
    stream_id: Option<i64>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    timestamp: i64,
    #[serde(default)]
    content: String,
}

impl From<WireMessage> for Message {
    fn from(w: WireMessage) -> Self {
        let recipient = match w.display_recipient {
            WireRecipient::Channel(channel) => Recipient::Channel {
                channel_id: w.stream_id,
                channel,
                topic: w.subject.or(w.topic).unwrap_or_default(),
            },
            WireRecipient::Direct(recipients) => Recipient::Direct { recipients },
        };
        Message {
            id: w.id,
            sender_id: w.sender_id,
            sender_email: w.sender_email,
            recipient,
            timestamp: w.timestamp,
            content: w.content,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    const CHANNEL: &str = r#"{"type":"message","message":{"id":42,"sender_id":7,"sender_email":"a@x.org","display_recipient":"general","stream_id":3,"subject":"lunch","timestamp":1790000000,"content":"hi  there"},"flags":[],"id":5}"#;
    #[test]
    fn a_direct_message_gets_its_recipients() {
        let e = Event::from_wire(r#"{"type":"message","id":1,"message":{"id":8,"sender_id":7,"display_recipient":[{"id":7,"email":"a@x"},{"id":9,"email":"b@x"}],"content":"hi"}}"#).unwrap();
        let m = e.message().unwrap();
        match &m.recipient {
            Recipient::Direct { recipients } => {
                assert_eq!(
                    recipients.iter().map(|r| r.id).collect::<Vec<_>>(),
                    vec![7, 9]
                );
            }
            other => panic!("{other:?}"),
        }
        let bad = Event::from_wire(
            r#"{"type":"message","id":1,"message":{"id":8,"sender_id":7,"display_recipient":5}}"#,
        )
        .unwrap();
        assert!(
            bad.message().is_none(),
            "a recipient that is neither form gives no view"
        );
    }
    #[test]
    fn a_channel_message_gets_its_typed_view() {
        let e = Event::parse(CHANNEL).unwrap();
        let m = e.message().unwrap();
        assert_eq!(m.id, 42);
        assert_eq!(m.content.len(), 9);
        assert_eq!(
            m.recipient,
            Recipient::Channel {
                channel_id: Some(3),
                channel: "general".into(),
                topic: "lunch".into()
            }
        );
        assert_eq!(e.user_id(), Some(7));
    }
    #[test]
    fn a_direct_message_lists_its_recipients() {
        let e = Event::parse(r#"{"type":"message","id":1,"message":{"id":9,"sender_id":1,"display_recipient":[{"id":1,"email":"a@x"},{"id":2,"email":"b@x"}],"subject":"","timestamp":1,"content":"x"}}"#).unwrap();
        match &e.message().unwrap().recipient {
            Recipient::Direct { recipients } => assert_eq!(recipients.len(), 2),
            other => panic!("unexpected {other:?}"),
        }
    }
    #[test]
    fn a_message_read_in_one_pass_is_the_event_the_general_way_reads() {
        // The general way: the head alone, then the message on first use.
        for text in [
            CHANNEL,
            r#"{"id":6,"type":"message","op":"x","message":{"id":43,"sender_id":7,"display_recipient":[{"id":7,"email":"a@x"}],"content":"é\u00e9"}}"#,
            r#"{"type":"message","message":{"id":44,"sender_id":7,"display_recipient":"general","topic":"t"},"id":7,"flags":["read"]}"#,
        ] {
            let (id, op, m) = read_with_head(text).expect(text);
            let e = Event::from_wire(text).unwrap();
            assert_eq!((id, op.as_deref()), (e.id(), e.op()), "{text}");
            assert_eq!(Some(&m), parse(text).as_ref(), "{text}");
            assert_eq!(e.message(), Some(&m), "{text}");
            assert_eq!(e.message_id(), Some(m.id), "{text}");
            assert_eq!(e.event_type(), "message");
            assert_eq!(e.raw(), text, "the text is kept as it came");
        }
    }
    #[test]
    fn what_one_pass_cannot_read_goes_the_general_way_and_loses_nothing() {
        // Another type with a message-like field, an op that is no string,
        // a message that does not parse, a repeated key, no integer id.
        let reaction = r#"{"type":"reaction","id":1,"message":{"id":9,"sender_id":1,"display_recipient":"g"}}"#;
        assert!(read_with_head(reaction).is_none());
        let e = Event::from_wire(reaction).unwrap();
        assert_eq!((e.event_type(), e.message_id()), ("reaction", None));
        assert!(e.message().is_none());
        let odd_op = r#"{"type":"message","op":3,"id":2,"message":{"id":9,"sender_id":1,"display_recipient":"g"}}"#;
        assert!(read_with_head(odd_op).is_none());
        assert_eq!(Event::from_wire(odd_op).unwrap().event_type(), "malformed");
        let unparsed = r#"{"type":"message","id":3,"message":{"id":9,"display_recipient":"g"}}"#;
        assert!(read_with_head(unparsed).is_none(), "no sender_id");
        let e = Event::from_wire(unparsed).unwrap();
        assert_eq!((e.id(), e.message_id()), (3, Some(9)));
        assert!(e.message().is_none());
        let repeated = r#"{"type":"message","id":4,"id":5,"message":{"id":9,"sender_id":1,"display_recipient":"g"}}"#;
        assert!(read_with_head(repeated).is_none());
        assert!(
            Event::from_wire(repeated).is_err(),
            "as before: a repeated id"
        );
        let no_id =
            r#"{"type":"message","message":{"id":9,"sender_id":1,"display_recipient":"g"}}"#;
        assert!(read_with_head(no_id).is_none());
        assert!(Event::from_wire(no_id).is_err());
    }
}
