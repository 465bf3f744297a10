//! What the tap shows of an event by default: its JSON with every text
//! about what someone wrote or who they are — content (and its rendered
//! and earlier versions), topics, emails, full names, a status text —
//! replaced by [`redacted`]'s `[redacted: N characters]`, the marker log
//! lines use (`pii.rs`). Ids, types, flags and channel names stay, so the
//! operator still sees what flows where.

use serde_json::Value;

use crate::pii::redacted;

/// Keys whose every text is redacted, wherever they are in an event.
const SENSITIVE: &[&str] = &[
    "content",
    "rendered_content",
    "prev_content",
    "prev_rendered_content",
    "orig_content",
    "orig_rendered_content",
    "match_content",
    "subject",
    "topic",
    "orig_subject",
    "prev_subject",
    "prev_topic",
    "topic_name",
    "match_subject",
    "email",
    "emails",
    "delivery_email",
    "new_email",
    "sender_email",
    "full_name",
    "sender_full_name",
    "status_text",
];

/// `event` with every text under a [`SENSITIVE`] key redacted.
pub(crate) fn redact_event(mut event: Value) -> Value {
    walk(&mut event);
    event
}

fn walk(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if SENSITIVE.contains(&key.as_str()) {
                    redact_all(v);
                } else {
                    walk(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(walk),
        _ => {}
    }
}

fn redact_all(value: &mut Value) {
    match value {
        Value::String(s) => *s = redacted(s),
        Value::Object(map) => map.values_mut().for_each(redact_all),
        Value::Array(items) => items.iter_mut().for_each(redact_all),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn content_topics_emails_and_names_are_redacted_ids_and_channels_kept() {
        let event = json!({
            "type": "message", "id": 7,
            "message": {
                "id": 3, "content": "secret plans", "subject": "topic x",
                "sender_email": "a@example.com", "sender_full_name": "Ann",
                "display_recipient": [{"id": 1, "email": "b@example.com", "full_name": "Bo"}],
                "edit_history": [{"prev_content": "old", "prev_topic": "t"}],
                "stream_id": 5,
            }
        });
        let text = redact_event(event).to_string();
        for secret in [
            "secret plans",
            "topic x",
            "a@example.com",
            "Ann",
            "b@example.com",
            "\"Bo\"",
            "\"old\"",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("[redacted: 12 characters]"), "{text}");
        assert!(
            text.contains("\"stream_id\":5") && text.contains("\"id\":3"),
            "{text}"
        );
    }

    #[test]
    fn a_channel_name_is_not_redacted() {
        let event = json!({"message": {"display_recipient": "general", "content": "x"}});
        let out = redact_event(event);
        assert_eq!(out["message"]["display_recipient"], "general");
        assert_eq!(out["message"]["content"], "[redacted: 1 characters]");
    }
}
