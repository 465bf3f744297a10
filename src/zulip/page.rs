//! [`EventsPage`]: one `GET /events` body, held as the bytes Zulip sent
//! with the span of each event, so that a large backlog is parsed chunk by
//! chunk rather than held twice.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::ZulipError;
use crate::event::Event;

/// The body of one `GET /events` response. Events are materialized chunk
/// by chunk ([`EventsPage::chunk`]), so a large backlog is held once, as
/// the bytes Zulip sent, rather than once more as parsed events.
#[derive(Debug)]
pub struct EventsPage {
    body: bytes::Bytes,
    spans: Vec<(usize, usize)>,
}

impl EventsPage {
    /// Number of events in the page.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the page holds no event.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The events at `range`, in order. An element with an `id` but no
    /// `type` is kept as a `malformed` event; one without even an `id` is
    /// an `Err` with its raw text, for the caller to report.
    pub fn chunk(&self, range: std::ops::Range<usize>) -> Vec<Result<Event, String>> {
        self.spans[range]
            .iter()
            .map(|&(a, b)| {
                let text = std::str::from_utf8(&self.body[a..b]).unwrap_or_default();
                Event::from_wire(text)
            })
            .collect()
    }
}

impl EventsPage {
    /// Splits a successful `GET /events` body (answered with HTTP `status`)
    /// into its events' spans, without parsing the events themselves.
    pub(super) fn parse(body: bytes::Bytes, status: u16) -> Result<EventsPage, ZulipError> {
        let spans = {
            let parsed: EventsBody<'_> =
                serde_json::from_slice(&body).map_err(|_| ZulipError::NonJson { status })?;
            let base = body.as_ptr() as usize;
            parsed
                .events
                .iter()
                .map(|raw| {
                    let start = raw.get().as_ptr() as usize - base;
                    (start, start + raw.get().len())
                })
                .collect()
        };
        Ok(EventsPage { body, spans })
    }
}

#[derive(Deserialize)]
struct EventsBody<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}
