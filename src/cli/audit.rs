//! `audit [--since TIME] [--limit N] [--json]`: the audit trail, newest
//! last: who (`user@host`, `token:NAME`, `auto-disable`) did what, to what,
//! when, and how it ended.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::app;
use crate::cli::age::format_time;
use crate::cli::exit::{Failure, EXIT_FAILURE};
use crate::config::Config;
use crate::store::AuditRow;

/// `audit`.
///
/// # Errors
///
/// A [`Failure`] with exit code 4 when the database fails.
pub(crate) async fn cmd_audit(
    config: &Config,
    since: Option<DateTime<Utc>>,
    limit: u32,
    json: bool,
) -> Result<(), Failure> {
    let store = app::open_store(config, false).await?;
    let from = since.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let rows = store.audit_rows(from, limit).await?;
    if json {
        let text = serde_json::to_string_pretty(&rows)
            .map_err(|e| Failure::new(EXIT_FAILURE, anyhow::Error::new(e)))?;
        println!("{text}");
        return Ok(());
    }
    let since_text = since.map_or_else(String::new, |t| format!(" since {}", format_time(t)));
    if rows.is_empty() {
        println!("No audit rows{since_text}.");
    } else {
        print!("{}", render(&rows));
        if rows.len() as u64 == u64::from(limit) {
            println!("(the newest {limit}{since_text}; --limit shows more)");
        }
    }
    if !config.data_protection.audit_trail {
        println!("Note: [data_protection] audit_trail is off: no new rows are written.");
    }
    Ok(())
}

/// One line per row: time, actor, action, target, outcome, detail.
fn render(rows: &[AuditRow]) -> String {
    let width = |f: fn(&AuditRow) -> usize| rows.iter().map(f).max().unwrap_or(0);
    let actor_w = width(|r| r.actor.len());
    let action_w = width(|r| r.action.len());
    let target_w = width(|r| r.target.as_deref().map_or(1, str::len));
    let mut out = String::new();
    for r in rows {
        let _ = writeln!(
            out,
            "{}  {:actor_w$}  {:action_w$}  {:target_w$}  {:6}  {}",
            format_time(r.at),
            r.actor,
            r.action,
            r.target.as_deref().unwrap_or("-"),
            r.outcome,
            r.detail.as_deref().unwrap_or("")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_aligned_with_a_dash_for_no_target() {
        let at = DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let row = |actor: &str, action: &str, target: Option<&str>| AuditRow {
            id: 1,
            at,
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.map(str::to_owned),
            detail: Some("why".to_owned()),
            outcome: "ok".to_owned(),
        };
        let text = render(&[
            row("token:ci", "disable", Some("counting")),
            row("alice@box", "cleanup", None),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].ends_with("token:ci   disable  counting  ok      why"),
            "{text}"
        );
        assert!(
            lines[1].ends_with("alice@box  cleanup  -         ok      why"),
            "{text}"
        );
    }
}
