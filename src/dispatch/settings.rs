//! [`DispatcherSettings`]: how the dispatcher bounds, retries, selects and
//! labels runs, read by the dispatcher and by each run.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::breaker::BreakerSettings;
use super::filters::Filters;
use super::partition::Partitioner;

/// Retry policy of failed runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Retries after the first try.
    pub max_retries: u32,
    /// Delay between tries (jittered ±50%).
    pub delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 0,
            delay: Duration::from_secs(5),
        }
    }
}

/// How runs are bounded.
#[derive(Debug, Clone)]
pub(crate) struct DispatcherSettings {
    /// Runs in flight at once, over all listeners.
    pub max_concurrent: usize,
    /// Upper bound of one run.
    pub timeout: Duration,
    /// The organization, for idempotency keys.
    pub org: Arc<str>,
    /// The bot's own user id.
    pub bot_user_id: Option<i64>,
    /// Once cancelled (shutdown), no new run starts; events not fully
    /// started are dispatched again at the next start.
    pub stop: CancellationToken,
    /// Retries of failed runs.
    pub retry: RetryPolicy,
    /// Circuit breaker and auto-disable.
    pub breaker: BreakerSettings,
    /// Which events this instance handles.
    pub partitioner: Partitioner,
    /// Event and listener filters.
    pub filters: Arc<Filters>,
}
