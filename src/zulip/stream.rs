//! [`EventsStream`]: a `GET /events` response read as it arrives, handed
//! out in chunks of events ([`CHUNK_EVENTS`] events or [`CHUNK_BYTES`] of
//! JSON, whichever comes first; a larger single event is a chunk of its
//! own), so that a backlog of any size is held one chunk at a time.
//!
//! The response is classified before anything is streamed: a status other
//! than 2xx is decoded whole as an error (`response`), and a 2xx body must
//! open with `{`. After that, a failure mid-body (the connection cut, no
//! byte for the idle timeout, an envelope that breaks off or goes wrong)
//! comes after the chunks already handed out: the caller keeps what it
//! committed and asks again from there. A bad element is no failure: it
//! is handed out as an [`Element`] to quarantine (bytes that are not UTF-8
//! are decoded lossily first). A `result` other than `"success"` is one,
//! and the chunk it ends is not handed out.

use std::ops::Range;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures::{Stream, StreamExt};
use reqwest::{RequestBuilder, Response};

use super::error::ZulipError;
use super::response::{error_from, send, transport};
use super::scan::{ScanError, Scanner, Step};
use crate::event::{Event, QuarantineReason, Quarantined, WireError};
use crate::pii::Pii;

/// Events per chunk.
pub(crate) const CHUNK_EVENTS: usize = 1000;
/// Bytes of event JSON per chunk.
pub(crate) const CHUNK_BYTES: usize = 4 << 20;

/// The pieces of a body as the network delivers them.
pub(crate) type Pieces = Pin<Box<dyn Stream<Item = Result<Bytes, ZulipError>> + Send>>;

/// One element of `events`, as read.
#[derive(Debug)]
pub(crate) enum Element {
    /// An event (one with an `id` but no string `type` is `malformed`).
    Event(Event),
    /// An event whose bytes are not UTF-8: decoded lossily, with the
    /// quarantine row that keeps its bytes.
    Lossy(Event, Quarantined),
    /// An element that cannot be an event (no usable `id`, not an object,
    /// not JSON), for the caller to quarantine.
    Quarantined(Quarantined),
}

/// One chunk: the elements in order.
pub(crate) type Chunk = Vec<Element>;

/// A successful `GET /events` response, read chunk by chunk.
pub(crate) struct EventsStream {
    pieces: Pieces,
    /// The part of the last piece not scanned yet.
    pending: Bytes,
    scanner: Scanner,
    /// How long a read may wait for the next bytes.
    idle: Duration,
    status: u16,
    /// A failure met after the events of the chunk handed out before it.
    failed: Option<ZulipError>,
    finished: bool,
}

impl std::fmt::Debug for EventsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventsStream")
            .field("status", &self.status)
            .field("read", &self.scanner.offset())
            .finish_non_exhaustive()
    }
}

/// Sends `req`, waiting up to `timeout` for the response's head (the
/// body is then read by [`EventsStream`], under its own idle timeout: a
/// large body may take longer than a long poll).
///
/// # Errors
///
/// [`ZulipError::Timeout`] or a transport error.
pub(crate) async fn send_within(
    req: RequestBuilder,
    timeout: Duration,
) -> Result<Response, ZulipError> {
    tokio::time::timeout(timeout, send(req))
        .await
        .map_err(|_| ZulipError::Timeout)?
}

impl EventsStream {
    /// Classifies `resp` and, when it is a success, returns it ready to be
    /// read; each read waits up to `idle` for bytes.
    ///
    /// # Errors
    ///
    /// [`ZulipError`] for a status other than 2xx (decoded as any error
    /// response), [`ZulipError::NonJson`] for a 2xx body that does not
    /// open with `{`.
    pub(crate) async fn open(resp: Response, idle: Duration) -> Result<EventsStream, ZulipError> {
        let status = resp.status();
        if !status.is_success() {
            let e = tokio::time::timeout(idle, error_from(resp)).await;
            return Err(e.unwrap_or(ZulipError::Timeout));
        }
        let pieces = futures::stream::unfold(resp, |mut resp| async move {
            match resp.chunk().await {
                Ok(Some(bytes)) => Some((Ok(bytes), resp)),
                Ok(None) => None,
                Err(e) => Some((Err(transport(e)), resp)),
            }
        });
        EventsStream::start(Box::pin(pieces), status.as_u16(), idle).await
    }

