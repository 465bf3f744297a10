//! [`Notice`]: what the dispatcher tells an operator about (circuits
//! opening, listeners disabled, runs dead-lettered). The notifier
//! (`crate::notify`) POSTs them to the configured webhook; nothing that must
//! last depends on a notice, since the queue to the notifier drops what does
//! not fit.

/// Something an operator should hear about (sent to the webhook when one is
/// configured; an automatic disable is written to the store by the
/// recorder, not through this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// A listener's circuit opened.
    CircuitOpened {
        /// Listener.
        listener: String,
        /// Consecutive failures.
        failures: u32,
    },
    /// A listener was disabled automatically.
    Disabled {
        /// Listener.
        listener: String,
        /// Why.
        reason: String,
    },
    /// A run failed for the last time.
    DeadLettered {
        /// Listener.
        listener: String,
        /// Inbox id of the event.
        inbox_id: i64,
        /// The last error.
        error: String,
    },
}
