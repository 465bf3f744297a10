//! [`Scanner`]: the `GET /events` body read as it arrives. It walks the
//! top-level object `{"result": …, "msg": …, "events": [ … ], …}`, keys in
//! any order, and hands out each element of `events` as the exact bytes
//! Zulip sent, finding where an element ends by tracking strings, escapes
//! and nesting — without parsing it. It holds no more than the element
//! being read (and the small values of the other keys), whatever the size
//! of the body.
//!
//! It checks the structure, not every token: an element is parsed (and so
//! validated) by its reader, and the other top-level values are validated
//! here once read. `result`, when present, must be `"success"`; `events`
//! must be present and an array.

use memchr::memchr2;

/// The largest top-level value other than `events` kept for checking
/// (`result`, `msg`, `queue_id` are a few bytes); a longer one is skipped
/// unread.
const MAX_OTHER_VALUE: usize = 64 * 1024;
/// The largest top-level key kept for comparison; a longer one is neither
/// `events` nor `result`.
const MAX_KEY: usize = 256;

/// Why a body is not a `GET /events` success body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ScanError {
    /// A byte that cannot come where it came.
    #[error("unexpected {found:?} at byte {at} of the body")]
    Unexpected {
        /// The byte, as a character when it is ASCII.
        found: char,
        /// Its offset in the body.
        at: u64,
    },
    /// The body ended inside the JSON.
    #[error("the body ended after {at} bytes, inside its JSON")]
    Truncated {
        /// The body's length.
        at: u64,
    },
    /// No `events` key, or a second one.
    #[error("the body has no single \"events\" array")]
    NoEvents,
    /// `result` is not `"success"`.
    #[error("the body's \"result\" is not \"success\"")]
    NotSuccess,
    /// A top-level value other than `events` is not JSON.
    #[error("the body's top-level {key:?} value is not JSON")]
    BadValue {
        /// Its key.
        key: String,
    },
}

/// What [`Scanner::scan`] stopped at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Every byte of the input was consumed; an element may be unfinished.
    More,
    /// An element ended after this many bytes of the input: its bytes are
    /// the ones appended to the caller's buffer since the last element.
    Element(usize),
}

/// Where the scanner is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Before the opening `{`.
    Start,
    /// After `{`: a key or `}`.
    FirstKey,
    /// After a `,` between members: a key.
    NextKey,
    /// Inside a key string.
    Key,
    /// After a key: `:`.
    Colon,
    /// After `:`: the value.
    Value,
    /// Inside a top-level value other than `events`.
    Other,
    /// After a top-level value: `,` or `}`.
    AfterValue,
    /// After `"events": [`: an element or `]`.
    FirstElement,
    /// After a `,` between elements: an element.
    NextElement,
    /// Inside an element.
    Element,
    /// After an element: `,` or `]`.
    AfterElement,
    /// After the closing `}`: only whitespace.
    Done,
}

/// One JSON value being skipped over: its kind, nesting and string state.
#[derive(Debug, Default, Clone, Copy)]
struct Skip {
    started: bool,
    container: bool,
    string: bool,
    depth: u32,
    in_string: bool,
    escaped: bool,
}

impl Skip {
    /// Consumes the bytes of the value at the start of `input`; returns how
    /// many belong to it and whether it ended. A scalar (number, literal)
    /// ends before the first byte that cannot be part of it, which is left.
    fn advance(&mut self, input: &[u8], offset: u64) -> Result<(usize, bool), ScanError> {
        let mut i = 0;
        if !self.started {
            self.started = true;
            match input[0] {
                b'{' | b'[' => {
                    self.container = true;
                    self.depth = 1;
                    i = 1;
                }
                b'"' => {
                    self.string = true;
                    self.in_string = true;
                    i = 1;
                }
                b'}' | b']' | b',' | b':' => return Err(unexpected(input[0], offset)),
                _ => {}
            }
        }
        while i < input.len() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    i += 1;
                    continue;
                }
                // Most of a body is string contents: jump to what matters.
                let Some(k) = memchr2(b'"', b'\\', &input[i..]) else {
                    return Ok((input.len(), false));
                };
                i += k;
                if input[i] == b'\\' {
                    self.escaped = true;
                } else {
                    self.in_string = false;
                    if self.string {
                        return Ok((i + 1, true));
                    }
                }
                i += 1;
                continue;
            }
            let b = input[i];
            if self.container {
                match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        self.depth -= 1;
                        if self.depth == 0 {
                            return Ok((i + 1, true));
                        }
                    }
                    _ => {}
                }
            } else {
                match b {
                    b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' => return Ok((i, true)),
                    b'"' | b'{' | b'[' | b':' => {
                        return Err(unexpected(b, offset + i as u64));
                    }
                    _ => {}
                }
            }
            i += 1;
        }
        Ok((input.len(), false))
    }
}

