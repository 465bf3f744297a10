//! [`Control`]: disabling, enabling, inspecting and replacing the
//! dispatcher's listeners while it runs, over the [`Roster`] (the
//! per-listener [`Slot`]s and the settings) that the dispatcher and its
//! runs share. A reload replaces the roster whole ([`Control::replace`]):
//! each new event is dispatched to the roster current when it arrives,
//! and a run keeps the roster it was started with to its end.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use tokio::sync::Semaphore;

use chrono::Utc;

use super::breaker::Breaker;
use super::filters::Filters;
use super::settings::{DispatcherSettings, RetryPolicy};
use crate::listeners::{Instance, Listener};
use crate::metrics::RunHandles;
use crate::state::{ListenerControls, State};

/// One listener instance as the dispatcher runs it: the listener, its
/// name, its bounds (timeout, retry policy, own concurrency limit), its
/// metric handles and its breaker. The breaker and the in-flight count
/// belong to the instance's name: a reload that keeps the name keeps them.
pub(super) struct Slot {
    pub(super) listener: Arc<dyn Listener>,
    pub(super) name: Arc<str>,
    pub(super) timeout: Duration,
    pub(super) retry: RetryPolicy,
    /// The instance's own `max_concurrent`, within the daemon's bound.
    pub(super) limit: Option<Arc<Semaphore>>,
    /// The `max_concurrent` that `limit` was made for.
    pub(super) max_concurrent: Option<usize>,
    pub(super) handles: RunHandles,
    pub(super) breaker: Arc<Breaker>,
    /// Runs spawned and not yet ended (waiting for their lane or a slot,
    /// or running), for the drain to name what it abandons.
    pub(super) in_flight: Arc<AtomicUsize>,
    /// The slot of its fallback (`[listeners.NAME] fallback`).
    pub(super) fallback: Option<usize>,
    /// It is another slot's fallback: no event is routed to it directly.
    pub(super) fallback_only: bool,
}

impl Slot {
    /// The slot of `instance`, reusing `old`'s breaker, in-flight count
    /// and (when its bound is the same) concurrency limit; the listener
    /// too when `keep_listener` (its configuration did not change).
    fn new(
        instance: &Instance,
        settings: &DispatcherSettings,
        state: &State,
        old: Option<&Slot>,
        keep_listener: bool,
    ) -> Slot {
        let max_concurrent = instance.max_concurrent;
        let handles = state.metrics.run_handles(instance.name());
        let circuit = handles.instance.circuit_state.clone();
        let limit = match old {
            Some(o) if o.max_concurrent == max_concurrent => o.limit.clone(),
            _ => max_concurrent.map(|n| Arc::new(Semaphore::new(n.max(1)))),
        };
        let listener = match old {
            Some(o) if keep_listener => o.listener.clone(),
            _ => instance.listener.clone(),
        };
        Slot {
            listener,
            name: Arc::from(instance.name()),
            timeout: instance.timeout.unwrap_or(settings.timeout),
            retry: instance.retry.unwrap_or(settings.retry),
            limit,
            max_concurrent,
            breaker: old.map_or_else(
                || Arc::new(Breaker::new(settings.breaker).publishing(circuit)),
                |o| o.breaker.clone(),
            ),
            handles,
            in_flight: old.map_or_else(Arc::default, |o| o.in_flight.clone()),
            fallback: None,
            fallback_only: false,
        }
    }
}

/// What the dispatcher runs now: the slots, their listeners (for routing)
/// and the settings (filters, default retry policy).
pub(super) struct Roster {
    pub(super) slots: Arc<[Slot]>,
    pub(super) listeners: Vec<Arc<dyn Listener>>,
    pub(super) settings: Arc<DispatcherSettings>,
}

impl Roster {
    /// The roster of `instances` under `settings`, each slot taking over
    /// the one of the same name in `old`, if any, and its listener when
    /// the name is not in `rebuilt`.
    pub(super) fn new(
        instances: &[Instance],
        settings: DispatcherSettings,
        state: &State,
        old: Option<&Roster>,
        rebuilt: &[String],
    ) -> Roster {
        let index_of = |name: &str| instances.iter().position(|i| i.name() == name);
        let slots: Arc<[Slot]> = instances
            .iter()
            .map(|i| {
                let before = old.and_then(|o| o.slots.iter().find(|s| &*s.name == i.name()));
                let keep = !rebuilt.iter().any(|n| n == i.name());
                Slot {
                    fallback: i.fallback.as_deref().and_then(index_of),
                    fallback_only: i.is_fallback_of_any(instances),
                    ..Slot::new(i, &settings, state, before, keep)
                }
            })
            .collect();
        Roster {
            listeners: slots.iter().map(|s| s.listener.clone()).collect(),
            slots,
            settings: Arc::new(settings),
        }
    }
}

