//! What intake notes of each batch it receives: the events by type, and
//! each live message's lag behind the time Zulip stamped it.

use crate::event::Event;
use crate::metrics::type_label;
use crate::state::State;

/// Counts received events by type and measures their lag. Counts are
/// summed per batch first: a labelled counter is a locked map lookup.
pub(super) fn note_received(state: &State, events: &[Event]) {
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    let mut by_type: Vec<(&str, u64)> = Vec::new();
    for e in events {
        let label = type_label(e.event_type());
        match by_type.iter_mut().find(|(l, _)| *l == label) {
            Some((_, n)) => *n += 1,
            None => by_type.push((label, 1)),
        }
        if let Some(m) = e.message() {
            if !e.is_backfilled() && m.timestamp > 0 {
                state
                    .metrics
                    .queue_lag
                    .observe((now - m.timestamp as f64).max(0.0));
            }
        }
        tracing::debug!(event_id = e.id(), event_type = e.event_type(), op = ?e.op(), "Received an event");
    }
    for (label, n) in by_type {
        state
            .metrics
            .events_received
            .with_label_values(&[label])
            .inc_by(n);
    }
}
