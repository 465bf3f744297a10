//! `replay --listener NAME [--since TIME] [--event INBOX_ID] [--org NAME]`:
//! a listener's dead letters (or one logged event) of one organization run
//! again in this process, each outcome printed and recorded for that
//! organization (a progress bar, or log lines, counting them), and the
//! whole replay audited.

use std::fmt::Write as _;

use crate::app;
use crate::cli::actor::{actor, instance};
use crate::cli::age::format_time;
use crate::cli::args::ReplayArgs;
use crate::cli::exit::{Failure, EXIT_FAILURE};
use crate::cli::progress::Progress;
use crate::config::Config;
use crate::dispatch::replay::{self, ReplayOutcome, ReplaySettings};
use crate::listeners::Registry;
use crate::store::{AuditAction, AuditEntry, AuditOutcome, AuditTrail};

/// `replay --event ID` that finds nothing fails; a plain `replay` with no
/// dead letters says so and succeeds.
fn nothing_to_replay(args: &ReplayArgs, filters: &str) -> Result<(), Failure> {
    if let Some(id) = args.event {
        return Err(Failure::new(
            EXIT_FAILURE,
            anyhow::anyhow!(
                "inbox event {id} has no pending dead letter and no logged run of `{}`{}; nothing to replay",
                args.listener,
                args.since.map_or_else(String::new, |t| format!(" since {}", format_time(t)))
            ),
        ));
    }
    println!("No pending dead letters of `{}`{filters}.", args.listener);
    Ok(())
}

/// `replay --listener NAME [--since TIME] [--event INBOX_ID] [--org NAME]`.
///
/// # Errors
///
/// A [`Failure`]: exit 2 for an unknown listener or organization, 4 when
/// the database fails, 1 when `--event` finds nothing or a replay fails
/// again.
pub(crate) async fn cmd_replay(
    config: &Config,
    registry: &Registry,
    args: &ReplayArgs,
) -> Result<(), Failure> {
    let org = config.organization(args.org.as_deref())?;
    let org_name = org.scaling.instance_id.as_str();
    let instance = instance(&org, registry, &args.listener)?;
    let listener = instance.listener.clone();
    let store = app::open_store(config, false).await?;
    let items = replay::select(
        store.as_ref(),
        org_name,
        &args.listener,
        args.since,
        args.event,
    )
    .await?;
    let filters = describe_filters(args, config.has_several_organizations().then_some(org_name));
    let trail = AuditTrail::new(store.clone(), config.data_protection.audit_trail);
    if items.is_empty() {
        let result = nothing_to_replay(args, &filters);
        let (outcome, detail) = match &result {
            Ok(()) => (AuditOutcome::Ok, format!("nothing to replay{filters}")),
            Err(e) => (AuditOutcome::Failed, format!("{:#}", e.error)),
        };
        audit(&trail, args, outcome, &detail).await;
        return result;
    }
    let settings = ReplaySettings {
        instance: org_name.to_owned(),
        timeout: config.performance.handler_timeout,
    };
    let mut outcomes = Vec::with_capacity(items.len());
    let mut progress = Progress::new("Replaying", "events", items.len() as u64);
    for item in &items {
        let outcome = match replay::replay_one(store.as_ref(), &listener, item, &settings).await {
            Ok(o) => o,
            Err(e) => {
                progress.finish();
                return Err(e.into());
            }
        };
        println!("{}", replay_line(&outcome));
        outcomes.push(outcome);
        progress.inc(1);
    }
    progress.finish();
    let failed = outcomes.iter().filter(|o| !o.success).count();
    let total = format!(
        "Replayed {} event(s) through `{}`{filters}: {} succeeded, {failed} failed{}.",
        outcomes.len(),
        args.listener,
        outcomes.len() - failed,
        if failed > 0 {
            " (dead letters again)"
        } else {
            ""
        }
    );
    println!("{total}");
    let outcome = if failed > 0 {
        AuditOutcome::Failed
    } else {
        AuditOutcome::Ok
    };
    audit(&trail, args, outcome, &total).await;
    if failed > 0 {
        return Err(Failure::new(
            EXIT_FAILURE,
            anyhow::anyhow!(
                "{failed} of {} replay(s) failed; they are pending dead letters again",
                outcomes.len()
            ),
        ));
    }
    Ok(())
}

/// The audit row of this replay.
async fn audit(trail: &AuditTrail, args: &ReplayArgs, outcome: AuditOutcome, detail: &str) {
    trail
        .record(AuditEntry {
            actor: &actor(),
            action: AuditAction::Replay,
            target: Some(&args.listener),
            detail,
            outcome,
        })
        .await;
}

/// The filters of `args` as words, with the organization `org` when the
/// daemon has several.
fn describe_filters(args: &ReplayArgs, org: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(org) = org {
        let _ = write!(out, " of organization {org}");
    }
    if let Some(id) = args.event {
        let _ = write!(out, " for inbox event {id}");
    }
    if let Some(since) = args.since {
        let _ = write!(out, " since {}", format_time(since));
    }
    out
}

/// One line per replayed event.
pub(super) fn replay_line(o: &ReplayOutcome) -> String {
    let source = match o.dead_letters.as_slice() {
        [] => "logged run".to_owned(),
        [one] => format!("dead letter {one}"),
        many => format!(
            "dead letters {}",
            many.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let head = format!("inbox {} ({}, {source})", o.inbox_id, o.event_type);
    if o.success {
        format!(
            "{head}: succeeded on attempt {} in {:.1} ms",
            o.attempts,
            o.duration.as_secs_f64() * 1000.0
        )
    } else {
        format!(
            "{head}: failed on attempt {}: {}",
            o.attempts,
            o.error.as_deref().unwrap_or("(no error message)")
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn replay_lines_name_the_event_its_dead_letter_and_the_outcome() {
        let mut o = ReplayOutcome {
            inbox_id: 42,
            event_type: "message".into(),
            dead_letters: vec![7],
            attempts: 4,
            success: true,
            error: None,
            duration: Duration::from_micros(3_210),
        };
        assert_eq!(
            replay_line(&o),
            "inbox 42 (message, dead letter 7): succeeded on attempt 4 in 3.2 ms"
        );
        o.success = false;
        o.error = Some("down".into());
        o.dead_letters = vec![];
        assert_eq!(
            replay_line(&o),
            "inbox 42 (message, logged run): failed on attempt 4: down"
        );
    }
}
