//! How a `GET /events` success body is written: whole, as axum's `Json`
//! (the default), or streamed — with the envelope's keys in a chosen
//! order, a synthetic backlog generated as it is written (so a
//! million-event response never sits in the fake's memory), and a
//! [`BodyFault`]: slow (chunked, with delays), cut mid-way, stalled
//! mid-way until the test releases it, or replaced by exact bytes (a raw
//! body: invalid UTF-8, repeated ids, a `result` of `"error"`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

/// A fault in the body of a successful `GET /events` response (one that
/// has events), applied to the next such responses in the order given to
/// [`super::FakeZulip::shape_events_bodies`], one fault each.
#[derive(Clone, Debug)]
pub enum BodyFault {
    /// Written in pieces of `piece` bytes with `delay` after each (a slow,
    /// chunked body).
    Slow {
        /// Bytes per piece.
        piece: usize,
        /// The pause after each piece.
        delay: Duration,
    },
    /// The first `after` bytes, then the connection is cut (no end of the
    /// chunked body).
    Cut {
        /// Bytes written before the cut.
        after: usize,
    },
    /// The first `after` bytes, then nothing until [`BodyGate::release`];
    /// then the rest.
    Stall {
        /// Bytes written before the stall.
        after: usize,
        /// Opens the rest of the body.
        gate: BodyGate,
    },
    /// These exact bytes, with status 200, instead of the body (the queue
    /// acknowledges as usual: the ids in them should be the queue's, such
    /// as those of [`super::FakeZulip::events`] while delivery is held).
    Raw(Vec<u8>),
}

/// Holds a [`BodyFault::Stall`]ed body until released; `stalled` says
/// whether a body is waiting on it right now, its client still there.
#[derive(Clone, Debug)]
pub struct BodyGate {
    open: Arc<watch::Sender<bool>>,
    waiting: Arc<watch::Sender<bool>>,
}

impl Default for BodyGate {
    fn default() -> Self {
        BodyGate {
            open: Arc::new(watch::channel(false).0),
            waiting: Arc::new(watch::channel(false).0),
        }
    }
}

impl BodyGate {
    /// Lets the stalled body go on (and any later one through at once).
    pub fn release(&self) {
        self.open.send_replace(true);
    }

    /// Whether a body has written its first bytes and waits on the gate,
    /// with its client still connected.
    pub fn stalled(&self) -> bool {
        *self.waiting.borrow()
    }

    /// Waits for the gate to open; false if the client went first.
    async fn pass(&self, tx: &mpsc::Sender<Piece>) -> bool {
        self.waiting.send_replace(true);
        let mut open = self.open.subscribe();
        let opened = tokio::select! {
            _ = open.wait_for(|o| *o) => true,
            _ = tx.closed() => false,
        };
        self.waiting.send_replace(false);
        opened
    }
}

/// A run of events held as a count and a generator, not as values: ids
/// `first_id..first_id + count`, each written as `make(id)` (the JSON text
/// of the event, with that `id`).
#[derive(Clone)]
pub(super) struct Synthetic {
    pub(super) first_id: i64,
    pub(super) count: i64,
    pub(super) make: Arc<dyn Fn(i64) -> String + Send + Sync>,
}

/// What one `GET /events` answers with: the synthetic backlog first (ids
/// below every real event's), then the queued events.
pub(super) struct Reply {
    pub(super) synthetic: Option<Synthetic>,
    /// The queued events, each as JSON.
    pub(super) events: Vec<Bytes>,
}

/// How bodies are written: the envelope's key order (`None`: the whole
/// body from `Json`, keys sorted) and the faults for the next bodies.
#[derive(Default)]
pub(super) struct BodyPlan {
    pub(super) order: Option<Vec<String>>,
    pub(super) faults: std::collections::VecDeque<BodyFault>,
}

impl BodyPlan {
    /// The layout of the next body: a fault is used up only by a body
    /// with events.
    pub(super) fn next(&mut self, reply: &Reply) -> (Option<Vec<String>>, Option<BodyFault>) {
        let has_events = !reply.events.is_empty() || reply.synthetic.is_some();
        let fault = if has_events {
            self.faults.pop_front()
        } else {
            None
        };
        (self.order.clone(), fault)
    }
}

/// Zulip's own order of the envelope's keys.
const ZULIP_ORDER: [&str; 4] = ["result", "msg", "events", "queue_id"];

