//! Folding a batch of runs into the few rows the store writes: one stats
//! row per listener and bucket, one activity row per user, and the message
//! log rows with their inbox ids.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::model::RunRecord;
use crate::listeners::{ActivityKind, MessageLogRecord, Record};

/// Runs of one listener in one aggregation bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsBucket {
    /// Listener name.
    pub listener: String,
    /// Start of the bucket.
    pub bucket_start: DateTime<Utc>,
    /// Runs.
    pub total: i64,
    /// Successful runs.
    pub successes: i64,
    /// Failed runs.
    pub failures: i64,
    /// Sum of durations, seconds.
    pub total_duration: f64,
    /// Longest run, seconds.
    pub max_duration: f64,
    /// Finish time of the last successful run.
    pub last_success: Option<DateTime<Utc>>,
}

/// Activity of one user in a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityTotals {
    /// User id.
    pub user_id: i64,
    /// Latest email seen.
    pub email: Option<String>,
    /// Latest activity.
    pub last_seen: DateTime<Utc>,
    /// Messages sent.
    pub messages: i64,
    /// Reactions.
    pub reactions: i64,
    /// Presence updates.
    pub presence: i64,
    /// Typing notifications.
    pub typing: i64,
    /// Edits and moves of messages.
    pub edits: i64,
}

/// The start of the `interval`-wide bucket holding `t`.
pub(super) fn bucket_start(t: DateTime<Utc>, interval: Duration) -> DateTime<Utc> {
    let width = interval.as_secs().max(1) as i64;
    let start = t.timestamp().div_euclid(width) * width;
    DateTime::<Utc>::from_timestamp(start, 0).unwrap_or(t)
}

/// One [`StatsBucket`] per (listener, bucket) in `runs`.
pub(super) fn stats_buckets(runs: &[RunRecord], interval: Duration) -> Vec<StatsBucket> {
    let mut map: BTreeMap<(&str, DateTime<Utc>), StatsBucket> = BTreeMap::new();
    for run in runs {
        let start = bucket_start(run.finished_at, interval);
        let b = map
            .entry((&run.listener, start))
            .or_insert_with(|| StatsBucket {
                listener: run.listener.to_string(),
                bucket_start: start,
                total: 0,
                successes: 0,
                failures: 0,
                total_duration: 0.0,
                max_duration: 0.0,
                last_success: None,
            });
        let secs = run.duration.as_secs_f64();
        b.total += 1;
        b.total_duration += secs;
        b.max_duration = b.max_duration.max(secs);
        if run.success {
            b.successes += 1;
            b.last_success = b.last_success.max(Some(run.finished_at));
        } else {
            b.failures += 1;
        }
    }
    map.into_values().collect()
}

/// One [`ActivityTotals`] per user named by the runs' activity records.
pub(super) fn activity_totals(runs: &[RunRecord]) -> Vec<ActivityTotals> {
    let mut map: BTreeMap<i64, ActivityTotals> = BTreeMap::new();
    for record in runs.iter().flat_map(|r| &r.records) {
        let Record::Activity(a) = record else {
            continue;
        };
        let t = map.entry(a.user_id).or_insert_with(|| ActivityTotals {
            user_id: a.user_id,
            email: None,
            last_seen: a.seen_at,
            messages: 0,
            reactions: 0,
            presence: 0,
            typing: 0,
            edits: 0,
        });
        if a.email.is_some() {
            t.email.clone_from(&a.email);
        }
        t.last_seen = t.last_seen.max(a.seen_at);
        match a.kind {
            ActivityKind::Message => t.messages += 1,
            ActivityKind::Reaction => t.reactions += 1,
            ActivityKind::Presence => t.presence += 1,
            ActivityKind::Typing => t.typing += 1,
            ActivityKind::Edit => t.edits += 1,
        }
    }
    map.into_values().collect()
}

/// The message-log records of a batch, each with its run's inbox id.
pub(super) fn message_logs(runs: &[RunRecord]) -> Vec<(i64, &MessageLogRecord)> {
    runs.iter()
        .flat_map(|r| {
            r.records.iter().filter_map(move |rec| match rec {
                Record::MessageLog(m) => Some((r.inbox_id, m)),
                _ => None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listeners::ActivityRecord;

    fn run(listener: &str, secs: i64, success: bool, records: Vec<Record>) -> RunRecord {
        RunRecord {
            inbox_id: 1,
            listener: listener.into(),
            event_type: "message".into(),
            success,
            attempts: 1,
            error: None,
            duration: Duration::from_millis(10),
            finished_at: DateTime::<Utc>::from_timestamp(secs, 0).unwrap(),
            records,
            dead_letter: None,
            fallback: Default::default(),
        }
    }

    #[test]
    fn runs_are_bucketed_per_listener_and_interval() {
        let runs = vec![
            run("a", 600, true, vec![]),
            run("a", 899, false, vec![]),
            run("a", 900, true, vec![]),
            run("b", 650, true, vec![]),
        ];
        let b = stats_buckets(&runs, Duration::from_secs(300));
        assert_eq!(b.len(), 3);
        assert_eq!(
            (b[0].listener.as_str(), b[0].total, b[0].failures),
            ("a", 2, 1)
        );
        assert_eq!(b[0].bucket_start.timestamp(), 600);
        assert_eq!(b[1].bucket_start.timestamp(), 900);
    }

    #[test]
    fn activity_is_summed_per_user_with_the_latest_time() {
        let act = |user, secs, kind| {
            Record::Activity(ActivityRecord {
                user_id: user,
                email: None,
                seen_at: DateTime::<Utc>::from_timestamp(secs, 0).unwrap(),
                kind,
            })
        };
        let runs = vec![run(
            "t",
            1,
            true,
            vec![
                act(1, 5, ActivityKind::Message),
                act(1, 3, ActivityKind::Typing),
                act(2, 1, ActivityKind::Reaction),
            ],
        )];
        let t = activity_totals(&runs);
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].messages, t[0].typing, t[0].last_seen.timestamp()),
            (1, 1, 5)
        );
        assert_eq!(t[1].reactions, 1);
    }
}