    /// A stream over `pieces` (`open` passes the response's body; the fuzz
    /// entry points in `src/fuzzing.rs` a body of their own): reads up to
    /// the first byte that is not whitespace, which must be `{`.
    ///
    /// # Errors
    ///
    /// [`ZulipError::NonJson`] for a body that does not open with `{`, or
    /// the error reading it.
    pub(crate) async fn start(
        pieces: Pieces,
        status: u16,
        idle: Duration,
    ) -> Result<EventsStream, ZulipError> {
        let mut stream = EventsStream {
            pieces,
            pending: Bytes::new(),
            scanner: Scanner::default(),
            idle,
            status,
            failed: None,
            finished: false,
        };
        loop {
            let first = stream.pending.iter().find(|b| !b.is_ascii_whitespace());
            match first {
                Some(b'{') => return Ok(stream),
                Some(_) => return Err(ZulipError::NonJson { status }),
                None => match stream.read().await? {
                    Some(piece) => stream.pending = piece,
                    None => return Err(ZulipError::NonJson { status }),
                },
            }
        }
    }

    /// The next piece of the body, `None` at its end.
    async fn read(&mut self) -> Result<Option<Bytes>, ZulipError> {
        match tokio::time::timeout(self.idle, self.pieces.next()).await {
            Ok(next) => next.transpose(),
            Err(_) => Err(ZulipError::Timeout),
        }
    }

