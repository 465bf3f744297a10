//! The spans of a trace, and [`HeldSpans`]: an event's span kept open
//! until its replies are sent, so each `reply send` span is its child.
//!
//! Every span of a trace has the target [`TARGET`]: the log output never
//! shows them (its filter turns the target off), and only the OTLP layer
//! (`otlp.rs`) records them. Without `[telemetry] otlp_endpoint` no layer
//! wants them, so creating one costs a cached callsite check and
//! [`HeldSpans`] holds nothing.
//!
//! A trace: `event` (org, type, inbox id, event id), created when the
//! dispatcher takes the event; `listener attempt` (listener, attempt,
//! outcome), one per try; `reply send` (listener, reply id, outcome), one
//! per POST of a reply the event's runs wrote. The event's span ends when
//! its last run and reply are done.

use std::collections::VecDeque;
use std::sync::Mutex;

use tracing::Span;

/// The target of every span of a trace.
pub(crate) const TARGET: &str = "zel_trace";

/// Events whose spans are held at most; the oldest is let go beyond.
const HELD_MAX: usize = 4096;

/// The span of the event `inbox_id`, with the replies still to send.
struct Held {
    inbox_id: i64,
    span: Span,
    replies: usize,
}

/// Spans of events whose replies are not sent yet (see the module docs).
#[derive(Default)]
pub struct HeldSpans(Mutex<VecDeque<Held>>);

impl HeldSpans {
    /// Keeps `span`, the event `inbox_id`'s, open for `replies` more
    /// replies; nothing when tracing is off (the span is disabled).
    pub(crate) fn hold(&self, inbox_id: i64, span: &Span, replies: usize) {
        if span.is_disabled() || replies == 0 {
            return;
        }
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match held.iter_mut().find(|h| h.inbox_id == inbox_id) {
            Some(h) => h.replies += replies,
            None => {
                if held.len() >= HELD_MAX {
                    held.pop_front();
                }
                held.push_back(Held {
                    inbox_id,
                    span: span.clone(),
                    replies,
                });
            }
        }
    }

    /// The event `inbox_id`'s span, when it is held.
    pub(crate) fn get(&self, inbox_id: i64) -> Option<Span> {
        let held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        held.iter()
            .find(|h| h.inbox_id == inbox_id)
            .map(|h| h.span.clone())
    }

    /// One reply of the event `inbox_id` is done: its span ends with the last.
    pub(crate) fn release(&self, inbox_id: i64) {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = held.iter().position(|h| h.inbox_id == inbox_id) {
            held[i].replies -= 1;
            if held[i].replies == 0 {
                // Dropped outside the lock would be tidier, but closing a
                // span takes no lock of ours.
                held.remove(i);
            }
        }
    }

    /// How many events' spans are held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_span_is_never_held() {
        let held = HeldSpans::default();
        held.hold(1, &Span::none(), 2);
        assert_eq!(held.len(), 0);
        assert!(held.get(1).is_none());
    }

    #[test]
    fn a_span_is_let_go_after_its_last_reply() {
        let _guard = tracing::subscriber::set_default(tracing_subscriber::registry());
        let held = HeldSpans::default();
        let span = tracing::info_span!(target: TARGET, "event");
        held.hold(7, &span, 1);
        held.hold(7, &span, 1);
        assert!(held.get(7).is_some());
        held.release(7);
        assert!(held.get(7).is_some(), "one reply is still to send");
        held.release(7);
        assert_eq!(held.len(), 0);
    }
}
