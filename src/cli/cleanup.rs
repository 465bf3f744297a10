//! `cleanup --days N`: delete old event log and inbox rows and sent
//! replies, and leave an audit row saying so.

use chrono::{Duration as ChronoDuration, Utc};

use crate::app;
use crate::cli::actor::actor;
use crate::cli::age::format_time;
use crate::cli::exit::Failure;
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
    let counts = store.cleanup(before).await?;
    println!(
        "Deleted {} event log row(s) and {} inbox row(s) older than {days} day(s) (before {}), and {} sent reply row(s).",
        counts.eventlog,
        counts.inbox,
        format_time(before),
        counts.replies
    );
    let trail = AuditTrail::new(store.clone(), config.data_protection.audit_trail);
    audit_cleanup(&trail, days, &counts).await;
    Ok(())
}

/// Writes the audit row of a `cleanup`; a failure is only logged, since
/// the cleanup itself is done.
async fn audit_cleanup(trail: &AuditTrail, days: u32, counts: &CleanupCounts) {
    let detail = format!(
        "older than {days} day(s): {} event log row(s), {} inbox row(s), {} sent reply row(s)",
        counts.eventlog, counts.inbox, counts.replies
    );
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
