//! `run`: the daemon (or one events file) until stopped, then what the run
//! did, printed for the operator.

use tokio_util::sync::CancellationToken;

use crate::app::{self, RunOptions, RunReport};
use crate::cli::args::RunArgs;
use crate::cli::exit::{Failure, EXIT_DATABASE};
use crate::config::Config;
use crate::intake::{FileReport, LineProblem};
use crate::listeners::Registry;
use crate::store::Summary;

/// `run [--dry-run] [--listeners a,b] [--events FILE] …`.
///
/// # Errors
///
/// A [`Failure`] with the code of the [`app::AppError`] that stopped the run,
/// or [`EXIT_DATABASE`] when an events file's runs could not all be recorded.
pub(crate) async fn cmd_run(
    args: RunArgs,
    config_file: Option<&std::path::Path>,
    config: &Config,
    registry: &Registry,
) -> Result<(), Failure> {
    let opts = RunOptions {
        dry_run: args.dry_run,
        listeners: args.listeners,
        events_file: args.events,
        release_queue: args.release_queue,
        backfill_since: args.backfill_since,
        config_file: config_file.map(std::path::Path::to_owned),
        role: args.role,
    };
    let token = CancellationToken::new();
    crate::shutdown::cancel_on_signal(token.clone());
    let report = app::run(config, registry, &opts, token).await?;
    print_report(&report, &opts);
    check_recorded(&report)
}

/// An events file whose listener runs the database refused was not
/// processed: exit 4, as for any database failure. (A daemon stopped while
/// the database refuses exits 0, as asked; the count is in its last line.)
fn check_recorded(report: &RunReport) -> Result<(), Failure> {
    let n = report.recorder.unrecorded;
    if report.file.is_none() || n == 0 {
        return Ok(());
    }
    Err(Failure::new(
        EXIT_DATABASE,
        anyhow::anyhow!(
            "{n} listener run(s) could not be recorded (the database refused them; see the log above); their events are dispatched again at the next start"
        ),
    ))
}

fn print_report(report: &RunReport, opts: &RunOptions) {
    if opts.dry_run {
        println!(
            "Dry run: {} event(s) described; nothing was stored.",
            report.stored
        );
        if let Some(f) = &report.file {
            print_malformed(f);
        }
        return;
    }
    let Some(f) = &report.file else {
        eprintln!(
            "Stopped. This run stored {} event(s) ({} duplicate(s) skipped) and recorded {} listener run(s), {} failed{}.",
            report.stored,
            report.duplicates,
            report.recorder.recorded,
            report.recorder.failures,
            unrecorded(report)
        );
        return;
    };
    println!(
        "Read {} line(s): stored {} new event(s), {} already stored, {} heartbeat(s) skipped, {}.",
        f.lines,
        f.stored,
        f.duplicates,
        f.heartbeats,
        skipped_summary(f)
    );
    print_malformed(f);
    println!(
        "Recorded {} listener run(s) ({} failed){}{}.",
        report.recorder.recorded,
        report.recorder.failures,
        unrecorded(report),
        if report.recovered > 0 {
            format!(
                ", after re-dispatching {} unfinished event(s)",
                report.recovered
            )
        } else {
            String::new()
        }
    );
    if let (Some(s), Some(location)) = (&report.summary, &report.location) {
        print_summary(s, location);
    }
}

/// What the database holds after an events file was read.
fn print_summary(s: &Summary, location: &str) {
    println!("Database {location} now holds:");
    println!("  event_listeners_inbox          {:>8} event(s)", s.inbox);
    for (t, n) in &s.by_type {
        println!("    {t:<28} {n:>8}");
    }
    println!(
        "  event_listeners_eventlog       {:>8} run(s), {} failed",
        s.eventlog, s.failures
    );
    println!(
        "  event_listeners_messagelog     {:>8} message(s)",
        s.messages
    );
    println!("  event_listeners_useractivity   {:>8} user(s)", s.users);
    if s.quarantined > 0 {
        println!(
            "  event_listeners_quarantine     {:>8} element(s) Zulip sent that are no event as they came",
            s.quarantined
        );
    }
}

/// `, N could not be recorded` when the recorder gave up on runs.
fn unrecorded(report: &RunReport) -> String {
    match report.recorder.unrecorded {
        0 => String::new(),
        n => format!(", {n} could not be recorded"),
    }
}

/// `N line(s) skipped`, and how many of each kind when there are any:
/// `3 line(s) skipped (1 malformed, 1 not UTF-8, 1 too long)`.
fn skipped_summary(f: &FileReport) -> String {
    let total = f.skipped.len();
    if total == 0 {
        return "0 line(s) skipped".to_owned();
    }
    let count =
        |kind: fn(&LineProblem) -> bool| f.skipped.iter().filter(|s| kind(&s.problem)).count();
    let kinds = [
        (
            count(|p| matches!(p, LineProblem::Malformed(_))),
            "malformed",
        ),
        (
            count(|p| matches!(p, LineProblem::NotUtf8 { .. })),
            "not UTF-8",
        ),
        (count(|p| matches!(p, LineProblem::TooLong(_))), "too long"),
    ];
    let kinds: Vec<String> = kinds
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, kind)| format!("{n} {kind}"))
        .collect();
    format!("{total} line(s) skipped ({})", kinds.join(", "))
}

fn print_malformed(f: &FileReport) {
    for s in &f.skipped {
        println!("  line {}: {}", s.line, s.problem);
    }
}
