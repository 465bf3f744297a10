//! The daemon's retention: a task that deletes stats buckets, event log
//! rows, fully dispatched inbox rows and sent replies older than
//! `[statistics] retention_days`, and one that deletes dead letters (of
//! any status) whose last failure is older than `[error_handling]
//! deadletter_retention_days`, each shortly after start and then daily.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::store::{RetentionReport, Store};

/// Wait before the first pass, so it does not compete with start-up work
/// (recovery of unfinished events, backfill).
pub const FIRST_PASS_DELAY: Duration = Duration::from_secs(60);

/// Time between passes.
pub const PASS_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Spawns [`run_retention`] with the daemon's schedule; it ends when `stop`
/// is cancelled.
pub fn spawn_retention(
    store: Arc<dyn Store>,
    retention_days: u32,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(run_retention(
        store,
        retention_days,
        FIRST_PASS_DELAY,
        PASS_INTERVAL,
        stop,
    ))
}

/// Deletes rows older than `retention_days` after `first_delay`, then every
/// `interval`, until `stop` is cancelled. A failed pass is logged and tried
/// again at the next one; a pass cut short by `stop` is rolled back.
pub async fn run_retention(
    store: Arc<dyn Store>,
    retention_days: u32,
    first_delay: Duration,
    interval: Duration,
    stop: CancellationToken,
) {
    on_schedule(first_delay, interval, stop, || async {
        let before = Utc::now() - chrono::Duration::days(i64::from(retention_days));
        match store.retention(before).await {
            Ok(report) => log_pass(&report, retention_days),
            Err(e) => tracing::warn!(
                error = %e,
                retry_in_seconds = interval.as_secs(),
                "Statistics retention failed; the next pass tries again"
            ),
        }
    })
    .await;
}

/// Spawns [`run_deadletter_retention`] with the daemon's schedule; it ends
/// when `stop` is cancelled.
pub fn spawn_deadletter_retention(
    store: Arc<dyn Store>,
    retention_days: u32,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(run_deadletter_retention(
        store,
        retention_days,
        FIRST_PASS_DELAY,
        PASS_INTERVAL,
        stop,
    ))
}

/// Deletes dead letters, of any status, that last failed more than
/// `retention_days` ago, after `first_delay`, then every `interval`, until
/// `stop` is cancelled. A failed pass is logged and tried again at the next.
pub async fn run_deadletter_retention(
    store: Arc<dyn Store>,
    retention_days: u32,
    first_delay: Duration,
    interval: Duration,
    stop: CancellationToken,
) {
    on_schedule(first_delay, interval, stop, || async {
        let before = Utc::now() - chrono::Duration::days(i64::from(retention_days));
        match store.retain_dead_letters(before).await {
            Ok(0) => tracing::debug!(
                retention_days,
                "Dead-letter retention found nothing to delete"
            ),
            Ok(deleted) => tracing::info!(
                retention_days,
                deleted,
                "Deleted dead letters older than the dead-letter retention"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                retry_in_seconds = interval.as_secs(),
                "Dead-letter retention failed; the next pass tries again"
            ),
        }
    })
    .await;
}

/// Runs `pass` after `first_delay`, then every `interval`, until `stop` is
/// cancelled; a pass cut short by `stop` is dropped (its transaction rolls
/// back).
async fn on_schedule<F, Fut>(
    first_delay: Duration,
    interval: Duration,
    stop: CancellationToken,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut wait = first_delay;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = pass() => {}
        }
        wait = interval;
    }
}

fn log_pass(report: &RetentionReport, retention_days: u32) {
    if report.total() == 0 {
        tracing::debug!(
            retention_days,
            "Statistics retention found nothing to delete"
        );
        return;
    }
    tracing::info!(
        retention_days,
        listenerstats = report.listenerstats,
        eventlog = report.eventlog,
        inbox = report.inbox,
        replies = report.replies,
        "Deleted rows older than the statistics retention"
    );
}
