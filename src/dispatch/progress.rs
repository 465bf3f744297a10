//! [`Progress`]: which inbox events still have listener runs outstanding,
//! and the resulting `dispatched_through` watermark.
//!
//! The watermark is the highest inbox id at or below which every event has
//! all its runs recorded. It is written in the same transaction as the runs
//! that move it, so after a crash exactly the events above it are looked at
//! again.
//!
//! A worker (`run --role worker`) also wants to know when each event is
//! done: [`Progress::with_completions`] sends the inbox id of every event
//! whose runs are all committed (at once for an event with no run), so it
//! acks the delivery only then.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use tokio::sync::mpsc;

/// Outstanding runs per inbox id.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    state: Mutex<State>,
    /// Where completed inbox ids go, if anyone asked.
    completions: Option<mpsc::UnboundedSender<i64>>,
}

#[derive(Debug, Default)]
struct State {
    /// inbox id → runs not yet recorded.
    remaining: BTreeMap<i64, usize>,
    /// Highest inbox id handed to the dispatcher.
    high: i64,
}

impl Progress {
    /// A progress that sends each inbox id whose runs are all committed to
    /// `tx`.
    pub(crate) fn with_completions(tx: mpsc::UnboundedSender<i64>) -> Progress {
        Progress {
            state: Mutex::default(),
            completions: Some(tx),
        }
    }

    fn complete(&self, inbox_id: i64) {
        if let Some(tx) = &self.completions {
            // Nobody listening any more (shutdown): nothing to tell.
            let _ = tx.send(inbox_id);
        }
    }

    /// Notes that `inbox_id` is being dispatched to `runs` listeners.
    pub(crate) fn begin(&self, inbox_id: i64, runs: usize) {
        let mut s = self.lock();
        s.high = s.high.max(inbox_id);
        if runs > 0 {
            *s.remaining.entry(inbox_id).or_default() += runs;
        } else if !s.remaining.contains_key(&inbox_id) {
            drop(s);
            self.complete(inbox_id);
        }
    }

    /// The watermark that would hold once the runs of `inbox_ids` (one entry
    /// per run) are recorded, and the ids those runs complete. Nothing
    /// changes until [`Progress::commit`].
    pub(crate) fn preview(
        &self,
        inbox_ids: impl Iterator<Item = i64>,
    ) -> (i64, HashMap<i64, usize>) {
        let s = self.lock();
        let mut counts: HashMap<i64, usize> = HashMap::new();
        for id in inbox_ids {
            *counts.entry(id).or_default() += 1;
        }
        let done = |id: &i64, left: &usize| counts.get(id).is_some_and(|c| c >= left);
        let first_open = s.remaining.iter().find(|(id, left)| !done(id, left));
        let watermark = match first_open {
            Some((id, _)) => id - 1,
            None => s.high,
        };
        (watermark, counts)
    }

    /// Applies the run counts returned by [`Progress::preview`] once their
    /// runs are committed.
    pub(crate) fn commit(&self, counts: &HashMap<i64, usize>) {
        let mut done = Vec::new();
        let mut s = self.lock();
        for (id, c) in counts {
            if let Some(left) = s.remaining.get_mut(id) {
                *left = left.saturating_sub(*c);
                if *left == 0 {
                    s.remaining.remove(id);
                    done.push(*id);
                }
            }
        }
        drop(s);
        for id in done {
            self.complete(id);
        }
    }

    /// Events with runs outstanding.
    pub(crate) fn outstanding(&self) -> usize {
        self.lock().remaining.len()
    }

    /// The oldest `limit` inbox ids with runs outstanding, as `1, 2, 3`
    /// (`, … (N in all)` when there are more).
    pub(crate) fn unrecorded(&self, limit: usize) -> String {
        let s = self.lock();
        let mut ids: Vec<String> = s.remaining.keys().take(limit).map(i64::to_string).collect();
        if s.remaining.len() > limit {
            ids.push(format!("… ({} in all)", s.remaining.len()));
        }
        ids.join(", ")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this short lock cannot leave the map half
        // updated in a way that matters more than stopping would.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_stops_below_the_oldest_unfinished_event() {
        let p = Progress::default();
        p.begin(1, 2);
        p.begin(2, 1);
        p.begin(3, 0);
        // Event 2's only run and one of event 1's two runs finish.
        let (w, counts) = p.preview([2, 1].into_iter());
        assert_eq!(w, 0);
        p.commit(&counts);
        let (w, counts) = p.preview([1].into_iter());
        assert_eq!(w, 3, "events without runs count as done");
        p.commit(&counts);
        assert_eq!(p.outstanding(), 0);
    }

    #[test]
    fn completions_come_once_every_run_is_committed_and_at_once_without_runs() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let p = Progress::with_completions(tx);
        p.begin(1, 2);
        p.begin(2, 0);
        assert_eq!(rx.try_recv().ok(), Some(2));
        let (_, counts) = p.preview([1].into_iter());
        p.commit(&counts);
        assert!(rx.try_recv().is_err(), "one of two runs committed");
        let (_, counts) = p.preview([1].into_iter());
        p.commit(&counts);
        assert_eq!(rx.try_recv().ok(), Some(1));
    }

    #[test]
    fn a_preview_that_is_not_committed_changes_nothing() {
        let p = Progress::default();
        p.begin(5, 1);
        let _ = p.preview([5].into_iter());
        assert_eq!(p.preview(std::iter::empty()).0, 4);
    }
}
