//! The runs the database refuses, found and recorded alone. A batch is one
//! transaction, so one row the database will not store (a value a
//! constraint forbids, a column it does not fit) would fail its batch-mates
//! with it on every retry, and at every restart. When a whole batch is
//! refused, it is split in halves, in order, each committed with the
//! watermark it moves, and each half refused split again, until the runs
//! refused are alone; each of those is recorded as a failed run and a dead
//! letter whose error says why it could not be recorded, without the rows
//! it wanted to store (listener data, message-log rows, replies), so that
//! this row is one the database takes. Halves are written left first, in
//! the order the runs finished, so an edit still follows the message it
//! edits. One refused run among n costs about 2·log2(n) writes.

use tokio_util::sync::CancellationToken;

use super::commit::{RecorderReport, Writer, Written};
use crate::metrics::FailureClass;
use crate::store::{DeadLetterCause, ErrorClass, RunRecord, Stage, StoreError};

/// Tries of a group the database refused as part of a larger one.
const GROUP_REFUSALS: u32 = 1;
/// The longest part of a run's own error kept in the reason it could not
/// be recorded (the error may be what the database refused).
const KEPT_ERROR_CHARS: usize = 1000;

impl Writer {
    /// Writes `runs`, which the database refused together with `error`,
    /// apart: every run it takes is recorded as it is, every run it
    /// refuses alone as a failure.
    pub(super) async fn isolate(
        &self,
        runs: Vec<RunRecord>,
        error: StoreError,
        give_up: &CancellationToken,
        report: &mut RecorderReport,
    ) {
        tracing::warn!(runs = runs.len(), error = %error, "The database refuses a batch of listener runs; writing them apart to find the runs it cannot store");
        if is_one_chain(&runs) {
            self.record_unrecordable(runs, &error, give_up, report)
                .await;
            return;
        }
        // A stack of groups not tried yet, the next one on top.
        let mut untried = halves(runs);
        while let Some(group) = untried.pop() {
            match self.commit(&group, GROUP_REFUSALS, give_up).await {
                Written::Committed => self.committed(&group, report),
                Written::GaveUp => {
                    let left: usize = untried.iter().map(Vec::len).sum();
                    report.unrecorded += (group.len() + left) as u64;
                    return;
                }
                Written::Refused(e) if is_one_chain(&group) => {
                    self.record_unrecordable(group, &e, give_up, report).await;
                }
                Written::Refused(_) => untried.extend(halves(group)),
            }
        }
    }

    /// Records `chain` (one run, or a run and the fallback runs it handed
    /// its event to), which the database refused with `error`, as failures
    /// without their rows, in one transaction. Should even that be refused,
    /// the runs stay unrecorded and their event is dispatched again at the
    /// next start.
    async fn record_unrecordable(
        &self,
        chain: Vec<RunRecord>,
        error: &StoreError,
        give_up: &CancellationToken,
        report: &mut RecorderReport,
    ) {
        let failed: Vec<RunRecord> = chain
            .into_iter()
            .map(|run| {
                tracing::error!(listener = %run.listener, inbox_id = run.inbox_id, error = %error, "The database refuses a listener run's rows; recording the run as failed, without them, and dead-lettering it");
                self.state
                    .metrics
                    .instances
                    .failed(&run.listener, FailureClass::Unrecordable);
                unrecordable(run, error)
            })
            .collect();
        let n = failed.len() as u64;
        match self.commit(&failed, GROUP_REFUSALS, give_up).await {
            Written::Committed => {
                self.committed(&failed, report);
                report.unrecordable += n;
            }
            Written::GaveUp => report.unrecorded += n,
            Written::Refused(e) => {
                report.unrecorded += n;
                for r in &failed {
                    tracing::error!(listener = %r.listener, inbox_id = r.inbox_id, error = %e, "Cannot record the listener run even as a failure; its event is dispatched again at next start");
                }
            }
        }
    }
}

/// `runs` in two halves, as a stack: the first half last, to be taken
/// first. A fallback chain is never cut (its runs commit together), so the
/// cut moves to the next run that starts a chain, or the one before.
fn halves(mut runs: Vec<RunRecord>) -> Vec<Vec<RunRecord>> {
    let starts_chain = |i: usize| runs[i].fallback.handed_from.is_none();
    let mid = runs.len() / 2;
    let cut = (mid..runs.len())
        .find(|&i| starts_chain(i))
        .or_else(|| (1..mid).rev().find(|&i| starts_chain(i)))
        .unwrap_or(mid);
    let second = runs.split_off(cut);
    vec![second, runs]
}

