//! A 2xx answer's body read as Zulip's outgoing-webhook response: a JSON
//! object `{"content": "…"}` is a reply; `{"response_not_required": true}`,
//! an empty body, blank content or anything that is not such an object is
//! none (the delivery still succeeded).

use serde::Deserialize;

/// The longest 2xx body read for a reply; a longer one is delivered but
/// gives no reply (Zulip refuses messages far shorter anyway).
pub(super) const MAX_REPLY_BYTES: usize = 256 * 1024;

/// What a 2xx body asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    /// No reply.
    Nothing,
    /// A reply with this Markdown content.
    Reply(String),
    /// A body that looks like a reply but cannot be one, and why.
    Unusable(&'static str),
}

#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    content: Option<serde_json::Value>,
    /// Zulip's deprecated name of `content`, still honoured by Zulip for
    /// outgoing-webhook bots.
    #[serde(default)]
    response_string: Option<serde_json::Value>,
    #[serde(default)]
    response_not_required: Option<serde_json::Value>,
}

/// Reads a 2xx `body`; `response_string` counts as `content` when
/// `legacy` (the `zulip_outgoing` format, as Zulip does).
pub(super) fn read(body: &[u8], legacy: bool) -> Answer {
    let text = match std::str::from_utf8(body) {
        Ok(t) => t.trim(),
        Err(_) => return Answer::Nothing,
    };
    if !text.starts_with('{') {
        // Empty, or text, or JSON that is not an object (old botservers
        // answer `""`): a plain acknowledgement.
        return Answer::Nothing;
    }
    let Ok(wire) = serde_json::from_str::<Wire>(text) else {
        return Answer::Nothing;
    };
    if wire
        .response_not_required
        .as_ref()
        .and_then(|v| v.as_bool())
        == Some(true)
    {
        return Answer::Nothing;
    }
    let content = match (legacy, wire.response_string, wire.content) {
        (true, Some(s), _) => s,
        (_, _, Some(c)) => c,
        _ => return Answer::Nothing,
    };
    match content {
        serde_json::Value::String(s) if s.trim().is_empty() => Answer::Nothing,
        serde_json::Value::String(s) => Answer::Reply(s),
        serde_json::Value::Null => Answer::Nothing,
        _ => Answer::Unusable("its `content` is not a string"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_content_object_is_a_reply() {
        assert_eq!(
            read(br#"{"content": "Deployed **v2**"}"#, false),
            Answer::Reply("Deployed **v2**".into())
        );
        assert_eq!(
            read(b"  {\"content\":\"x\",\"widget_content\":{}}\n", false),
            Answer::Reply("x".into())
        );
    }

    #[test]
    fn no_reply_is_asked_in_several_ways() {
        for body in [
            &b""[..],
            b"   ",
            b"ok",
            b"\"\"",
            b"[1]",
            b"{}",
            br#"{"response_not_required": true, "content": "x"}"#,
            br#"{"content": "   "}"#,
            br#"{"content": null}"#,
            b"{not json",
            b"\xff\xfe",
        ] {
            assert_eq!(
                read(body, false),
                Answer::Nothing,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            read(br#"{"content": 5}"#, false),
            Answer::Unusable("its `content` is not a string")
        );
    }

    #[test]
    fn response_string_counts_only_in_zulip_outgoing_format() {
        let body = br#"{"response_string": "old style"}"#;
        assert_eq!(read(body, true), Answer::Reply("old style".into()));
        assert_eq!(read(body, false), Answer::Nothing);
    }
}
