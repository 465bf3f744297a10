//! Leadership of a distributed ingest: [`wait_for_lead`] stands by (trying
//! the instance's lock every [`RETRY_EVERY`], `/health` saying standby)
//! until it leads or is stopped; [`keep_lead`] renews the lease every
//! third of `lease_seconds` on the lock's own connection and returns at
//! the first failure (a dead lock connection, or a newer epoch), which
//! demotes the ingest at once.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::state::State;
use crate::store::{Lease, Store, StoreError};

/// How often a standby tries to take the lead.
pub(crate) const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Waits until this process leads `instance` (`Some`), or `token` is
/// cancelled (`None`).
///
/// # Errors
///
/// [`StoreError`] when leadership cannot be asked at all (SQLite).
pub(crate) async fn wait_for_lead(
    store: &Arc<dyn Store>,
    instance: &str,
    lease: Duration,
    state: &State,
    token: &CancellationToken,
) -> Result<Option<Box<dyn Lease>>, StoreError> {
    let holder = crate::store::holder_name();
    let mut said = false;
    loop {
        match store.lead(instance, &holder, lease).await {
            Ok(Some(lease)) => {
                let epoch = lease.epoch();
                state.ingest.leading.store(true, Ordering::Relaxed);
                state.ingest.epoch.store(epoch, Ordering::Relaxed);
                let m = &state.metrics.ingest;
                m.leader.set(1);
                m.epoch.set(epoch);
                m.leadership_changes.inc();
                set_holder(state, Some(holder.clone()));
                tracing::info!(instance = %instance, epoch, holder = %holder, "Leading: polling Zulip and publishing");
                return Ok(Some(lease));
            }
            Ok(None) => {
                if let Ok(Some(row)) = store.leader_row(instance).await {
                    state.ingest.epoch.store(row.epoch, Ordering::Relaxed);
                    state
                        .ingest
                        .outbox_depth
                        .store(row.outbox_depth, Ordering::Relaxed);
                    set_holder(state, row.holder);
                }
                if !said {
                    said = true;
                    tracing::info!(instance = %instance, "Standing by: another ingest leads");
                }
            }
            Err(e @ StoreError::Unsupported(_)) => return Err(e),
            Err(e) => tracing::warn!(error = %e, "Cannot ask for the lead yet; retrying"),
        }
        tokio::select! {
            _ = token.cancelled() => return Ok(None),
            _ = tokio::time::sleep(RETRY_EVERY) => {}
        }
    }
}

/// Renews `lease` every `lease_seconds / 3` until `term` is cancelled;
/// cancels `term` itself (demotion) at the first failed renewal.
pub(crate) async fn keep_lead(
    lease: &mut Box<dyn Lease>,
    lease_seconds: Duration,
    term: &CancellationToken,
) {
    let every = (lease_seconds / 3).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = term.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = lease.renew().await {
            tracing::error!(epoch = lease.epoch(), error = %e, "Lost the lead: stopping intake and publishing at once, standing by");
            term.cancel();
            return;
        }
    }
}

/// Marks `state` standing by after a term.
pub(crate) fn stand_by(state: &State) {
    if state.ingest.leading.swap(false, Ordering::Relaxed) {
        state.metrics.ingest.leadership_changes.inc();
    }
    state.metrics.ingest.leader.set(0);
}

fn set_holder(state: &State, holder: Option<String>) {
    *state
        .ingest
        .holder
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = holder;
}