/// Whether `runs` is one run and the fallback runs it handed its event
/// to: a group that is not split further.
fn is_one_chain(runs: &[RunRecord]) -> bool {
    runs.iter()
        .skip(1)
        .all(|r| r.fallback.handed_from.is_some())
}

/// `run` as a failed, dead-lettered run without the rows it wanted to
/// store, its error saying that `error` refused it.
fn unrecordable(run: RunRecord, error: &StoreError) -> RunRecord {
    let mut reason =
        format!("the run could not be recorded ({error}); the rows it stores were dropped");
    if let Some(own) = &run.error {
        reason.push_str("; the run had failed: ");
        reason.extend(own.chars().take(KEPT_ERROR_CHARS));
        if own.chars().nth(KEPT_ERROR_CHARS).is_some() {
            reason.push('…');
        }
    }
    // A run that had failed keeps where and how; a successful one whose
    // rows were refused is permanent: the same rows are refused again.
    let dead_letter = run.dead_letter.or(Some(DeadLetterCause {
        stage: Stage::Run,
        class: ErrorClass::Permanent,
        first_failed_at: run.finished_at,
    }));
    RunRecord {
        success: false,
        error: Some(reason),
        records: Vec::new(),
        dead_letter,
        ..run
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::listeners::Record;

    fn run(inbox_id: i64, error: Option<&str>) -> RunRecord {
        RunRecord {
            inbox_id,
            listener: Arc::from("logger"),
            event_type: Arc::from("message"),
            success: error.is_none(),
            attempts: 1,
            error: error.map(str::to_owned),
            duration: Duration::from_millis(3),
            finished_at: chrono::Utc::now(),
            records: vec![Record::Data {
                key: "k".into(),
                value: serde_json::json!(1),
            }],
            dead_letter: None,
            fallback: Default::default(),
        }
    }

    fn refusal() -> StoreError {
        StoreError::Query(sqlx::Error::Protocol("value too long".into()))
    }

    #[test]
    fn halves_put_the_first_half_on_top_of_the_stack() {
        let mut stack = halves((1..=5).map(|i| run(i, None)).collect());
        let ids = |g: Vec<RunRecord>| g.iter().map(|r| r.inbox_id).collect::<Vec<_>>();
        assert_eq!(ids(stack.pop().unwrap()), [1, 2]);
        assert_eq!(ids(stack.pop().unwrap()), [3, 4, 5]);
        assert!(stack.is_empty());
    }

    #[test]
    fn halves_never_cut_a_fallback_chain() {
        // Runs 1, 2 (with its fallback runs 2', 2''), 3.
        let mut runs: Vec<RunRecord> = [1, 2, 2, 2, 3].iter().map(|&i| run(i, None)).collect();
        for r in &mut runs[2..4] {
            r.fallback.handed_from = Some(Arc::from("hook"));
        }
        assert!(!is_one_chain(&runs));
        let mut stack = halves(runs);
        let ids = |g: Vec<RunRecord>| g.iter().map(|r| r.inbox_id).collect::<Vec<_>>();
        let first = stack.pop().unwrap();
        assert_eq!(ids(first), [1, 2, 2, 2]);
        let second = stack.pop().unwrap();
        assert!(is_one_chain(&second));
        assert_eq!(ids(second), [3]);
    }

    #[test]
    fn an_unrecordable_run_fails_without_its_rows_and_says_why() {
        let r = unrecordable(run(7, None), &refusal());
        assert!(!r.success);
        assert_eq!(r.dead_letter.map(|c| c.class), Some(ErrorClass::Permanent));
        assert!(r.records.is_empty());
        assert_eq!(r.inbox_id, 7);
        let reason = r.error.unwrap();
        assert!(
            reason.starts_with("the run could not be recorded ("),
            "{reason}"
        );
        assert!(reason.contains("value too long"), "{reason}");
    }

    #[test]
    fn an_unrecordable_failed_run_keeps_the_start_of_its_own_error() {
        let long = "x".repeat(KEPT_ERROR_CHARS + 10);
        let reason = unrecordable(run(1, Some(&long)), &refusal()).error.unwrap();
        let kept = reason.split("the run had failed: ").nth(1).unwrap();
        assert_eq!(
            kept.chars().count(),
            KEPT_ERROR_CHARS + 1,
            "cut, with an ellipsis"
        );
        assert!(kept.ends_with('…'));
    }
}