/// The incremental reader of one `GET /events` body.
#[derive(Debug)]
pub(crate) struct Scanner {
    place: Place,
    skip: Skip,
    /// Bytes of the body consumed so far.
    offset: u64,
    /// The current top-level key, with its quotes, raw.
    key: Vec<u8>,
    /// The current top-level key, decoded (`None` for an overlong one).
    name: Option<String>,
    /// The current top-level value other than `events`, raw.
    value: Vec<u8>,
    saw_events: bool,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            place: Place::Start,
            skip: Skip::default(),
            offset: 0,
            key: Vec::new(),
            name: None,
            value: Vec::new(),
            saw_events: false,
        }
    }
}

impl Scanner {
    /// Reads `input`, the next bytes of the body, appending the bytes of
    /// `events` elements to `element`. Stops after an element ends (see
    /// [`Step::Element`]) or when the input is used up.
    ///
    /// # Errors
    ///
    /// [`ScanError`] when the body is not a success body; the scanner must
    /// not be used after.
    pub(crate) fn scan(&mut self, input: &[u8], element: &mut Vec<u8>) -> Result<Step, ScanError> {
        let mut i = 0;
        while i < input.len() {
            let at = self.offset + i as u64;
            if matches!(self.place, Place::Element | Place::Other) {
                let (n, ended) = self.skip.advance(&input[i..], at)?;
                let bytes = &input[i..i + n];
                i += n;
                if self.place == Place::Element {
                    element.extend_from_slice(bytes);
                    if ended {
                        self.place = Place::AfterElement;
                        self.offset += i as u64;
                        return Ok(Step::Element(i));
                    }
                } else {
                    self.keep_value(bytes);
                    if ended {
                        self.end_value()?;
                    }
                }
                continue;
            }
            if self.place == Place::Key {
                i += self.read_key(&input[i..])?;
                continue;
            }
            let b = input[i];
            i += 1;
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                continue;
            }
            self.place = match (self.place, b) {
                (Place::Start, b'{') => Place::FirstKey,
                (Place::FirstKey | Place::NextKey, b'"') => {
                    self.key.clear();
                    self.key.push(b'"');
                    self.skip = Skip::default();
                    Place::Key
                }
                (Place::FirstKey | Place::AfterValue, b'}') => Place::Done,
                (Place::Colon, b':') => Place::Value,
                (Place::Value, b'[')
                    if self.name.as_deref() == Some("events") && !self.saw_events =>
                {
                    self.saw_events = true;
                    Place::FirstElement
                }
                (Place::Value, _) if self.name.as_deref() == Some("events") => {
                    return Err(ScanError::NoEvents)
                }
                (Place::Value, _) => {
                    self.value.clear();
                    self.skip = Skip::default();
                    i -= 1;
                    Place::Other
                }
                (Place::AfterValue, b',') => Place::NextKey,
                (Place::FirstElement, b']') | (Place::AfterElement, b']') => Place::AfterValue,
                (Place::FirstElement | Place::NextElement, _) => {
                    self.skip = Skip::default();
                    i -= 1;
                    Place::Element
                }
                (Place::AfterElement, b',') => Place::NextElement,
                _ => return Err(unexpected(b, at)),
            };
        }
        self.offset += i as u64;
        Ok(Step::More)
    }

    /// Checks, at the end of the body, that it was a whole success body.
    ///
    /// # Errors
    ///
    /// [`ScanError::Truncated`] when it ended inside its JSON,
    /// [`ScanError::NoEvents`] when it had no `events`.
    pub(crate) fn finish(&self) -> Result<(), ScanError> {
        if self.place != Place::Done {
            return Err(ScanError::Truncated { at: self.offset });
        }
        if !self.saw_events {
            return Err(ScanError::NoEvents);
        }
        Ok(())
    }

    /// Bytes of the body consumed so far.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads the bytes of a key at the start of `input`; returns how many.
    /// At its closing quote, the key is decoded into `name`.
    fn read_key(&mut self, input: &[u8]) -> Result<usize, ScanError> {
        let n = if self.skip.escaped {
            self.skip.escaped = false;
            1
        } else {
            match memchr2(b'"', b'\\', input) {
                Some(k) if input[k] == b'\\' => {
                    self.skip.escaped = true;
                    k + 1
                }
                Some(k) => {
                    self.place = Place::Colon;
                    k + 1
                }
                None => input.len(),
            }
        };
        if self.key.len() <= MAX_KEY {
            self.key.extend_from_slice(&input[..n]);
        }
        if self.place == Place::Colon {
            self.name = if self.key.len() > MAX_KEY {
                None
            } else {
                let name = serde_json::from_slice::<String>(&self.key);
                Some(name.map_err(|_| ScanError::BadValue {
                    key: String::from_utf8_lossy(&self.key).into_owned(),
                })?)
            };
        }
        Ok(n)
    }

    fn keep_value(&mut self, bytes: &[u8]) {
        if self.value.len() <= MAX_OTHER_VALUE {
            self.value.extend_from_slice(bytes);
        }
    }

    /// A top-level value other than `events` has been read: it must be
    /// JSON, and `result` must be `"success"`.
    fn end_value(&mut self) -> Result<(), ScanError> {
        self.place = Place::AfterValue;
        if self.value.len() > MAX_OTHER_VALUE {
            return Ok(());
        }
        let key = self.name.clone().unwrap_or_default();
        let bad = || ScanError::BadValue { key: key.clone() };
        if key == "result" {
            let result: String = serde_json::from_slice(&self.value).map_err(|_| bad())?;
            return match result.as_str() {
                "success" => Ok(()),
                _ => Err(ScanError::NotSuccess),
            };
        }
        serde_json::from_slice::<serde::de::IgnoredAny>(&self.value).map_err(|_| bad())?;
        Ok(())
    }
}

