//! [`Event`]: one Zulip event, its raw JSON kept byte for byte, plus typed views.
//!
//! Only the fields every event has (`id`, `type`, `op`) are parsed on
//! arrival; the typed [`Message`] view is parsed once, on first use, and
//! shared by every listener that asks for it. Unknown event types are normal
//! events: they are stored and dispatched like any other, never an error.

use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::value::RawValue;

/// An event as Zulip sent it.
#[derive(Debug)]
pub struct Event {
    id: i64,
    event_type: String,
    op: Option<String>,
    /// Valid JSON: every constructor parses it before keeping it.
    raw: Box<str>,
    /// `message.id` of a `message` event, read with the head.
    message_id: Option<i64>,
    backfilled: bool,
    message: OnceLock<Option<Message>>,
}

/// Why a piece of JSON is not an event.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Not JSON at all, or not an object.
    #[error("not a JSON object: {0}")]
    NotJson(#[from] serde_json::Error),
    /// A JSON object without a string `type`.
    #[error("the event has no string \"type\" field")]
    MissingType,
    /// A JSON object without an integer `id` where one is required.
    #[error("the event has no integer \"id\" field")]
    MissingId,
}

/// The fields read from every event on arrival, in one pass that also
/// checks that the whole text is JSON.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(default)]
    id: Option<i64>,
    #[serde(rename = "type", borrow, default)]
    event_type: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    op: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    message: IdOf,
}

impl Head<'_> {
    fn message_id(&self) -> Option<i64> {
        match self.event_type.as_deref() {
            Some("message") => self.message.0,
            _ => None,
        }
    }
}

/// The integer `id` of a JSON object; `None` for anything else. Never an
/// error, so an odd `message` field cannot make an event unreadable.
#[derive(Default)]
struct IdOf(Option<i64>);

