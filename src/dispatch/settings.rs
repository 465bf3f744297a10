//! [`DispatcherSettings`]: how the dispatcher bounds, retries, selects and
//! labels runs, read by the dispatcher and by each run.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::RetryConfig;
use crate::listeners::BotIdentity;

use super::breaker::BreakerSettings;
use super::filters::Filters;
use super::partition::Partitioner;

/// Retry policy of failed runs: the configuration's, with the delay before
/// each retry computed here.
pub(crate) type RetryPolicy = RetryConfig;

/// The delay before the try after `attempt` (1 for the first), before
/// jitter: `initial_delay × backoff_coefficient^(attempt - 1)`, capped at
/// `max_delay`.
pub(crate) fn retry_delay(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(64) as i32;
    let secs = policy.initial_delay.as_secs_f64() * policy.backoff_coefficient.powi(exponent);
    let max = policy
        .max_delay
        .as_secs_f64()
        .max(policy.initial_delay.as_secs_f64());
    Duration::from_secs_f64(secs.min(max))
}

/// How runs are bounded.
#[derive(Debug, Clone)]
pub(crate) struct DispatcherSettings {
    /// Runs in flight at once, over all listeners.
    pub max_concurrent: usize,
    /// Upper bound of one run, for instances that set none.
    pub timeout: Duration,
    /// The organization, for idempotency keys.
    pub org: Arc<str>,
    /// The bot's own user id.
    pub bot_user_id: Option<i64>,
    /// The bot's identity, when Zulip told it.
    pub bot: Option<Arc<BotIdentity>>,
    /// Once cancelled (shutdown), no new run starts; events not fully
    /// started are dispatched again at the next start.
    pub stop: CancellationToken,
    /// Retries of failed runs, for instances that set none.
    pub retry: RetryPolicy,
    /// Circuit breaker and auto-disable.
    pub breaker: BreakerSettings,
    /// Which events this instance handles.
    pub partitioner: Partitioner,
    /// Event and listener filters.
    pub filters: Arc<Filters>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_delay_grows_by_the_coefficient_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_delay: Duration::from_secs(1),
            backoff_coefficient: 2.0,
            max_delay: Duration::from_secs(5),
        };
        let delays: Vec<u64> = (1..=5).map(|a| retry_delay(&policy, a).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 5, 5]);
        let constant = RetryPolicy {
            backoff_coefficient: 1.0,
            ..policy
        };
        assert_eq!(retry_delay(&constant, 4), Duration::from_secs(1));
    }
}
