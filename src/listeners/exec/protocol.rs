//! What the exec kind exchanges with its commands, beyond the envelope: a
//! persistent child's request line (`{"id": N, …the envelope's keys…}`)
//! and its [`Response`] (`{"id", "ok", "transient", "error"?,
//! "content"?}`), and the reply a per-event command prints on stdout
//! (`{"content": "…"}`, Zulip's outgoing-webhook answer).

use serde::Deserialize;

use crate::event::Event;
use crate::listeners::{ListenerError, Record, Reply};

/// The request line for `envelope` under `id`: the envelope's object with
/// `"id"` first, and a newline.
pub(super) fn request_line(id: u64, envelope: &str) -> String {
    // The envelope is an object that starts `{"listener":`.
    let rest = envelope.strip_prefix('{').unwrap_or(envelope);
    let mut line = String::with_capacity(envelope.len() + 24);
    line.push_str("{\"id\":");
    line.push_str(&id.to_string());
    line.push(',');
    line.push_str(rest);
    line.push('\n');
    line
}

/// A persistent child's answer to one request.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub(super) struct Response {
    /// The request's id.
    pub(super) id: u64,
    /// Whether the event was handled.
    pub(super) ok: bool,
    /// For `ok: false`: whether a retry may succeed.
    #[serde(default)]
    pub(super) transient: bool,
    /// For `ok: false`: why.
    #[serde(default)]
    pub(super) error: Option<String>,
    /// For `ok: true`: a reply to post to the event's conversation.
    #[serde(default)]
    pub(super) content: Option<String>,
}

impl Response {
    /// Parses one line of the child's stdout.
    pub(super) fn parse(line: &[u8]) -> Result<Response, serde_json::Error> {
        serde_json::from_slice(line)
    }

    /// The run's outcome for `event`.
    pub(super) fn outcome(
        self,
        listener: &str,
        event: &Event,
    ) -> Result<Vec<Record>, ListenerError> {
        if self.ok {
            return Ok(reply(listener, self.content, event));
        }
        let why = self
            .error
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| "the handler answered ok: false".to_owned());
        Err(if self.transient {
            ListenerError::Transient(why)
        } else {
            ListenerError::Permanent(why)
        })
    }
}

/// The records of a per-event command's `stdout`: a reply when it is a
/// JSON object with a string `content`; nothing otherwise (it may print
/// anything else, `{"response_not_required": true}` included).
pub(super) fn stdout_records(listener: &str, stdout: &[u8], event: &Event) -> Vec<Record> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        content: Option<serde_json::Value>,
    }
    let text = stdout.trim_ascii();
    if !text.starts_with(b"{") {
        return Vec::new();
    }
    let content = match serde_json::from_slice::<Answer>(text) {
        Ok(Answer {
            content: Some(serde_json::Value::String(s)),
        }) => Some(s),
        _ => None,
    };
    reply(listener, content, event)
}

/// A reply with `content` to `event`'s conversation; none for empty
/// content or an event that is not a message.
fn reply(listener: &str, content: Option<String>, event: &Event) -> Vec<Record> {
    let Some(content) = content.filter(|c| !c.trim().is_empty()) else {
        return Vec::new();
    };
    match Reply::to_event(event, content) {
        Some(reply) => vec![Record::Reply(reply)],
        None => {
            tracing::debug!(
                listener,
                event_type = event.event_type(),
                "Ignoring a reply to an event that is not a message"
            );
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listeners::ReplyTo;

    fn message() -> Event {
        Event::parse(r#"{"type":"message","id":1,"message":{"id":5,"sender_id":3,"sender_email":"s@x","type":"stream","display_recipient":"ops","subject":"deploys","timestamp":1,"content":"hi"},"flags":[]}"#).unwrap()
    }

    #[test]
    fn the_request_line_is_the_envelope_with_an_id() {
        let line = request_line(7, r#"{"listener":"x","event":{"id":1}}"#);
        assert_eq!(line, "{\"id\":7,\"listener\":\"x\",\"event\":{\"id\":1}}\n");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["id"], 7);
    }

    #[test]
    fn a_content_on_stdout_is_a_reply_to_the_conversation() {
        let records = stdout_records("x", b"  {\"content\": \"done\"}\n", &message());
        let [Record::Reply(r)] = records.as_slice() else {
            panic!("{records:?}")
        };
        assert_eq!(r.content, "done");
        assert_eq!(
            r.to,
            ReplyTo::Channel {
                channel: "ops".into(),
                topic: "deploys".into()
            }
        );
    }

    #[test]
    fn other_stdout_is_no_reply() {
        for out in [
            &b""[..],
            b"working...\nall done\n",
            b"{\"response_not_required\": true}",
            b"{\"content\": \"\"}",
            b"{\"content\": 3}",
            b"{not json",
        ] {
            assert!(stdout_records("x", out, &message()).is_empty(), "{out:?}");
        }
        let reaction = Event::parse(r#"{"type":"reaction","id":2}"#).unwrap();
        assert!(stdout_records("x", b"{\"content\":\"hi\"}", &reaction).is_empty());
    }

    #[test]
    fn a_response_says_success_transient_or_permanent() {
        let ok = Response::parse(br#"{"id": 3, "ok": true, "content": "hello"}"#).unwrap();
        assert_eq!(ok.id, 3);
        assert!(matches!(
            ok.outcome("x", &message()).unwrap().as_slice(),
            [Record::Reply(_)]
        ));
        let t = Response::parse(br#"{"id": 4, "ok": false, "transient": true, "error": "busy"}"#)
            .unwrap();
        assert!(
            matches!(t.outcome("x", &message()), Err(ListenerError::Transient(e)) if e == "busy")
        );
        let p = Response::parse(br#"{"id": 5, "ok": false}"#).unwrap();
        assert!(matches!(
            p.outcome("x", &message()),
            Err(ListenerError::Permanent(_))
        ));
        assert!(Response::parse(b"{\"ok\": true}").is_err());
        assert!(Response::parse(b"hello").is_err());
    }
}
