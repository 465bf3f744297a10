//! `cleanup --days N`: delete old event log and inbox rows and sent
//! replies, and dead letters past `[error_handling]
//! deadletter_retention_days` when it is set, with a progress bar (or log
//! lines) through the steps, and leave an audit row saying so.

use chrono::{Duration as ChronoDuration, Utc};

use crate::app;
use crate::cli::actor::actor;
use crate::cli::age::format_time;
use crate::cli::exit::Failure;
use crate::cli::progress::Progress;
use crate::config::Config;
use crate::store::{AuditAction, AuditEntry, AuditOutcome, AuditTrail, CleanupCounts};

/// `cleanup --days N`.
///
/// # Errors
///
/// A [`Failure`] with exit code 4 when the database fails.
pub(crate) async fn cmd_cleanup(config: &Config, days: u32) -> Result<(), Failure> {
    let store = app::open_store(config, false).await?;
    let before = Utc::now() - ChronoDuration::days(i64::from(days));
    let dead_days = config.error_handling.deadletter_retention_days;
    let mut progress = Progress::new("Cleaning up", "steps", if dead_days > 0 { 2 } else { 1 });
    progress.set_message("event log, inbox, replies");
    let counts = store.cleanup(before).await;
    progress.inc(1);
    let counts = match counts {
        Ok(c) => c,
        Err(e) => {
            progress.finish();
            return Err(e.into());
        }
    };
    let dead = if dead_days > 0 {
        progress.set_message("dead letters");
        let cutoff = Utc::now() - ChronoDuration::days(i64::from(dead_days));
        let deleted = store.retain_dead_letters(cutoff).await;
        progress.inc(1);
        progress.finish();
        Some((deleted?, dead_days))
    } else {
        progress.finish();
        None
    };
    println!(
        "Deleted {} event log row(s) and {} inbox row(s) older than {days} day(s) (before {}), and {} sent reply row(s).",
        counts.eventlog,
        counts.inbox,
        format_time(before),
        counts.replies
    );
    if let Some((n, d)) = dead {
        println!("Deleted {n} dead letter(s) whose last failure is older than {d} day(s) (error_handling.deadletter_retention_days).");
    }
    let trail = AuditTrail::new(store.clone(), config.data_protection.audit_trail);
    audit_cleanup(&trail, days, &counts, dead).await;
    Ok(())
}

/// Writes the audit row of a `cleanup`; a failure is only logged, since
/// the cleanup itself is done.
async fn audit_cleanup(
    trail: &AuditTrail,
    days: u32,
    counts: &CleanupCounts,
    dead: Option<(u64, u32)>,
) {
    let mut detail = format!(
        "older than {days} day(s): {} event log row(s), {} inbox row(s), {} sent reply row(s)",
        counts.eventlog, counts.inbox, counts.replies
    );
    if let Some((n, d)) = dead {
        detail.push_str(&format!("; {n} dead letter(s) older than {d} day(s)"));
    }
    trail
        .record(AuditEntry {
            actor: &actor(),
            action: AuditAction::Cleanup,
            target: None,
            detail: &detail,
            outcome: AuditOutcome::Ok,
        })
        .await;
}
