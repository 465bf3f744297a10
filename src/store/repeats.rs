//! A batch repeating an event id (a broken server, never Zulip's ids,
//! which only grow): only the first copy is stored, and only it gets the
//! row, so only it is dispatched. The usual batch costs one comparison per
//! event.

use crate::event::Event;

/// `events` without the later copies of an id they repeat. Zulip's ids only
/// grow, so the usual batch costs one comparison per event.
pub(crate) fn first_of_each_id(events: &[Event]) -> Vec<&Event> {
    if events.windows(2).all(|w| w[0].id() < w[1].id()) {
        return events.iter().collect();
    }
    let mut seen = std::collections::HashSet::new();
    events.iter().filter(|e| seen.insert(e.id())).collect()
}

/// The inbox ids of `events` as stored: a backend gives every copy of an
/// event id the batch repeats that id's row, but only the first copy was
/// stored (rows are inserted in order, a later one skipped), so only it
/// keeps the id, and only it is dispatched.
pub(crate) fn first_copies(events: &[Event], mut ids: Vec<Option<i64>>) -> Vec<Option<i64>> {
    // Zulip's ids only grow: then no id repeats, and nothing is to be done.
    if events.windows(2).all(|w| w[0].id() < w[1].id()) {
        return ids;
    }
    let mut seen = std::collections::HashSet::new();
    for (e, id) in events.iter().zip(ids.iter_mut()) {
        if id.is_some() && !seen.insert(e.id()) {
            *id = None;
        }
    }
    ids
}
