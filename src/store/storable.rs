//! Text the database can store. PostgreSQL refuses a NUL character in
//! `text` and a `\u0000` escape in `jsonb`, so one such character in a
//! topic, an email, an error or a listener's JSON data would fail its whole
//! batch again on every retry. Before a batch is written, every NUL in the
//! text it stores is replaced with U+FFFD (`�`), on both backends alike, so
//! what is stored does not depend on the backend. The inbox's `raw` column
//! is not touched: there a NUL is the JSON escape `\u0000`, six plain
//! characters, and the event is kept byte for byte.

use std::borrow::Cow;

use super::model::RunRecord;
use crate::listeners::Record;

/// The replacement of a NUL character.
const REPLACEMENT: &str = "\u{FFFD}";

/// `text` without NUL characters.
pub(crate) fn text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', REPLACEMENT))
    } else {
        Cow::Borrowed(text)
    }
}

/// `runs`, with every NUL in the text they store replaced; borrowed as
/// they are (no copy) when none has one, the usual case.
pub(crate) fn runs(runs: &[RunRecord]) -> Cow<'_, [RunRecord]> {
    if !runs.iter().any(has_nul) {
        return Cow::Borrowed(runs);
    }
    Cow::Owned(runs.iter().map(clean).collect())
}

fn nul(s: &str) -> bool {
    s.contains('\0')
}

fn nul_opt(s: &Option<String>) -> bool {
    s.as_deref().is_some_and(nul)
}

fn json_has_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => nul(s),
        serde_json::Value::Array(items) => items.iter().any(json_has_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| nul(k) || json_has_nul(v)),
        _ => false,
    }
}

fn has_nul(r: &RunRecord) -> bool {
    nul(&r.event_type)
        || nul_opt(&r.error)
        || r.records.iter().any(|rec| match rec {
            Record::MessageLog(m) => {
                nul(&m.sender_email)
                    || nul_opt(&m.channel)
                    || nul_opt(&m.topic)
                    || nul_opt(&m.dm_recipients)
            }
            Record::Activity(a) => nul_opt(&a.email),
            Record::MessageMove(m) => nul_opt(&m.topic),
            Record::Data { key, value } => nul(key) || json_has_nul(value),
            Record::Reply(reply) => nul(&reply.content) || reply_to_has_nul(&reply.to),
            Record::MessageEdit(_) | Record::MessageDelete(_) => false,
        })
}

fn reply_to_has_nul(to: &crate::listeners::ReplyTo) -> bool {
    match to {
        crate::listeners::ReplyTo::Channel { channel, topic } => nul(channel) || nul(topic),
        crate::listeners::ReplyTo::Direct { .. } => false,
    }
}

fn owned(s: &str) -> String {
    text(s).into_owned()
}

fn owned_opt(s: &Option<String>) -> Option<String> {
    s.as_deref().map(owned)
}

fn clean_json(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::String(s) => serde_json::Value::String(owned(s)),
        serde_json::Value::Array(items) => items.iter().map(clean_json).collect(),
        serde_json::Value::Object(map) => {
            map.iter().map(|(k, v)| (owned(k), clean_json(v))).collect()
        }
        other => other.clone(),
    }
}

fn clean(r: &RunRecord) -> RunRecord {
    let mut r = r.clone();
    r.event_type = std::sync::Arc::from(owned(&r.event_type));
    r.error = owned_opt(&r.error);
    for rec in &mut r.records {
        match rec {
            Record::MessageLog(m) => {
                m.sender_email = owned(&m.sender_email);
                m.channel = owned_opt(&m.channel);
                m.topic = owned_opt(&m.topic);
                m.dm_recipients = owned_opt(&m.dm_recipients);
            }
            Record::Activity(a) => a.email = owned_opt(&a.email),
            Record::MessageMove(m) => m.topic = owned_opt(&m.topic),
            Record::Data { key, value } => {
                *key = owned(key);
                *value = clean_json(value);
            }
            Record::Reply(reply) => {
                reply.content = owned(&reply.content);
                if let crate::listeners::ReplyTo::Channel { channel, topic } = &mut reply.to {
                    *channel = owned(channel);
                    *topic = owned(topic);
                }
            }
            Record::MessageEdit(_) | Record::MessageDelete(_) => {}
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_is_replaced_and_text_without_one_is_not_copied() {
        assert_eq!(text("nul\0topic"), "nul\u{FFFD}topic");
        assert!(matches!(text("plain"), Cow::Borrowed("plain")));
        let v = serde_json::json!({"k\u{0}": ["a\u{0}b", 1]});
        assert!(json_has_nul(&v));
        assert!(!json_has_nul(&clean_json(&v)));
    }
}
