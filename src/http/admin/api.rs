//! [`AdminApi`]: what the admin handlers share (the store, the audit
//! trail, the live state whose listener controls the switches turn, the
//! daemon's listener instances).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::body::ApiError;
use crate::http::auth::Caller;
use crate::listeners::{Instance, Listener};
use crate::state::State;
use crate::store::{AuditAction, AuditEntry, AuditOutcome, AuditTrail, Store};

/// One listener instance of this daemon, as the admin API runs it.
pub(super) struct AdminListener {
    pub(super) listener: Arc<dyn Listener>,
    pub(super) kind: String,
    /// Upper bound of one replayed run.
    pub(super) timeout: Duration,
}

/// Everything the admin handlers read and change.
pub(crate) struct AdminApi {
    pub(super) store: Arc<dyn Store>,
    pub(super) audit: AuditTrail,
    pub(super) state: Arc<State>,
    pub(super) listeners: BTreeMap<String, AdminListener>,
    /// The organizations (`instance`s) whose events a replay may run, the
    /// default first; never empty.
    pub(super) organizations: Vec<String>,
    /// One replay at a time: two at once could run a dead letter twice.
    pub(super) replaying: Semaphore,
}

impl AdminApi {
    /// The API over `instances` (this daemon's), their runs bounded by
    /// `default_timeout` unless their own, replaying the events of one of
    /// `organizations` (the first by default).
    pub(crate) fn new(
        store: Arc<dyn Store>,
        audit: AuditTrail,
        state: Arc<State>,
        instances: &[Instance],
        organizations: Vec<String>,
        default_timeout: Duration,
    ) -> AdminApi {
        let listeners = instances
            .iter()
            .map(|i| {
                let one = AdminListener {
                    listener: i.listener.clone(),
                    kind: i.kind.clone(),
                    timeout: i.timeout.unwrap_or(default_timeout),
                };
                (i.listener.name().to_owned(), one)
            })
            .collect();
        AdminApi {
            store,
            audit,
            state,
            listeners,
            organizations,
            replaying: Semaphore::new(1),
        }
    }

    /// Organization `name`, or the first without one.
    ///
    /// # Errors
    ///
    /// [`ApiError::NotFound`] naming the organizations there are.
    pub(super) fn organization(&self, name: Option<&str>) -> Result<&str, ApiError> {
        let found = match name {
            None => self.organizations.first(),
            Some(name) => self.organizations.iter().find(|o| *o == name),
        };
        found.map(String::as_str).ok_or_else(|| {
            ApiError::NotFound(format!(
                "no organization is named `{}`; the organizations are: {}",
                name.unwrap_or_default(),
                self.organizations.join(", ")
            ))
        })
    }

    /// This daemon's listener `name`.
    ///
    /// # Errors
    ///
    /// [`ApiError::NotFound`] naming the listeners there are.
    pub(super) fn listener(&self, name: &str) -> Result<&AdminListener, ApiError> {
        self.listeners.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.listeners.keys().map(String::as_str).collect();
            ApiError::NotFound(format!(
                "no listener `{name}` runs in this daemon (it runs: {})",
                known.join(", ")
            ))
        })
    }

    /// Writes the audit row of `caller`'s `action` on `target`: the
    /// outcome and detail `judge` makes of the result when there is one,
    /// else failed with the error.
    pub(super) async fn audit<T>(
        &self,
        caller: &Caller,
        action: AuditAction,
        target: &str,
        result: &Result<T, ApiError>,
        judge: impl FnOnce(&T) -> (AuditOutcome, String),
    ) {
        let (outcome, detail) = match result {
            Ok(v) => judge(v),
            Err(e) => (AuditOutcome::Failed, e.to_string()),
        };
        self.audit
            .record(AuditEntry {
                actor: &caller.actor(),
                action,
                target: Some(target),
                detail: &detail,
                outcome,
            })
            .await;
    }
}
