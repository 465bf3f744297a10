//! [`AuditTrail`]: the audit trail as callers hold it. It writes only when
//! `[data_protection] audit_trail` is on, and never fails the action it
//! records: an action already done is not undone because its row could not
//! be written; that is logged instead.

use std::sync::Arc;

use super::api::Store;
use super::audit::AuditEntry;

/// The store, and whether `[data_protection] audit_trail` is on.
#[derive(Clone)]
pub struct AuditTrail {
    store: Arc<dyn Store>,
    enabled: bool,
}

impl AuditTrail {
    /// The trail of `store`, written only when `enabled`.
    pub fn new(store: Arc<dyn Store>, enabled: bool) -> AuditTrail {
        AuditTrail { store, enabled }
    }

    /// Whether rows are written.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Writes `entry` when the trail is on; a failure is logged, never
    /// returned, since the action it records has happened.
    pub async fn record(&self, entry: AuditEntry<'_>) {
        if !self.enabled {
            return;
        }
        if let Err(e) = self.store.audit(&entry).await {
            tracing::warn!(
                action = entry.action.as_str(),
                actor = entry.actor,
                error = %e,
                "Cannot write the audit row of an operator action"
            );
        }
    }
}
