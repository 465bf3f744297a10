//! Committing one `GET /events` response as it arrives: each chunk the
//! [`EventsStream`] hands out is committed, and so acknowledged by the
//! cursor it moves, while the next chunk is read from the network. A
//! backlog of any size is held a chunk or two at a time, and a body that
//! fails half-way leaves its committed chunks committed: the next poll
//! asks again from the cursor.

use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;

use super::poller::{stopped_by, Intake, PageEnd};
use crate::event::Event;
use crate::pii::Pii;
use crate::state::now_ms;
use crate::store::{Cursor, Origin};
use crate::zulip::{Chunk, EventsStream, ZulipError};

/// What one read of the body gave.
enum Read {
    Chunk(Chunk),
    End,
    Failed(ZulipError),
    Cancelled,
}

impl Intake<'_> {
    /// Commits the events of `page`, polled from `current`'s queue, chunk
    /// by chunk as they arrive. Returns the cursor committed last and how
    /// it ended.
    ///
    /// Memory stays bounded by two chunks (the one committing and the next
    /// one, read and parsed meanwhile) plus the pipeline's hand-off to
    /// dispatch, whatever the size of the response; listener runs start
    /// while later chunks are read. An empty response commits nothing.
    pub(super) async fn commit_page(
        &self,
        page: &mut EventsStream,
        current: &Cursor,
        token: &CancellationToken,
    ) -> (Cursor, PageEnd) {
        let queue_id = &current.queue_id;
        let origin = Origin::Queue(queue_id.clone());
        let mut committed = current.clone();
        let mut read = read_chunk(page, token).await;
        loop {
            let chunk = match read {
                Read::Chunk(chunk) => chunk,
                Read::End => return (committed, PageEnd::Complete),
                Read::Failed(e) => return (committed, PageEnd::Failed(e)),
                Read::Cancelled => return (committed, PageEnd::Stop(Ok(()))),
            };
            let (events, next) = prepare(chunk, &committed, queue_id);
            if next == committed {
                read = read_chunk(page, token).await;
                continue;
            }
            let (result, after) = tokio::join!(
                self.pipeline.accept(&origin, events, Some(&next), token),
                read_chunk(page, token)
            );
            read = after;
            match result {
                Ok(r) if r.stored > 0 => {
                    self.state
                        .intake
                        .last_event_ms
                        .store(now_ms(), Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => {
                    let stop = stopped_by(e).map_or(Ok(()), Err);
                    return (committed, PageEnd::Stop(stop));
                }
            }
            committed = next;
        }
    }
}

/// The next chunk of `page`, unless shutdown comes first.
async fn read_chunk(page: &mut EventsStream, token: &CancellationToken) -> Read {
    tokio::select! {
        read = page.next_chunk() => match read {
            Ok(Some(chunk)) => Read::Chunk(chunk),
            Ok(None) => Read::End,
            Err(e) => Read::Failed(e),
        },
        _ = token.cancelled() => Read::Cancelled,
    }
}

/// The events of a chunk and the cursor that committing them moves to
/// (from `base`). Events without an id are reported and left out: they
/// cannot be acknowledged or stored.
fn prepare(chunk: Chunk, base: &Cursor, queue_id: &str) -> (Vec<Event>, Cursor) {
    let mut next = base.clone();
    let mut events = Vec::with_capacity(chunk.len());
    for item in chunk {
        match item {
            Ok(e) => {
                next.last_event_id = next.last_event_id.max(e.id());
                if let Some(m) = e.message_id() {
                    next.last_message_id = next.last_message_id.max(Some(m));
                }
                events.push(e);
            }
            Err(raw) => tracing::error!(queue_id, event = %Pii(&raw),
                "Zulip sent an event without an id; it cannot be stored"),
        }
    }
    (events, next)
}
