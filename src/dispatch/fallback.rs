//! Fallback chains (`[listeners.NAME] fallback`): when a run fails for the
//! last time (after its retries, at once for a permanent error, or skipped
//! because its circuit is open or its listener disabled), the event is
//! handed to the instance's fallback, with the failure in the fallback's
//! `Context::fallback_of`; if that fails too and has a fallback of its own,
//! on down the chain (the configuration refuses cycles).
//!
//! Exactly once: the whole chain runs inside the primary's run, before any
//! of it is recorded, and the recorder commits the chain in one
//! transaction (`Recording::Chain`): the primary's event-log row and dead
//! letter (naming the fallback and how it ended), and each fallback's own
//! run with the rows it stores (a reply's outbox row). A crash before that
//! commit leaves no row of the chain: the primary is dispatched again at
//! the next start and the chain runs again; after it, recovery counts the
//! primary as done, and the fallback's rows are there once. A chain cut by
//! shutdown (a fallback that could not take a slot) is not recorded at all,
//! for the same reason.

use std::sync::Arc;

use super::run::Run;
use crate::listeners::FallbackOf;
use crate::store::{FallbackOutcome, RunRecord};

impl Run {
    /// Runs the listener and, when it fails for the last time, its
    /// fallbacks; the runs to record together, primary first. `None` when
    /// shutdown stopped any of them before it could start.
    pub(super) async fn execute(&self) -> Option<Vec<RunRecord>> {
        let (first, mut class) = self.execute_one().await?;
        let mut chain = vec![first];
        if self.slot().fallback.is_none() || class.is_none() {
            // The common case: no fallback to hand the event to.
            return Some(chain);
        }
        let mut at = self.clone();
        // A cycle is a configuration error; the bound only makes sure a
        // chain ends whatever the configuration.
        while chain.len() <= self.slots.len() {
            let (Some(next), Some(why)) = (at.slot().fallback, class) else {
                break;
            };
            let failed = &chain[chain.len() - 1];
            let handed = FallbackOf {
                listener: failed.listener.to_string(),
                class: why.to_owned(),
                error: failed.error.clone().unwrap_or_default(),
            };
            tracing::info!(listener = %failed.listener, fallback = %self.slots[next].name, inbox_id = self.stored.inbox_id, class = why, "Handing the event to the listener's fallback");
            at = Run {
                index: next,
                fallback_of: Some(Arc::new(handed)),
                ..self.clone()
            };
            let (mut record, next_class) = at.execute_one().await?;
            record.fallback.handed_from = Some(failed.listener.clone());
            let outcome = if record.success {
                FallbackOutcome::RanOk
            } else {
                FallbackOutcome::Failed
            };
            let last = chain.len() - 1;
            chain[last].fallback.handed_to = Some((record.listener.clone(), outcome));
            chain.push(record);
            class = next_class;
        }
        Some(chain)
    }
}
