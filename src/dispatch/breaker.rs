//! [`Breaker`]: a listener's circuit breaker and auto-disable bookkeeping.
//!
//! Closed: runs go through; `failure_threshold` consecutive failures open
//! it. Open: runs are skipped (and kept as dead letters for `replay`) until
//! the cool-down passes. Half-open: one trial run decides — success
//! closes, failure opens again. Independently, a listener that fails
//! `max_failures_per_hour` times within an hour, or `auto_disable_threshold`
//! times in a row, is disabled until an operator runs `enable NAME`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use prometheus::IntGauge;
use tokio::time::Instant;

use crate::metrics::CircuitState;

/// Breaker and auto-disable settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BreakerSettings {
    /// Consecutive failures that open the circuit (0 disables the breaker).
    pub failure_threshold: u32,
    /// How long the circuit stays open before a trial run.
    pub cooldown: Duration,
    /// Failures within an hour that disable the listener (0: never).
    pub max_failures_per_hour: u32,
    /// Consecutive failures that disable the listener (0: never).
    pub auto_disable_threshold: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failure_threshold: 5,
            cooldown: Duration::from_secs(300),
            max_failures_per_hour: 0,
            auto_disable_threshold: 0,
        }
    }
}

/// What to do with the next run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Run it.
    Run,
    /// Run it as the half-open trial.
    Trial,
    /// Skip it: the circuit is open.
    SkipOpen,
    /// Skip it: the listener is disabled.
    SkipDisabled,
}

/// What a recorded outcome changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Nothing worth telling.
    None,
    /// The circuit opened.
    Opened {
        /// Consecutive failures that opened it.
        failures: u32,
    },
    /// The circuit closed after a successful trial.
    Closed,
    /// The listener was disabled, with the reason.
    Disabled(String),
}

#[derive(Debug)]
enum Circuit {
    Closed,
    Open { until: Instant },
    HalfOpen { trial_running: bool },
}

#[derive(Debug)]
struct Inner {
    circuit: Circuit,
    consecutive: u32,
    recent: VecDeque<Instant>,
    disabled: Option<String>,
}

impl Inner {
    fn state(&self) -> CircuitState {
        match (&self.disabled, &self.circuit) {
            (Some(_), _) => CircuitState::Disabled,
            (None, Circuit::Closed) => CircuitState::Closed,
            (None, Circuit::HalfOpen { .. }) => CircuitState::HalfOpen,
            (None, Circuit::Open { .. }) => CircuitState::Open,
        }
    }
}

/// One listener's breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    settings: BreakerSettings,
    inner: Mutex<Inner>,
    /// `listener_circuit_state`, set after every change.
    gauge: Option<IntGauge>,
}

/// The lock on a breaker's state that publishes the state when released.
struct Guard<'a> {
    inner: std::sync::MutexGuard<'a, Inner>,
    gauge: Option<&'a IntGauge>,
}

impl std::ops::Deref for Guard<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl std::ops::DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.inner
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if let Some(g) = self.gauge {
            g.set(self.inner.state().value());
        }
    }
}

impl Breaker {
    /// A closed breaker.
    pub(crate) fn new(settings: BreakerSettings) -> Breaker {
        Breaker {
            settings,
            inner: Mutex::new(Inner {
                circuit: Circuit::Closed,
                consecutive: 0,
                recent: VecDeque::new(),
                disabled: None,
            }),
            gauge: None,
        }
    }

    /// The breaker, keeping `gauge` set to its [`CircuitState`].
    pub(crate) fn publishing(mut self, gauge: IntGauge) -> Breaker {
        gauge.set(CircuitState::Closed.value());
        self.gauge = Some(gauge);
        self
    }

