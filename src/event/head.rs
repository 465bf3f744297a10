//! [`Event`]: one Zulip event — the head read on arrival (`id`, `type`,
//! `op`, a message event's message id) and the raw JSON kept byte for byte —
//! and the constructors for each place events come from (the wire, stored
//! rows, recorded files, backfilled messages).
//!
//! Only the head is parsed on arrival (with the message, in the same pass,
//! for a well-formed message event from the wire); the typed views
//! ([`Message`], and those of `views.rs`) are parsed once, on first use,
//! and cached in the event. Unknown event types are normal events: they are stored and
//! dispatched like any other, never an error.

use std::borrow::Cow;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::lenient::Head;
use super::message::{self, Message};
use super::views::{self, Actor, Conversation, EventTime, MessageRef, Views};

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
    /// The typed message view, parsed on first use.
    message: OnceLock<Option<Message>>,
    /// The actor, conversation, time and message reference, read on first use.
    views: OnceLock<Box<Views>>,
}

/// Why a piece of JSON is not an event.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Not JSON at all, or not an object.
    #[error("not a JSON object: {0}")]
    NotJson(#[from] serde_json::Error),
    /// A JSON object without a string `type` (or with an `op` that is not
    /// a string).
    #[error("the event has no string \"type\" field (or its \"op\" is not a string)")]
    MissingType,
    /// A JSON object without an integer `id` where one is required.
    #[error("the event has no integer \"id\" field")]
    MissingId,
}

/// Why an element of a `GET /events` page is not an event the inbox can
/// key by its id.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not JSON text.
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    /// JSON, but not an object.
    #[error("JSON that is not an object")]
    NotAnObject,
    /// An object without an integer `id` (missing, a float, a string, a
    /// number beyond 64 bits), or whose head cannot be read at all.
    #[error("an object without an integer \"id\"{0}")]
    NoId(String),
}

