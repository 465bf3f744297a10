//! The compact event log (migrations `20261203000013`, `20261203000014`):
//! a recorder batch's successful runs as one `event_listeners_eventruns`
//! row, each run an element of its parallel arrays (inbox id, event type,
//! listener, attempts, duration, finish as µs before the newest); every
//! other run as a row of `event_listeners_eventlog_rows`. Both are read
//! through the view `event_listeners_eventlog`.
//!
//! The arrays travel as typed binary arrays, so neither side formats or
//! parses text for them, and the row's `first_inbox`/`last_inbox` bound
//! its inbox ids for the queries that look runs up by inbox id.

use crate::store::model::RunRecord;

/// A batch's compact row, column by column.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Compact<'a> {
    /// The lowest and the highest of `inbox_ids`.
    pub(super) first_inbox: i64,
    pub(super) last_inbox: i64,
    /// The newest finish of the row's runs.
    pub(super) logged_at: Option<chrono::DateTime<chrono::Utc>>,
    /// One element per run.
    pub(super) inbox_ids: Vec<i64>,
    pub(super) event_types: Vec<&'a str>,
    pub(super) listeners: Vec<&'a str>,
    pub(super) attempts: Vec<i32>,
    pub(super) durations: Vec<f64>,
    /// Each run's finish, in µs before `logged_at`.
    pub(super) behind: Vec<i64>,
}

/// Whether `run` is logged compactly: a success with no error text (a
/// `cursor skip` or a failure keeps its row, and what is looked up by
/// failure reads only the rows table).
fn compact(run: &RunRecord) -> bool {
    run.success && run.error.is_none() && run.dead_letter.is_none()
}

/// `runs` split into the compact row (the compact runs in their order)
/// and the runs logged a row each.
pub(super) fn split(runs: &[RunRecord]) -> (Compact<'_>, Vec<&RunRecord>) {
    let (kept, rows): (Vec<&RunRecord>, Vec<&RunRecord>) = runs.iter().partition(|r| compact(r));
    let mut out = Compact {
        first_inbox: i64::MAX,
        last_inbox: i64::MIN,
        logged_at: kept.iter().map(|r| r.finished_at).max(),
        ..Compact::default()
    };
    let Some(newest) = out.logged_at else {
        return (Compact::default(), rows);
    };
    for run in kept {
        out.first_inbox = out.first_inbox.min(run.inbox_id);
        out.last_inbox = out.last_inbox.max(run.inbox_id);
        out.inbox_ids.push(run.inbox_id);
        out.event_types.push(&run.event_type);
        out.listeners.push(&run.listener);
        out.attempts.push(attempts(run.attempts));
        out.durations.push(run.duration.as_secs_f64());
        out.behind.push(
            (newest - run.finished_at)
                .num_microseconds()
                .unwrap_or(i64::MAX),
        );
    }
    (out, rows)
}

/// A run's attempts as the `int4` column (saturating).
pub(super) fn attempts(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::sync::Arc;
    use std::time::Duration;

    fn run(inbox_id: i64, listener: &str, success: bool, ms: i64) -> RunRecord {
        RunRecord {
            inbox_id,
            listener: Arc::from(listener),
            event_type: Arc::from("message"),
            success,
            attempts: 1,
            error: (!success).then(|| "boom".to_owned()),
            duration: Duration::from_micros(12),
            finished_at: chrono::Utc.timestamp_millis_opt(ms).unwrap(),
            records: Vec::new(),
            dead_letter: None,
            fallback: Default::default(),
        }
    }

    #[test]
    fn successes_share_one_row_and_the_rest_keep_their_rows() {
        let runs = vec![
            run(8, "a", true, 1_000),
            run(7, "a", true, 1_001),
            run(8, "b\"q\\", true, 1_005),
            run(7, "c", false, 1_006),
        ];
        let (c, rows) = split(&runs);
        assert_eq!(c.inbox_ids, [8, 7, 8]);
        assert_eq!((c.first_inbox, c.last_inbox), (7, 8));
        assert_eq!(c.listeners, ["a", "a", "b\"q\\"]);
        assert_eq!(c.event_types, ["message"; 3]);
        assert_eq!(c.attempts, [1, 1, 1]);
        assert_eq!(c.durations, [0.000012; 3]);
        assert_eq!(c.behind, [5000, 4000, 0], "µs before the newest finish");
        assert_eq!(
            c.logged_at,
            Some(chrono::Utc.timestamp_millis_opt(1_005).unwrap()),
            "the newest of the row's runs (the failure is not in it)"
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(&*rows[0].listener, "c");
    }

    #[test]
    fn a_skipped_run_with_an_error_text_keeps_its_row() {
        let mut skipped = run(1, "a", true, 0);
        skipped.error = Some("skipped by ops".into());
        let (c, rows) = split(std::slice::from_ref(&skipped));
        assert!(c.inbox_ids.is_empty());
        assert_eq!(c, Compact::default());
        assert_eq!(rows.len(), 1);
    }
}
