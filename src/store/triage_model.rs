//! The words of dead-letter triage: where a run failed ([`Stage`]), how
//! ([`ErrorClass`]), what a dead letter records beside its run
//! ([`DeadLetterCause`]), whether it is still waiting ([`DeadLetterStatus`]),
//! the filters `deadletters list|retry|delete` take ([`DeadLetterFilter`])
//! and the row they print ([`DeadLetterSummary`]).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Where the work failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Deciding whether the listener runs. The filters are pure functions
    /// of the event today, so nothing is dead-lettered at this stage yet;
    /// the value is kept so that the column's words are the issue's.
    Filter,
    /// The listener's run (or its recording).
    Run,
    /// Posting a reply the run queued.
    Reply,
}

/// How the work failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClass {
    /// Retrying might help; the tries ran out.
    Transient,
    /// Retrying cannot help (a 4xx, an exit status other than 75, a refused reply).
    Permanent,
    /// The run exceeded its timeout.
    Timeout,
    /// The listener panicked.
    Panic,
    /// Skipped: the listener's circuit was open, or it was disabled.
    Circuit,
}

/// A value that is none of a column's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not one of {expected}")]
pub struct UnknownWord {
    /// What was given.
    pub value: String,
    /// The words allowed.
    pub expected: &'static str,
}

macro_rules! words {
    ($ty:ident, $expected:literal, $($variant:ident => $word:literal),+ $(,)?) => {
        impl $ty {
            /// Every value, in order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The word stored and printed.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $word),+
                }
            }
        }

        impl FromStr for $ty {
            type Err = UnknownWord;

            fn from_str(s: &str) -> Result<Self, UnknownWord> {
                match s {
                    $($word => Ok($ty::$variant),)+
                    _ => Err(UnknownWord { value: s.to_owned(), expected: $expected }),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

words!(Stage, "filter, run, reply", Filter => "filter", Run => "run", Reply => "reply");
words!(ErrorClass, "transient, permanent, timeout, panic, circuit",
    Transient => "transient", Permanent => "permanent", Timeout => "timeout",
    Panic => "panic", Circuit => "circuit");
words!(DeadLetterStatus, "pending, resolved, failed, any",
    Pending => "pending", Resolved => "resolved", Failed => "failed", Any => "any");

/// Why a run is dead-lettered, beside its error and attempts: written to
/// `event_listeners_deadletter` with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterCause {
    /// Where it failed.
    pub stage: Stage,
    /// How its last try failed.
    pub class: ErrorClass,
    /// When its first try failed (the last is the run's `finished_at`).
    pub first_failed_at: DateTime<Utc>,
}

/// Which dead letters, by what became of them. A retry (or `replay`)
/// marks the dead letters it runs replayed: resolved when the run
/// succeeded, failed when it failed again (a new pending dead letter is
/// written then).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeadLetterStatus {
    /// Not retried yet.
    #[default]
    Pending,
    /// Retried, and the run succeeded.
    Resolved,
    /// Retried, and the run failed again.
    Failed,
    /// Every status (only as a filter).
    Any,
}

/// The dead letters a triage command acts on; every field narrows.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    /// Of this listener instance.
    pub listener: Option<String>,
    /// Whose last failure is at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Of this class.
    pub class: Option<ErrorClass>,
    /// Of this status ([`DeadLetterStatus::Any`]: all).
    pub status: DeadLetterStatus,
    /// At most this many, the newest.
    pub limit: Option<u32>,
}

impl DeadLetterFilter {
    /// Whether nothing narrows it but the status.
    pub fn is_unfiltered(&self) -> bool {
        self.listener.is_none() && self.since.is_none() && self.class.is_none()
    }
}

/// One dead letter without its event, as `deadletters list|show` print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetterSummary {
    /// `event_listeners_deadletter.id`.
    pub id: i64,
    /// The listener instance whose work failed.
    pub listener: String,
    /// The organization (`instance`) of its event.
    pub organization: String,
    /// The event's inbox row.
    pub inbox_id: i64,
    /// The event's type.
    pub event_type: String,
    /// Where it failed.
    pub stage: Stage,
    /// How it failed.
    pub error_class: ErrorClass,
    /// The last error.
    pub error: Option<String>,
    /// Tries made.
    pub attempts: i64,
    /// When the first try failed.
    pub first_failed_at: DateTime<Utc>,
    /// When the last try failed.
    pub last_failed_at: DateTime<Utc>,
    /// Pending, resolved or failed (again).
    pub status: DeadLetterStatus,
    /// When it was retried, if it was.
    pub retried_at: Option<DateTime<Utc>>,
}

/// A dead letter row as read, before its words are parsed.
#[derive(sqlx::FromRow)]
pub(super) struct SummaryRow {
    id: i64,
    listener_name: String,
    instance: String,
    inbox_id: i64,
    event_type: String,
    stage: String,
    error_class: String,
    error: Option<String>,
    attempts: i64,
    first_failed_at: DateTime<Utc>,
    last_failed_at: DateTime<Utc>,
    replayed_at: Option<DateTime<Utc>>,
    replay_success: Option<bool>,
}

impl SummaryRow {
    /// The summary; a word no release writes is read as the nearest one
    /// (`run`, `permanent`) rather than failing the whole listing.
    pub(super) fn decode(self) -> DeadLetterSummary {
        let status = match (self.replayed_at, self.replay_success) {
            (None, _) => DeadLetterStatus::Pending,
            (Some(_), Some(true)) => DeadLetterStatus::Resolved,
            (Some(_), _) => DeadLetterStatus::Failed,
        };
        DeadLetterSummary {
            id: self.id,
            listener: self.listener_name,
            organization: self.instance,
            inbox_id: self.inbox_id,
            event_type: self.event_type,
            stage: self.stage.parse().unwrap_or(Stage::Run),
            error_class: self.error_class.parse().unwrap_or(ErrorClass::Permanent),
            error: self.error,
            attempts: self.attempts,
            first_failed_at: self.first_failed_at,
            last_failed_at: self.last_failed_at,
            status,
            retried_at: self.replayed_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_read_back_as_they_are_written() {
        for c in ErrorClass::ALL {
            assert_eq!(c.as_str().parse::<ErrorClass>(), Ok(*c));
        }
        for s in Stage::ALL {
            assert_eq!(s.as_str().parse::<Stage>(), Ok(*s));
        }
        let err = "fatal".parse::<ErrorClass>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "`fatal` is not one of transient, permanent, timeout, panic, circuit"
        );
    }
}