/// Whether `text`, JSON or not, opens as an object.
fn opens_an_object(text: &str) -> bool {
    text.trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
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
        Event::from_text(raw.into(), fallback_id, backfilled, false)
    }

    /// Rebuilds an inbox row's event: as [`Event::from_raw_parts`], but a
    /// row stored as `malformed` (no string `type`, or an `op` that is not
    /// a string) is that again, as it was dispatched when it arrived.
    pub(crate) fn from_stored(
        raw: Box<RawValue>,
        event_id: i64,
        backfilled: bool,
    ) -> Result<Event, EventError> {
        Event::from_text(raw.into(), Some(event_id), backfilled, true)
    }

    /// An event from JSON `raw`; without a well-formed type, `malformed`
    /// when `or_malformed`, else an error.
    fn from_text(
        raw: Box<str>,
        fallback_id: Option<i64>,
        backfilled: bool,
        or_malformed: bool,
    ) -> Result<Event, EventError> {
        if !opens_an_object(&raw) {
            // An array would otherwise fill the head's fields in order.
            return Err(EventError::MissingType);
        }
        let head: Head<'_> = serde_json::from_str(&raw)?;
        let id = head.id.0.or(fallback_id).ok_or(EventError::MissingId)?;
        let message_id = head.message_id();
        let kind = head
            .kind()
            .map(|(t, op)| (t.into_owned(), op.map(Cow::into_owned)));
        let (event_type, op) = match kind {
            Some(kind) => kind,
            None if or_malformed => return Ok(Event::malformed_text(raw, id)),
            None => return Err(EventError::MissingType),
        };
        Ok(Event {
            id,
            event_type,
            op,
            raw,
            message_id,
            backfilled,
            message: OnceLock::new(),
            views: OnceLock::new(),
        })
    }

    /// Builds an event as Zulip sent it in `GET /events`: one with an
    /// integer `id` but no string `type` (or an `op` that is not a string)
    /// is kept as `malformed` (nothing Zulip sent is lost); one without an
    /// integer `id` cannot be keyed in the inbox and is an error, for the
    /// caller to quarantine.
    ///
    /// # Errors
    ///
    /// [`WireError`]: not JSON, not an object, or no integer `id`.
    pub fn from_wire(text: &str) -> Result<Event, WireError> {
        let is_json = || serde_json::from_str::<serde::de::IgnoredAny>(text);
        if !opens_an_object(text) {
            // An array would otherwise fill the head's fields in order.
            return Err(match is_json() {
                Ok(_) => WireError::NotAnObject,
                Err(e) => WireError::NotJson(e),
            });
        }
        // A message event, the common case, in one pass with its message
        // (`message::read_with_head`); anything else the general way.
        if let Some((id, op, message)) = message::read_with_head(text) {
            return Ok(Event {
                id,
                event_type: "message".to_owned(),
                op,
                raw: text.into(),
                message_id: Some(message.id),
                backfilled: false,
                message: OnceLock::from(Some(message)),
                views: OnceLock::new(),
            });
        }
        // Parsing the head checks the whole text: it is JSON once this
        // succeeds, so it is kept as it is, without a second pass.
        let head = match serde_json::from_str::<Head<'_>>(text) {
            Ok(h) => h,
            // An object whose head cannot be read: a repeated `id` or `type`.
            Err(e) if e.is_data() => {
                return Err(match is_json() {
                    Ok(_) => WireError::NoId(format!(" (its head cannot be read: {e})")),
                    Err(e) => WireError::NotJson(e),
                })
            }
            Err(e) => return Err(WireError::NotJson(e)),
        };
        let Some(id) = head.id.0 else {
            return Err(WireError::NoId(String::new()));
        };
        let message_id = head.message_id();
        Ok(match head.kind() {
            Some((event_type, op)) => Event {
                id,
                event_type: event_type.into_owned(),
                op: op.map(Cow::into_owned),
                raw: text.into(),
                message_id,
                backfilled: false,
                message: OnceLock::new(),
                views: OnceLock::new(),
            },
            None => Event::malformed_text(text.into(), id),
        })
    }

    /// Keeps an event that has an `id` but no string `type` (or an `op`
    /// that is not a string) under the type `malformed`, so that nothing Zulip sent is lost.
    fn malformed_text(raw: Box<str>, id: i64) -> Event {
        Event {
            id,
            event_type: "malformed".to_owned(),
            op: None,
            raw,
            message_id: None,
            backfilled: false,
            message: OnceLock::new(),
            views: OnceLock::new(),
        }
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

    /// The id of the message a `message` event carries.
    pub fn message_id(&self) -> Option<i64> {
        self.message_id
    }

    /// The typed view of a `message` event, parsed on first use; `None` for
    /// other events and for message events whose message is malformed.
    pub fn message(&self) -> Option<&Message> {
        self.message
            .get_or_init(|| {
                (self.event_type == "message")
                    .then(|| message::parse(&self.raw))
                    .flatten()
            })
            .as_ref()
    }

    fn views(&self) -> &Views {
        self.views
            .get_or_init(|| Box::new(Views::read(self.message(), &self.event_type, &self.raw)))
    }

    /// Who acted (`views.rs` says which fields are read, in which order).
    pub fn actor(&self) -> Actor<'_> {
        views::actor(self.message(), || self.views())
    }

    /// The acting user's id, when the event names one.
    pub fn user_id(&self) -> Option<i64> {
        self.actor().id
    }

    /// Where the event happens, for the events that say.
    pub fn conversation(&self) -> Option<Conversation<'_>> {
        views::conversation(self.message(), || self.views())
    }

    /// The event's own time: a message's `timestamp`, else a top-level
    /// `server_timestamp` (presence), `timestamp` or `edit_timestamp`
    /// (seconds, integer or fractional).
    pub fn time(&self) -> Option<EventTime> {
        views::time(self.message(), || self.views())
    }

    /// The message the event is about: a message's id, else `message_id`,
    /// else the smallest of `message_ids`.
    pub fn about_message(&self) -> Option<MessageRef> {
        views::about(self.message(), || self.views())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHANNEL: &str = r#"{"type":"message","message":{"id":42,"sender_id":7,"sender_email":"a@x.org","display_recipient":"general","stream_id":3,"subject":"lunch","timestamp":1790000000,"content":"hi  there"},"flags":[],"id":5}"#;
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
        for text in [
            r#"{"type":"message","id":2"#,
            r#"{"type":"message","id":2} x"#,
            r#"{"type":"x","id":2,"s":"\q"}"#,
            r#"{"id":1,"id":2,"#,
            "tru",
            "[1,",
        ] {
            let e = Event::from_wire(text);
            assert!(matches!(e, Err(WireError::NotJson(_))), "{text}: {e:?}");
        }
    }
    #[test]
    fn a_type_or_op_that_is_not_a_string_makes_a_malformed_event_with_its_raw_json() {
        for text in [
            r#"{"type":5,"id":4}"#,
            r#"{"type":{"a":"b"},"id":4,"op":"add"}"#,
            r#"{"type":"reaction","op":7,"id":4}"#,
            r#"{"type":"reaction","op":["add"],"id":4}"#,
            r#"{"type":null,"id":4}"#,
            r#"{"id":4}"#,
        ] {
            let e = Event::from_wire(text).unwrap();
            assert_eq!(
                (e.id(), e.event_type(), e.op()),
                (4, "malformed", None),
                "{text}"
            );
            assert_eq!(e.raw(), text);
        }
        // A null op is no op.
        let e = Event::from_wire(r#"{"type":"x","op":null,"id":4}"#).unwrap();
        assert_eq!((e.event_type(), e.op()), ("x", None));
    }
    #[test]
    fn an_id_that_is_not_an_integer_or_a_value_that_is_not_an_object_is_refused() {
        for text in [
            r#"{"type":"x","id":1.5}"#,
            r#"{"type":"x","id":4.0}"#,
            r#"{"type":"x","id":"7"}"#,
            r#"{"type":"x","id":null}"#,
            r#"{"type":"x","id":18446744073709551615}"#,
            r#"{"type":"x"}"#,
            r#"{"type":"x","id":1,"id":2}"#,
        ] {
            let e = Event::from_wire(text);
            assert!(matches!(e, Err(WireError::NoId(_))), "{text}: {e:?}");
        }
        for text in [
            "5",
            r#""two""#,
            "null",
            "[]",
            r#"[4,"message",null,{"id":3}]"#,
        ] {
            let e = Event::from_wire(text);
            assert!(matches!(e, Err(WireError::NotAnObject)), "{text}: {e:?}");
        }
    }
    #[test]
    fn a_stored_malformed_event_is_malformed_again_when_read_back() {
        let raw = RawValue::from_string(r#"{"type":5,"id":4}"#.into()).unwrap();
        let e = Event::from_stored(raw, 4, false).unwrap();
        assert_eq!((e.id(), e.event_type()), (4, "malformed"));
        let raw = RawValue::from_string(r#"{"type":"x","op":"add","id":4}"#.into()).unwrap();
        let e = Event::from_stored(raw, 4, false).unwrap();
        assert_eq!((e.event_type(), e.op()), ("x", Some("add")));
    }
    #[test]
    fn the_raw_json_is_kept_byte_for_byte() {
        let e = Event::parse(CHANNEL).unwrap();
        assert_eq!(e.raw(), CHANNEL);
        assert_eq!((e.id(), e.event_type(), e.op()), (5, "message", None));
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
    fn a_backfilled_message_becomes_a_marked_message_event() {
        let raw = RawValue::from_string(r#"{"id":77,"sender_id":1,"display_recipient":"g","subject":"t","timestamp":1,"content":"c"}"#.into()).unwrap();
        let e = Event::backfilled_message(&raw).unwrap();
        assert!(e.is_backfilled());
        assert_eq!((e.id(), e.message_id()), (77, Some(77)));
    }
}