fn unexpected(b: u8, at: u64) -> ScanError {
    let found = if b.is_ascii() {
        b as char
    } else {
        char::REPLACEMENT_CHARACTER
    };
    ScanError::Unexpected { found, at }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `body` fed in pieces of `piece` bytes: the elements' texts,
    /// and the result of `finish`.
    fn elements(body: &str, piece: usize) -> Result<Vec<String>, ScanError> {
        let mut scanner = Scanner::default();
        let mut out = Vec::new();
        let mut element = Vec::new();
        for mut input in body.as_bytes().chunks(piece) {
            loop {
                match scanner.scan(input, &mut element)? {
                    Step::More => break,
                    Step::Element(n) => {
                        out.push(String::from_utf8(std::mem::take(&mut element)).unwrap());
                        input = &input[n..];
                    }
                }
            }
        }
        scanner.finish()?;
        Ok(out)
    }

    /// The elements, the same whatever the pieces the body comes in.
    fn split_every_way(body: &str) -> Result<Vec<String>, ScanError> {
        let whole = elements(body, body.len().max(1));
        for piece in 1..body.len().min(64) {
            assert_eq!(elements(body, piece), whole, "in pieces of {piece}");
        }
        whole
    }

    #[test]
    fn the_elements_come_out_byte_for_byte_in_any_pieces() {
        let events = [
            r#"{"type":"message","id":0,"message":{"content":"a \"quoted\" {brace} [bracket], comma"}}"#,
            r#"{"id":1,"type":"x","s":"back\\slash\\","u":"\u00e9\ud83d\ude00 é 😀","nested":[[1,[2,{"a":[]}]],{}]}"#,
            r#"{ "id" : 2 , "type" : "spaced" , "n" : -1.5e3 , "t" : true , "z" : null }"#,
        ];
        let body = format!(
            "{{\"result\":\"success\",\"msg\":\"\",\"events\":[{}],\"queue_id\":\"q\"}}",
            events.join(" ,\n ")
        );
        assert_eq!(split_every_way(&body).unwrap(), events);
    }

    #[test]
    fn the_keys_may_come_in_any_order() {
        for body in [
            r#"{"events":[{"id":1}],"result":"success","msg":"","queue_id":"q"}"#,
            r#"{"queue_id":"q","msg":"x","events":[{"id":1}],"result":"success"}"#,
            r#"{"msg":{"nested":["]","}"]},"events":[{"id":1}],"result":"success"}"#,
            r#" { "events" : [ {"id":1} ] } "#,
        ] {
            assert_eq!(split_every_way(body).unwrap(), [r#"{"id":1}"#], "{body}");
        }
    }

    #[test]
    fn scalars_and_empty_arrays_are_elements_too() {
        let body = r#"{"result":"success","events":[1, "two",null,{},[]],"n":12}"#;
        assert_eq!(
            split_every_way(body).unwrap(),
            ["1", r#""two""#, "null", "{}", "[]"]
        );
        assert_eq!(
            split_every_way(r#"{"result":"success","events":[]}"#).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_key_written_with_escapes_is_still_events() {
        let body = r#"{"ev\u0065nts":[{"id":1}],"r\u0065sult":"success"}"#;
        assert_eq!(split_every_way(body).unwrap(), [r#"{"id":1}"#]);
    }

    #[test]
    fn a_body_that_is_not_a_success_body_is_an_error() {
        let cases: &[(&str, ScanError)] = &[
            (
                r#"{"result":"error","msg":"x","events":[]}"#,
                ScanError::NotSuccess,
            ),
            (r#"{"result":"success","msg":""}"#, ScanError::NoEvents),
            (r#"{"events":null}"#, ScanError::NoEvents),
            (r#"{"events":[],"events":[]}"#, ScanError::NoEvents),
            (
                r#"{"result":5,"events":[]}"#,
                ScanError::BadValue {
                    key: "result".into(),
                },
            ),
            (
                r#"{"msg":tru,"events":[]}"#,
                ScanError::BadValue { key: "msg".into() },
            ),
            (r#"{"events":[{"id":1}"#, ScanError::Truncated { at: 19 }),
            (
                r#"{"events":[{"id":1},]}"#,
                ScanError::Unexpected { found: ']', at: 20 },
            ),
            (
                r#"{"events":[{"id":1}}"#,
                ScanError::Unexpected { found: '}', at: 19 },
            ),
            (
                r#"{"events":[]} x"#,
                ScanError::Unexpected { found: 'x', at: 14 },
            ),
            ("<html>", ScanError::Unexpected { found: '<', at: 0 }),
            ("", ScanError::Truncated { at: 0 }),
        ];
        for (body, expected) in cases {
            assert_eq!(split_every_way(body).as_ref(), Err(expected), "{body}");
        }
    }

    #[test]
    fn the_elements_before_a_break_are_handed_out_first() {
        let mut scanner = Scanner::default();
        let mut element = Vec::new();
        let input = br#"{"events":[{"id":1},{"id":2,"x":"unfinished"#;
        let Step::Element(n) = scanner.scan(input, &mut element).unwrap() else {
            panic!("the first element ends");
        };
        assert_eq!(element, br#"{"id":1}"#);
        element.clear();
        assert_eq!(scanner.scan(&input[n..], &mut element), Ok(Step::More));
        assert_eq!(element, br#"{"id":2,"x":"unfinished"#);
        assert_eq!(
            scanner.finish(),
            Err(ScanError::Truncated {
                at: input.len() as u64
            })
        );
    }

    #[test]
    fn a_huge_element_and_a_long_other_value_are_read_through() {
        let big = format!(r#"{{"id":1,"s":"{}"}}"#, "x\\\"".repeat(200_000));
        let long = "y".repeat(MAX_OTHER_VALUE * 2);
        let body = format!(r#"{{"msg":"{long}","events":[{big}],"result":"success"}}"#);
        assert_eq!(elements(&body, 4096).unwrap(), std::slice::from_ref(&big));
        assert_eq!(elements(&body, body.len()).unwrap(), [big]);
    }
}
