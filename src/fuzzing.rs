//! Entry points for the fuzz targets of `fuzz/` and for the test that
//! replays their corpus on stable (`tests/it/fuzz_corpus.rs`): each takes
//! arbitrary bytes, drives one parser the daemon applies to outside input
//! the way the daemon does, and checks what the parser promises. **Not
//! API**: hidden from the docs, changed whenever the parsers change.
//!
//! An entry point returns normally for any input the parser handles (by
//! accepting or refusing it); it panics only when a parser panics or
//! breaks a promise checked here, which is what a fuzzer reports.

use std::sync::OnceLock;

use bytes::Bytes;
use serde::de::{Deserializer as _, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::config::Config;
use crate::event::Event;
use crate::listeners::Registry;
use crate::zulip::{
    api_base_url, is_remote_plain_http, parse_api_section, EventsStream, Scanner, Step,
};

/// One event as Zulip sends it (`Event::from_wire`) and as a line of an
/// events file (`Event::parse_line`), with every typed view read.
pub fn event(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(e) = Event::from_wire(text) {
        assert_eq!(e.raw(), text, "an event from the wire keeps its bytes");
        read_views(&e);
    }
    if let Ok(e) = Event::parse_line(text, 7) {
        assert_eq!(e.id(), 7, "a file's event is keyed by its line");
        read_views(&e);
    }
}

/// Every view of `e`, as routing, filters and listeners read them.
fn read_views(e: &Event) {
    let _ = (e.event_type(), e.op(), e.message_id(), e.is_heartbeat());
    let _ = (e.message(), e.actor().email(), e.user_id());
    let _ = (e.conversation(), e.time(), e.about_message());
    let _ = (
        e.message_update(),
        e.message_deletion(),
        e.messages_touched(),
    );
}

/// A zuliprc's text as the credentials reader takes it: the `[api]`
/// section, its `site` made an API base URL and judged for plain http.
pub fn zuliprc(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(Some(api)) = parse_api_section(text) else {
        return;
    };
    if let Some(site) = api.get("site") {
        if let Ok(url) = api_base_url(site) {
            assert_eq!(api_base_url(&url).ok(), Some(url.clone()), "idempotent");
            let _ = is_remote_plain_http(&url);
        }
    }
}

/// A configuration file's text, checked against the built-in listeners.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let registry = Registry::builtin();
    let names = registry.names();
    let (parsed, problems) = Config::parse_with_problems(text, &names);
    assert_eq!(
        Config::parse(text, &names).is_ok(),
        parsed.is_some() && problems.is_empty(),
        "parse agrees with parse_with_problems"
    );
}

/// A `GET /events` body: its first byte sets the size of the pieces the
/// rest arrives in. The scanner must cut out the same elements whatever
/// the pieces, the very texts `serde_json` finds in a body it accepts, and
/// `EventsStream` must hand out each of them.
pub fn events_page(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let piece = usize::from(first % 64) + 1;
    let whole = scan(body, body.len().max(1));
    let pieces = scan(body, piece);
    assert_eq!(whole, pieces, "the elements do not depend on the pieces");
    let streamed = stream(body, piece);
    if let Some(expected) = reference_elements(body) {
        let expected: Vec<Vec<u8>> = expected.iter().map(|e| e.get().into()).collect();
        assert_eq!(whole, (expected.clone(), true), "serde_json's elements");
        assert_eq!(streamed, Some(expected.len()), "every element handed out");
    }
}

/// The elements the scanner cuts out of `body` fed `piece` bytes at a
/// time, and whether the body ended well.
fn scan(body: &[u8], piece: usize) -> (Vec<Vec<u8>>, bool) {
    let mut scanner = Scanner::default();
    let mut elements = Vec::new();
    let mut element = Vec::new();
    for mut input in body.chunks(piece) {
        while !input.is_empty() {
            match scanner.scan(input, &mut element) {
                Ok(Step::More) => input = &[],
                Ok(Step::Element(n)) => {
                    input = &input[n..];
                    elements.push(std::mem::take(&mut element));
                }
                Err(_) => return (elements, false),
            }
        }
    }
    (elements, scanner.finish().is_ok())
}

/// How many items `EventsStream` hands out for `body` in pieces of
/// `piece` bytes; `None` when it ends in an error.
fn stream(body: &[u8], piece: usize) -> Option<usize> {
    let runtime = runtime()?;
    let pieces: Vec<_> = body
        .chunks(piece)
        .map(|p| Ok(Bytes::copy_from_slice(p)))
        .collect();
    runtime.block_on(async {
        let mut s = EventsStream::start(Box::pin(futures::stream::iter(pieces)), 200, IDLE)
            .await
            .ok()?;
        let mut items = 0;
        loop {
            match s.next_chunk().await {
                Ok(Some(chunk)) => items += chunk.len(),
                Ok(None) => return Some(items),
                Err(_) => return None,
            }
        }
    })
}

/// The stream's idle timeout: never reached, every piece is ready.
const IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// The runtime `EventsStream`'s timeouts need, built once.
fn runtime() -> Option<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .ok()
        })
        .as_ref()
}

/// The elements of `events` when `serde_json` reads `body` as a success
/// body: an object with exactly one `events` key, an array, and every
/// `result` key `"success"`. `None` for any other body.
fn reference_elements(body: &[u8]) -> Option<Vec<&RawValue>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut de = serde_json::Deserializer::from_str(text);
    let Members(members) = Members::deserialize(&mut de).ok()?;
    de.end().ok()?;
    let mut events = members.iter().filter(|(k, _)| k == "events");
    let (_, array) = events.next()?;
    if events.next().is_some() {
        return None;
    }
    for (_, v) in members.iter().filter(|(k, _)| k == "result") {
        if serde_json::from_str::<String>(v.get()).ok()? != "success" {
            return None;
        }
    }
    serde_json::from_str::<Vec<&RawValue>>(array.get()).ok()
}

/// A JSON object's members in order, duplicates kept.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'a> Members<'a> {
    fn deserialize(
        de: &mut serde_json::Deserializer<serde_json::de::StrRead<'a>>,
    ) -> serde_json::Result<Self> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    out.push(entry);
                }
                Ok(Members(out))
            }
        }
        de.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_takes_only_a_success_body_with_one_events_array() {
        let texts = |body: &str| {
            reference_elements(body.as_bytes())
                .map(|v| v.iter().map(|e| e.get().to_owned()).collect::<Vec<_>>())
        };
        let ok = r#"{"msg":"","events":[ {"id":1} ,2],"result":"succ\u0065ss"}"#;
        assert_eq!(
            texts(ok),
            Some(vec![r#"{"id":1}"#.to_owned(), "2".to_owned()])
        );
        assert_eq!(texts(r#"{"events":[]}"#), Some(vec![]));
        for bad in [
            r#"{"events":[],"events":[]}"#,
            r#"{"events":[],"result":"error"}"#,
            r#"{"events":[],"result":"success","result":null}"#,
            r#"{"events":{}}"#,
            r#"{"events":[]} x"#,
            r#"[{"events":[]}]"#,
        ] {
            assert_eq!(texts(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_page_is_checked_against_the_reference_in_any_pieces() {
        let body = br#"{"result":"success","events":[{"type":"x","id":1,"s":"\"]}"},{"id":2}]}"#;
        for first in 0..64 {
            let mut data = vec![first];
            data.extend_from_slice(body);
            events_page(&data);
        }
        assert_eq!(scan(body, 3).0.len(), 2);
        assert_eq!(stream(body, 3), Some(2));
    }
}