/// The roster cell the dispatcher and its [`Control`] share.
pub(super) type Current = Arc<RwLock<Arc<Roster>>>;

/// The roster current now (a clone of its `Arc`; the lock is never held
/// beyond this).
pub(super) fn current(cell: &Current) -> Arc<Roster> {
    cell.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The live parts of a reloaded configuration, for [`Control::replace`].
pub(crate) struct Replacement<'a> {
    /// The new set of listener instances, every one built.
    pub(crate) instances: &'a [Instance],
    /// Names whose listener is the new one (added or reconfigured); the
    /// others keep the listener object they run with.
    pub(crate) rebuilt: &'a [String],
    /// `[queue]`'s retry policy.
    pub(crate) retry: RetryPolicy,
    /// `[filters]`, `[security]` and the instances' filters, when they
    /// changed (`None` keeps the running ones, and the per-user rate
    /// limit's counts with them).
    pub(crate) filters: Option<Arc<Filters>>,
    /// Listeners the store says are disabled, with the reason: applied to
    /// an added instance before its first run.
    pub(crate) disabled: &'a [(String, String)],
}

/// Disables, enables, inspects and replaces the dispatcher's listeners at
/// run time.
#[derive(Clone)]
pub(crate) struct Control {
    pub(super) roster: Current,
    /// Weak: the state holds this control (`State::listeners`), and a
    /// strong reference back would keep the roster, so its listeners and
    /// their children (a persistent exec's), alive after the daemon stops.
    pub(super) state: Weak<State>,
}

impl Control {
    /// Disables (with a reason) or re-enables a listener.
    pub(crate) fn set_disabled(&self, listener: &str, reason: Option<String>) {
        let roster = current(&self.roster);
        if let Some(slot) = roster.slots.iter().find(|s| &*s.name == listener) {
            if slot.breaker.disabled() != reason {
                match &reason {
                    Some(r) => tracing::warn!(listener, reason = %r, "Listener disabled"),
                    None => tracing::info!(listener, "Listener enabled"),
                }
            }
            slot.breaker.set_disabled(reason);
        }
    }

    /// The names of the instances the dispatcher runs now.
    pub(crate) fn names(&self) -> Vec<String> {
        let roster = current(&self.roster);
        roster.slots.iter().map(|s| s.name.to_string()).collect()
    }

    /// Replaces the roster: new events go to `new.instances`, runs already
    /// started finish with the instances they started with. An instance
    /// that keeps its name keeps its breaker (circuit, disable) and its
    /// in-flight count; an added one the store says is disabled starts
    /// disabled.
    pub(crate) fn replace(&self, new: Replacement<'_>) {
        let Some(state) = self.state.upgrade() else {
            return; // the daemon has stopped: nothing runs to replace
        };
        let mut cell = self.roster.write().unwrap_or_else(|p| p.into_inner());
        let old = cell.clone();
        let mut settings = (*old.settings).clone();
        settings.retry = new.retry;
        if let Some(filters) = new.filters {
            settings.filters = filters;
        }
        let roster = Roster::new(new.instances, settings, &state, Some(&old), new.rebuilt);
        for slot in roster.slots.iter() {
            let added = !old.slots.iter().any(|s| s.name == slot.name);
            if let (true, Some((_, why))) =
                (added, new.disabled.iter().find(|(n, _)| **n == *slot.name))
            {
                slot.breaker.set_disabled(Some(why.clone()));
            }
        }
        *cell = Arc::new(roster);
    }

    /// Listeners currently disabled, with the reason.
    pub(crate) fn disabled(&self) -> Vec<(String, String)> {
        let roster = current(&self.roster);
        roster
            .slots
            .iter()
            .filter_map(|s| s.breaker.disabled().map(|r| (s.name.to_string(), r)))
            .collect()
    }

    /// Listeners whose circuit is open, with when it half-opens.
    pub(crate) fn open_circuits(&self) -> Vec<(String, chrono::DateTime<Utc>)> {
        let now = tokio::time::Instant::now();
        let roster = current(&self.roster);
        roster
            .slots
            .iter()
            .filter_map(|s| {
                let until = s.breaker.open_until()?;
                let left = chrono::Duration::from_std(until.saturating_duration_since(now)).ok()?;
                Some((s.name.to_string(), Utc::now() + left))
            })
            .collect()
    }
}

impl ListenerControls for Control {
    fn disabled(&self) -> Vec<(String, String)> {
        Control::disabled(self)
    }

    fn open_circuits(&self) -> Vec<(String, chrono::DateTime<Utc>)> {
        Control::open_circuits(self)
    }

    fn set_disabled(&self, listener: &str, reason: Option<String>) {
        Control::set_disabled(self, listener, reason);
    }
}
