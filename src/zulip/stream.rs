//! [`EventsStream`]: a `GET /events` response read as it arrives, handed
//! out in chunks of events ([`CHUNK_EVENTS`] events or [`CHUNK_BYTES`] of
//! JSON, whichever comes first; a larger single event is a chunk of its
//! own), so that a backlog of any size is held one chunk at a time.
//!
//! The response is classified before anything is streamed: a status other
//! than 2xx is decoded whole as an error (`response`), and a 2xx body must
//! open with `{`. After that, a failure mid-body (the connection cut, no
//! byte for the idle timeout, JSON that breaks off or goes wrong) comes
//! after the chunks already handed out: the caller keeps what it
//! committed and asks again from there.

use std::pin::Pin;
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures::{Stream, StreamExt};
use reqwest::{RequestBuilder, Response};

use super::error::ZulipError;
use super::response::{error_from, send, transport};
use super::scan::{ScanError, Scanner, Step};
use crate::event::Event;

/// Events per chunk.
pub(crate) const CHUNK_EVENTS: usize = 1000;
/// Bytes of event JSON per chunk.
pub(crate) const CHUNK_BYTES: usize = 4 << 20;

/// The pieces of a body as the network delivers them.
pub(crate) type Pieces = Pin<Box<dyn Stream<Item = Result<Bytes, ZulipError>> + Send>>;

/// One chunk: the events in order. An element with an `id` but no `type`
/// is kept as a `malformed` event; one without even an `id` is an `Err`
/// with its raw text, for the caller to report.
pub(crate) type Chunk = Vec<Result<Event, String>>;

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
                    spans.push(start..bytes.len());
                    start = bytes.len();
                    if spans.len() >= CHUNK_EVENTS || bytes.len() >= CHUNK_BYTES {
                        break None;
                    }
                }
                Err(e) => break Some(self.malformed(e)),
            }
        };
        let (events, invalid) = parse(&bytes, spans);
        let failure = invalid.map(|e| self.malformed(e)).or(failure);
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
        tracing::debug!(error = %e, "The GET /events body is not Zulip JSON");
        ZulipError::NonJson {
            status: self.status,
        }
    }
}

/// The events of `spans` of `bytes`, in order, up to the first element
/// that is not JSON (returned as the error after them). Valid JSON that is
/// not an event with an id is an `Err` item, as before.
fn parse(bytes: &[u8], spans: Vec<std::ops::Range<usize>>) -> (Chunk, Option<ScanError>) {
    let mut events = Vec::with_capacity(spans.len());
    for span in spans {
        let Ok(text) = std::str::from_utf8(&bytes[span]) else {
            return (events, Some(ScanError::BadElement { why: "not UTF-8" }));
        };
        match Event::from_wire(text) {
            Ok(e) => events.push(Ok(e)),
            // Only now, and only for the rare element that is not an
            // event, is it checked whether it is JSON at all.
            Err(raw) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => {
                events.push(Err(raw));
            }
            Err(_) => return (events, Some(ScanError::BadElement { why: "not JSON" })),
        }
    }
    (events, None)
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
                Ok(Some(chunk)) => out.push(
                    chunk
                        .iter()
                        .map(|e| e.as_ref().map_or(-1, Event::id))
                        .collect(),
                ),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
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
        assert_eq!(chunk[0].as_ref().unwrap().raw(), raw);
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
    async fn a_body_that_ends_inside_its_json_or_breaks_is_not_json_after_its_events() {
        let mut bytes = body(&[event(0, 1), event(1, 1)]);
        bytes.truncate(bytes.len() - 10);
        let (chunks, end) = read_all(stream_of(vec![bytes], None).await.unwrap()).await;
        assert_eq!(chunks, [vec![0]]);
        assert!(
            matches!(end, Some(ZulipError::NonJson { status: 200 })),
            "{end:?}"
        );

        let bad =
            br#"{"events":[{"type":"x","id":0},{"type":"x","id":1,"v":tru}],"result":"success"}"#;
        let (chunks, end) = read_all(stream_of(vec![bad.to_vec()], None).await.unwrap()).await;
        assert_eq!(chunks, [vec![0]]);
        assert!(matches!(end, Some(ZulipError::NonJson { .. })), "{end:?}");
    }

    #[tokio::test]
    async fn an_element_without_an_id_is_handed_on_for_the_caller_to_report() {
        let b = body(&["5".into(), r#"{"type":"x"}"#.into(), event(3, 1)]);
        let (chunks, end) = read_all(stream_of(vec![b], None).await.unwrap()).await;
        assert!(end.is_none());
        assert_eq!(chunks, [vec![-1, -1, 3]]);
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
        assert!(matches!(end, Some(ZulipError::NonJson { .. })), "{end:?}");
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