    fn lock(&self) -> Guard<'_> {
        Guard {
            inner: self.inner.lock().unwrap_or_else(|p| p.into_inner()),
            gauge: self.gauge.as_ref(),
        }
    }

    /// The circuit's state now.
    #[cfg(test)]
    pub(crate) fn state(&self) -> CircuitState {
        self.lock().state()
    }

    /// Decides about the next run.
    pub(crate) fn admit(&self) -> Admission {
        let mut s = self.lock();
        if s.disabled.is_some() {
            return Admission::SkipDisabled;
        }
        match s.circuit {
            Circuit::Closed => Admission::Run,
            Circuit::Open { until } if Instant::now() < until => Admission::SkipOpen,
            Circuit::Open { .. } => {
                s.circuit = Circuit::HalfOpen {
                    trial_running: true,
                };
                Admission::Trial
            }
            Circuit::HalfOpen {
                trial_running: true,
            } => Admission::SkipOpen,
            Circuit::HalfOpen {
                trial_running: false,
            } => {
                s.circuit = Circuit::HalfOpen {
                    trial_running: true,
                };
                Admission::Trial
            }
        }
    }

    /// Records the final outcome of an admitted run.
    pub(crate) fn record(&self, success: bool) -> Transition {
        let mut s = self.lock();
        if success {
            s.consecutive = 0;
            let was_trial = matches!(s.circuit, Circuit::HalfOpen { .. });
            s.circuit = Circuit::Closed;
            return if was_trial {
                Transition::Closed
            } else {
                Transition::None
            };
        }
        // The clock is read for failures only: a success, the common case,
        // costs the lock alone.
        let now = Instant::now();
        s.consecutive += 1;
        s.recent.push_back(now);
        while s
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(3600))
        {
            s.recent.pop_front();
        }
        let st = self.settings;
        if st.max_failures_per_hour > 0 && s.recent.len() as u32 >= st.max_failures_per_hour {
            let reason = format!(
                "{} failures within an hour (max_failures_per_hour = {})",
                s.recent.len(),
                st.max_failures_per_hour
            );
            s.disabled = Some(reason.clone());
            return Transition::Disabled(reason);
        }
        if st.auto_disable_threshold > 0 && s.consecutive >= st.auto_disable_threshold {
            let reason = format!(
                "{} consecutive failures (auto_disable_threshold = {})",
                s.consecutive, st.auto_disable_threshold
            );
            s.disabled = Some(reason.clone());
            return Transition::Disabled(reason);
        }
        let reopen = matches!(s.circuit, Circuit::HalfOpen { .. });
        if reopen
            || (st.failure_threshold > 0
                && s.consecutive >= st.failure_threshold
                && matches!(s.circuit, Circuit::Closed))
        {
            s.circuit = Circuit::Open {
                until: now + st.cooldown,
            };
            return Transition::Opened {
                failures: s.consecutive,
            };
        }
        Transition::None
    }

    /// Disables or re-enables the listener (operator action).
    pub(crate) fn set_disabled(&self, reason: Option<String>) {
        let mut s = self.lock();
        if reason.is_none() {
            s.consecutive = 0;
            s.recent.clear();
            s.circuit = Circuit::Closed;
        }
        s.disabled = reason;
    }

    /// Why the listener is disabled, if it is.
    pub(crate) fn disabled(&self) -> Option<String> {
        self.lock().disabled.clone()
    }

    /// Until when the circuit is open, if it is.
    pub(crate) fn open_until(&self) -> Option<Instant> {
        match self.lock().circuit {
            Circuit::Open { until } => Some(until),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failure_threshold: 3,
            cooldown: Duration::from_secs(60),
            max_failures_per_hour: 0,
            auto_disable_threshold: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn three_failures_open_the_circuit_and_a_trial_after_the_cooldown_closes_it() {
        let b = Breaker::new(settings());
        assert_eq!(b.record(false), Transition::None);
        assert_eq!(b.record(false), Transition::None);
        assert_eq!(b.record(false), Transition::Opened { failures: 3 });
        assert_eq!(b.admit(), Admission::SkipOpen);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(b.admit(), Admission::Trial);
        assert_eq!(b.admit(), Admission::SkipOpen, "only one trial at a time");
        assert_eq!(b.record(true), Transition::Closed);
        assert_eq!(b.admit(), Admission::Run);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_trial_opens_the_circuit_again() {
        let b = Breaker::new(settings());
        for _ in 0..3 {
            b.record(false);
        }
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(b.admit(), Admission::Trial);
        assert!(matches!(b.record(false), Transition::Opened { .. }));
        assert_eq!(b.admit(), Admission::SkipOpen);
    }

    #[tokio::test(start_paused = true)]
    async fn too_many_failures_in_an_hour_disable_until_enabled() {
        let b = Breaker::new(BreakerSettings {
            failure_threshold: 0,
            max_failures_per_hour: 4,
            ..settings()
        });
        for _ in 0..3 {
            b.record(false);
            b.record(true);
        }
        assert!(matches!(b.record(false), Transition::Disabled(_)));
        assert_eq!(b.admit(), Admission::SkipDisabled);
        b.set_disabled(None);
        assert_eq!(b.admit(), Admission::Run);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_older_than_an_hour_do_not_count() {
        let b = Breaker::new(BreakerSettings {
            failure_threshold: 0,
            max_failures_per_hour: 3,
            ..settings()
        });
        b.record(false);
        b.record(false);
        tokio::time::advance(Duration::from_secs(3601)).await;
        assert_eq!(b.record(false), Transition::None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_gauge_follows_the_circuit_through_open_half_open_closed_and_disabled() {
        let gauge = IntGauge::new("circuit", "test").expect("a valid gauge");
        let b = Breaker::new(settings()).publishing(gauge.clone());
        assert_eq!(gauge.get(), CircuitState::Closed.value());
        for _ in 0..3 {
            b.record(false);
        }
        assert_eq!(gauge.get(), CircuitState::Open.value());
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(b.admit(), Admission::Trial);
        assert_eq!(gauge.get(), CircuitState::HalfOpen.value());
        b.record(true);
        assert_eq!(gauge.get(), CircuitState::Closed.value());
        b.set_disabled(Some("by hand".into()));
        assert_eq!(gauge.get(), CircuitState::Disabled.value());
        assert_eq!(b.state(), CircuitState::Disabled);
        b.set_disabled(None);
        assert_eq!(gauge.get(), CircuitState::Closed.value());
    }
}
