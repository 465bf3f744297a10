//! [`route`]: where one event goes — which instance of a partitioned
//! deployment owns it, which listeners want it, and which filter skips
//! which run. The dispatcher acts on it; `test` prints it.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::filters::{Filters, SkipReason};
use super::ordering::ordering_key;
use super::partition::{event_seq, Partitioner};
use crate::event::Event;
use crate::listeners::{interested, Listener};

/// Where an event goes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// The instance (0-based) owning it when the deployment is partitioned.
    pub(crate) owner: Option<u32>,
    /// Whether this instance owns it (no run here otherwise).
    pub(crate) owned: bool,
    /// Each interested listener (by index) with the filter that skips its
    /// run, if one does.
    pub(crate) runs: Vec<(usize, Option<SkipReason>)>,
}

/// The route of `event` among `listeners`. Calls [`Filters::check_event`],
/// so it counts towards the per-user rate limit: once per event.
pub(crate) fn route(
    listeners: &[Arc<dyn Listener>],
    filters: &Filters,
    partitioner: &Partitioner,
    event: &Event,
    now: DateTime<Utc>,
) -> Route {
    let key = ordering_key(event);
    let owner = partitioner
        .is_partitioned()
        .then(|| partitioner.owner(&key, event_seq(event)));
    if !partitioner.owns_with(&key, || event_seq(event)) {
        return Route {
            owner,
            owned: false,
            runs: Vec::new(),
        };
    }
    let event_skip = filters.check_event(event, now);
    let runs = interested(listeners, event.event_type())
        .into_iter()
        .map(|i| {
            let skip = event_skip.or_else(|| filters.check_listener(event, listeners[i].name()));
            (i, skip)
        })
        .collect();
    Route {
        owner,
        owned: true,
        runs,
    }
}
