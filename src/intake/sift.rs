//! Sorting a chunk of a `GET /events` page into what one commit writes:
//! the events for the inbox, each event id once, and the elements for
//! quarantine (no usable id, not an object, not JSON, bytes that are not
//! UTF-8, a later copy of an id with other content), with the cursor the
//! commit moves to. Nothing in a chunk stops the page.
//!
//! Repeated ids: the first copy wins, and it is the one stored and run. A
//! later copy that is byte for byte the same is dropped (nothing is lost);
//! one with other content is quarantined ("repeated event id N"). Zulip's
//! ids only grow, so only an id at or below the highest seen can repeat:
//! within the chunk it is compared with the first copy there; at or below
//! what this queue has committed (an earlier chunk of the page, or an
//! earlier poll), with the copy the inbox holds, read back. Neither ever
//! happens with a well-behaved server, so the usual chunk costs one
//! comparison per event.

use std::sync::Arc;

use crate::event::{Event, QuarantineReason, Quarantined};
use crate::store::{Cursor, Origin, Store};
use crate::zulip::{Chunk, Element};

/// One chunk, sorted.
#[derive(Debug)]
pub(super) struct Sorted {
    /// The events to store, in order, each id once.
    pub(super) events: Vec<Event>,
    /// The elements to quarantine.
    pub(super) quarantined: Vec<Quarantined>,
    /// The cursor committing them moves to.
    pub(super) next: Cursor,
    /// Indices in `events` of ids at or below the committed cursor, whose
    /// stored copies [`settle_repeats`] compares.
    suspects: Vec<usize>,
}

impl Sorted {
    /// Whether some of its ids are at or below the cursor it was sorted
    /// against, so that [`settle_repeats`] reads their stored copies.
    pub(super) fn has_suspects(&self) -> bool {
        !self.suspects.is_empty()
    }
}

/// Sorts `chunk`, read from the queue whose committed cursor is `base`.
pub(super) fn sort(chunk: Chunk, base: &Cursor) -> Sorted {
    let mut sorted = Sorted {
        events: Vec::with_capacity(chunk.len()),
        quarantined: Vec::new(),
        next: base.clone(),
        suspects: Vec::new(),
    };
    let mut highest = base.last_event_id;
    for element in chunk {
        let (event, flag) = match element {
            Element::Event(e) => (e, None),
            Element::Lossy(e, q) => (e, Some(q)),
            Element::Quarantined(q) => {
                sorted.quarantined.push(q);
                continue;
            }
        };
        if event.id() <= highest {
            // Linear, but only for an id that does not grow: never, from Zulip.
            if let Some(first) = sorted.events.iter().find(|f| f.id() == event.id()) {
                if first.raw() != event.raw() || flag.is_some() {
                    sorted.quarantined.push(repeated(&event, flag, None));
                }
                continue;
            }
            if event.id() <= base.last_event_id {
                sorted.suspects.push(sorted.events.len());
            }
        }
        highest = highest.max(event.id());
        let next = &mut sorted.next;
        next.last_event_id = next.last_event_id.max(event.id());
        if let Some(m) = event.message_id() {
            next.last_message_id = next.last_message_id.max(Some(m));
        }
        sorted.quarantined.extend(flag);
        sorted.events.push(event);
    }
    sorted
}

/// Compares each event of `sorted` whose id this queue has committed
/// before with the copy the inbox holds: the same is dropped, other
/// content quarantined, and an id with no stored copy (a heartbeat's, say)
/// stored as usual. A copy that cannot be read (the database failing) is
/// quarantined too: kept either way, never dropped unseen.
pub(super) async fn settle_repeats(
    sorted: &mut Sorted,
    store: Option<&Arc<dyn Store>>,
    instance: &str,
    origin: &Origin,
) {
    let Some(store) = store else {
        return;
    };
    for i in std::mem::take(&mut sorted.suspects).into_iter().rev() {
        let id = sorted.events[i].id();
        // An event not UTF-8 is never taken for the same: its lossy text
        // hides which bytes came.
        let flagged = sorted
            .quarantined
            .iter()
            .position(|q| q.reason == QuarantineReason::InvalidUtf8 && q.event_id == Some(id));
        let why = match store.inbox_raw(instance, origin, id).await {
            Ok(None) => continue,
            Ok(Some(raw)) if raw == sorted.events[i].raw() && flagged.is_none() => None,
            Ok(Some(_)) => Some(None),
            Err(e) => Some(Some(format!("its stored copy could not be read: {e}"))),
        };
        let event = sorted.events.remove(i);
        let flag = flagged.map(|k| sorted.quarantined.remove(k));
        if let Some(why) = why {
            sorted.quarantined.push(repeated(&event, flag, why));
        }
    }
}

/// The quarantine row of a later copy of `event`'s id with other content.
fn repeated(event: &Event, flag: Option<Quarantined>, why: Option<String>) -> Quarantined {
    let mut detail = format!("repeated event id {}", event.id());
    for more in flag.as_ref().map(|q| &q.detail).into_iter().chain(&why) {
        detail.push_str("; ");
        detail.push_str(more);
    }
    Quarantined {
        reason: QuarantineReason::RepeatedId,
        detail,
        event_id: Some(event.id()),
        raw: event.raw().to_owned(),
        raw_bytes: flag.and_then(|q| q.raw_bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, text: &str) -> Element {
        let raw = format!(r#"{{"type":"x","id":{id},"t":"{text}"}}"#);
        Element::Event(Event::from_wire(&raw).unwrap())
    }

    fn cursor(last: i64) -> Cursor {
        Cursor {
            site: "s".into(),
            queue_id: "q".into(),
            last_event_id: last,
            last_message_id: None,
        }
    }

    fn ids(sorted: &Sorted) -> Vec<i64> {
        sorted.events.iter().map(Event::id).collect()
    }

    #[test]
    fn the_first_copy_of_an_id_wins_and_a_different_later_one_is_quarantined() {
        let chunk = vec![
            event(0, "a"),
            event(1, "first"),
            event(1, "second"),
            event(1, "first"),
            event(2, "b"),
        ];
        let sorted = sort(chunk, &cursor(-1));
        assert_eq!(ids(&sorted), [0, 1, 2]);
        assert!(sorted.events[1].raw().contains("first"));
        assert_eq!(sorted.quarantined.len(), 1, "the identical copy is dropped");
        let q = &sorted.quarantined[0];
        assert_eq!(
            (q.reason, q.event_id),
            (QuarantineReason::RepeatedId, Some(1))
        );
        assert_eq!(q.detail, "repeated event id 1");
        assert!(q.raw.contains("second"));
        assert_eq!(sorted.next.last_event_id, 2);
        assert!(sorted.suspects.is_empty());
    }

    #[test]
    fn ids_at_or_below_the_committed_cursor_are_suspects_and_ids_out_of_order_are_kept() {
        let sorted = sort(
            vec![event(7, "a"), event(5, "b"), event(3, "c")],
            &cursor(4),
        );
        assert_eq!(ids(&sorted), [7, 5, 3]);
        assert_eq!(
            sorted.suspects,
            [2],
            "only the id the queue committed before"
        );
        assert_eq!(sorted.next.last_event_id, 7);
    }

    #[test]
    fn elements_that_are_no_events_are_quarantined_and_move_nothing() {
        let q = Quarantined::new(QuarantineReason::NoId, "x".into(), None, b"{}");
        let sorted = sort(vec![Element::Quarantined(q.clone())], &cursor(4));
        assert!(sorted.events.is_empty());
        assert_eq!(sorted.quarantined, [q]);
        assert_eq!(sorted.next, cursor(4));
    }
}
