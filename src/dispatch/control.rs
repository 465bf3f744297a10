//! [`Control`]: disabling, enabling and inspecting the dispatcher's
//! listeners while it runs, over the per-listener [`Slot`]s that the
//! dispatcher and its runs share.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use chrono::Utc;

use super::breaker::Breaker;
use super::settings::RetryPolicy;
use crate::listeners::Listener;
use crate::metrics::RunHandles;
use crate::state::ListenerControls;

/// One listener instance as the dispatcher runs it: the listener, its
/// name, its bounds (timeout, retry policy, own concurrency limit), its
/// metric handles and its breaker.
pub(super) struct Slot {
    pub(super) listener: Arc<dyn Listener>,
    pub(super) name: Arc<str>,
    pub(super) timeout: Duration,
    pub(super) retry: RetryPolicy,
    /// The instance's own `max_concurrent`, within the daemon's bound.
    pub(super) limit: Option<Arc<Semaphore>>,
    pub(super) handles: RunHandles,
    pub(super) breaker: Breaker,
    /// Runs spawned and not yet ended (waiting for their lane or a slot,
    /// or running), for the drain to name what it abandons.
    pub(super) in_flight: AtomicUsize,
    /// The slot of its fallback (`[listeners.NAME] fallback`).
    pub(super) fallback: Option<usize>,
    /// It is another slot's fallback: no event is routed to it directly.
    pub(super) fallback_only: bool,
}

/// Disables, enables and inspects the dispatcher's listeners at run time.
#[derive(Clone)]
pub(crate) struct Control(pub(super) Arc<[Slot]>);

impl Control {
    /// Disables (with a reason) or re-enables a listener.
    pub(crate) fn set_disabled(&self, listener: &str, reason: Option<String>) {
        if let Some(slot) = self.0.iter().find(|s| &*s.name == listener) {
            if slot.breaker.disabled() != reason {
                match &reason {
                    Some(r) => tracing::warn!(listener, reason = %r, "Listener disabled"),
                    None => tracing::info!(listener, "Listener enabled"),
                }
            }
            slot.breaker.set_disabled(reason);
        }
    }

    /// Listeners currently disabled, with the reason.
    pub(crate) fn disabled(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter_map(|s| s.breaker.disabled().map(|r| (s.name.to_string(), r)))
            .collect()
    }

    /// Listeners whose circuit is open, with when it half-opens.
    pub(crate) fn open_circuits(&self) -> Vec<(String, chrono::DateTime<Utc>)> {
        let now = tokio::time::Instant::now();
        self.0
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
