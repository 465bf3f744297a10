//! The `deadletters_pending{listener}` gauge of one organization: read
//! from the store at start-up and then every [`REFRESH_EVERY`]. Reading
//! rather than counting writes keeps it true whoever changes the table:
//! this daemon's recorder and reply sender, but also `replay`,
//! `deadletters retry|delete`, `cleanup` and the retention, which may run
//! in other processes. Every listener instance of the organization is
//! shown, at 0 when it has none.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::services::Services;
use crate::state::State;
use crate::store::Store;

/// Time between two reads of the pending counts.
pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(15);

/// Sets the gauge of organization `instance` from the store now, then every
/// [`REFRESH_EVERY`], until the services stop.
pub(super) fn spawn_dead_letter_gauge(
    services: &Services,
    store: Arc<dyn Store>,
    instance: String,
    listeners: Vec<String>,
    state: Arc<State>,
) {
    let token = services.token();
    services.spawn(async move {
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        let mut shown: BTreeSet<String> = listeners.into_iter().collect();
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tick.tick() => {}
            }
            refresh(store.as_ref(), &instance, &mut shown, &state).await;
        }
    });
}

/// One read: each listener in `shown` (and any other with pending dead
/// letters of `instance`, added to it) set to its count, or 0.
async fn refresh(store: &dyn Store, instance: &str, shown: &mut BTreeSet<String>, state: &State) {
    let counts = match store.pending_dead_letter_counts().await {
        Ok(counts) => counts,
        Err(e) => {
            tracing::debug!(error = %e, "Could not read the pending dead letters; the gauge keeps its values");
            return;
        }
    };
    let gauge = &state.metrics.instances.deadletters_pending;
    let mut seen = BTreeSet::new();
    for (org, listener, n) in counts {
        if org == instance {
            gauge.with_label_values(&[&listener]).set(n);
            seen.insert(listener);
        }
    }
    for listener in shown.iter().filter(|l| !seen.contains(*l)) {
        gauge.with_label_values(&[listener]).set(0);
    }
    shown.extend(seen);
}