/// The response for `reply` on queue `qid`.
pub(super) fn events_response(
    reply: Reply,
    qid: &str,
    order: Option<Vec<String>>,
    fault: Option<BodyFault>,
) -> Response {
    if reply.synthetic.is_none() && order.is_none() && fault.is_none() {
        return json_bytes(Body::from(whole_body(&reply.events, qid)));
    }
    if let Some(BodyFault::Raw(bytes)) = fault {
        return json_bytes(Body::from(bytes));
    }
    let order = order.unwrap_or_else(|| ZULIP_ORDER.iter().map(|k| k.to_string()).collect());
    let pieces = pieces(reply, qid.to_owned(), order);
    let (tx, rx) = mpsc::channel::<Piece>(1);
    // A task writes the pieces through a one-slot channel: they are made
    // only as fast as the client reads, and the task ends when it goes.
    tokio::spawn(async move {
        let mut writer = Writer { tx, sent: 0, fault };
        for piece in pieces {
            if !writer.write(piece).await {
                return;
            }
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    });
    json_bytes(Body::from_stream(body))
}

/// The body axum's `Json` makes of the envelope (keys sorted, compact),
/// from the events' JSON as queued.
fn whole_body(events: &[Bytes], qid: &str) -> Vec<u8> {
    let size: usize = events.iter().map(|e| e.len() + 1).sum();
    let mut body = Vec::with_capacity(size + qid.len() + 64);
    body.extend_from_slice(b"{\"events\":[");
    for (k, e) in events.iter().enumerate() {
        if k > 0 {
            body.push(b',');
        }
        body.extend_from_slice(e);
    }
    body.extend_from_slice(b"],\"msg\":\"\",\"queue_id\":");
    body.extend_from_slice(Value::from(qid).to_string().as_bytes());
    body.extend_from_slice(b",\"result\":\"success\"}");
    body
}

/// A 200 response with `body`, as `application/json`.
fn json_bytes(body: Body) -> Response {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The body's bytes, in pieces made as they are asked for.
fn pieces(reply: Reply, qid: String, order: Vec<String>) -> impl Iterator<Item = Bytes> + Send {
    let Reply { synthetic, events } = reply;
    let mut events = Some((synthetic, events));
    let keys = order.into_iter().enumerate();
    keys.flat_map(move |(i, key)| -> Box<dyn Iterator<Item = Bytes> + Send> {
        let comma = if i > 0 { "," } else { "" };
        let open = if i == 0 { "{" } else { "" };
        let head = format!("{open}{comma}{}:", Value::from(key.as_str()));
        let head = std::iter::once(Bytes::from(head));
        match key.as_str() {
            "events" => match events.take() {
                Some((synthetic, real)) => Box::new(head.chain(event_pieces(synthetic, real))),
                None => Box::new(head.chain(std::iter::once(Bytes::from_static(b"[]")))),
            },
            "result" => Box::new(head.chain(std::iter::once(Bytes::from_static(b"\"success\"")))),
            "msg" => Box::new(head.chain(std::iter::once(Bytes::from_static(b"\"\"")))),
            "queue_id" => Box::new(head.chain(std::iter::once(Bytes::from(
                Value::from(qid.as_str()).to_string(),
            )))),
            _ => Box::new(head.chain(std::iter::once(Bytes::from_static(b"null")))),
        }
    })
    .chain(std::iter::once(Bytes::from_static(b"}")))
}

/// `[`, the synthetic events in batches of a thousand, the real ones, `]`.
fn event_pieces(
    synthetic: Option<Synthetic>,
    real: Vec<Bytes>,
) -> impl Iterator<Item = Bytes> + Send {
    let (first, count, make) = match synthetic {
        Some(s) => (s.first_id, s.count, Some(s.make)),
        None => (0, 0, None),
    };
    let batches = (0..count).step_by(1000).map(move |start| {
        let mut text = String::new();
        for k in start..(start + 1000).min(count) {
            if k > 0 {
                text.push(',');
            }
            if let Some(make) = &make {
                text.push_str(&make(first + k));
            }
        }
        Bytes::from(text)
    });
    let real = real.into_iter().enumerate().map(move |(k, e)| {
        if count > 0 || k > 0 {
            let mut piece = Vec::with_capacity(e.len() + 1);
            piece.push(b',');
            piece.extend_from_slice(&e);
            Bytes::from(piece)
        } else {
            e
        }
    });
    std::iter::once(Bytes::from_static(b"["))
        .chain(batches)
        .chain(real)
        .chain(std::iter::once(Bytes::from_static(b"]")))
}

/// A piece of the body, or the error that cuts the connection.
type Piece = Result<Bytes, std::io::Error>;

/// Writes pieces through the channel, applying the fault.
struct Writer {
    tx: mpsc::Sender<Piece>,
    sent: usize,
    fault: Option<BodyFault>,
}

impl Writer {
    /// False once the body is over (the client went, or the fault cut it).
    async fn write(&mut self, mut piece: Bytes) -> bool {
        while !piece.is_empty() {
            let take = match &self.fault {
                Some(BodyFault::Slow { piece: p, .. }) => (*p).max(1),
                Some(BodyFault::Cut { after } | BodyFault::Stall { after, .. })
                    if self.sent < *after =>
                {
                    *after - self.sent
                }
                _ => piece.len(),
            };
            let part = piece.split_to(take.min(piece.len()));
            self.sent += part.len();
            if self.tx.send(Ok(part)).await.is_err() {
                return false;
            }
            match &self.fault {
                Some(BodyFault::Slow { delay, .. }) => tokio::time::sleep(*delay).await,
                Some(BodyFault::Cut { after }) if self.sent >= *after => {
                    let cut = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "fake: cut");
                    let _ = self.tx.send(Err(cut)).await;
                    return false;
                }
                Some(BodyFault::Stall { after, gate }) if self.sent >= *after => {
                    if !gate.pass(&self.tx).await {
                        return false;
                    }
                    self.fault = None;
                }
                _ => {}
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    // Imports inside the test: the benchmark builds this file with
    // `cfg(test)` but without its tests.
    #[test]
    fn the_whole_body_is_what_json_makes_of_the_envelope() {
        use super::{whole_body, Bytes};
        use serde_json::json;

        let events = vec![
            json!({"id": 1, "type": "message", "message": {"content": "caf\u{e9} \"q\"\n"}}),
            json!({"id": 2, "type": "heartbeat"}),
        ];
        let texts: Vec<Bytes> = events
            .iter()
            .map(|e| Bytes::from(serde_json::to_vec(e).unwrap()))
            .collect();
        let qid = "1517975029:0\"x";
        let envelope = json!({"result": "success", "msg": "", "events": events, "queue_id": qid});
        assert_eq!(
            whole_body(&texts, qid),
            serde_json::to_vec(&envelope).unwrap()
        );
        let empty = json!({"result": "success", "msg": "", "events": [], "queue_id": qid});
        assert_eq!(whole_body(&[], qid), serde_json::to_vec(&empty).unwrap());
    }
}
