//! Committing one page of events: a large page is committed in chunks,
//! each acknowledged (by the cursor it moves) as it is committed, while the
//! next chunk is parsed.

use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;

use super::poller::{stopped_by, Intake, IntakeError};
use crate::event::Event;
use crate::state::now_ms;
use crate::store::{Cursor, Origin};
use crate::zulip::EventsPage;

/// Events per intake transaction when a poll returns a large page.
const INTAKE_CHUNK: usize = 1000;

impl Intake<'_> {
    /// Commits `items`, polled from `current`'s queue. Returns the cursor
    /// committed last and, when the loop must stop, its result.
    ///
    /// Memory stays bounded by the page's bytes plus a few chunks (the one
    /// committing, the next one, parsed meanwhile, and the pipeline's
    /// hand-off to dispatch), and listener runs start while later chunks are
    /// written. An empty page is one empty chunk: its cursor may still move.
    pub(super) async fn commit_page(
        &self,
        items: &EventsPage,
        current: &Cursor,
        token: &CancellationToken,
    ) -> (Cursor, Option<Result<(), IntakeError>>) {
        let mut ranges: Vec<std::ops::Range<usize>> = (0..items.len())
            .step_by(INTAKE_CHUNK)
            .map(|s| s..(s + INTAKE_CHUNK).min(items.len()))
            .collect();
        if ranges.is_empty() {
            ranges.push(0..0);
        }
        let queue_id = &current.queue_id;
        let origin = Origin::Queue(queue_id.clone());
        let mut committed = current.clone();
        let mut following = ranges.iter().skip(1).cloned();
        let mut prepared = Some(prepare(items, ranges[0].clone(), &committed, queue_id));
        while let Some((events, next)) = prepared.take() {
            let range = following.next();
            if next == committed {
                prepared = range.map(|r| prepare(items, r, &committed, queue_id));
                continue;
            }
            let (result, after) = tokio::join!(
                self.pipeline.accept(&origin, events, Some(&next), token),
                async { range.map(|r| prepare(items, r, &next, queue_id)) }
            );
            prepared = after;
            match result {
                Ok(r) if r.stored > 0 => {
                    self.state
                        .intake
                        .last_event_ms
                        .store(now_ms(), Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => return (committed, Some(stopped_by(e).map_or(Ok(()), Err))),
            }
            committed = next;
        }
        (committed, None)
    }
}

/// Parses the events of `range` of a page and the cursor that committing
/// them moves to (from `base`). Events without an id are reported and left
/// out: they cannot be acknowledged or stored.
fn prepare(
    items: &EventsPage,
    range: std::ops::Range<usize>,
    base: &Cursor,
    queue_id: &str,
) -> (Vec<Event>, Cursor) {
    let mut next = base.clone();
    let mut events = Vec::with_capacity(range.len());
    for item in items.chunk(range) {
        match item {
            Ok(e) => {
                next.last_event_id = next.last_event_id.max(e.id());
                if let Some(m) = e.message_id() {
                    next.last_message_id = next.last_message_id.max(Some(m));
                }
                events.push(e);
            }
            Err(raw) => tracing::error!(queue_id, event = %raw,
                "Zulip sent an event without an id; it cannot be stored"),
        }
    }
    (events, next)
}
