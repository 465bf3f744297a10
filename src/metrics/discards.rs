//! `events_discarded_total{listener, reason, intentional}`: every event a
//! listener did not get, or got without acting on it, by why — so a
//! dashboard tells what was filtered on purpose from what was lost.
//!
//! The unit is one (event, listener) pair: an event-wide reason (too old,
//! a blocked user, over the per-user rate limit, another instance's
//! partition) counts once for each listener that wanted the event, as the
//! `skipped` outcome of `events_processed_total` does. Elements of a
//! `GET /events` page that never became an event (quarantined without an
//! id, not an object, not JSON) have no listener: `listener=""`.
//!
//! `intentional="true"`: the configuration or the bot's own identity said
//! so (`filtered`, `blocked_user`, `rate_limited`, `too_old`,
//! `not_partition`, `own_message`). `intentional="false"`: the listener
//! should have had the event and did not (`dead_lettered`, `circuit_open`,
//! `disabled`, all kept as dead letters for `replay`; `quarantined`).
//! Events Zulip's queue lost cannot be counted one by one: they stay in
//! `queue_gaps_total`.
//!
//! A listener's own decision (the responder and the `zulip_outgoing`
//! webhook ignoring the bot's own messages) is noted with [`own_message`]
//! inside the run's [`scoped`] future: a task-local handle the dispatcher
//! sets around each try, so the public `Listener` trait and `Context` stay
//! as they are and a listener run outside the dispatcher (`test`,
//! `replay`, unit tests) counts nothing.

use std::future::Future;

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// Why an event was discarded for a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscardReason {
    /// The listener's `[listeners.NAME]` filters exclude it.
    Filtered,
    /// From a user in `[security] blocked_users`.
    BlockedUser,
    /// Over `[security] rate_limit_per_user` this minute.
    RateLimited,
    /// Older than `[filters] max_event_age`.
    TooOld,
    /// Another instance of a `[scaling]` deployment owns it.
    NotPartition,
    /// The bot's own message, which the listener ignores.
    OwnMessage,
    /// The run failed for good (kept as a dead letter).
    DeadLettered,
    /// Not run: the listener's circuit was open (kept as a dead letter).
    CircuitOpen,
    /// Not run: the listener was disabled (kept as a dead letter).
    Disabled,
    /// An element of a page that is no event (no id, not an object, not JSON).
    Quarantined,
}

impl DiscardReason {
    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            DiscardReason::Filtered => "filtered",
            DiscardReason::BlockedUser => "blocked_user",
            DiscardReason::RateLimited => "rate_limited",
            DiscardReason::TooOld => "too_old",
            DiscardReason::NotPartition => "not_partition",
            DiscardReason::OwnMessage => "own_message",
            DiscardReason::DeadLettered => "dead_lettered",
            DiscardReason::CircuitOpen => "circuit_open",
            DiscardReason::Disabled => "disabled",
            DiscardReason::Quarantined => "quarantined",
        }
    }

    /// Whether it was discarded on purpose (the `intentional` label).
    pub fn intentional(self) -> bool {
        !matches!(
            self,
            DiscardReason::DeadLettered
                | DiscardReason::CircuitOpen
                | DiscardReason::Disabled
                | DiscardReason::Quarantined
        )
    }
}

/// The `events_discarded_total` family.
#[derive(Clone)]
pub struct DiscardMetrics {
    counter: IntCounterVec,
}

impl DiscardMetrics {
    /// Creates the family and registers it in `registry`.
    pub(super) fn register(
        registry: &Registry,
        name: impl Fn(&str) -> String,
    ) -> prometheus::Result<Self> {
        let counter = IntCounterVec::new(
            Opts::new(
                name("events_discarded_total"),
                "Events a listener did not get or ignored, by listener, reason and whether on purpose (intentional=\"true\": filtered, blocked_user, rate_limited, too_old, not_partition, own_message; \"false\": dead_lettered, circuit_open, disabled, quarantined)",
            ),
            &["listener", "reason", "intentional"],
        )?;
        registry.register(Box::new(counter.clone()))?;
        Ok(DiscardMetrics { counter })
    }

    /// The counter of `listener` (`""` for none) and `reason`.
    pub fn counter(&self, listener: &str, reason: DiscardReason) -> IntCounter {
        let intentional = if reason.intentional() {
            "true"
        } else {
            "false"
        };
        self.counter
            .with_label_values(&[listener, reason.as_str(), intentional])
    }

    /// Counts `n` events discarded for `listener` for `reason`.
    pub fn count(&self, listener: &str, reason: DiscardReason, n: u64) {
        if n > 0 {
            self.counter(listener, reason).inc_by(n);
        }
    }
}

tokio::task_local! {
    /// The running try's own-message counter (see the module documentation).
    static OWN_MESSAGE: IntCounter;
}

/// Runs `try_` with `own` as the counter [`own_message`] increments.
pub(crate) async fn scoped<F: Future>(own: IntCounter, try_: F) -> F::Output {
    OWN_MESSAGE.scope(own, try_).await
}

/// Notes that the running listener ignores the bot's own message; nothing
/// outside a dispatcher's run.
pub(crate) fn own_message() {
    let _ = OWN_MESSAGE.try_with(IntCounter::inc);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_are_labelled_unintentional_and_filters_intentional() {
        let registry = Registry::new();
        let m = DiscardMetrics::register(&registry, |n| n.to_owned()).unwrap();
        m.count("a", DiscardReason::Filtered, 2);
        m.count("a", DiscardReason::DeadLettered, 1);
        m.count("", DiscardReason::Quarantined, 0);
        let text = crate::metrics::encode(&registry.gather());
        assert!(
            text.contains(
                r#"events_discarded_total{intentional="true",listener="a",reason="filtered"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"events_discarded_total{intentional="false",listener="a",reason="dead_lettered"} 1"#
            ),
            "{text}"
        );
        assert!(
            !text.contains(r#"reason="quarantined""#),
            "nothing counted at 0: {text}"
        );
    }

    #[tokio::test]
    async fn an_own_message_counts_only_inside_a_runs_scope() {
        let counter = IntCounter::new("own", "own").unwrap();
        own_message();
        scoped(counter.clone(), async { own_message() }).await;
        assert_eq!(counter.get(), 1);
    }
}
