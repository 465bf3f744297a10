//! The distributed ingest in `/health` (issue 16): its role, whether it
//! leads or stands by, the epoch and holder of the lead, the partitions,
//! the outbox's depth; and its reasons to be degraded (the outbox full, so
//! polling is paused; the broker down, so publishing waits).

use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::state::State;

/// `/health`'s `distributed` object.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct IngestHealth {
    /// `ingest`.
    pub role: &'static str,
    /// `leading` or `standby`.
    pub leadership: &'static str,
    /// The epoch of the lead (this process's while it leads).
    pub epoch: i64,
    /// Who leads (`host=H pid=P`), as last seen.
    pub holder: Option<String>,
    /// `[distributed] partitions`.
    pub partitions: u32,
    /// Committed events not yet confirmed by the broker.
    pub outbox_depth: i64,
}

/// The object, for a process running `--role ingest`.
pub(super) fn report(state: &State) -> Option<IngestHealth> {
    let i = &state.ingest;
    if !i.enabled.load(Ordering::Relaxed) {
        return None;
    }
    Some(IngestHealth {
        role: "ingest",
        leadership: if i.leading.load(Ordering::Relaxed) {
            "leading"
        } else {
            "standby"
        },
        epoch: i.epoch.load(Ordering::Relaxed),
        holder: i.holder.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        partitions: i.partitions.load(Ordering::Relaxed),
        outbox_depth: i.outbox_depth.load(Ordering::Relaxed),
    })
}

/// Why the ingest is degraded, if it is.
pub(super) fn degraded(state: &State) -> Vec<String> {
    let i = &state.ingest;
    let mut out = Vec::new();
    if !i.leading.load(Ordering::Relaxed) {
        return out;
    }
    if i.outbox_full.load(Ordering::Relaxed) {
        out.push(format!(
            "polling paused: the outbox holds {} unpublished events ([distributed] outbox_limit)",
            i.outbox_depth.load(Ordering::Relaxed)
        ));
    }
    if i.broker_down.load(Ordering::Relaxed) {
        out.push("cannot publish to RabbitMQ: events wait in the outbox".to_owned());
    }
    out
}
