//! `[data_protection] max_content_length` with `truncate_payloads = true`:
//! what webhooks and commands receive carries at most that many characters
//! of each content. A message event's `message.content` is cut and the
//! message marked `"content_truncated": true`; an `update_message` event's
//! `content`, `rendered_content`, `orig_content`, `orig_rendered_content`,
//! `prev_content` and `prev_rendered_content` are cut and the event marked
//! at its top. Every other event, and content that fits, go as Zulip sent
//! them, byte for byte.
//!
//! [`Truncated`] wraps a webhook or exec instance and hands it the cut
//! event, so both webhook formats and both exec modes (and `test`'s
//! description of them) see the same payload. The inbox keeps the event
//! whole: a later run with another limit, or a replay, starts from it.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::listener::{Context, DryRun, Listener, ListenerError, Record};
use crate::event::Event;
use crate::pii::cut_chars;

/// The fields of an `update_message` event that carry content.
const UPDATE_FIELDS: &[&str] = &[
    "content",
    "rendered_content",
    "orig_content",
    "orig_rendered_content",
    "prev_content",
    "prev_rendered_content",
];

/// The mark of an object whose content was cut.
const MARK: &str = "content_truncated";

/// `event` with its content cut to `max` characters, or `None` when it
/// has no content longer than that.
pub(crate) fn truncated(event: &Event, max: usize) -> Option<Event> {
    let fields = match event.event_type() {
        "message" => &["content"][..],
        "update_message" => UPDATE_FIELDS,
        _ => return None,
    };
    // A text no longer than `max` bytes has no more than `max` characters.
    if event.raw().len() <= max {
        return None;
    }
    let mut value: Value = serde_json::from_str(event.raw()).ok()?;
    let object = match event.event_type() {
        "message" => value.get_mut("message")?.as_object_mut()?,
        _ => value.as_object_mut()?,
    };
    if !cut_fields(object, fields, max) {
        return None;
    }
    object.insert(MARK.to_owned(), Value::Bool(true));
    let raw = serde_json::value::to_raw_value(&value).ok()?;
    Event::from_raw_parts(raw, Some(event.id()), event.is_backfilled()).ok()
}

/// Cuts each string of `fields` in `object` to `max` characters; whether
/// any was cut.
fn cut_fields(object: &mut Map<String, Value>, fields: &[&str], max: usize) -> bool {
    let mut cut = false;
    for field in fields {
        if let Some(Value::String(text)) = object.get_mut(*field) {
            if let Some(kept) = cut_chars(text, max) {
                *text = kept.to_owned();
                cut = true;
            }
        }
    }
    cut
}

/// A webhook or exec instance that receives events cut to `max`
/// characters of content.
pub(crate) struct Truncated {
    pub(crate) inner: Arc<dyn Listener>,
    pub(crate) max: usize,
}

#[async_trait]
impl Listener for Truncated {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn description(&self) -> &str {
        self.inner.description()
    }

    fn event_types(&self) -> &[&str] {
        self.inner.event_types()
    }

    async fn handle(&self, event: &Event, ctx: &Context) -> Result<Vec<Record>, ListenerError> {
        let cut = truncated(event, self.max);
        self.inner.handle(cut.as_ref().unwrap_or(event), ctx).await
    }

    fn dry_run(&self, event: &Event, ctx: &Context) -> DryRun {
        let cut = truncated(event, self.max);
        self.inner.dry_run(cut.as_ref().unwrap_or(event), ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(content: &str) -> Event {
        let raw = serde_json::json!({
            "type": "message", "id": 7, "flags": [],
            "message": {"id": 516, "sender_id": 3, "sender_email": "a@x", "display_recipient": "general",
                        "subject": "t", "timestamp": 1, "content": content},
        });
        Event::parse(&raw.to_string()).unwrap()
    }

    #[test]
    fn a_long_message_is_cut_at_a_character_boundary_and_marked() {
        let event = message("héllo wörld, and much more than that");

        let cut = truncated(&event, 5).expect("cut");

        assert_eq!(cut.message().unwrap().content, "héllo");
        let v: Value = serde_json::from_str(cut.raw()).unwrap();
        assert_eq!(v["message"]["content_truncated"], true);
        assert_eq!(v["message"]["id"], 516);
        assert_eq!(cut.id(), 7);
        assert_eq!(cut.message_id(), Some(516));
    }

    #[test]
    fn content_that_fits_leaves_the_event_as_it_is() {
        let event = message("héllo");

        assert!(truncated(&event, 5).is_none());
        assert!(truncated(&event, 3).is_some());
    }

    #[test]
    fn an_edit_has_each_content_field_cut_and_is_marked_at_its_top() {
        let raw = r#"{"type":"update_message","id":3,"message_id":9,"message_ids":[9],"flags":[],"rendering_only":false,"edit_timestamp":1,"content":"abcdefgh","rendered_content":"<p>abcdefgh</p>","orig_content":"abc"}"#;
        let event = Event::parse(raw).unwrap();

        let cut = truncated(&event, 4).expect("cut");

        let v: Value = serde_json::from_str(cut.raw()).unwrap();
        assert_eq!(v["content"], "abcd");
        assert_eq!(v["rendered_content"], "<p>a");
        assert_eq!(v["orig_content"], "abc");
        assert_eq!(v["content_truncated"], true);
    }

    #[test]
    fn other_events_are_never_cut() {
        let event = Event::parse(
            r#"{"type":"realm_user","op":"update","id":1,"person":{"full_name":"a long name indeed"}}"#,
        )
        .unwrap();

        assert!(truncated(&event, 2).is_none());
    }
}