impl<'de> Deserialize<'de> for IdOf {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<IdOf, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = IdOf;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<IdOf, A::Error> {
                let mut id = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "id" {
                        id = map.next_value::<serde_json::Value>()?.as_i64();
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(IdOf(id))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<IdOf, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(IdOf(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<IdOf, E> {
                Ok(IdOf(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<IdOf, E> {
                Ok(IdOf(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<IdOf, E> {
                Ok(IdOf(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<IdOf, E> {
                Ok(IdOf(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<IdOf, E> {
                Ok(IdOf(None))
            }
            fn visit_unit<E>(self) -> Result<IdOf, E> {
                Ok(IdOf(None))
            }
        }
        d.deserialize_any(V)
    }
}

impl Event {
    /// Builds an event from its raw JSON, which must carry an integer `id`.
    ///
    /// # Errors
    ///
    /// [`EventError`] when the JSON is not an object with `type` and `id`.
    pub fn from_raw(raw: Box<RawValue>) -> Result<Event, EventError> {
        Event::from_raw_parts(raw, None, false)
    }

    /// Builds an event from its raw JSON, using `fallback_id` when the JSON
    /// has no `id` (a stored row keeps its id in a column).
    ///
    /// # Errors
    ///
    /// [`EventError`] when the JSON is not an object with a `type`, or has
    /// no id at all.
    pub fn from_raw_parts(
        raw: Box<RawValue>,
        fallback_id: Option<i64>,
        backfilled: bool,
    ) -> Result<Event, EventError> {
        let raw: Box<str> = raw.into();
        let head: Head<'_> = serde_json::from_str(&raw)?;
        let id = head.id.or(fallback_id).ok_or(EventError::MissingId)?;
        let message_id = head.message_id();
        let event_type = head.event_type.ok_or(EventError::MissingType)?.into_owned();
        let op = head.op.map(|o| o.into_owned());
        Ok(Event {
            id,
            event_type,
            op,
            raw,
            message_id,
            backfilled,
            message: OnceLock::new(),
        })
    }

    /// Builds an event as Zulip sent it in `GET /events`: one without a
    /// string `type` is kept as `malformed` (nothing Zulip sent is lost);
    /// one without an integer `id` cannot be acknowledged or stored and is
    /// an error.
    ///
    /// # Errors
    ///
    /// A description with the raw text when the event has no `id`.
    pub fn from_wire(text: &str) -> Result<Event, String> {
        // Parsing the head checks the whole text: it is JSON once this
        // succeeds, so it is kept as it is, without a second pass.
        let head = match serde_json::from_str::<Head<'_>>(text) {
            Ok(h) => h,
            Err(e) => return Err(format!("{e}: {text}")),
        };
        let Some(id) = head.id else {
            return Err(format!("the event has no integer \"id\" field: {text}"));
        };
        let message_id = head.message_id();
        Ok(match head.event_type {
            Some(event_type) => Event {
                id,
                event_type: event_type.into_owned(),
                op: head.op.map(|o| o.into_owned()),
                raw: text.into(),
                message_id,
                backfilled: false,
                message: OnceLock::new(),
            },
            None => Event::malformed_text(text.into(), id),
        })
    }

    /// Keeps an event that has an `id` but no string `type` under the type
    /// `malformed`, so that nothing Zulip sent is lost.
    pub fn malformed(raw: Box<RawValue>, id: i64) -> Event {
        Event::malformed_text(raw.into(), id)
    }

    fn malformed_text(raw: Box<str>, id: i64) -> Event {
        Event {
            id,
            event_type: "malformed".to_owned(),
            op: None,
            raw,
            message_id: None,
            backfilled: false,
            message: OnceLock::new(),
        }
    }

    /// Reads the `id` of any JSON object, however malformed otherwise.
    pub fn peek_id(raw: &RawValue) -> Option<i64> {
        #[derive(Deserialize)]
        struct IdOnly {
            id: Option<i64>,
        }
        serde_json::from_str::<IdOnly>(raw.get()).ok()?.id
    }

    /// Parses one line of JSON text into an event.
    ///
    /// # Errors
    ///
    /// [`EventError`] when the text is not an event object.
    pub fn parse(text: &str) -> Result<Event, EventError> {
        let raw: Box<RawValue> = serde_json::from_str(text.trim())?;
        if !raw.get().starts_with('{') {
            return Err(EventError::MissingType);
        }
        Event::from_raw(raw)
    }

    /// Parses line `line` of a recorded-events file. The event's id for
    /// storage is its line number (recorded files may repeat or omit ids);
    /// its own `id` stays in the raw JSON.
    ///
    /// # Errors
    ///
    /// [`EventError`] when the line is not an event object with a `type`.
    pub fn parse_line(text: &str, line: i64) -> Result<Event, EventError> {
        let raw: Box<RawValue> = serde_json::from_str(text.trim())?;
        if !raw.get().starts_with('{') {
            return Err(EventError::MissingType);
        }
        let mut event = Event::from_raw_parts(raw, Some(line), false)?;
        event.id = line;
        Ok(event)
    }

    /// Wraps a message fetched with `GET /messages` as a `message` event
    /// marked `backfilled`; its event id is the message id.
    ///
    /// # Errors
    ///
    /// [`EventError`] when the message has no integer `id`.
    pub fn backfilled_message(message: &RawValue) -> Result<Event, EventError> {
        #[derive(Deserialize)]
        struct Id {
            id: i64,
        }
        let Id { id } = serde_json::from_str(message.get())?;
        let text = format!(
            r#"{{"type":"message","message":{},"flags":[],"id":{id},"backfilled":true}}"#,
            message.get()
        );
        Event::from_raw_parts(RawValue::from_string(text)?, None, true)
    }

    /// The event's id in its queue (its line's `id` for a file source).
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The `type` field, such as `message` or `reaction`.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The `op` field, when the event has one.
    pub fn op(&self) -> Option<&str> {
        self.op.as_deref()
    }

    /// The JSON exactly as Zulip sent it.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// Whether the event was rebuilt from `GET /messages` after a gap.
    pub fn is_backfilled(&self) -> bool {
        self.backfilled
    }

    /// Whether the event is a heartbeat, which is acknowledged but never stored.
    pub fn is_heartbeat(&self) -> bool {
        self.event_type == "heartbeat"
    }

    /// The typed view of a `message` event, parsed on first use; `None` for
    /// other events and for message events whose message is malformed.
    pub fn message(&self) -> Option<&Message> {
        self.message
            .get_or_init(|| {
                if self.event_type != "message" {
                    return None;
                }
                #[derive(Deserialize)]
                struct Wrapper {
                    message: WireMessage,
                }
                serde_json::from_str::<Wrapper>(&self.raw)
                    .ok()
                    .map(|w| w.message.into())
            })
            .as_ref()
    }

    /// The id of the message a `message` event carries.
    pub fn message_id(&self) -> Option<i64> {
        self.message_id
    }

    /// The user id an event is about or from, when it names one
    /// (`sender_id` of a message, `user_id` of reactions and presence,
    /// `sender.user_id` of typing).
    pub fn user_id(&self) -> Option<i64> {
        if let Some(m) = self.message() {
            return Some(m.sender_id);
        }
        #[derive(Deserialize)]
        struct Sender {
            user_id: Option<i64>,
        }
        #[derive(Deserialize)]
        struct Actor {
            user_id: Option<i64>,
            sender: Option<Sender>,
        }
        let actor: Actor = serde_json::from_str(&self.raw).ok()?;
        actor.user_id.or(actor.sender.and_then(|s| s.user_id))
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

    #[test]
    fn the_head_reads_the_message_id_and_tolerates_an_odd_message_field() {
        let e = Event::from_wire(CHANNEL).unwrap();
        assert_eq!((e.id(), e.message_id()), (5, Some(42)));
        assert_eq!(e.raw(), CHANNEL);
        // Only message events have a message id.
        let r = Event::from_wire(r#"{"type":"reaction","id":1,"message":{"id":9}}"#).unwrap();
        assert_eq!(r.message_id(), None);
        // A `message` that is not an object, or has no integer id, is no
        // reason to lose the event.
        for odd in [
            r#"{"type":"message","id":2,"message":"text"}"#,
            r#"{"type":"message","id":2,"message":[1,{"id":3}]}"#,
            r#"{"type":"message","id":2,"message":{"id":"x","nested":{"id":4}}}"#,
            r#"{"type":"message","id":2,"message":null}"#,
        ] {
            let e = Event::from_wire(odd).unwrap();
            assert_eq!((e.id(), e.message_id()), (2, None), "{odd}");
        }
    }

    #[test]
    fn text_that_is_not_json_is_refused_on_the_wire() {
        assert!(Event::from_wire(r#"{"type":"message","id":2"#).is_err());
        assert!(Event::from_wire(r#"{"type":"message","id":2} x"#).is_err());
        assert!(Event::from_wire(r#"{"type":"x","id":2,"s":"\q"}"#).is_err());
    }

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

    const CHANNEL: &str = r#"{"type":"message","message":{"id":42,"sender_id":7,"sender_email":"a@x.org","display_recipient":"general","stream_id":3,"subject":"lunch","timestamp":1790000000,"content":"hi  there"},"flags":[],"id":5}"#;

    #[test]
    fn the_raw_json_is_kept_byte_for_byte() {
        let e = Event::parse(CHANNEL).unwrap();
        assert_eq!(e.raw(), CHANNEL);
        assert_eq!((e.id(), e.event_type(), e.op()), (5, "message", None));
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
    fn an_unknown_type_and_its_op_are_kept() {
        let e = Event::parse(r#"{"type":"channel_folder","op":"add","id":3}"#).unwrap();
        assert_eq!((e.event_type(), e.op()), ("channel_folder", Some("add")));
        assert!(e.message().is_none());
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert!(matches!(Event::parse("{"), Err(EventError::NotJson(_))));
        assert!(matches!(
            Event::parse(r#"{"id":1}"#),
            Err(EventError::MissingType)
        ));
        assert!(matches!(
            Event::parse(r#"{"type":"x"}"#),
            Err(EventError::MissingId)
        ));
        assert!(Event::parse("[1,2]").is_err());
    }

    #[test]
    fn user_ids_are_found_in_reactions_and_typing() {
        let r = Event::parse(r#"{"type":"reaction","op":"add","user_id":12,"id":1}"#).unwrap();
        assert_eq!(r.user_id(), Some(12));
        let t = Event::parse(
            r#"{"type":"typing","op":"start","sender":{"user_id":13,"email":"x"},"id":2}"#,
        )
        .unwrap();
        assert_eq!(t.user_id(), Some(13));
    }

    #[test]
    fn a_backfilled_message_becomes_a_marked_message_event() {
        let raw = RawValue::from_string(r#"{"id":77,"sender_id":1,"display_recipient":"g","subject":"t","timestamp":1,"content":"c"}"#.into()).unwrap();
        let e = Event::backfilled_message(&raw).unwrap();
        assert!(e.is_backfilled());
        assert_eq!((e.id(), e.message_id()), (77, Some(77)));
    }
}
