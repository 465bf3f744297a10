//! The envelope: the JSON object the `webhook` kind POSTs (`format =
//! "event"`) and the `exec` kind writes on stdin — the run's facts
//! (`listener`, `idempotency_key`, `attempt`, `inbox_id`, `received_at`,
//! and in a fallback's run `fallback_of`: the primary's `listener`, `class`
//! and `error`) and the event exactly as Zulip sent it, byte for byte, under `event`.
//!
//! The head is serialized by serde_json; the raw event is spliced in
//! unparsed (it is valid JSON: every `Event` constructor checked it), so a
//! large message costs one copy, not a parse and a re-serialization.

use chrono::SecondsFormat;
use serde::Serialize;

use super::listener::{Context, FallbackOf};
use crate::event::Event;

/// The run's facts, in the envelope's key order (`event` comes last).
#[derive(Serialize)]
struct Head<'a> {
    listener: &'a str,
    idempotency_key: String,
    attempt: u32,
    inbox_id: i64,
    /// RFC 3339 in UTC to the millisecond; `null` when not known.
    received_at: Option<String>,
    /// Only in a fallback's run: the primary's failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback_of: Option<&'a FallbackOf>,
}

/// The envelope of `event`'s run `ctx` for the instance `listener`:
/// `{"listener", "idempotency_key", "attempt", "inbox_id", "received_at",
/// ["fallback_of",] "event"}` as one line of JSON (no newline at the end).
pub(crate) fn envelope(listener: &str, event: &Event, ctx: &Context) -> String {
    let head = Head {
        listener,
        idempotency_key: ctx.idempotency_key(event),
        attempt: ctx.attempt,
        inbox_id: ctx.inbox_id,
        received_at: ctx
            .received_at
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
        fallback_of: ctx.fallback_of.as_deref(),
    };
    // Serializing a struct of strings and integers cannot fail; should it
    // ever, the envelope still carries the event.
    let head = serde_json::to_string(&head).unwrap_or_else(|_| "{}".to_owned());
    let raw = event.raw();
    let mut out = String::with_capacity(head.len() + raw.len() + 10);
    // `head` is a JSON object: `{…}`. Drop its closing brace and append the
    // event as the last member.
    out.push_str(&head[..head.len() - 1]);
    if head.len() > 2 {
        out.push(',');
    }
    out.push_str("\"event\":");
    out.push_str(raw);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{TimeZone, Utc};

    use super::*;

    fn ctx(attempt: u32) -> Context {
        Context {
            org: Arc::from("acme"),
            inbox_id: 17,
            bot_user_id: Some(9),
            attempt,
            bot: None,
            received_at: Some(Utc.with_ymd_and_hms(2026, 12, 1, 8, 30, 5).unwrap()),
            fallback_of: None,
        }
    }

    #[test]
    fn the_envelope_carries_the_run_and_the_raw_event_byte_for_byte() {
        let raw = r#"{"type": "message", "message": {"id": 516, "sender_id": 7, "content": "héllo \u00e9", "display_recipient": "test-a", "subject": "t"}, "flags": [], "id": 0}"#;
        let event = Event::parse(raw).unwrap();

        let text = envelope("hook", &event, &ctx(3));

        assert!(text.ends_with(&format!(r#","event":{raw}}}"#)), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["listener"], "hook");
        assert_eq!(v["idempotency_key"], "acme:message:516");
        assert_eq!(v["attempt"], 3);
        assert_eq!(v["inbox_id"], 17);
        assert_eq!(v["received_at"], "2026-12-01T08:30:05.000Z");
        assert_eq!(v["event"]["message"]["content"], "héllo é");
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys.len(),
            6,
            "exactly the six documented keys, got {keys:?}"
        );
    }

    #[test]
    fn the_key_stays_the_same_across_attempts_and_an_unknown_time_is_null() {
        let event = Event::parse(r#"{"type":"presence","id":4}"#).unwrap();
        let mut later = ctx(2);
        later.received_at = None;

        let first: serde_json::Value =
            serde_json::from_str(&envelope("hook", &event, &ctx(1))).unwrap();
        let second: serde_json::Value =
            serde_json::from_str(&envelope("hook", &event, &later)).unwrap();

        assert_eq!(first["idempotency_key"], "acme:event:17");
        assert_eq!(first["idempotency_key"], second["idempotency_key"]);
        assert_eq!(second["attempt"], 2);
        assert!(second["received_at"].is_null());
    }

    #[test]
    fn a_fallback_run_names_the_failure_that_handed_it_the_event() {
        let event = Event::parse(r#"{"type":"presence","id":4}"#).unwrap();
        let mut c = ctx(1);
        c.fallback_of = Some(Arc::new(FallbackOf {
            listener: "ticket_hook".into(),
            class: "transient".into(),
            error: "HTTP 500".into(),
        }));

        let v: serde_json::Value = serde_json::from_str(&envelope("ops_log", &event, &c)).unwrap();

        assert_eq!(v["fallback_of"]["listener"], "ticket_hook");
        assert_eq!(v["fallback_of"]["class"], "transient");
        assert_eq!(v["fallback_of"]["error"], "HTTP 500");
        assert_eq!(v["event"]["type"], "presence");
    }
}