    /// The next chunk of events; `None` once the body has ended well.
    ///
    /// # Errors
    ///
    /// [`ZulipError`] when the body fails; it comes after the events read
    /// before the failure were handed out, and ends the stream.
    pub(crate) async fn next_chunk(&mut self) -> Result<Option<Chunk>, ZulipError> {
        if let Some(e) = self.failed.take() {
            self.finished = true;
            return Err(e);
        }
        if self.finished {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        let mut spans = Vec::new();
        let mut start = 0;
        let failure = loop {
            if self.pending.is_empty() {
                match self.read().await {
                    Ok(Some(piece)) => self.pending = piece,
                    Ok(None) => match self.scanner.finish() {
                        Ok(()) => {
                            self.finished = true;
                            break None;
                        }
                        Err(e) => break Some(self.malformed(e)),
                    },
                    Err(e) => break Some(e),
                }
            }
            match self.scanner.scan(&self.pending, &mut bytes) {
                Ok(Step::More) => self.pending.clear(),
                Ok(Step::Element(n)) => {
                    self.pending.advance(n);
                    // Where the element began in the body, for the log.
                    let at = self.scanner.offset() - (bytes.len() - start) as u64;
                    spans.push((start..bytes.len(), at));
                    start = bytes.len();
                    if spans.len() >= CHUNK_EVENTS || bytes.len() >= CHUNK_BYTES {
                        break None;
                    }
                }
                // A `result` other than "success" after the events (Zulip
                // writes it first): the events of this chunk are not
                // handed out. A body whose events fill more than one chunk
                // before it has had its earlier chunks committed already;
                // memory bounded by a chunk cannot hold them back.
                Err(ScanError::NotSuccess) => {
                    spans.clear();
                    break Some(self.refused());
                }
                Err(e) => break Some(self.malformed(e)),
            }
        };
        let events = parse(&bytes, spans);
        match failure {
            Some(e) if events.is_empty() => {
                self.finished = true;
                Err(e)
            }
            Some(e) => {
                self.failed = Some(e);
                Ok(Some(events))
            }
            None if events.is_empty() => Ok(None),
            None => Ok(Some(events)),
        }
    }

    /// The error for a body that stops being a success body.
    fn malformed(&self, e: ScanError) -> ZulipError {
        if e == ScanError::NotSuccess {
            return self.refused();
        }
        tracing::debug!(error = %Pii(&e), "The GET /events body is not Zulip JSON");
        ZulipError::NonJson {
            status: self.status,
        }
    }

    /// The error for a body whose `result` is not `"success"`.
    fn refused(&self) -> ZulipError {
        ZulipError::ErrorResult {
            status: self.status,
        }
    }
}

/// The elements at `spans` of `bytes` (each with the body offset it began
/// at), in order. None stops the page: bytes that are not UTF-8 are decoded
/// lossily, and what still is no event is handed on to quarantine.
fn parse(bytes: &[u8], spans: Vec<(Range<usize>, u64)>) -> Chunk {
    let mut elements = Vec::with_capacity(spans.len());
    for (span, at) in spans {
        let element = &bytes[span];
        let text = match std::str::from_utf8(element) {
            Ok(text) => text,
            Err(e) => {
                elements.push(lossy(element, e.valid_up_to(), at));
                continue;
            }
        };
        elements.push(match Event::from_wire(text) {
            Ok(e) => Element::Event(e),
            Err(e) => Element::Quarantined(refused(&e, element, at)),
        });
    }
    elements
}

/// An element whose bytes are not UTF-8 from byte `bad` on.
fn lossy(element: &[u8], bad: usize, at: u64) -> Element {
    let where_ = format!(
        "not UTF-8 at byte {bad} of the element (byte {} of the body)",
        at + bad as u64
    );
    let text = String::from_utf8_lossy(element);
    match Event::from_wire(&text) {
        Ok(event) => {
            let detail = format!("{where_}; stored decoded lossily (U+FFFD)");
            let q = Quarantined::new(
                QuarantineReason::InvalidUtf8,
                detail,
                Some(event.id()),
                element,
            );
            Element::Lossy(event, q)
        }
        Err(e) => {
            let detail = format!("{where_}; decoded lossily, {e}");
            let q = Quarantined::new(QuarantineReason::InvalidUtf8, detail, None, element);
            Element::Quarantined(q)
        }
    }
}

/// The quarantine row of an element that is no event.
fn refused(e: &WireError, element: &[u8], at: u64) -> Quarantined {
    let reason = match e {
        WireError::NotJson(_) => QuarantineReason::NotJson,
        WireError::NotAnObject => QuarantineReason::NotAnObject,
        WireError::NoId(_) => QuarantineReason::NoId,
    };
    let detail = format!("{e} (byte {at} of the body)");
    Quarantined::new(reason, detail, None, element)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(5);

    /// A stream over `pieces`, then `end` (an error, or the end of the body).
    async fn stream_of(
        pieces: Vec<Vec<u8>>,
        end: Option<ZulipError>,
    ) -> Result<EventsStream, ZulipError> {
        let items = pieces.into_iter().map(|p| Ok(Bytes::from(p)));
        let items: Vec<_> = items.chain(end.map(Err)).collect();
        EventsStream::start(Box::pin(futures::stream::iter(items)), 200, IDLE).await
    }

    fn body(events: &[String]) -> Vec<u8> {
        format!(
            r#"{{"result":"success","msg":"","events":[{}]}}"#,
            events.join(",")
        )
        .into_bytes()
    }

    fn event(id: usize, pad: usize) -> String {
        format!(r#"{{"type":"x","id":{id},"pad":"{}"}}"#, "p".repeat(pad))
    }

    /// Every chunk's ids, then what ended the stream.
    async fn read_all(mut s: EventsStream) -> (Vec<Vec<i64>>, Option<ZulipError>) {
        let mut out = Vec::new();
        loop {
            match s.next_chunk().await {
                Ok(Some(chunk)) => out.push(chunk.iter().map(id_of).collect()),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    /// An event's id; -1 for an element in quarantine, -2 for a lossy event.
    fn id_of(e: &Element) -> i64 {
        match e {
            Element::Event(e) => e.id(),
            Element::Lossy(..) => -2,
            Element::Quarantined(_) => -1,
        }
    }

    fn split(bytes: Vec<u8>, piece: usize) -> Vec<Vec<u8>> {
        bytes.chunks(piece).map(<[u8]>::to_vec).collect()
    }

    #[tokio::test]
    async fn chunks_are_bounded_by_count_and_by_bytes_and_a_huge_event_is_its_own() {
        let mut events: Vec<String> = (0..2500).map(|i| event(i, 10)).collect();
        events.push(event(2500, CHUNK_BYTES * 2));
        events.extend((2501..2503).map(|i| event(i, 10)));
        let s = stream_of(split(body(&events), 64 * 1024), None)
            .await
            .unwrap();
        let (chunks, end) = read_all(s).await;
        assert!(end.is_none(), "{end:?}");
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes, [1000, 1000, 501, 2]);
        let ids: Vec<i64> = chunks.concat();
        assert_eq!(ids, (0..2503).collect::<Vec<i64>>());
    }

    #[tokio::test]
    async fn the_raw_json_of_each_event_is_kept_byte_for_byte() {
        let raw = r#"{ "type" : "message", "id":7, "s":"caf\u00e9 \"q\" \\ é 😀", "n":[[1],{"a":[]}], "f":1.50 }"#;
        let s = stream_of(split(body(&[raw.to_owned()]), 3), None)
            .await
            .unwrap();
        let mut s = s;
        let chunk = s.next_chunk().await.unwrap().unwrap();
        let Element::Event(e) = &chunk[0] else {
            panic!("{chunk:?}");
        };
        assert_eq!(e.raw(), raw);
        assert!(s.next_chunk().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_body_cut_half_way_gives_its_whole_events_then_the_error() {
        let events: Vec<String> = (0..3000).map(|i| event(i, 10)).collect();
        let mut bytes = body(&events);
        bytes.truncate(bytes.len() / 2);
        let cut = ZulipError::Transport("connection reset".into());
        let s = stream_of(split(bytes, 4096), Some(cut)).await.unwrap();
        let (chunks, end) = read_all(s).await;
        assert!(matches!(end, Some(ZulipError::Transport(_))), "{end:?}");
        let ids = chunks.concat();
        assert!(ids.len() > 1000 && ids.len() < 3000, "{}", ids.len());
        assert_eq!(ids, (0..ids.len() as i64).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_body_that_ends_inside_its_json_is_not_json_after_its_events() {
        let mut bytes = body(&[event(0, 1), event(1, 1)]);
        bytes.truncate(bytes.len() - 10);
        let (chunks, end) = read_all(stream_of(vec![bytes], None).await.unwrap()).await;
        assert_eq!(chunks, [vec![0]]);
        assert!(
            matches!(end, Some(ZulipError::NonJson { status: 200 })),
            "{end:?}"
        );
    }

    #[tokio::test]
    async fn an_element_that_is_no_event_is_handed_on_and_the_page_goes_on() {
        let b = body(&[
            "5".into(),
            r#"{"type":"x"}"#.into(),
            r#"{"type":"x","id":1.5}"#.into(),
            r#"{"type":"x","id":1,"v":tru}"#.into(),
            event(3, 1),
        ]);
        let mut s = stream_of(vec![b], None).await.unwrap();
        let chunk = s.next_chunk().await.unwrap().unwrap();
        assert!(
            s.next_chunk().await.unwrap().is_none(),
            "the body ends well"
        );
        let reasons: Vec<_> = chunk
            .iter()
            .map(|e| match e {
                Element::Quarantined(q) => Some((q.reason, q.event_id)),
                _ => None,
            })
            .collect();
        use QuarantineReason::*;
        assert_eq!(
            reasons,
            [
                Some((NotAnObject, None)),
                Some((NoId, None)),
                Some((NoId, None)),
                Some((NotJson, None)),
                None
            ]
        );
        let Element::Quarantined(q) = &chunk[3] else {
            unreachable!()
        };
        assert_eq!(q.raw, r#"{"type":"x","id":1,"v":tru}"#);
        assert!(q.detail.contains("byte 76 of the body"), "{}", q.detail);
        assert_eq!(id_of(&chunk[4]), 3);
    }

    #[tokio::test]
    async fn an_event_that_is_not_utf8_is_decoded_lossily_with_its_bytes_kept() {
        let mut bad = br#"{"type":"message","id":1,"s":"a"#.to_vec();
        bad.extend_from_slice(b"\xff\xfe");
        bad.extend_from_slice(br#""}"#);
        let mut nothing = br#"{"s":""#.to_vec();
        nothing.extend_from_slice(b"\xff\"}");
        let mut b = br#"{"result":"success","events":[{"type":"x","id":0},"#.to_vec();
        for element in [&bad[..], b",", &nothing[..], br#",{"type":"x","id":2}]}"#] {
            b.extend_from_slice(element);
        }
        let (chunks, end) = read_all(stream_of(split(b.clone(), 7), None).await.unwrap()).await;
        assert!(end.is_none(), "{end:?}");
        assert_eq!(chunks, [vec![0, -2, -1, 2]]);

        let mut s = stream_of(vec![b], None).await.unwrap();
        let chunk = s.next_chunk().await.unwrap().unwrap();
        let Element::Lossy(e, q) = &chunk[1] else {
            panic!("{chunk:?}");
        };
        assert_eq!(
            e.raw(),
            "{\"type\":\"message\",\"id\":1,\"s\":\"a\u{FFFD}\u{FFFD}\"}"
        );
        assert_eq!(
            (q.reason, q.event_id),
            (QuarantineReason::InvalidUtf8, Some(1))
        );
        assert_eq!(q.raw_bytes.as_deref(), Some(&bad[..]));
        assert!(
            q.detail
                .starts_with("not UTF-8 at byte 31 of the element (byte 81 of the body)"),
            "{}",
            q.detail
        );
        let Element::Quarantined(q) = &chunk[2] else {
            panic!("{chunk:?}");
        };
        assert_eq!(
            (q.reason, q.event_id),
            (QuarantineReason::InvalidUtf8, None)
        );
        assert_eq!(q.raw_bytes.as_deref(), Some(&nothing[..]));
    }

    #[tokio::test]
    async fn an_error_result_refuses_the_events_before_or_after_it() {
        let first = br#"{"result":"error","msg":"no","events":[{"type":"x","id":0}]}"#;
        let after = br#"{"events":[{"type":"x","id":0},{"type":"x","id":1}],"result":"error"}"#;
        for b in [&first[..], &after[..]] {
            let s = stream_of(split(b.to_vec(), 5), None).await.unwrap();
            let (chunks, end) = read_all(s).await;
            assert!(chunks.is_empty(), "{chunks:?}");
            assert!(
                matches!(end, Some(ZulipError::ErrorResult { status: 200 })),
                "{end:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_body_is_judged_on_its_first_bytes_before_any_event() {
        let html = stream_of(vec![b"  \n".to_vec(), b"<html>".to_vec()], None).await;
        assert!(matches!(html, Err(ZulipError::NonJson { status: 200 })));
        let empty = stream_of(vec![], None).await;
        assert!(matches!(empty, Err(ZulipError::NonJson { status: 200 })));
        let error = br#"{"result":"error","msg":"no","code":"BAD_REQUEST","events":[]}"#;
        let (chunks, end) = read_all(stream_of(vec![error.to_vec()], None).await.unwrap()).await;
        assert!(chunks.is_empty());
        assert!(
            matches!(end, Some(ZulipError::ErrorResult { .. })),
            "{end:?}"
        );
        let (chunks, end) = read_all(stream_of(vec![body(&[])], None).await.unwrap()).await;
        assert!(chunks.is_empty() && end.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_sending_times_out_after_its_events() {
        let head = br#"{"events":[{"type":"x","id":0},{"type":"x","#.to_vec();
        let items =
            futures::stream::iter(vec![Ok(Bytes::from(head))]).chain(futures::stream::pending());
        let mut s = EventsStream::start(Box::pin(items), 200, IDLE)
            .await
            .unwrap();
        let chunk = s.next_chunk().await.unwrap().unwrap();
        assert_eq!(chunk.len(), 1);
        assert!(matches!(s.next_chunk().await, Err(ZulipError::Timeout)));
        assert!(s.next_chunk().await.unwrap().is_none());
    }
}
