//! [`guard`], the single guard every listener try goes through (a timeout,
//! and a panic caught and turned into an error), shared by the dispatcher
//! and by replay, and [`Failure`], why a guarded try did not succeed, with
//! the labels and dead-letter class each failure is counted under.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;

use crate::event::Event;
use crate::listeners::{Context, Listener, ListenerError, Record};
use crate::metrics::{FailureClass, Outcome};
use crate::store::{DeadLetterCause, ErrorClass, Stage};

/// Why one guarded try of a listener did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The listener returned an error.
    Listener(ListenerError),
    /// The listener panicked, with the panic's message.
    Panicked(String),
    /// The listener ran past the timeout.
    TimedOut(Duration),
}

impl Failure {
    /// Whether retrying cannot help.
    pub(super) fn is_permanent(&self) -> bool {
        matches!(self, Failure::Listener(ListenerError::Permanent(_)))
    }

    /// The earliest retry the failure asked for (a `Retry-After`).
    pub(super) fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Listener(ListenerError::RetryAfter(_, d)) => Some(*d),
            _ => None,
        }
    }

    /// The `class` label of the failure.
    pub(super) fn class(&self) -> FailureClass {
        match self {
            Failure::Listener(ListenerError::Permanent(_)) => FailureClass::Permanent,
            Failure::Listener(_) => FailureClass::Transient,
            Failure::Panicked(_) => FailureClass::Panic,
            Failure::TimedOut(_) => FailureClass::Timeout,
        }
    }

    /// The error class its dead letter records.
    fn dead_letter_class(&self) -> ErrorClass {
        match self {
            Failure::Listener(ListenerError::Permanent(_)) => ErrorClass::Permanent,
            Failure::Listener(_) => ErrorClass::Transient,
            Failure::Panicked(_) => ErrorClass::Panic,
            Failure::TimedOut(_) => ErrorClass::Timeout,
        }
    }

    /// The dead letter of a run whose last try failed with this, and whose
    /// first failed at `first_failed_at`.
    pub(crate) fn dead_letter(&self, first_failed_at: DateTime<Utc>) -> DeadLetterCause {
        DeadLetterCause {
            stage: Stage::Run,
            class: self.dead_letter_class(),
            first_failed_at,
        }
    }

    /// The outcome label of the try.
    pub(super) fn outcome(&self) -> Outcome {
        match self {
            Failure::TimedOut(_) => Outcome::Timeout,
            Failure::Listener(_) | Failure::Panicked(_) => Outcome::Failure,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Listener(e) => write!(f, "{e}"),
            Failure::Panicked(msg) => write!(f, "panicked: {msg}"),
            Failure::TimedOut(t) => write!(f, "timed out after {:.3} s", t.as_secs_f64()),
        }
    }
}

/// Runs `listener` on `event` once, bounded by `timeout`, with a panic
/// caught and returned as [`Failure::Panicked`].
pub(crate) async fn guard(
    listener: &dyn Listener,
    event: &Event,
    ctx: &Context,
    timeout: Duration,
) -> Result<Vec<Record>, Failure> {
    let fut = AssertUnwindSafe(listener.handle(event, ctx)).catch_unwind();
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(Ok(records))) => Ok(records),
        Ok(Ok(Err(e))) => Err(Failure::Listener(e)),
        Ok(Err(panic)) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(Failure::Panicked(msg))
        }
        Err(_) => Err(Failure::TimedOut(timeout)),
    }
}
