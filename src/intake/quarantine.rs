//! The one place a quarantined element is noted, once its chunk is
//! committed: a warning naming the queue, the event id when there is one,
//! why (with the byte offset for bytes that are not UTF-8) and the raw
//! text, capped (`event::logged`) and redacted under `log_sanitization`
//! ([`Pii`]), and the
//! `events_quarantined_total{reason}` counter; an element that became no
//! event at all also counts in `events_discarded_total{reason="quarantined"}`.

use crate::event::{logged, QuarantineReason, Quarantined};
use crate::metrics::DiscardReason;
use crate::pii::Pii;
use crate::state::State;
use crate::store::Origin;

/// Notes `quarantined`, committed from `origin` (or, in a dry run, seen).
pub(super) fn note_quarantined(state: &State, origin: &Origin, quarantined: &[Quarantined]) {
    let origin = origin.as_stored();
    for q in quarantined {
        let reason = q.reason.label();
        state
            .metrics
            .events_quarantined
            .with_label_values(&[reason])
            .inc();
        // Bytes that are not UTF-8 and a repeated id leave an event in the
        // inbox; these do not.
        let lost = matches!(
            q.reason,
            QuarantineReason::NoId | QuarantineReason::NotAnObject | QuarantineReason::NotJson
        );
        if lost {
            state
                .metrics
                .discards
                .count("", DiscardReason::Quarantined, 1);
        }
        tracing::warn!(origin = %origin, event_id = ?q.event_id, reason, detail = %q.detail,
            raw = %Pii(logged(&q.raw)),
            "Zulip sent an element that is no event as it came; kept in event_listeners_quarantine");
    }
}
