//! `deadletters list|show|retry|delete`: dead-letter triage. The filters
//! (`--listener`, `--since`, `--class`, `--limit`, and `--status` for
//! `list` and `delete`) select the same rows for each action, newest
//! first; `retry` is `deadletters_retry.rs`. `delete` refuses to run
//! without a filter or `--all`, asks nothing, and is audited.

use std::fmt::Write as _;

use crate::app;
use crate::cli::actor::actor;
use crate::cli::age::format_time;
use crate::cli::args::DeadlettersCommand;
use crate::cli::deadletter_filter::{describe, status_word, to_filter};
use crate::cli::deadletters_retry::cmd_retry;
use crate::cli::exit::{Failure, EXIT_CONFIG, EXIT_FAILURE};
use crate::config::Config;
use crate::listeners::Registry;
use crate::store::{
    AuditAction, AuditEntry, AuditOutcome, AuditTrail, DeadLetterFilter, DeadLetterStatus,
    DeadLetterSummary,
};

/// Rows `list` prints without `--limit`.
const LIST_LIMIT: u32 = 100;
/// Characters of an error `list` prints (`show` prints it whole).
const LIST_ERROR_CHARS: usize = 80;

/// Why `deadletters delete` will not run.
#[derive(Debug, thiserror::Error)]
#[error(
    "deadletters delete needs a filter (--listener, --since, --class, --status, --limit) or --all"
)]
struct BareDelete;

/// `deadletters …`.
///
/// # Errors
///
/// A [`Failure`]: exit 2 for a bare `delete`, 4 when the database fails,
/// 1 when `show` finds nothing or a retry fails.
pub(crate) async fn cmd_deadletters(
    config: &Config,
    registry: &Registry,
    action: DeadlettersCommand,
) -> Result<(), Failure> {
    match action {
        DeadlettersCommand::List {
            filter,
            status,
            json,
        } => {
            let mut filter = to_filter(&filter, status);
            filter.limit = filter.limit.or(Some(LIST_LIMIT));
            cmd_list(config, &filter, json).await
        }
        DeadlettersCommand::Show { id, json } => cmd_show(config, id, json).await,
        DeadlettersCommand::Retry { filter } => {
            cmd_retry(
                config,
                registry,
                &to_filter(&filter, DeadLetterStatus::Pending),
            )
            .await
        }
        DeadlettersCommand::Delete {
            filter,
            status,
            all,
        } => cmd_delete(config, &to_filter(&filter, status), all).await,
    }
}

/// `deadletters list`.
async fn cmd_list(config: &Config, filter: &DeadLetterFilter, json: bool) -> Result<(), Failure> {
    let store = app::open_store(config, false).await?;
    let rows = store.list_dead_letters(filter).await?;
    if json {
        let text = serde_json::to_string_pretty(&rows)
            .map_err(|e| Failure::new(EXIT_FAILURE, anyhow::Error::new(e)))?;
        println!("{text}");
        return Ok(());
    }
    if rows.is_empty() {
        println!("No dead letters ({}).", describe(filter));
        return Ok(());
    }
    println!(
        "{:>6}  {:<22} {:>8}  {:<12} {:<6} {:<9} {:>3}  {:<23} {:<23} {:<8} ERROR",
        "ID",
        "LISTENER",
        "INBOX",
        "TYPE",
        "STAGE",
        "CLASS",
        "TRY",
        "FIRST FAILED",
        "LAST FAILED",
        "STATUS"
    );
    for r in &rows {
        println!("{}", list_line(r));
    }
    println!("{} dead letter(s) ({}).", rows.len(), describe(filter));
    Ok(())
}

/// One row of `list`.
fn list_line(r: &DeadLetterSummary) -> String {
    let error = r.error.as_deref().unwrap_or("");
    let mut short: String = error.chars().take(LIST_ERROR_CHARS).collect();
    if error.chars().nth(LIST_ERROR_CHARS).is_some() {
        short.push('…');
    }
    format!(
        "{:>6}  {:<22} {:>8}  {:<12} {:<6} {:<9} {:>3}  {:<23} {:<23} {:<8} {}",
        r.id,
        r.listener,
        r.inbox_id,
        r.event_type,
        r.stage,
        r.error_class,
        r.attempts,
        format_time(r.first_failed_at),
        format_time(r.last_failed_at),
        status_word(r.status),
        short.replace('\n', " ")
    )
}

