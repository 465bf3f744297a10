//! [`Quarantined`]: an element of a `GET /events` page that cannot go in
//! the inbox as it came — bytes that are not UTF-8, a second copy of an
//! event id with other content, no usable integer `id`, not a JSON object,
//! not JSON at all — kept aside with its reason, its text (decoded
//! lossily) and, when that text is not exactly what came, the bytes
//! themselves. It is stored in the same transaction as the chunk it came
//! in (`event_listeners_quarantine`), so nothing Zulip sent is
//! acknowledged without being kept. [`logged`] caps raw text for a log.

use std::fmt;

/// Why an element was quarantined: the metric's bounded label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuarantineReason {
    /// Bytes that are not UTF-8; an event with an id is also stored, decoded
    /// lossily (U+FFFD), in the inbox.
    InvalidUtf8,
    /// A later copy, with other content, of an event id already received.
    RepeatedId,
    /// A JSON object without an integer `id` (missing, a float, a string).
    NoId,
    /// JSON that is not an object (`5`, `"text"`, `null`, `[]`).
    NotAnObject,
    /// Not JSON text (whose bounds the envelope still shows).
    NotJson,
}

impl QuarantineReason {
    /// Every reason, in label order.
    pub const ALL: [QuarantineReason; 5] = [
        QuarantineReason::InvalidUtf8,
        QuarantineReason::RepeatedId,
        QuarantineReason::NoId,
        QuarantineReason::NotAnObject,
        QuarantineReason::NotJson,
    ];

    /// The label: `invalid_utf8`, `repeated_id`, `no_id`, `not_an_object`
    /// or `not_json` (also the table's `kind` column).
    pub fn label(self) -> &'static str {
        match self {
            QuarantineReason::InvalidUtf8 => "invalid_utf8",
            QuarantineReason::RepeatedId => "repeated_id",
            QuarantineReason::NoId => "no_id",
            QuarantineReason::NotAnObject => "not_an_object",
            QuarantineReason::NotJson => "not_json",
        }
    }
}

/// An element kept in quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// Why, as a bounded label.
    pub reason: QuarantineReason,
    /// Why, as a sentence (`repeated event id 7`, `not UTF-8 at byte 12 …`).
    pub detail: String,
    /// The element's event id, when it has one.
    pub event_id: Option<i64>,
    /// The element's text, decoded lossily, NULs replaced when stored.
    pub raw: String,
    /// The exact bytes, when `raw` is not them (not UTF-8, or a NUL).
    pub raw_bytes: Option<Vec<u8>>,
}

impl Quarantined {
    /// The element of `bytes`, kept for `reason`.
    pub fn new(
        reason: QuarantineReason,
        detail: String,
        event_id: Option<i64>,
        bytes: &[u8],
    ) -> Quarantined {
        let raw = String::from_utf8_lossy(bytes).into_owned();
        let exact = raw.as_bytes() == bytes && !raw.contains('\0');
        Quarantined {
            reason,
            detail,
            event_id,
            raw,
            raw_bytes: (!exact).then(|| bytes.to_vec()),
        }
    }
}

/// The most bytes of raw text a log line carries.
pub(crate) const LOGGED_BYTES: usize = 512;

/// Raw text as a log line carries it: whole when short, else its first
/// [`LOGGED_BYTES`] bytes (cut at a character) then `… (N bytes)`, so a
/// 20 MB event never reaches the log whole.
pub(crate) fn logged(raw: &str) -> Logged<'_> {
    Logged(raw)
}

/// See [`logged`].
pub(crate) struct Logged<'a>(&'a str);

impl fmt::Display for Logged<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let raw = self.0;
        if raw.len() <= LOGGED_BYTES {
            return f.write_str(raw);
        }
        let mut end = LOGGED_BYTES;
        while !raw.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{}… ({} bytes)", &raw[..end], raw.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_text_is_logged_whole_when_short_and_capped_at_a_character_when_long() {
        assert_eq!(logged("{\"id\":1}").to_string(), "{\"id\":1}");
        let long = format!("{}é{}", "a".repeat(LOGGED_BYTES - 1), "b".repeat(20 << 20));
        let shown = logged(&long).to_string();
        assert_eq!(
            shown,
            format!("{}… ({} bytes)", "a".repeat(LOGGED_BYTES - 1), long.len())
        );
    }

    #[test]
    fn the_bytes_are_kept_only_when_the_text_is_not_them() {
        let plain = Quarantined::new(QuarantineReason::NoId, "x".into(), None, br#"{"a":1}"#);
        assert_eq!((plain.raw.as_str(), plain.raw_bytes), (r#"{"a":1}"#, None));
        let bad = Quarantined::new(
            QuarantineReason::InvalidUtf8,
            "x".into(),
            Some(3),
            b"\"a\xff\"",
        );
        assert_eq!(bad.raw, "\"a\u{FFFD}\"");
        assert_eq!(bad.raw_bytes.as_deref(), Some(&b"\"a\xff\""[..]));
        let nul = Quarantined::new(QuarantineReason::NotJson, "x".into(), None, b"\"a\0\"");
        assert_eq!(nul.raw_bytes.as_deref(), Some(&b"\"a\0\""[..]));
    }
}
