//! `run`: the daemon (or one events file) until stopped, then what the run
//! did, printed for the operator.

use tokio_util::sync::CancellationToken;

use crate::app::{self, RunOptions, RunReport};
use crate::cli::args::RunArgs;
use crate::cli::exit::Failure;
use crate::config::Config;
use crate::intake::FileReport;
use crate::listeners::Registry;
use crate::store::Summary;

/// `run [--dry-run] [--listeners a,b] [--events FILE] …`.
///
/// # Errors
///
/// A [`Failure`] with the code of the [`app::AppError`] that stopped the run.
pub(crate) async fn cmd_run(
    args: RunArgs,
    config: &Config,
    registry: &Registry,
) -> Result<(), Failure> {
    let opts = RunOptions {
        dry_run: args.dry_run,
        listeners: args.listeners,
        events_file: args.events,
        release_queue: args.release_queue,
        backfill_since: args.backfill_since,
    };
    let token = CancellationToken::new();
    crate::shutdown::cancel_on_signal(token.clone());
    let report = app::run(config, registry, &opts, token).await?;
    print_report(&report, &opts);
    Ok(())
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
            "Stopped. This run stored {} event(s) ({} duplicate(s) skipped) and recorded {} listener run(s), {} failed.",
            report.stored, report.duplicates, report.recorder.recorded, report.recorder.failures
        );
        return;
    };
    println!(
        "Read {} line(s): stored {} new event(s), {} already stored, {} heartbeat(s) skipped, {} malformed line(s) skipped.",
        f.lines,
        f.stored,
        f.duplicates,
        f.heartbeats,
        f.malformed.len()
    );
    print_malformed(f);
    println!(
        "Recorded {} listener run(s) ({} failed){}.",
        report.recorder.recorded,
        report.recorder.failures,
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

fn print_malformed(f: &FileReport) {
    for (line, problem) in &f.malformed {
        println!("  line {line}: {problem}");
    }
}