/// `deadletters show ID`.
async fn cmd_show(config: &Config, id: i64, json: bool) -> Result<(), Failure> {
    let store = app::open_store(config, false).await?;
    let Some(r) = store.dead_letter(id).await? else {
        return Err(Failure::new(
            EXIT_FAILURE,
            anyhow::anyhow!("there is no dead letter {id}"),
        ));
    };
    if json {
        let text = serde_json::to_string_pretty(&r)
            .map_err(|e| Failure::new(EXIT_FAILURE, anyhow::Error::new(e)))?;
        println!("{text}");
        return Ok(());
    }
    print!("{}", show_text(&r));
    Ok(())
}

/// `show`'s lines.
fn show_text(r: &DeadLetterSummary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "id:              {}", r.id);
    let _ = writeln!(out, "listener:        {}", r.listener);
    let _ = writeln!(out, "organization:    {}", r.organization);
    let _ = writeln!(out, "inbox event:     {} ({})", r.inbox_id, r.event_type);
    let _ = writeln!(out, "stage:           {}", r.stage);
    let _ = writeln!(out, "error class:     {}", r.error_class);
    let _ = writeln!(out, "attempts:        {}", r.attempts);
    let _ = writeln!(out, "first failed at: {}", format_time(r.first_failed_at));
    let _ = writeln!(out, "last failed at:  {}", format_time(r.last_failed_at));
    let _ = writeln!(out, "status:          {}", status_word(r.status));
    if let Some(t) = r.retried_at {
        let _ = writeln!(out, "retried at:      {}", format_time(t));
    }
    let _ = writeln!(
        out,
        "error:           {}",
        r.error.as_deref().unwrap_or("(none)")
    );
    out
}

/// `deadletters delete`.
async fn cmd_delete(config: &Config, filter: &DeadLetterFilter, all: bool) -> Result<(), Failure> {
    let narrowed =
        !filter.is_unfiltered() || filter.status != DeadLetterStatus::Any || filter.limit.is_some();
    if !narrowed && !all {
        return Err(Failure::new(EXIT_CONFIG, BareDelete));
    }
    let store = app::open_store(config, false).await?;
    let deleted = store.delete_dead_letters(filter).await?;
    let detail = format!("deleted {deleted} dead letter(s) ({})", describe(filter));
    println!("Deleted {deleted} dead letter(s) ({}).", describe(filter));
    AuditTrail::new(store.clone(), config.data_protection.audit_trail)
        .record(AuditEntry {
            actor: &actor(),
            action: AuditAction::DeleteDeadLetters,
            target: filter.listener.as_deref(),
            detail: &detail,
            outcome: AuditOutcome::Ok,
        })
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::store::{ErrorClass, Stage};

    #[test]
    fn list_lines_shorten_the_error_and_show_says_it_all() {
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
        let r = DeadLetterSummary {
            id: 7,
            listener: "hook".into(),
            organization: "default".into(),
            inbox_id: 42,
            event_type: "message".into(),
            stage: Stage::Run,
            error_class: ErrorClass::Transient,
            error: Some("x".repeat(100)),
            attempts: 3,
            first_failed_at: at,
            last_failed_at: at,
            status: DeadLetterStatus::Pending,
            retried_at: None,
        };
        let line = list_line(&r);
        assert!(
            line.ends_with(&format!("{}…", "x".repeat(LIST_ERROR_CHARS))),
            "{line}"
        );
        assert!(line.contains(" run "), "{line}");
        let text = show_text(&r);
        assert!(text.contains(&"x".repeat(100)), "{text}");
        assert!(text.contains("error class:     transient"), "{text}");
    }
}
