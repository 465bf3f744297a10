//! The compact event log (migration `20261203000013`): a recorder batch's
//! successful runs as one `event_listeners_eventruns` row per event, the
//! listeners, attempts and durations as arrays; every other run as a row of
//! `event_listeners_eventlog_rows`. Both are read through the view
//! `event_listeners_eventlog`.
//!
//! The rows' arrays have different lengths, which PostgreSQL's arrays of
//! arrays cannot hold, so each travels as the text of an array literal (a
//! few bytes) and the statement casts it: one `UNNEST` over the batch's
//! events, as for every other table.

use std::collections::HashMap;
use std::fmt::Write;

use crate::store::model::RunRecord;

/// The compact rows of a batch, column by column.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Compact<'a> {
    pub(super) inbox_ids: Vec<i64>,
    pub(super) event_types: Vec<&'a str>,
    /// The newest finish of the row's runs.
    pub(super) logged_at: Vec<chrono::DateTime<chrono::Utc>>,
    /// Array literals: `{"name",…}`, `{1,…}`, `{0.0012,…}`, and each
    /// run's finish in µs before `logged_at`, `{0,…}`.
    pub(super) listeners: Vec<String>,
    pub(super) attempts: Vec<String>,
    pub(super) durations: Vec<String>,
    pub(super) behind: Vec<String>,
}

/// Whether `run` is logged compactly: a success with no error text (a
/// `cursor skip` or a failure keeps its row, and what is looked up by
/// failure reads only the rows table).
fn compact(run: &RunRecord) -> bool {
    run.success && run.error.is_none() && run.dead_letter.is_none()
}

/// `runs` split into the compact rows (in the order their events first
/// appear) and the runs logged a row each.
pub(super) fn split(runs: &[RunRecord]) -> (Compact<'_>, Vec<&RunRecord>) {
    let mut rows = Vec::new();
    let mut at: HashMap<i64, usize> = HashMap::new();
    let mut groups: Vec<Vec<&RunRecord>> = Vec::new();
    for run in runs {
        if !compact(run) {
            rows.push(run);
            continue;
        }
        let k = *at.entry(run.inbox_id).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[k].push(run);
    }
    let mut out = Compact::default();
    for group in &groups {
        let Some(newest) = group.iter().map(|r| r.finished_at).max() else {
            continue;
        };
        let (mut names, mut tries, mut durations, mut behind) = (
            String::from("{"),
            String::from("{"),
            String::from("{"),
            String::from("{"),
        );
        for (i, run) in group.iter().enumerate() {
            if i > 0 {
                for s in [&mut names, &mut tries, &mut durations, &mut behind] {
                    s.push(',');
                }
            }
            quoted(&mut names, &run.listener);
            let _ = write!(tries, "{}", attempts(run.attempts));
            // Rust prints the shortest text that reads back as the same f64.
            let _ = write!(durations, "{}", run.duration.as_secs_f64());
            let us = (newest - run.finished_at)
                .num_microseconds()
                .unwrap_or(i64::MAX);
            let _ = write!(behind, "{us}");
        }
        for s in [&mut names, &mut tries, &mut durations, &mut behind] {
            s.push('}');
        }
        out.inbox_ids.push(group[0].inbox_id);
        out.event_types.push(&group[0].event_type);
        out.logged_at.push(newest);
        out.listeners.push(names);
        out.attempts.push(tries);
        out.durations.push(durations);
        out.behind.push(behind);
    }
    (out, rows)
}

/// `text` as a double-quoted element of an array literal.
fn quoted(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
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
    fn successes_are_grouped_by_event_and_the_rest_keep_their_rows() {
        let runs = vec![
            run(7, "a", true, 1_000),
            run(8, "a", true, 1_001),
            run(7, "b\"q\\", true, 1_005),
            run(7, "c", false, 1_006),
        ];
        let (c, rows) = split(&runs);
        assert_eq!(c.inbox_ids, [7, 8]);
        assert_eq!(c.listeners, [r#"{"a","b\"q\\"}"#, r#"{"a"}"#]);
        assert_eq!(c.attempts, ["{1,1}", "{1}"]);
        assert_eq!(c.durations, ["{0.000012,0.000012}", "{0.000012}"]);
        assert_eq!(c.behind, ["{5000,0}", "{0}"], "µs before the newest finish");
        assert_eq!(
            c.logged_at[0],
            chrono::Utc.timestamp_millis_opt(1_005).unwrap(),
            "the newest of the row's runs"
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
        assert_eq!(rows.len(), 1);
    }
}
